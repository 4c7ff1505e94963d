//! Questions about numbers (are they on WhatsApp, what their profile shows), error replies,
//! drops, logouts, bans and an absent network.

use std::time::Duration;

use wafleet_core::link::{Jid, LinkError, LinkEvent, OpenMode, Outgoing, Restrictions};
use wafleet_core::types::{PhoneNumber, Timestamp};

use super::support::{contact, new_device, next_event, pair, sent_message, unique_phone, wait_for};
use super::{Contact, Harness};
use crate::control::Profile;

/// A number without WhatsApp is reported so, and sending to it is the recipient's failure.
pub async fn check_numbers(h: &dyn Harness) {
    let paired = pair(h).await;
    let absent = contact(h, Contact::NotOnWhatsApp).await;
    let present = contact(h, Contact::OnWhatsApp).await;
    let checks = paired
        .session
        .check_numbers(&[absent.clone(), present.clone()])
        .await
        .expect("check");
    assert_eq!(checks.len(), 2);
    assert_eq!((&checks[0].phone, &checks[0].jid), (&absent, &None));
    assert_eq!(
        (&checks[1].phone, &checks[1].jid),
        (&present, &Some(Jid::for_phone(&present)))
    );
    match paired
        .session
        .send(&Outgoing::text(&Jid::for_phone(&absent), "hello?"))
        .await
    {
        Err(LinkError::Recipient(_)) => {}
        other => panic!("sending to a number without WhatsApp: {other:?}"),
    }
    paired.session.close().await;
}

/// A number's profile shows what its account shows others, and nothing it does not; a number
/// without WhatsApp has none.
pub async fn user_info(h: &dyn Harness) {
    let paired = pair(h).await;
    let absent = contact(h, Contact::NotOnWhatsApp).await;
    let plain = contact(h, Contact::OnWhatsApp).await;
    let shop = contact(h, Contact::OnWhatsApp).await;
    let profile = Profile {
        about: Some("Open 9 to 5, closed on Fridays; orders@kedai.example.com".into()),
        business_name: Some("Kedai Aisyah".into()),
        picture_id: Some("1651459152".into()),
        ..Profile::default()
    };
    h.phones().set_profile(&shop, profile).await.expect("set the profile");
    let info = |phone: PhoneNumber| {
        let session = &paired.session;
        async move { session.user_info(&phone).await.expect("user info") }
    };

    assert_eq!(info(absent).await, None);
    let plain_info = info(plain.clone()).await.expect("the plain contact is on WhatsApp");
    assert_eq!(plain_info.jid, Jid::for_phone(&plain));
    assert_eq!(
        (plain_info.about, plain_info.picture_id, plain_info.verified_name),
        (None, None, None)
    );
    assert_eq!(plain_info.devices, vec![0], "a phone without linked devices");

    let shop_info = info(shop.clone()).await.expect("the shop is on WhatsApp");
    assert_eq!(shop_info.jid, Jid::for_phone(&shop));
    assert_eq!(
        shop_info.about.as_deref(),
        Some("Open 9 to 5, closed on Fridays; orders@kedai.example.com")
    );
    assert_eq!(shop_info.picture_id.as_deref(), Some("1651459152"));
    assert_eq!(shop_info.verified_name.as_deref(), Some("Kedai Aisyah"));

    // The account's own profile lists the device that asks.
    let own = info(paired.phone.clone()).await.expect("the account is on WhatsApp");
    assert!(
        own.devices.contains(&0) && own.devices.len() >= 2,
        "the phone and its linked device: {:?}",
        own.devices
    );
    paired.session.close().await;
}

