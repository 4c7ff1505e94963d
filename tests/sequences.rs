//! Follow-up sequences end to end, on SQLite and on PostgreSQL + Redis: the API creates them, the
//! scheduler's dispatch runs on a virtual clock (weeks of a sequence in seconds, through the code
//! that runs in production), and a real worker sends each step to the simulator over its socket.
//!
//! A 3-step sequence in New York's time zone, weekdays 09:00-18:00, across the spring daylight
//! saving change: each step goes once per lead, at the local time its delay and window say; a
//! lead who replies leaves it; leads who complete it move on to the next sequence. Two
//! dispatchers run every tick side by side, as two schedulers racing for it would, and the worker
//! is replaced half-way: nothing is sent twice or skipped.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::stack::{Network as _, Stack};
use support::unpaced;
use wafleet_core::Db;
use wafleet_core::db::{LeadStatus, NewLead};
use wafleet_core::testing::{Backend, eventually, fetch_optional};
use wafleet_core::types::{DeviceId, Email, Timestamp, UserId};

const DEVICE_PHONE: &str = "60123400001";
const LEADS: [(&str, &str); 3] = [
    ("Ana Lima", "60123400071"),
    ("Bo Chen", "60123400072"),
    ("Cy Diaz", "60123400073"),
];

/// How long the worker may take to send or store anything.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

fn at(text: &str) -> Timestamp {
    Timestamp(chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis())
}

/// Step sends not yet settled.
async fn unsettled(db: &Db) -> i64 {
    fetch_optional(
        db,
        "SELECT COUNT(*) FROM outbound_messages WHERE status IN ('queued', 'sending')",
        &[],
    )
    .await
    .unwrap()
}

/// Messages the leads wrote.
async fn theirs(db: &Db) -> i64 {
    fetch_optional(db, "SELECT COUNT(*) FROM messages WHERE NOT from_me", &[])
        .await
        .unwrap()
}

/// Runs two dispatch rounds side by side at `now`, then waits for the worker to settle what
/// they recorded.
async fn tick(db: &Db, now: Timestamp) {
    let (a, b) = tokio::join!(db.dispatch_sequences(now), db.dispatch_sequences(now));
    a.unwrap();
    b.unwrap();
    eventually(PATIENCE, "the worker sends what was recorded", async || {
        unsettled(db).await == 0
    })
    .await;
}

