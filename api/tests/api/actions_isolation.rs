//! Users are isolated on device actions: another user's device or broadcast answers 404 on every
//! route (test send, check, broadcast, progress, activity, the page) and nothing of it changes.

use reqwest::StatusCode;
use serde_json::json;

use crate::actions::{count, linked};
use crate::helpers::{TestApp, body, expect_error};

async fn another_users_device_actions_are_invisible(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Ana's phone", None).await;
    linked(&app, device).await;
    let response = ana
        .post(
            &format!("/api/devices/{device}/broadcasts"),
            json!({"numbers": "+60191000001", "text": "hi"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let broadcast = body(response).await["results"]["broadcast"]["id"].as_i64().unwrap();
    let (sends, activity) = (
        count(&app, "outbound_messages").await,
        count(&app, "device_activity").await,
    );

    let base = format!("/api/devices/{device}");
    expect_error(
        bo.post(
            &format!("{base}/actions/test-send"),
            json!({"to": "+60191000001", "text": "x"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        bo.post(&format!("{base}/actions/check"), json!({"numbers": "+60191000001"}))
            .await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    // Even a body that would be refused is a 404: the device is checked first.
    for numbers in ["+60191000002", "not a number"] {
        expect_error(
            bo.post(&format!("{base}/broadcasts"), json!({"numbers": numbers, "text": "x"}))
                .await,
            StatusCode::NOT_FOUND,
            "device not found",
        )
        .await;
    }
    expect_error(
        bo.get(&format!("{base}/broadcasts")).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        bo.get(&format!("{base}/broadcasts/{broadcast}")).await,
        StatusCode::NOT_FOUND,
        "broadcast not found",
    )
    .await;
    expect_error(
        bo.get(&format!("{base}/activity")).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    assert_eq!(
        bo.get(&format!("/device/{device}/actions")).await.status(),
        StatusCode::NOT_FOUND
    );

    // Bo's own device does not open Ana's broadcast either.
    let bos_device = bo.add_device("Bo's phone", None).await;
    expect_error(
        bo.get(&format!("/api/devices/{bos_device}/broadcasts/{broadcast}"))
            .await,
        StatusCode::NOT_FOUND,
        "broadcast not found",
    )
    .await;
    // Nor does an API token reach further.
    let token = body(bo.post("/api/tokens", json!({"name": "bo-cli"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = reqwest::Client::new()
        .post(app.url(&format!("{base}/broadcasts")))
        .bearer_auth(&token)
        .json(&json!({"numbers": "+60191000009", "text": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "device not found").await;

    assert_eq!(count(&app, "outbound_messages").await, sends, "Bo sent nothing");
    assert_eq!(count(&app, "device_activity").await, activity, "and logged nothing");
    assert_eq!(count(&app, "broadcasts").await, 1);
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => another_users_device_actions_are_invisible);