/// A number's profile picture is where the link says, as the full picture or its preview; a
/// number without one, or without WhatsApp, has none.
pub async fn profile_picture(h: &dyn Harness) {
    let paired = pair(h).await;
    let absent = contact(h, Contact::NotOnWhatsApp).await;
    let plain = contact(h, Contact::OnWhatsApp).await;
    let shop = contact(h, Contact::OnWhatsApp).await;
    let profile = Profile {
        picture_id: Some("1651459153".into()),
        ..Profile::default()
    };
    h.phones().set_profile(&shop, profile).await.expect("set the picture");
    let session = &paired.session;

    for preview in [false, true] {
        let picture = session
            .profile_picture(&shop, preview)
            .await
            .expect("the shop's picture")
            .expect("the shop has a picture");
        assert_eq!((picture.id.as_str(), picture.preview), ("1651459153", preview));
        let image = reqwest::get(&picture.url).await.expect("fetch the picture");
        assert_eq!(image.status(), reqwest::StatusCode::OK, "{}", picture.url);
        assert_eq!(
            image.bytes().await.expect("the picture's bytes").as_ref(),
            crate::control::PROFILE_PICTURE
        );
    }
    assert_eq!(session.profile_picture(&plain, false).await.expect("no picture"), None);
    assert_eq!(session.profile_picture(&absent, false).await.expect("no account"), None);
    paired.session.close().await;
}

/// A picture the device sets becomes the account's profile picture, under a new id each time, and
/// is what the picture's address serves.
pub async fn own_profile_picture_changes(h: &dyn Harness) {
    let paired = pair(h).await;
    let session = &paired.session;
    let first = b"\xff\xd8\xff\xe0 the first picture \xff\xd9".to_vec();
    let id = session.set_profile_picture(&first).await.expect("set the picture");
    let shown = session
        .profile_picture(&paired.phone, false)
        .await
        .expect("read the picture")
        .expect("the account has a picture now");
    assert_eq!(shown.id, id);
    let served = reqwest::get(&shown.url).await.expect("fetch the picture");
    assert_eq!(served.bytes().await.expect("its bytes").as_ref(), first.as_slice());

    let second = b"\xff\xd8\xff\xe0 the second picture \xff\xd9".to_vec();
    let new_id = session.set_profile_picture(&second).await.expect("change the picture");
    assert_ne!(new_id, id, "a new picture, a new id");
    let shown = session
        .profile_picture(&paired.phone, true)
        .await
        .expect("read")
        .expect("a picture");
    assert_eq!(shown.id, new_id);
    paired.session.close().await;
}

/// A business's profile comes whole (description, contacts, categories, hours); an account that
/// is not a business, or a number without WhatsApp, has none.
pub async fn business_profile(h: &dyn Harness) {
    let paired = pair(h).await;
    let absent = contact(h, Contact::NotOnWhatsApp).await;
    let plain = contact(h, Contact::OnWhatsApp).await;
    let shop = contact(h, Contact::OnWhatsApp).await;
    let business = wafleet_core::link::BusinessProfile {
        description: "Cakes to order".into(),
        email: Some("kedai@example.com".into()),
        address: Some("12 Jalan Bunga, Kuala Lumpur".into()),
        websites: vec!["https://kedai.example.com".into()],
        categories: vec![wafleet_core::link::BusinessCategory {
            id: "196".into(),
            name: "Bakery".into(),
        }],
        hours_timezone: Some("Asia/Kuala_Lumpur".into()),
        hours: vec![
            wafleet_core::link::BusinessHours {
                day: "mon".into(),
                mode: "specific_hours".into(),
                open_minute: Some(540),
                close_minute: Some(1080),
            },
            wafleet_core::link::BusinessHours {
                day: "sat".into(),
                mode: "open_24h".into(),
                open_minute: None,
                close_minute: None,
            },
        ],
    };
    let profile = Profile {
        business_name: Some("Kedai Aisyah".into()),
        business: Some(business.clone()),
        ..Profile::default()
    };
    h.phones()
        .set_profile(&shop, profile)
        .await
        .expect("set the business profile");
    let session = &paired.session;
    assert_eq!(
        session.business_profile(&shop).await.expect("the shop's profile"),
        Some(business)
    );
    assert_eq!(session.business_profile(&plain).await.expect("not a business"), None);
    assert_eq!(session.business_profile(&absent).await.expect("no account"), None);
    paired.session.close().await;
}

