//! Campaigns through the API: planning, the calendar, status moves, bad input, and dispatch
//! listing recipients once however often it runs, with the report following their sends.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_core::Db;
use wafleet_core::types::Timestamp;

use crate::helpers::{Session, TestApp, body, expect_error};
use crate::leads::add_lead;

/// Plans a campaign and returns it.
pub async fn plan(session: &Session, fields: Value) -> Value {
    let response = session.post("/api/campaigns", fields).await;
    let (status, body) = (response.status(), body(response).await);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["results"].clone()
}

/// Runs a statement on the test database (to stand in for a worker and WhatsApp).
pub async fn exec(db: &Db, sql: &'static str) {
    wafleet_core::testing::execute(db, sql, &[]).await;
}

async fn planning_editing_and_the_calendar(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Shop", None).await;
    let campaign = plan(
        &ana,
        json!({"title": "March promo", "niche": "bakery", "message": "Fresh bread!",
               "send_at": "2026-03-14T09:00", "time_zone": "Asia/Kuala_Lumpur", "device_ids": [device]}),
    )
    .await;
    assert_eq!(campaign["status"], "scheduled");
    assert_eq!(campaign["send_at"], "2026-03-14T01:00:00.000Z", "stored in UTC");
    assert_eq!(campaign["device_ids"], json!([device]));
    assert_eq!(campaign["has_image"], false);
    let path = format!("/api/campaigns/{}", campaign["id"]);

    // Six campaigns on one local day: the calendar counts six and names five, with their niches.
    for n in 0..5 {
        plan(
            &ana,
            json!({"title": format!("Extra {n}"), "niche": "cafe", "message": "Hi", "status": "draft",
                   "send_at": format!("2026-03-14T1{n}:00"), "time_zone": "Asia/Kuala_Lumpur", "device_ids": [device]}),
        )
        .await;
    }
    let days = body(ana.get("/api/campaigns/summary?year=2026").await).await["results"].clone();
    let days = days.as_array().unwrap();
    assert_eq!(days.len(), 1, "{days:?}");
    assert_eq!(days[0]["date"], "2026-03-14");
    assert_eq!(days[0]["count"], 6);
    assert_eq!(days[0]["campaigns"].as_array().unwrap().len(), 5);
    assert_eq!(days[0]["campaigns"][0]["niche"], "bakery");
    let listed = body(ana.get("/api/campaigns?year=2026").await).await;
    assert_eq!(listed["results"].as_array().unwrap().len(), 6);
    assert!(
        body(ana.get("/api/campaigns?year=2027").await).await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Edit while scheduled; pause and resume; a paused campaign that never started waits for its time.
    let edited = body(
        ana.put(&path, json!({"title": "Spring promo", "send_at": "2026-03-15T08:30"}))
            .await,
    )
    .await;
    assert_eq!(edited["results"]["title"], "Spring promo");
    assert_eq!(
        edited["results"]["send_at"], "2026-03-15T00:30:00.000Z",
        "read in the campaign's zone"
    );
    let paused = body(ana.put(&path, json!({"status": "paused"})).await).await;
    assert_eq!(paused["results"]["status"], "paused");
    expect_error(
        ana.put(&path, json!({"title": "x"})).await,
        StatusCode::CONFLICT,
        "can no longer be edited",
    )
    .await;
    let resumed = body(ana.put(&path, json!({"status": "running"})).await).await;
    assert_eq!(resumed["results"]["status"], "scheduled");
    expect_error(
        ana.put(&path, json!({"status": "finished"})).await,
        StatusCode::CONFLICT,
        "finishes by itself",
    )
    .await;

    let cancelled = body(ana.put(&path, json!({"status": "cancelled"})).await).await;
    assert_eq!(cancelled["results"]["status"], "cancelled");
    expect_error(
        ana.put(&path, json!({"status": "scheduled"})).await,
        StatusCode::CONFLICT,
        "cancelled",
    )
    .await;
    assert_eq!(ana.delete(&path).await.status(), StatusCode::OK);
    expect_error(ana.get(&path).await, StatusCode::NOT_FOUND, "campaign not found").await;
}

async fn bad_campaigns_are_refused_and_change_nothing(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Shop", None).await;
    let good = json!({"title": "T", "niche": "bakery", "message": "Hi", "send_at": "2026-03-14T09:00",
                      "device_ids": [device]});
    let cases = [
        ("title", json!(null), "title: required"),
        ("title", json!("   "), "title: must not be empty"),
        ("time_zone", json!("Mars/Olympus"), "time_zone: unknown time zone"),
        ("send_at", json!("next tuesday"), "send_at:"),
        ("send_at", json!("1970-01-01T00:00"), "send_at: must be between"),
        ("device_ids", json!([]), "device_ids: choose at least one"),
        (
            "status",
            json!("running"),
            "status: a new campaign is draft or scheduled",
        ),
        ("status", json!("someday"), "status: unknown status"),
        ("image_base64", json!("***"), "image_base64: not valid base64"),
        ("image_base64", json!("aGVsbG8="), "image:"),
        (
            "distribution",
            json!("spread"),
            "distribution: unknown distribution `spread`",
        ),
        (
            "per_device_cap",
            json!(50),
            "per_device_cap: only with distribution `pool`",
        ),
    ];
    for (field, value, needle) in cases {
        let mut bad = good.clone();
        bad[field] = value;
        expect_error(
            ana.post("/api/campaigns", bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
    }
    let unknown_device = json!({"title": "T", "niche": "n", "message": "m", "send_at": "2026-03-14T09:00",
                                "device_ids": [device + 1000]});
    expect_error(
        ana.post("/api/campaigns", unknown_device).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    let response = ana
        .client
        .post(ana.url("/api/campaigns"))
        .header("X-CSRF-Token", &ana.csrf)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    expect_error(
        ana.get("/api/campaigns?year=99").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "year",
    )
    .await;
    expect_error(
        ana.put(
            &format!("/api/devices/{device}/pacing"),
            json!({"enabled": true, "per_minute": 0, "jitter_ms": 0,
            "daily_cap": 10, "warmup_days": 0, "warmup_first_day": 1, "error_burst": 0, "pause_minutes": 1,
            "unreplied_max_percent": 50, "unreplied_min_sends": 5}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "per_minute",
    )
    .await;
    assert!(
        body(ana.get("/api/campaigns?year=2026").await).await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn dispatch_lists_each_recipient_once_and_the_report_follows_sends(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", None).await;
    let cafe = ana.add_device("Cafe", None).await;
    for (device, phone, niche, status) in [
        (shop, "+60123000001", "bakery", "new"),
        (shop, "+60123000002", "bakery", "contacted"),
        (shop, "+60123000003", "bakery", "lost"),
        (shop, "+60123000004", "florist", "new"),
        (cafe, "+60123000005", "bakery", "new"),
    ] {
        add_lead(
            &ana,
            device,
            json!({"name": "L", "phone": phone, "niche": niche, "status": status}),
        )
        .await;
    }
    let campaign = plan(
        &ana,
        json!({"title": "Now", "niche": "bakery", "message": "Fresh bread!", "send_at": "2025-01-01T00:00:00Z",
               "device_ids": [shop, cafe]}),
    )
    .await;
    let id = campaign["id"].as_i64().unwrap();
    let now = Timestamp::now();
    // Two dispatchers at the same tick (replicas whose runs overlap): one starts and lists the
    // campaign, and neither fails.
    let (first, other) = tokio::join!(app.db.dispatch_campaigns(now), app.db.dispatch_campaigns(now));
    let (first, other) = (first.unwrap(), other.unwrap());
    assert_eq!(
        (first.started + other.started, first.listed + other.listed),
        (1, 3),
        "{first:?} {other:?}"
    );
    let again = app.db.dispatch_campaigns(now).await.unwrap();
    assert_eq!(
        (again.started, again.listed, again.queued),
        (0, 0, 0),
        "a re-run adds nothing: {again:?}"
    );

    let report = body(ana.get(&format!("/api/campaigns/{id}/report")).await).await["results"].clone();
    assert_eq!(report["status"], "running");
    assert_eq!(report["totals"]["total"], 3);
    assert_eq!(report["totals"]["queued"], 3);
    assert_eq!(report["devices"][0]["counts"]["total"], 2, "{report}");
    assert_eq!(report["devices"][1]["counts"]["total"], 1);

    // Stand in for the holder and WhatsApp: one read and answered, one delivered, one failed.
    exec(
        &app.db,
        "UPDATE outbound_messages SET status = 'read', sent_at = 1000, wa_message_id = 'w1' \
                   WHERE recipient = '60123000001@s.whatsapp.net'",
    )
    .await;
    exec(
        &app.db,
        "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, received_at) \
                   SELECT device_id, 'r1', recipient, recipient, FALSE, 'text', 'yes', 2000, 2000 \
                   FROM outbound_messages WHERE wa_message_id = 'w1'",
    )
    .await;
    exec(
        &app.db,
        "UPDATE outbound_messages SET status = 'delivered', sent_at = 1000, wa_message_id = 'w2' \
                   WHERE recipient = '60123000002@s.whatsapp.net'",
    )
    .await;
    exec(
        &app.db,
        "UPDATE outbound_messages SET status = 'failed', reason = '463 refused' \
                   WHERE recipient = '60123000005@s.whatsapp.net'",
    )
    .await;
    let done = app.db.dispatch_campaigns(Timestamp::now()).await.unwrap();
    assert_eq!(done.finished, 1, "{done:?}");
    let report = body(ana.get(&format!("/api/campaigns/{id}/report")).await).await["results"].clone();
    assert_eq!(report["status"], "finished");
    let totals = &report["totals"];
    assert_eq!(
        (
            totals["replied"].as_i64(),
            totals["delivered"].as_i64(),
            totals["failed"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(totals["percent"]["failed"], 33.3);

    // Retry failed: a new send under a new key, and the campaign runs again.
    let retried = body(ana.post(&format!("/api/campaigns/{id}/retry"), json!({})).await).await;
    assert_eq!(retried["results"], 1);
    let round = app.db.dispatch_campaigns(Timestamp::now()).await.unwrap();
    assert_eq!(round.queued, 1, "{round:?}");
    let report = body(ana.get(&format!("/api/campaigns/{id}/report")).await).await["results"].clone();
    assert_eq!(
        (report["status"].as_str(), report["totals"]["queued"].as_i64()),
        (Some("running"), Some(1))
    );
}

async fn a_pool_deals_each_number_once_over_the_devices_up_to_the_cap(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", None).await;
    let cafe = ana.add_device("Cafe", None).await;
    let deli = ana.add_device("Deli", None).await;
    // Seven numbers in the niche: 5 and 6 are leads of both the shop and the cafe; the deli has
    // no leads of its own. A lost lead and another niche are not in the pool.
    for (device, name, phone, niche, status) in [
        (shop, "Aida", "+60123000001", "bakery", "new"),
        (shop, "Badr", "+60123000002", "bakery", "new"),
        (shop, "Chen", "+60123000003", "bakery", "new"),
        (shop, "Dina", "+60123000004", "bakery", "new"),
        (shop, "Eko", "+60123000005", "bakery", "new"),
        (shop, "Fara", "+60123000006", "bakery", "new"),
        (cafe, "Eko at the cafe", "+60123000005", "bakery", "new"),
        (cafe, "Fara at the cafe", "+60123000006", "bakery", "new"),
        (cafe, "Gita", "+60123000007", "bakery", "new"),
        (cafe, "Hana", "+60123000008", "bakery", "lost"),
        (cafe, "Ivan", "+60123000009", "florist", "new"),
    ] {
        add_lead(
            &ana,
            device,
            json!({"name": name, "phone": phone, "niche": niche, "status": status}),
        )
        .await;
    }
    let fields = json!({"title": "Pooled", "niche": "bakery", "message": "Hi {name}",
                        "send_at": "2025-01-01T00:00:00Z", "device_ids": [shop, cafe, deli],
                        "distribution": "pool", "per_device_cap": 2});
    for (cap, needle) in [
        (json!(0), "per_device_cap: 0 is not between 1"),
        (json!(-3), "not between"),
    ] {
        let mut bad = fields.clone();
        bad["per_device_cap"] = cap;
        expect_error(
            ana.post("/api/campaigns", bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
    }
    let campaign = plan(&ana, fields).await;
    assert_eq!(
        (
            campaign["distribution"].as_str(),
            campaign["per_device_cap"].as_i64(),
            campaign["left_out"].as_i64()
        ),
        (Some("pool"), Some(2), None),
        "{campaign}"
    );
    let id = campaign["id"].as_i64().unwrap();
    let round = app.db.dispatch_campaigns(Timestamp::now()).await.unwrap();
    assert_eq!((round.listed, round.queued), (6, 6), "{round:?}");

    // Dealt in the leads' order, in turn, two to each device: 7 is beyond 3 devices x 2.
    let listed = body(ana.get(&format!("/api/campaigns/{id}/recipients")).await).await["results"].clone();
    let dealt: Vec<(i64, &str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["device_id"].as_i64().unwrap(),
                r["phone"].as_str().unwrap(),
                r["text"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        dealt,
        [
            (shop, "+60123000001", "Hi Aida"),
            (cafe, "+60123000002", "Hi Badr"),
            (deli, "+60123000003", "Hi Chen"),
            (shop, "+60123000004", "Hi Dina"),
            (cafe, "+60123000005", "Hi Eko"),
            (deli, "+60123000006", "Hi Fara"),
        ],
        "each number once, named from its first lead, whichever device sends it"
    );
    let campaign = body(ana.get(&format!("/api/campaigns/{id}")).await).await["results"].clone();
    assert_eq!(campaign["left_out"], 1, "{campaign}");
    let report = body(ana.get(&format!("/api/campaigns/{id}/report")).await).await["results"].clone();
    let per_device: Vec<i64> = report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["counts"]["total"].as_i64().unwrap())
        .collect();
    assert_eq!(per_device, [2, 2, 2], "{report}");

    // Without a cap every number of the pool is dealt; switching back to each device's own leads
    // drops the cap.
    let draft = plan(
        &ana,
        json!({"title": "Uncapped", "niche": "bakery", "message": "Hi", "send_at": "2031-01-01T00:00:00Z",
               "device_ids": [shop, cafe], "distribution": "pool", "status": "draft"}),
    )
    .await;
    let draft_id = draft["id"].as_i64().unwrap();
    let changed = body(
        ana.put(
            &format!("/api/campaigns/{draft_id}"),
            json!({"distribution": "pool", "per_device_cap": 3}),
        )
        .await,
    )
    .await["results"]
        .clone();
    assert_eq!(changed["per_device_cap"], 3, "{changed}");
    let changed = body(
        ana.put(
            &format!("/api/campaigns/{draft_id}"),
            json!({"distribution": "per_device"}),
        )
        .await,
    )
    .await["results"]
        .clone();
    assert_eq!(
        (changed["distribution"].as_str(), changed["per_device_cap"].is_null()),
        (Some("per_device"), true),
        "{changed}"
    );
    expect_error(
        ana.put(&format!("/api/campaigns/{draft_id}"), json!({"per_device_cap": 3}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "per_device_cap: only with distribution `pool`",
    )
    .await;
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => planning_editing_and_the_calendar, bad_campaigns_are_refused_and_change_nothing, dispatch_lists_each_recipient_once_and_the_report_follows_sends, a_pool_deals_each_number_once_over_the_devices_up_to_the_cap);
