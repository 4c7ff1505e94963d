//! Webhook settings and deliveries over the API: validation with clear 422s, a generated secret
//! shown once, the test event, listing by status and replaying dead deliveries. Delivery itself
//! (signatures, retries, dead letters) is tested end to end in the workspace's `tests/webhooks.rs`.

use reqwest::StatusCode;
use serde_json::json;
use wafleet_core::db::AttemptResult;
use wafleet_core::types::{Email, UserId};

use crate::helpers::{Session, TestApp, body, expect_error};

pub const URL: &str = "https://example.com/hooks/wafleet";

pub async fn user_id(app: &TestApp, email: &str) -> UserId {
    app.db
        .user_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
}

/// Records a delivery for `email` whose attempts are all spent, as the deliverer leaves it.
pub async fn dead_delivery(app: &TestApp, email: &str) -> i64 {
    let user = user_id(app, email).await;
    let id = app.db.record_test_delivery(user).await.unwrap();
    let failed = AttemptResult::Failed {
        status: Some(500),
        error: "the receiver answered 500 Internal Server Error".into(),
        dead: true,
    };
    app.db.record_attempt(id, &failed).await.unwrap();
    id
}

pub async fn set(session: &Session, body: serde_json::Value) -> reqwest::Response {
    session.put("/api/webhook", body).await
}

async fn settings_are_validated_and_the_secret_shown_once(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let none = body(ana.get("/api/webhook").await).await;
    assert!(none["results"].is_null(), "no webhook yet: {none}");

    for (bad, needle) in [
        ("example.com/hooks", "not a valid URL"),
        ("ftp://example.com/hooks", "must start with http:// or https://"),
        ("https://user:pw@example.com/", "user name or password"),
        ("", "give the address"),
    ] {
        expect_error(
            set(&ana, json!({"url": bad})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
    }
    expect_error(
        set(&ana, json!({"url": URL, "events": ["message", "bogus"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown event `bogus`",
    )
    .await;
    expect_error(
        set(&ana, json!({"url": URL, "secret": "short"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "secret: give 16 to 256 characters",
    )
    .await;
    assert!(
        app.db
            .webhook(user_id(&app, "ana@example.com").await)
            .await
            .unwrap()
            .is_none(),
        "bad input stored nothing"
    );

    // First time without a secret: one is generated and shown in this answer only.
    let response = set(&ana, json!({"url": URL})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let created = body(response).await;
    let secret = created["results"]["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 40, "{secret}");
    assert!(created["message"].as_str().unwrap().contains("will not be shown again"));
    assert_eq!(
        created["results"]["events"].as_array().unwrap().len(),
        wafleet_core::webhooks::EventKind::ALL.len(),
        "all events by default"
    );
    assert_eq!(created["results"]["enabled"], true);
    let shown = body(ana.get("/api/webhook").await).await;
    assert!(shown["results"].get("secret").is_none(), "never shown again: {shown}");
    assert_eq!(shown["results"]["secret_hint"], secret[secret.len() - 4..]);

    // Changing the events keeps the secret; the upstream's comma-separated form is accepted.
    let changed = body(
        set(
            &ana,
            json!({"url": URL, "events": "message.ack,MESSAGE", "enabled": false}),
        )
        .await,
    )
    .await;
    assert_eq!(changed["results"]["events"], json!(["message", "message.ack"]));
    assert_eq!(changed["results"]["enabled"], false);
    assert!(changed["results"].get("secret").is_none());
    let stored = app
        .db
        .webhook(user_id(&app, "ana@example.com").await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secret, secret, "the secret is kept");
    assert_eq!(stored.events, "message,message.ack");

    // A chosen secret is used and not echoed; rotating generates a new one.
    let chosen = body(set(&ana, json!({"url": URL, "secret": "my-own-secret-123456"})).await).await;
    assert!(chosen["results"].get("secret").is_none());
    assert_eq!(chosen["results"]["secret_hint"], "3456");
    let rotated = body(set(&ana, json!({"url": URL, "rotate_secret": true})).await).await;
    let new_secret = rotated["results"]["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_ne!(new_secret, "my-own-secret-123456");

    let response = ana.delete("/api/webhook").await;
    assert_eq!(response.status(), StatusCode::OK);
    expect_error(
        ana.delete("/api/webhook").await,
        StatusCode::NOT_FOUND,
        "webhook not found",
    )
    .await;
}

async fn test_events_and_replays(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    expect_error(
        ana.post("/api/webhook/test", json!({})).await,
        StatusCode::NOT_FOUND,
        "webhook not found",
    )
    .await;
    assert_eq!(set(&ana, json!({"url": URL})).await.status(), StatusCode::OK);
    let response = ana.post("/api/webhook/test", json!({})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let test = body(response).await["results"].clone();
    assert_eq!(test["event"], "webhook.test");
    assert_eq!(test["status"], "pending");
    let sent: serde_json::Value = serde_json::from_str(test["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["event"], "webhook.test");

    let dead = dead_delivery(&app, "ana@example.com").await;
    let listed = body(ana.get("/api/webhook/deliveries?status=dead").await).await;
    let ids: Vec<i64> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [dead], "only the dead one");
    let all = body(ana.get("/api/webhook/deliveries").await).await;
    assert_eq!(all["results"].as_array().unwrap().len(), 2);
    expect_error(
        ana.get("/api/webhook/deliveries?status=lost").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "status: `lost` is not one of pending, delivered, dead",
    )
    .await;
    expect_error(
        ana.get("/api/webhook/deliveries?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit: give 1 to 500",
    )
    .await;

    // Only dead deliveries replay; the replay keeps the id and starts the attempts afresh.
    let pending = test["id"].as_i64().unwrap();
    expect_error(
        ana.post(&format!("/api/webhook/deliveries/{pending}/replay"), json!({}))
            .await,
        StatusCode::CONFLICT,
        "only dead deliveries can be replayed",
    )
    .await;
    let response = ana
        .post(&format!("/api/webhook/deliveries/{dead}/replay"), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let replayed = body(response).await["results"].clone();
    assert_eq!(replayed["id"], dead);
    assert_eq!(replayed["status"], "pending");
    assert_eq!(replayed["attempts"], 0);
    let one = body(ana.get(&format!("/api/webhook/deliveries/{dead}")).await).await;
    assert_eq!(one["results"]["status"], "pending");
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => settings_are_validated_and_the_secret_shown_once, test_events_and_replays);
