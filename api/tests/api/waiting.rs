//! Why queued sends wait, as the API tells their owner: on `GET /api/messages/{id}` and on the
//! progress of broadcasts and campaigns. No worker runs here; the holder's part (recording the
//! reason of the send it is about to make) is played through the database as it would.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_core::types::Timestamp;

use crate::helpers::{TestApp, body};

async fn exec(app: &TestApp, sql: &'static str, device: i64) {
    wafleet_core::testing::execute(&app.db, sql, &[device.into()]).await;
}

async fn message(session: &crate::helpers::Session, id: i64) -> Value {
    body(session.get(&format!("/api/messages/{id}")).await).await["results"].clone()
}

async fn queued_sends_say_why_they_wait(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    exec(
        &app,
        "UPDATE devices SET jid = '60123456789@s.whatsapp.net', status = 'online' WHERE id = $1",
        device,
    )
    .await;
    let send = |to: &'static str| {
        let ana = &ana;
        async move {
            let response = ana
                .post(&format!("/api/devices/{device}/send"), json!({"to": to, "text": "hi"}))
                .await;
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            body(response).await["results"]["id"].as_i64().unwrap()
        }
    };
    let first = send("+60191000001").await;
    let second = send("+60191000002").await;

    // Online and nothing recorded: nothing holds them back.
    let m = message(&ana, first).await;
    assert_eq!(
        (m["waiting_reason"].clone(), m["next_attempt_at"].clone()),
        (Value::Null, Value::Null),
        "{m}"
    );

    // The holder records why the first waits; the one behind it shows the same reason.
    let until = Timestamp::now().plus_secs(3_600);
    app.db
        .set_send_waiting(
            first,
            "daily cap reached: 20 sends today on day 1 of this new number's 14-day warm-up",
            until,
        )
        .await
        .unwrap();
    for id in [first, second] {
        let m = message(&ana, id).await;
        assert!(m["waiting_reason"].as_str().unwrap().contains("day 1 of"), "{m}");
        assert!(m["next_attempt_at"].is_string(), "{m}");
    }

    // A broadcast's progress says it too.
    let response = ana
        .post(
            &format!("/api/devices/{device}/broadcasts"),
            json!({"numbers": "+60191000003\n+60191000004", "text": "menu"}),
        )
        .await;
    assert!(response.status().is_success());
    let list = body(ana.get(&format!("/api/devices/{device}/broadcasts")).await).await;
    let progress = &list["results"][0]["progress"];
    assert_eq!(progress["queued"], 2);
    assert!(
        progress["waiting_reason"].as_str().unwrap().contains("daily cap"),
        "{progress}"
    );

    // Paused after refusals: that reason, until the pause ends.
    let pause_until = Timestamp::now().plus_secs(1_800);
    app.db
        .pause_device_sends(
            wafleet_core::types::DeviceId(device),
            pause_until,
            "5 recipient refusals or device errors within 10 minutes",
        )
        .await
        .unwrap();
    let m = message(&ana, second).await;
    assert!(
        m["waiting_reason"]
            .as_str()
            .unwrap()
            .starts_with("the device's sends are paused after refusals"),
        "{m}"
    );

    // The device offline: that is why, and no time can be promised.
    exec(&app, "UPDATE devices SET status = 'offline' WHERE id = $1", device).await;
    for id in [first, second] {
        let m = message(&ana, id).await;
        assert!(
            m["waiting_reason"]
                .as_str()
                .unwrap()
                .starts_with("the device is offline"),
            "{m}"
        );
        assert_eq!(m["next_attempt_at"], Value::Null, "{m}");
    }

    // Every field is in the OpenAPI document.
    let spec = body(ana.get("/api/openapi.json").await).await;
    let schemas = &spec["components"]["schemas"];
    for (schema, field) in [
        ("OutboundMessage", "waiting_reason"),
        ("OutboundMessage", "next_attempt_at"),
        ("StatusCounts", "waiting_reason"),
        ("StatusCounts", "next_attempt_at"),
    ] {
        assert!(schemas[schema]["properties"][field].is_object(), "{schema}.{field}");
    }
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => queued_sends_say_why_they_wait);
