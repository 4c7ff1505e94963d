//! Webhooks are per user: another user's deliveries answer 404, and their replays change nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, body, expect_error};
use crate::webhooks::{URL, dead_delivery, set};

async fn another_users_webhook_and_deliveries_are_invisible(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    assert_eq!(set(&ana, json!({"url": URL})).await.status(), StatusCode::OK);
    let dead = dead_delivery(&app, "ana@example.com").await;

    // Bo sees no webhook and none of Ana's deliveries; his changes touch his own settings only.
    assert!(body(bo.get("/api/webhook").await).await["results"].is_null());
    assert!(
        body(bo.get("/api/webhook/deliveries").await).await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let path = format!("/api/webhook/deliveries/{dead}");
    expect_error(bo.get(&path).await, StatusCode::NOT_FOUND, "delivery not found").await;
    expect_error(
        bo.post(&format!("{path}/replay"), json!({})).await,
        StatusCode::NOT_FOUND,
        "delivery not found",
    )
    .await;
    expect_error(
        bo.delete("/api/webhook").await,
        StatusCode::NOT_FOUND,
        "webhook not found",
    )
    .await;
    expect_error(
        bo.post("/api/webhook/test", json!({})).await,
        StatusCode::NOT_FOUND,
        "webhook not found",
    )
    .await;
    assert_eq!(
        set(&bo, json!({"url": "https://bo.example.com/h"})).await.status(),
        StatusCode::OK
    );

    let still = body(ana.get(&path).await).await;
    assert_eq!(still["results"]["status"], "dead", "Bo's replay changed nothing");
    assert_eq!(still["results"]["attempts"], 1);
    let anas = body(ana.get("/api/webhook").await).await;
    assert_eq!(anas["results"]["url"], URL, "Ana's webhook is hers");
    assert_eq!(
        body(ana.get("/api/webhook/deliveries").await).await["results"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "Bo's test event is not among Ana's"
    );
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => another_users_webhook_and_deliveries_are_invisible);