/// A stack whose network knows `contacts`, with Ana's device linked and unpaced: the stack, its
/// database, the device and Ana.
async fn linked_unpaced(backend: Backend, contacts: &[&str]) -> (Stack, Db, i64, UserId) {
    let stack = Stack::start(backend).await;
    let db = stack.db.db.clone();
    for phone in contacts {
        stack.sim.add_contact(phone);
    }
    let device = stack.linked_device("sales", &format!("+{DEVICE_PHONE}")).await;
    let user = db
        .user_by_email(&Email::parse("ana@example.com").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    unpaced(&db, user, &[DeviceId(device)]).await;
    (stack, db, device, user)
}

/// A new lead of `niche` with `phone` (digits, no `+`).
fn new_lead(name: &str, phone: &str, niche: &str) -> NewLead {
    NewLead {
        name: name.into(),
        phone: format!("+{phone}").parse().unwrap(),
        niche: Some(niche.into()),
        journey: None,
        status: LeadStatus::New,
        notes: None,
    }
}

async fn a_three_step_sequence_goes_step_by_step_inside_its_window(backend: Backend) {
    let (mut stack, db, device, user) = linked_unpaced(backend, &LEADS.map(|l| l.1)).await;

    // The warm sequence completers move to, then the cold one that enrols the niche by itself.
    let (status, warm) = stack
        .post(
            "/api/sequences",
            json!({"name": "Warm", "device_ids": [device], "status": "paused",
                   "steps": [{"message": "Still interested, {first_name}?"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{warm}");
    let (status, bad) = stack
        .post(
            "/api/sequences",
            json!({"name": "Broken", "device_ids": [device], "steps": [{"message": "Hi {frist_name"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert!(
        bad["message"].as_str().unwrap().starts_with("steps[0].message"),
        "{bad}"
    );
    let (status, cold) = stack
        .post(
            "/api/sequences",
            json!({
                "name": "Cold", "device_ids": [device], "time_zone": "America/New_York",
                "window": {"start": "09:00", "end": "18:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"]},
                "enrol_rule": {"niche": "cold"}, "stop_statuses": ["converted"],
                "next_sequence_id": warm["results"]["id"],
                "steps": [
                    {"message": "{Hi|Hello} {first_name}, step one"},
                    {"message": "Step two for {first_name}", "delay_days": 1},
                    {"message": "Step three", "delay_days": 2},
                ],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cold}");
    let cold_id = cold["results"]["id"].as_i64().unwrap();
    let warm_id = warm["results"]["id"].as_i64().unwrap();

    // The preview says the same times the run below must keep.
    let preview = stack
        .get(&format!(
            "/api/sequences/{cold_id}/preview?start=2027-03-12T01:00:00Z&name=Ana%20Lima"
        ))
        .await;
    let times: Vec<&str> = preview
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            "2027-03-12T14:00:00.000Z",
            "2027-03-15T13:00:00.000Z",
            "2027-03-17T13:00:00.000Z"
        ],
        "{preview}"
    );
    assert!(
        preview[0]["renders"][0].as_str().unwrap().ends_with("Ana, step one"),
        "{preview}"
    );

    for (name, phone) in LEADS {
        db.create_lead(user, DeviceId(device), &new_lead(name, phone, "cold"))
            .await
            .unwrap();
    }

    // The leads wrote to the device before (the network's ban model bans an account that writes
    // to many strangers within a minute, and the virtual days pass in seconds). What they wrote
    // before the first step is no reply to it.
    for (_, phone) in LEADS {
        stack.sim.write(phone, DEVICE_PHONE, "hello").await;
    }
    eventually(PATIENCE, "the leads' first lines stored", async || {
        theirs(&db).await == 3
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // The owner's webhook wants the sequence's events (and nothing else). Its address answers
    // nothing: what is recorded for it is what the test reads.
    db.put_webhook(
        user,
        "http://127.0.0.1:9/hooks",
        "a-secret-of-sixteen-chars",
        "sequence.step_sent,sequence.completed",
        true,
    )
    .await
    .unwrap();

    // Thursday 2027-03-11 20:00 in New York (after hours): the rule enrols all three.
    let mut now = at("2027-03-12T01:00:00Z");
    let first = db.dispatch_sequences(now).await.unwrap();
    assert_eq!((first.enrolled, first.queued), (3, 0), "{first:?}");
    let mut replied = false;
    let mut replaced_worker = false;
    // Every quarter of an hour for a week of virtual time.
    while now < at("2027-03-19T01:00:00Z") {
        tick(&db, now).await;
        let sent = stack.sim.sent_to(DEVICE_PHONE).await;
        // Bo answers the first step; the next round sees it.
        if !replied && sent.iter().any(|to| to == LEADS[1].1) {
            stack.sim.write(LEADS[1].1, DEVICE_PHONE, "not for me, thanks").await;
            eventually(PATIENCE, "Bo's answer stored", async || theirs(&db).await == 4).await;
            replied = true;
        }
        // A new worker takes over between the second and third steps.
        if !replaced_worker && sent.len() == 5 {
            // (3 first steps and 2 second ones.)
            stack.stop_worker().await;
            stack.start_worker();
            replaced_worker = true;
        }
        now = now.plus_secs(15 * 60);
    }
    assert!(replied && replaced_worker);

    // What each person got, once each, in order.
    let sent = stack.sim.sent(DEVICE_PHONE).await;
    let texts_to = |phone: &str| -> Vec<String> {
        sent.iter()
            .filter(|s| s.to.0.starts_with(phone))
            .map(|s| s.text.clone().unwrap_or_default())
            .collect()
    };
    let ana = texts_to(LEADS[0].1);
    assert_eq!(ana.len(), 3, "{ana:?}");
    assert!(ana[0].ends_with("Ana, step one") && ana[1] == "Step two for Ana" && ana[2] == "Step three");
    assert_eq!(texts_to(LEADS[1].1).len(), 1, "Bo left on his reply");
    assert_eq!(texts_to(LEADS[2].1).len(), 3);

    // Each step recorded at the local time its delay and window say: Friday 09:00 EST, then
    // Monday 09:00 EDT (the weekend skipped, the clocks changed), then Wednesday 09:00 EDT.
    for (step, when) in [
        (1, "2027-03-12T14:00:00Z"),
        (2, "2027-03-15T13:00:00Z"),
        (3, "2027-03-17T13:00:00Z"),
    ] {
        let (count, earliest, latest): (i64, i64, i64) = (
            fetch_optional(
                &db,
                "SELECT COUNT(*) FROM sequence_sends WHERE step = $1",
                &[step.into()],
            )
            .await
            .unwrap(),
            fetch_optional(
                &db,
                "SELECT MIN(recorded_at) FROM sequence_sends WHERE step = $1",
                &[step.into()],
            )
            .await
            .unwrap(),
            fetch_optional(
                &db,
                "SELECT MAX(recorded_at) FROM sequence_sends WHERE step = $1",
                &[step.into()],
            )
            .await
            .unwrap(),
        );
        assert_eq!(count, if step == 1 { 3 } else { 2 }, "step {step}");
        assert_eq!((earliest, latest), (at(when).0, at(when).0), "step {step}");
    }

    // The report, and the leads who completed it now in the warm sequence.
    let report = stack.get(&format!("/api/sequences/{cold_id}/report")).await;
    assert_eq!(
        (
            &report["enrolled"],
            &report["completed"],
            &report["exited"]["replied"],
            &report["active"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(0)),
        "{report}"
    );
    let steps: Vec<(Value, Value)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["sent"].clone(), s["replied"].clone()))
        .collect();
    assert_eq!(
        steps,
        [(json!(3), json!(1)), (json!(2), json!(0)), (json!(2), json!(0))],
        "{report}"
    );
    let chained = stack.get(&format!("/api/sequences/{warm_id}/enrolments")).await;
    let sources: Vec<&str> = chained
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["chain", "chain"], "{chained}");
    let exited = stack
        .get(&format!("/api/sequences/{cold_id}/enrolments?status=exited"))
        .await;
    assert_eq!(exited[0]["phone"], format!("+{}", LEADS[1].1), "{exited}");
    assert_eq!(exited[0]["exit_reason"], "replied", "{exited}");

    // The leads behind the report's cells.
    let cell = async |query: &str| -> Vec<String> {
        let page = stack.get(&format!("/api/sequences/{cold_id}/enrolments?{query}")).await;
        let mut names: Vec<String> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["lead_name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(cell("outcome_step=1&outcome=replied").await, ["Bo Chen"]);
    assert_eq!(
        cell("outcome_step=1&outcome=sent").await,
        ["Ana Lima", "Bo Chen", "Cy Diaz"]
    );
    assert_eq!(cell("outcome_step=3&outcome=sent").await, ["Ana Lima", "Cy Diaz"]);
    assert!(cell("outcome_step=2&outcome=failed").await.is_empty());
    assert_eq!(cell("status=exited&exit_reason=replied").await, ["Bo Chen"]);
    let (status, half) = stack
        .call(
            reqwest::Method::GET,
            &format!("/api/sequences/{cold_id}/enrolments?outcome=sent"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{half}");

    // One `sequence.step_sent` per step that went out, one `sequence.completed` per lead who had
    // them all, though two dispatchers raced every round.
    let events: Vec<Value> = {
        let bodies: Vec<(String, String)> = match &db {
            Db::Sqlite(pool) => {
                sqlx::query_as("SELECT event, body FROM webhook_deliveries WHERE user_id = $1 ORDER BY id")
                    .bind(user)
                    .fetch_all(pool)
                    .await
            }
            Db::Postgres(pool) => {
                sqlx::query_as("SELECT event, body FROM webhook_deliveries WHERE user_id = $1 ORDER BY id")
                    .bind(user)
                    .fetch_all(pool)
                    .await
            }
        }
        .unwrap();
        bodies
            .into_iter()
            .map(|(event, body)| {
                let body: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(body["event"], event.as_str());
                body
            })
            .collect()
    };
    let steps_sent: Vec<(i64, String)> = events
        .iter()
        .filter(|e| e["event"] == "sequence.step_sent")
        .map(|e| {
            (
                e["payload"]["step"].as_i64().unwrap(),
                e["payload"]["phone"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(steps_sent.len(), 7, "3 first steps, 2 second, 2 third: {steps_sent:?}");
    for (step, phone) in [(1, LEADS[1].1), (2, LEADS[0].1), (3, LEADS[2].1)] {
        assert!(steps_sent.contains(&(step, format!("+{phone}"))), "{steps_sent:?}");
    }
    let first = events.iter().find(|e| e["event"] == "sequence.step_sent").unwrap();
    assert_eq!(first["payload"]["sequence_id"], cold_id, "{first}");
    assert_eq!(first["payload"]["sequence_name"], "Cold", "{first}");
    assert_eq!(first["payload"]["steps"], 3, "{first}");
    assert!(first["payload"]["message_id"].is_string(), "WhatsApp's id: {first}");
    let completed: Vec<&Value> = events.iter().filter(|e| e["event"] == "sequence.completed").collect();
    assert_eq!(completed.len(), 2, "{completed:?}");
    assert!(
        completed.iter().all(|e| e["payload"]["next_sequence_id"] == warm_id),
        "{completed:?}"
    );

    // Enrolling again by hand enrols nobody twice.
    let lead_ids: Vec<i64> = chained
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lead_id"].as_i64().unwrap())
        .collect();
    let (status, again) = stack
        .post(
            &format!("/api/sequences/{cold_id}/enrolments"),
            json!({"lead_ids": lead_ids}),
        )
        .await;
    assert_eq!((status, &again["results"]), (StatusCode::OK, &json!(0)), "{again}");
}

/// A rule naming a campaign enrols the leads who wrote back to it, as their answers come in,
/// and only them; the follow-up goes to them alone.
async fn leads_who_answer_a_campaign_are_enrolled(backend: Backend) {
    let (answers, silent) = (LEADS[0], LEADS[1]);
    let (stack, db, device, user) = linked_unpaced(backend, &[answers.1, silent.1]).await;
    for (name, phone) in [answers, silent] {
        db.create_lead(user, DeviceId(device), &new_lead(name, phone, "promo"))
            .await
            .unwrap();
    }
    let campaign = db
        .create_campaign(
            user,
            &wafleet_core::db::NewCampaign {
                title: "Spring promo".into(),
                niche: "promo".into(),
                message: "20% off this week".into(),
                image: None,
                send_at: Timestamp::now().plus_secs(-1),
                time_zone: "UTC".into(),
                status: wafleet_core::db::CampaignStatus::Scheduled,
                devices: vec![DeviceId(device)],
                distribution: Default::default(),
                per_device_cap: None,
            },
        )
        .await
        .unwrap();
    eventually(PATIENCE, "the campaign reaches both leads", async || {
        db.dispatch_campaigns(Timestamp::now()).await.unwrap();
        let totals = db.campaign_report(user, campaign.id).await.unwrap().totals;
        totals.sent + totals.delivered + totals.read == 2
    })
    .await;
    let (status, sequence) = stack
        .post(
            "/api/sequences",
            json!({"name": "Answered the promo", "device_ids": [device], "time_zone": "UTC",
                   "window": {"start": "00:00", "end": "24:00", "weekdays": []},
                   "enrol_rule": {"replied_to_campaign": campaign.id},
                   "steps": [{"message": "Thanks for answering, {first_name}"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sequence}");
    assert_eq!(
        sequence["results"]["enrol_rule"]["replied_to_campaign"],
        json!(campaign.id)
    );
    let id = sequence["results"]["id"].as_i64().unwrap();
    let first = db.dispatch_sequences(Timestamp::now()).await.unwrap();
    assert_eq!(first.enrolled, 0, "nobody answered yet: {first:?}");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    stack.sim.write(answers.1, DEVICE_PHONE, "yes, tell me more").await;
    eventually(PATIENCE, "the answer stored", async || theirs(&db).await == 1).await;
    tick(&db, Timestamp::now()).await;
    tick(&db, Timestamp::now()).await;
    let enrolled = stack.get(&format!("/api/sequences/{id}/enrolments")).await;
    let who: Vec<(&str, &str)> = enrolled
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["lead_name"].as_str().unwrap(), e["source"].as_str().unwrap()))
        .collect();
    assert_eq!(who, [(answers.0, "campaign_reply")], "{enrolled}");
    let sent = stack.sim.sent(DEVICE_PHONE).await;
    let follow_ups: Vec<&str> = sent
        .iter()
        .filter(|s| s.text.as_deref().is_some_and(|t| t.starts_with("Thanks for answering")))
        .map(|s| s.to.0.as_str())
        .collect();
    assert_eq!(follow_ups.len(), 1, "{follow_ups:?}");
    assert!(follow_ups[0].starts_with(answers.1), "{follow_ups:?}");
}

/// Starts a dispatch round at `now` on a runtime and a pool of its own, as a scheduler process
/// would, and kills it after `after`: no code of it runs again and its connections close, as
/// under `kill -9`. Returns whether the round had finished by then.
async fn dispatch_killed_after(settings: &wafleet_core::Settings, now: Timestamp, after: std::time::Duration) -> bool {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let settings = settings.clone();
    let round = runtime.spawn(async move {
        let db = Db::connect(&settings).await.unwrap();
        db.dispatch_sequences(now).await.unwrap();
    });
    tokio::time::sleep(after).await;
    let finished = round.is_finished();
    runtime.shutdown_background();
    finished
}

/// A dispatcher killed at any point of its round, again and again, while a worker sends: every
/// lead still gets every step exactly once, the chain and the events fire once each.
async fn a_dispatcher_killed_at_any_point_repeats_and_skips_nothing(backend: Backend) {
    const LEADS_HERE: usize = 8;
    let phones: Vec<String> = (0..LEADS_HERE).map(|i| format!("601234002{i:02}")).collect();
    let contacts: Vec<&str> = phones.iter().map(String::as_str).collect();
    let (stack, db, device, user) = linked_unpaced(backend, &contacts).await;
    db.put_webhook(user, "http://127.0.0.1:9/hooks", "a-secret-of-sixteen-chars", "", true)
        .await
        .unwrap();
    let (status, next) = stack
        .post(
            "/api/sequences",
            json!({"name": "Next", "device_ids": [device], "status": "paused",
                   "steps": [{"message": "Later"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{next}");
    let (status, sequence) = stack
        .post(
            "/api/sequences",
            json!({"name": "Drip", "device_ids": [device], "time_zone": "UTC",
                   "window": {"start": "00:00", "end": "24:00", "weekdays": []},
                   "enrol_rule": {"niche": "drip"}, "next_sequence_id": next["results"]["id"],
                   "steps": [{"message": "One for {first_name}"}, {"message": "Two", "delay_days": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sequence}");
    let id = sequence["results"]["id"].as_i64().unwrap();
    for (i, phone) in phones.iter().enumerate() {
        db.create_lead(user, DeviceId(device), &new_lead(&format!("Lead {i}"), phone, "drip"))
            .await
            .unwrap();
        // Known to the device before (the network bans an account writing to many strangers).
        stack.sim.write(phone, DEVICE_PHONE, "hello").await;
    }
    eventually(PATIENCE, "the leads' first lines stored", async || {
        theirs(&db).await == LEADS_HERE as i64
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // Every six hours for two days; at each, rounds killed after 0, 1, 2, 4 … ms (however far
    // they got), then one left to finish while the worker sends what was recorded.
    let mut now = at("2027-05-03T08:00:00Z");
    let mut killed_mid_round = 0;
    while now < at("2027-05-05T08:00:00Z") {
        for ms in [0, 1, 2, 4, 8, 16, 32, 64] {
            if !dispatch_killed_after(&stack.db.settings, now, std::time::Duration::from_millis(ms)).await {
                killed_mid_round += 1;
            }
        }
        tick(&db, now).await;
        now = now.plus_secs(6 * 3600);
    }
    assert!(killed_mid_round > 0, "some rounds were killed before they finished");

    let sent = stack.sim.sent(DEVICE_PHONE).await;
    for phone in &phones {
        let got: Vec<String> = sent
            .iter()
            .filter(|s| s.to.0.starts_with(phone.as_str()))
            .map(|s| s.text.clone().unwrap_or_default())
            .collect();
        assert_eq!(got.len(), 2, "{phone}: {got:?}");
        assert!(
            got[0].starts_with("One for Lead") && got[1] == "Two",
            "{phone}: {got:?}"
        );
    }
    let report = stack.get(&format!("/api/sequences/{id}/report")).await;
    assert_eq!(report["completed"], json!(LEADS_HERE), "{report}");
    let steps: Vec<&Value> = report["steps"].as_array().unwrap().iter().map(|s| &s["sent"]).collect();
    assert_eq!(steps, [&json!(LEADS_HERE), &json!(LEADS_HERE)], "{report}");
    let chained = stack
        .get(&format!("/api/sequences/{}/enrolments", next["results"]["id"]))
        .await;
    assert_eq!(
        chained.as_array().unwrap().len(),
        LEADS_HERE,
        "each moved on once: {chained}"
    );
    for (event, count) in [
        ("sequence.step_sent", 2 * LEADS_HERE),
        ("sequence.completed", LEADS_HERE),
    ] {
        let recorded: i64 = fetch_optional(
            &db,
            "SELECT COUNT(*) FROM webhook_deliveries WHERE event = $1",
            &[event.into()],
        )
        .await
        .unwrap();
        assert_eq!(recorded, count as i64, "{event}");
    }
    println!("{killed_mid_round} rounds killed before they finished");
}

wafleet_core::testing::on_both_backends!(
    a_three_step_sequence_goes_step_by_step_inside_its_window,
    a_dispatcher_killed_at_any_point_repeats_and_skips_nothing,
    leads_who_answer_a_campaign_are_enrolled
);
