//! WhatsApp as it is today, against the simulator's own link over real sockets (and, for
//! restricted new chats, the real client against the WhatsApp Web front end), on SQLite and on
//! PostgreSQL + Redis.
//!
//! One chat per person whatever the addressing: a contact writes first from a LID (its number
//! hidden), a campaign send goes to its number, it answers from the LID, and only then does
//! WhatsApp tell the device that the LID and the number are the same person: wafleet ends with
//! one chat, under the number, holding every message, and the send marked replied in the
//! campaign report and in analytics.
//!
//! History on link: the chats WhatsApp pushes to a newly linked device are stored once, personal
//! ones only, as history (not unread, not news).
//!
//! Contact names: the names the phone saved name the chats, before the contacts' own.
//!
//! Restricted new chats: under a reach-out timelock, replies in existing chats go on while sends
//! to new chats wait with the reason shown, none failed, and go out once the lock lifts.

mod support;

use std::time::Duration;

use serde_json::Value;
use serde_json::json;
use support::stack::{Network, Stack, StackOn};
use support::unpaced;
use wafleet_core::Db;
use wafleet_core::db::{CampaignStatus, LeadFilter, LeadStatus, NewCampaign, NewLead};
use wafleet_core::testing::Backend;
use wafleet_core::types::{DeviceId, Email, Timestamp};
use wafleet_sim::SimHandle;
use wafleet_sim::control::{ChatKind, InjectMessage};
use wafleet_sim::waweb::WaWebHandle;

const DEVICE_PHONE: &str = "60123400001";
const CONTACT: &str = "60123400077";

fn from_contact(chat: ChatKind, text: &str) -> InjectMessage {
    InjectMessage {
        to: DEVICE_PHONE.into(),
        from: CONTACT.into(),
        chat,
        text: Some(text.into()),
        kind: None,
        push_name: Some("Nadia".into()),
        media: None,
    }
}

/// Messages stored, of every device.
async fn stored(db: &Db) -> i64 {
    wafleet_core::testing::fetch_optional(db, "SELECT COUNT(*) FROM messages", &[])
        .await
        .expect("a count")
}

fn jids(chats: &Value) -> Vec<String> {
    chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["jid"].as_str().unwrap().to_owned())
        .collect()
}