/// The account's privacy settings are WhatsApp's defaults until it changes them, then its own.
pub async fn privacy_settings(h: &dyn Harness) {
    let paired = pair(h).await;
    let settings = paired.session.privacy().await.expect("privacy settings");
    for (category, value) in crate::control::PRIVACY_DEFAULTS {
        assert_eq!(settings.get(*category).map(String::as_str), Some(*value), "{category}");
    }
    let changed = Profile {
        privacy: [("last", "contacts"), ("readreceipts", "none")]
            .into_iter()
            .map(|(category, value)| (category.to_owned(), value.to_owned()))
            .collect(),
        ..Profile::default()
    };
    h.phones()
        .set_profile(&paired.phone, changed)
        .await
        .expect("change the settings");
    let settings = paired.session.privacy().await.expect("privacy settings");
    assert_eq!(settings.get("last").map(String::as_str), Some("contacts"));
    assert_eq!(settings.get("readreceipts").map(String::as_str), Some("none"));
    assert_eq!(
        settings.get("online").map(String::as_str),
        Some("all"),
        "the others are kept"
    );
    paired.session.close().await;
}

/// A 463 refusal is the recipient's failure and names the code.
pub async fn refusal_463(h: &dyn Harness) {
    let paired = pair(h).await;
    let refusing = contact(h, Contact::Refuses463).await;
    match paired
        .session
        .send(&Outgoing::text(&Jid::for_phone(&refusing), "hello"))
        .await
    {
        Err(LinkError::Recipient(reason)) => assert!(reason.contains("463"), "{reason}"),
        other => panic!("expected a 463 refusal: {other:?}"),
    }
    let sent = h.phones().sent(&paired.phone).await.expect("sent");
    assert!(sent.is_empty(), "a refused message was not sent: {sent:?}");
    paired.session.close().await;
}