/// One person, one chat, on `N`'s link: the contact writes first from its LID, a campaign send
/// goes to its number, it answers from the LID, and WhatsApp tells the device the LID's number.
/// On the simulator's own link the number comes only then; the real client learns it already
/// when it sends to the number (WhatsApp's device lookup answers the LID), so its chats merge
/// earlier. Either way wafleet ends with one chat under the number, one lead, and the send
/// replied in the campaign report and in analytics.
async fn a_reply_from_a_lid_counts_once_its_number_is_known_on<N: Network>(backend: Backend) {
    let stack = StackOn::<N>::start(backend).await;
    let db = &stack.db.db;
    stack.sim.add_contact(CONTACT);
    let device = stack.linked_device("sales", &format!("+{DEVICE_PHONE}")).await;
    let chats = format!("/api/devices/{device}/chats");
    let user = db
        .user_by_email(&Email::parse("ana@example.com").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let phone_jid = format!("{CONTACT}@s.whatsapp.net");
    let theirs = |page: &Value| {
        page["messages"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["from_me"] == false).count())
    };

    // 1. The contact writes first, from its LID only: wafleet can only keep that chat under it.
    stack
        .sim
        .write_from_lid(CONTACT, DEVICE_PHONE, "hi, who is this?", false)
        .await;
    let listed = stack.eventually(&chats, "the LID's chat", |c| jids(c).len() == 1).await;
    let lid = jids(&listed)[0].clone();
    assert!(lid.ends_with("@lid"), "kept under the LID: {lid}");
    let name = listed["chats"][0]["name"].clone();
    assert!(name.is_string(), "{listed}");
    let by_lid = format!("/api/devices/{device}/messages/{}", lid.replace('@', "%40"));

    // 2. A campaign to the contact's number, as a lead of the device.
    unpaced(db, user, &[DeviceId(device)]).await;
    let lead = NewLead {
        name: "Nadia".into(),
        phone: format!("+{CONTACT}").parse().unwrap(),
        niche: Some("bakery".into()),
        journey: None,
        status: LeadStatus::New,
        notes: None,
    };
    db.create_lead(user, DeviceId(device), &lead).await.unwrap();
    let campaign = db
        .create_campaign(
            user,
            &NewCampaign {
                title: "Bread day".into(),
                niche: "bakery".into(),
                message: "Fresh bread today".into(),
                image: None,
                send_at: Timestamp::now().plus_secs(-1),
                time_zone: "UTC".into(),
                status: CampaignStatus::Scheduled,
                devices: vec![DeviceId(device)],
                distribution: Default::default(),
                per_device_cap: None,
            },
        )
        .await
        .unwrap();
    for _ in 0..600 {
        db.dispatch_campaigns(Timestamp::now()).await.unwrap();
        let report = db.campaign_report(user, campaign.id).await.unwrap();
        if report.totals.sent + report.totals.delivered + report.totals.read == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = stack
        .eventually(&chats, "the number's chat", |c| jids(c).contains(&phone_jid))
        .await;
    if !N::SEND_REVEALS_LID {
        assert_eq!(jids(&listed).len(), 2, "the number's chat beside the LID's: {listed}");
    }

    // 3. The contact answers from its LID. Before the number is known nothing can tell it is
    // a reply.
    stack
        .sim
        .write_from_lid(CONTACT, DEVICE_PHONE, "yes please, two loaves", false)
        .await;
    stack
        .eventually(&by_lid, "the answer stored", |page| theirs(page) == 2)
        .await;
    if !N::SEND_REVEALS_LID {
        db.refresh_analytics().await.unwrap();
        assert_eq!(db.campaign_report(user, campaign.id).await.unwrap().totals.replied, 0);
    }

    // 4. WhatsApp tells the device the LID's number: one chat, under the number, with all three
    // messages, both unread ones, the LID noted on it, and the send answered.
    stack.sim.reveal_number(DEVICE_PHONE, CONTACT).await;
    let listed = stack
        .eventually(&chats, "one chat for the person", |c| jids(c) == [phone_jid.clone()])
        .await;
    let chat = &listed["chats"][0];
    assert_eq!(chat["lid"], lid.as_str(), "{chat}");
    assert_eq!(chat["unread_count"], 2, "{chat}");
    assert_eq!(chat["name"], name, "{chat}");
    let messages = stack
        .get(&format!(
            "/api/devices/{device}/messages/{}",
            phone_jid.replace('@', "%40")
        ))
        .await;
    let messages = messages["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(
        messages.iter().filter(|m| m["from_me"] == true).count(),
        1,
        "the campaign's send and both lines of the contact: {messages:?}"
    );

    // A link to the LID's chat from before still opens the person's chat.
    let opened = stack.get(&by_lid).await;
    assert_eq!(opened["chat"]["jid"], phone_jid.as_str());
    assert_eq!(opened["messages"].as_array().unwrap().len(), 3);

    let leads = db
        .export_leads(user, DeviceId(device), &LeadFilter::default())
        .await
        .unwrap();
    assert_eq!(leads.len(), 1, "one lead: {leads:?}");
    let report = wafleet_core::testing::eventually_some(N::PATIENCE, "the send replied", async || {
        // Replies that arrive after the merge are marked by the roll-up.
        db.refresh_analytics().await.unwrap();
        let report = db.campaign_report(user, campaign.id).await.unwrap();
        (report.totals.replied == 1).then_some(report)
    })
    .await;
    assert_eq!(report.totals.total, 1, "one lead, one recipient");
    db.refresh_analytics().await.unwrap();
    let today = chrono::Utc::now().date_naive();
    let analytics = db.analytics(user, None, today, today).await.unwrap();
    assert_eq!(analytics.totals.replied, 1, "analytics agree with the report");

    // 5. From now on the LID's messages go straight to the number's chat.
    stack
        .sim
        .write_from_lid(CONTACT, DEVICE_PHONE, "see you at ten", false)
        .await;
    stack
        .eventually(
            &format!("/api/devices/{device}/messages/{}", phone_jid.replace('@', "%40")),
            "a later line",
            |page| page["messages"].as_array().is_some_and(|m| m.len() == 4),
        )
        .await;
    assert_eq!(jids(&stack.get(&chats).await), [phone_jid]);
}

async fn a_reply_from_a_lid_counts_once_its_number_is_known(backend: Backend) {
    a_reply_from_a_lid_counts_once_its_number_is_known_on::<SimHandle>(backend).await
}

async fn with_the_real_client_a_reply_from_a_lid_counts_once_its_number_is_known(backend: Backend) {
    a_reply_from_a_lid_counts_once_its_number_is_known_on::<WaWebHandle>(backend).await
}

async fn a_sender_alt_merges_the_chats_by_itself(backend: Backend) {
    let stack = Stack::start(backend).await;
    let control = stack.sim.control();
    let device = stack.linked_device("sales", &format!("+{DEVICE_PHONE}")).await;
    let chats = format!("/api/devices/{device}/chats");
    let phone_jid = format!("{CONTACT}@s.whatsapp.net");

    control
        .inject_text(DEVICE_PHONE, CONTACT, "from the number")
        .await
        .unwrap();
    control
        .inject(&from_contact(ChatKind::Lid, "from the LID"))
        .await
        .unwrap();
    stack.eventually(&chats, "two chats", |c| jids(c).len() == 2).await;
    // A message from the LID that names the number as its sender's other address.
    control
        .inject(&from_contact(ChatKind::LidWithNumber, "from the LID, number attached"))
        .await
        .unwrap();
    let listed = stack
        .eventually(&chats, "one chat for the person", |c| jids(c) == [phone_jid.clone()])
        .await;
    assert_eq!(listed["chats"][0]["unread_count"], 3, "{listed}");
    assert!(
        listed["chats"][0]["lid"].as_str().unwrap().ends_with("@lid"),
        "{listed}"
    );
}

/// A contact who writes from a LID with its number beside it (`sender_pn`) is kept under the
/// number from the first message, the LID noted on the chat, on `N`'s link.
async fn a_lid_with_its_number_writes_in_the_numbers_chat_on<N: Network>(backend: Backend) {
    let stack = StackOn::<N>::start(backend).await;
    let device = stack.linked_device("sales", &format!("+{DEVICE_PHONE}")).await;
    let chats = format!("/api/devices/{device}/chats");
    stack
        .sim
        .write_from_lid(CONTACT, DEVICE_PHONE, "hello, it's Nadia", true)
        .await;
    // The real client reports the number it learned apart from the message, so the LID may be
    // noted a moment after the chat appears.
    let listed = stack
        .eventually(&chats, "the chat, its LID noted", |c| {
            c["chats"][0]["lid"].as_str().is_some_and(|lid| lid.ends_with("@lid"))
        })
        .await;
    assert_eq!(jids(&listed), [format!("{CONTACT}@s.whatsapp.net")], "{listed}");
    // Later messages from the LID alone join it.
    stack
        .sim
        .write_from_lid(CONTACT, DEVICE_PHONE, "are you open?", false)
        .await;
    let listed = stack
        .eventually(&chats, "both lines in it", |c| c["chats"][0]["unread_count"] == 2)
        .await;
    assert_eq!(jids(&listed).len(), 1, "{listed}");
}

async fn a_lid_with_its_number_writes_in_the_numbers_chat(backend: Backend) {
    a_lid_with_its_number_writes_in_the_numbers_chat_on::<SimHandle>(backend).await
}

async fn with_the_real_client_a_lid_with_its_number_writes_in_the_numbers_chat(backend: Backend) {
    a_lid_with_its_number_writes_in_the_numbers_chat_on::<WaWebHandle>(backend).await
}

/// History on link, on `N`'s link: the chats the phone pushes are stored once, personal ones
/// only, as history; a worker that resumes the session gets none of it again; news after it is
/// news.
async fn history_on_link_is_stored_once_and_personal_only_on<N: Network>(backend: Backend) {
    let mut stack = StackOn::<N>::start_on(backend, N::start_with_history(3).await).await;
    let device = stack.linked_device("sales", &format!("+{DEVICE_PHONE}")).await;
    let chats = format!("/api/devices/{device}/chats");
    let messages_of = |jid: &str| format!("/api/devices/{device}/messages/{}", jid.replace('@', "%40"));

    let listed = stack
        .eventually(&chats, "the three chats from before", |c| jids(c).len() == 3)
        .await;
    for chat in listed["chats"].as_array().unwrap() {
        let jid = chat["jid"].as_str().unwrap();
        assert!(jid.ends_with("@s.whatsapp.net"), "personal chats only: {jid}");
        assert_eq!(chat["unread_count"], 0, "history is not unread: {chat}");
        let page = stack
            .eventually(&messages_of(jid), "both lines of the chat", |p| {
                p["messages"].as_array().is_some_and(|m| m.len() == 2)
            })
            .await;
        for message in page["messages"].as_array().unwrap() {
            assert_eq!(message["history"], true, "{message}");
        }
    }
    assert_eq!(stored(&stack.db.db).await, 6);

    // A new worker resumes the session: nothing from before arrives twice.
    stack.stop_worker().await;
    stack.start_worker();
    stack
        .eventually(&format!("/api/devices/{device}"), "online again", |d| {
            d["status"] == "online"
        })
        .await;
    // News after history: unread, and not history.
    let contact = jids(&listed)[0].clone();
    stack
        .sim
        .write(contact.split('@').next().unwrap(), DEVICE_PHONE, "and now?")
        .await;
    let page = stack
        .eventually(&messages_of(&contact), "the new line", |p| {
            p["messages"].as_array().is_some_and(|m| m.len() == 3)
        })
        .await;
    assert_eq!(page["messages"][0]["history"], false, "{page}");
    assert_eq!(page["chat"]["unread_count"], 1, "{page}");
    assert_eq!(jids(&stack.get(&chats).await).len(), 3, "still three chats");
    assert_eq!(stored(&stack.db.db).await, 7, "every message once");
}

async fn history_on_link_is_stored_once_and_personal_only(backend: Backend) {
    history_on_link_is_stored_once_and_personal_only_on::<SimHandle>(backend).await
}

async fn with_the_real_client_history_on_link_is_stored_once_and_personal_only(backend: Backend) {
    history_on_link_is_stored_once_and_personal_only_on::<WaWebHandle>(backend).await
}

/// Under a reach-out timelock, on `N`'s link: the answer to a friend goes out while two offers
/// to new chats wait with the reason shown (the second never tried), and both go out once the
/// lock lifts; none fails.
async fn timelocked_device_answers_existing_chats_while_new_chats_wait<N: Network>(backend: Backend) {
    const FRIEND: &str = "60123400055";
    const STRANGERS: [&str; 2] = ["60123400091", "60123400092"];
    // Long enough for both offers to be held under a loaded machine before it lifts.
    const LOCK_SECS: u64 = 20;
    let stack = StackOn::<N>::start(backend).await;
    for phone in [FRIEND, STRANGERS[0], STRANGERS[1]] {
        stack.sim.add_contact(phone);
    }
    let device = stack.linked_device("sales", &format!("+{DEVICE_PHONE}")).await;
    let path = format!("/api/devices/{device}");
    stack.pace(device, |p| p["enabled"] = false.into()).await;

    // The friend has written: an existing chat. Then WhatsApp timelocks the number.
    stack.sim.write(FRIEND, DEVICE_PHONE, "are you open today?").await;
    stack
        .eventually(&format!("{path}/chats"), "the friend's chat", |c| jids(c).len() == 1)
        .await;
    let restrictions = stack.get(&format!("{path}/restrictions")).await;
    assert_eq!(restrictions["new_chats_wait_until"], Value::Null, "{restrictions}");
    stack.sim.timelock(DEVICE_PHONE, Duration::from_secs(LOCK_SECS)).await;
    let locked_at = Timestamp::now();

    // A send to a stranger is refused once, which tells the worker; one queued after it waits
    // without being tried; the answer to the friend goes out meanwhile.
    let to = |phone: &str| json!({"to": format!("+{phone}"), "text": "fresh bread today"});
    let first = stack.send(&path, "offer-1", to(STRANGERS[0])).await;
    let waits = |m: &Value| {
        m["status"] == "queued"
            && m["waiting_reason"]
                .as_str()
                .is_some_and(|r| r.contains("reach-out timelock"))
            && m["next_attempt_at"].is_string()
    };
    let held = stack
        .eventually(&first, "the first offer waits for the lock", waits)
        .await;
    let until: Timestamp = serde_json::from_value(held["next_attempt_at"].clone()).unwrap();
    assert!(until.millis() > locked_at.millis(), "{held}");
    let second = stack.send(&path, "offer-2", to(STRANGERS[1])).await;
    let answer = stack
        .send(
            &path,
            "answer",
            json!({"to": format!("+{FRIEND}"), "text": "yes, until six"}),
        )
        .await;
    stack
        .eventually(&answer, "the answer delivered", |m| {
            m["status"] == "delivered" || m["status"] == "read"
        })
        .await;
    let waiting = stack.eventually(&second, "the second offer waits too", waits).await;
    assert_eq!(waiting["attempts"], 0, "held without being tried: {waiting}");
    let restrictions = stack.get(&format!("{path}/restrictions")).await;
    assert!(restrictions["timelocked_until"].is_string(), "{restrictions}");
    assert!(
        restrictions["reason"].as_str().is_some_and(|r| r.contains("timelock")),
        "{restrictions}"
    );
    assert_eq!(
        stack.sim.sent_to(DEVICE_PHONE).await,
        [FRIEND],
        "only the answer went out"
    );

    // Once the lock lifts both offers go out by themselves, and none ever failed.
    for offer in [&first, &second] {
        let done = stack
            .eventually_within(
                Duration::from_secs(LOCK_SECS + 40),
                offer,
                "the offer sent after the lock",
                |m| m["status"] == "delivered" || m["status"] == "read",
            )
            .await;
        assert_eq!(done["reason"], Value::Null, "{done}");
    }
    assert!(Timestamp::now().millis() >= locked_at.plus_secs(LOCK_SECS as i64).millis());
    let mut sent = stack.sim.sent_to(DEVICE_PHONE).await;
    sent.sort();
    assert_eq!(sent, [FRIEND, STRANGERS[0], STRANGERS[1]], "each once");
}

async fn a_timelocked_device_answers_existing_chats_while_new_chats_wait(backend: Backend) {
    timelocked_device_answers_existing_chats_while_new_chats_wait::<SimHandle>(backend).await
}

async fn with_the_real_client_a_timelocked_device_answers_existing_chats_while_new_chats_wait(backend: Backend) {
    timelocked_device_answers_existing_chats_while_new_chats_wait::<WaWebHandle>(backend).await
}

/// Names from the phone's address book, on `N`'s link: synced when the device links and
/// whenever the phone changes one while it is online; a chat shows the saved name before the
/// contact's own push name, and is found by either. Returns the stack and the chats' path.
async fn saved_contact_names_name_the_chats_on<N: Network>(backend: Backend) -> (StackOn<N>, String) {
    let stack = StackOn::<N>::start(backend).await;
    stack.sim.save_contact(DEVICE_PHONE, CONTACT, "Nadia Baker").await;
    let device = stack.linked_device("sales", &format!("+{DEVICE_PHONE}")).await;
    let chats = format!("/api/devices/{device}/chats");
    stack.sim.write(CONTACT, DEVICE_PHONE, "is the bread ready?").await;
    let listed = stack
        .eventually(&chats, "the chat by its saved name", |c| {
            jids(c).len() == 1 && c["chats"][0]["name"] == "Nadia Baker"
        })
        .await;
    assert_ne!(listed["chats"][0]["push_name"], "Nadia Baker", "{listed}");

    // Renamed on the phone while the device is online.
    stack.sim.save_contact(DEVICE_PHONE, CONTACT, "Nadia (bakery)").await;
    stack
        .eventually(&chats, "the new saved name", |c| {
            c["chats"][0]["name"] == "Nadia (bakery)"
        })
        .await;
    let found = stack.get(&format!("{chats}?q=bakery")).await;
    assert_eq!(jids(&found).len(), 1, "found by its saved name: {found}");
    (stack, chats)
}

async fn saved_contact_names_name_the_chats(backend: Backend) {
    let (stack, chats) = saved_contact_names_name_the_chats_on::<SimHandle>(backend).await;
    let control = stack.sim.control();
    control
        .inject(&from_contact(ChatKind::Personal, "two loaves please"))
        .await
        .unwrap();
    let name = |c: &Value| (c["chats"][0]["name"].clone(), c["chats"][0]["push_name"].clone());
    let listed = stack
        .eventually(&chats, "her own name beside the saved one", |c| {
            c["chats"][0]["push_name"] == "Nadia"
        })
        .await;
    assert_eq!(name(&listed), ("Nadia (bakery)".into(), "Nadia".into()), "{listed}");

    // Removed from the address book: the contact's own name again.
    stack.sim.save_contact(DEVICE_PHONE, CONTACT, "").await;
    stack
        .eventually(&chats, "the push name again", |c| c["chats"][0]["name"] == "Nadia")
        .await;
}

async fn with_the_real_client_saved_contact_names_name_the_chats(backend: Backend) {
    saved_contact_names_name_the_chats_on::<WaWebHandle>(backend).await;
}

wafleet_core::testing::on_both_backends!(
    saved_contact_names_name_the_chats,
    with_the_real_client_saved_contact_names_name_the_chats,
    a_timelocked_device_answers_existing_chats_while_new_chats_wait,
    with_the_real_client_a_timelocked_device_answers_existing_chats_while_new_chats_wait,
    a_reply_from_a_lid_counts_once_its_number_is_known,
    with_the_real_client_a_reply_from_a_lid_counts_once_its_number_is_known,
    a_sender_alt_merges_the_chats_by_itself,
    a_lid_with_its_number_writes_in_the_numbers_chat,
    with_the_real_client_a_lid_with_its_number_writes_in_the_numbers_chat,
    history_on_link_is_stored_once_and_personal_only,
    with_the_real_client_history_on_link_is_stored_once_and_personal_only
);