/// Under a reach-out timelock a message to a new chat is refused as a restriction (nothing
/// goes out), the restriction reads back with its end, and a chat whose contact has written
/// still works.
pub async fn timelock_restricts_new_chats_only(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let friend = contact(h, Contact::OnWhatsApp).await;
    let stranger = contact(h, Contact::OnWhatsApp).await;
    let written = h.phones().write(&friend, &paired.phone, "hello").await.expect("inject");
    let LinkEvent::Message { message, ack } = wait_for(&mut paired.events, "the friend's message", |e| {
        matches!(e, LinkEvent::Message { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(message.id, written);
    ack.done();
    let free = paired.session.restrictions().await.expect("the restrictions");
    assert_eq!(free, Restrictions::default(), "no restriction before the timelock");

    h.phones()
        .timelock(&paired.phone, Duration::from_secs(600))
        .await
        .expect("timelock the account");
    match paired
        .session
        .send(&Outgoing::text(&Jid::for_phone(&stranger), "an offer"))
        .await
    {
        Err(LinkError::Restricted(reason)) => assert!(reason.contains("463"), "{reason}"),
        other => panic!("expected a restriction: {other:?}"),
    }
    let state = paired.session.restrictions().await.expect("the restrictions");
    let until = state.timelocked_until.expect("a timelock end");
    let expected = Timestamp::now().plus_secs(600).millis();
    assert!((until.millis() - expected).abs() < 10_000, "{until} vs 600 s from now");
    let id = paired
        .session
        .send(&Outgoing::text(&Jid::for_phone(&friend), "an answer"))
        .await
        .expect("an existing chat still works");
    sent_message(h, &paired.phone, &id).await;
    let sent = h.phones().sent(&paired.phone).await.expect("sent");
    assert!(
        sent.iter().all(|m| m.to != Jid::for_phone(&stranger)),
        "nothing went to the new chat: {sent:?}"
    );
    paired.session.close().await;
}

/// A dropped connection gives Disconnected, then Connected again by itself, and the session
/// works afterwards.
pub async fn dropped_connection_reconnects(h: &dyn Harness) {
    let mut paired = pair(h).await;
    assert_eq!(h.phones().drop_connections(&paired.phone).await.expect("drop"), 1);
    let event = wait_for(&mut paired.events, "Disconnected", |e| {
        matches!(e, LinkEvent::Disconnected { .. })
    })
    .await;
    assert!(matches!(event, LinkEvent::Disconnected { .. }));
    let event = next_event(&mut paired.events, "Connected again").await;
    assert!(matches!(event, LinkEvent::Connected), "{event:?}");
    let friend = contact(h, Contact::OnWhatsApp).await;
    let injected = h
        .phones()
        .write(&friend, &paired.phone, "still there?")
        .await
        .expect("inject");
    let event = wait_for(&mut paired.events, "a message", |e| {
        matches!(e, LinkEvent::Message { .. })
    })
    .await;
    assert!(matches!(&event, LinkEvent::Message { message, .. } if message.id == injected));
    paired
        .session
        .send(&Outgoing::text(&Jid::for_phone(&friend), "yes"))
        .await
        .expect("send after reconnecting");
    paired.session.close().await;
}

/// Unlinked from the phone: LoggedOut (not banned), credentials gone, calls and new connections
/// fail as the device's problem. A device unlinked while not connected is refused when it next
/// connects (at `open`, or as LoggedOut right after it) and its credentials are gone.
pub async fn remote_logout(h: &dyn Harness) {
    let mut paired = pair(h).await;
    assert_eq!(h.phones().unlink_all(&paired.phone).await.expect("logout"), 1);
    let event = wait_for(&mut paired.events, "LoggedOut", |e| {
        matches!(e, LinkEvent::LoggedOut { .. })
    })
    .await;
    assert!(matches!(event, LinkEvent::LoggedOut { banned: false, .. }), "{event:?}");
    assert!(
        !h.has_credentials(paired.device).await,
        "credentials are deleted on logout"
    );
    let sent = paired
        .session
        .send(&Outgoing::text(&Jid::for_phone(&unique_phone()), "hello"))
        .await;
    assert!(matches!(sent, Err(LinkError::Device(_))), "{sent:?}");
    assert!(matches!(
        h.link().open(paired.device, OpenMode::Connect).await,
        Err(LinkError::Device(_))
    ));

    let offline = pair(h).await;
    offline.session.close().await;
    h.phones().unlink_all(&offline.phone).await.expect("logout");
    match h.link().open(offline.device, OpenMode::Connect).await {
        Err(LinkError::Device(_)) => {}
        Ok(mut session) => {
            let mut events = session.take_events().expect("events");
            let event = next_event(&mut events, "LoggedOut").await;
            assert!(matches!(event, LinkEvent::LoggedOut { banned: false, .. }), "{event:?}");
            session.close().await;
        }
        Err(other) => panic!("revoked credentials cannot connect: {other:?}"),
    }
    assert!(
        !h.has_credentials(offline.device).await,
        "refused credentials are deleted"
    );
}

/// Sending faster than the network's limit to numbers that never wrote gets the account banned:
/// LoggedOut{banned}, credentials gone, no reconnect.
pub async fn ban_after_fast_sends_to_strangers(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let limit = h.phones().ban_limit().await.expect("the ban limit");
    let mut strangers = Vec::new();
    for _ in 0..=limit {
        strangers.push(contact(h, Contact::OnWhatsApp).await);
    }
    for (n, stranger) in (0..=limit).zip(&strangers) {
        let result = paired
            .session
            .send(&Outgoing::text(&Jid::for_phone(stranger), &format!("offer {n}")))
            .await;
        if n < limit {
            result.unwrap_or_else(|e| panic!("message {n} within the limit: {e}"));
        }
    }
    let event = wait_for(&mut paired.events, "LoggedOut", |e| {
        matches!(e, LinkEvent::LoggedOut { .. })
    })
    .await;
    assert!(matches!(event, LinkEvent::LoggedOut { banned: true, .. }), "{event:?}");
    assert!(
        h.phones().is_banned(&paired.phone).await.expect("the account's state"),
        "the network banned the account"
    );
    assert!(
        !h.has_credentials(paired.device).await,
        "credentials are deleted on a ban"
    );
    assert!(matches!(
        h.link().open(paired.device, OpenMode::Connect).await,
        Err(LinkError::Device(_))
    ));
}

/// Without a network, opening fails quickly as a transient problem (never hangs).
pub async fn unreachable_network_fails_fast(h: &dyn Harness) {
    let device = new_device(h.db()).await;
    let link = h.unreachable_link();
    for mode in [OpenMode::PairQr, OpenMode::PairCode(unique_phone())] {
        let opened = tokio::time::timeout(Duration::from_secs(10), link.open(device, mode.clone()))
            .await
            .unwrap_or_else(|_| panic!("open({mode:?}) hung"));
        match opened {
            Err(LinkError::Transient(_)) => {}
            other => panic!("open({mode:?}) without a network: {:?}", other.err()),
        }
    }
}
