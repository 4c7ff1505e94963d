//! Users are isolated: another user's ids answer 404 and change nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, body, expect_error};

async fn another_users_devices_are_invisible(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let anas = ana.add_device("Ana's phone", Some("+60123456789")).await;
    let bos = bo.add_device("Bo's phone", Some("+60123456789")).await;
    assert_ne!(anas, bos);

    assert_eq!(
        bo.device_names().await,
        ["Bo's phone"],
        "the list holds only your own devices"
    );
    let path = format!("/api/devices/{anas}");
    expect_error(bo.get(&path).await, StatusCode::NOT_FOUND, "device not found").await;
    expect_error(
        bo.put(&path, json!({"name": "stolen"})).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(bo.delete(&path).await, StatusCode::NOT_FOUND, "device not found").await;

    let still = body(ana.get(&path).await).await;
    assert_eq!(still["results"]["name"], "Ana's phone", "Bo's attempts changed nothing");
    assert_eq!(ana.device_names().await, ["Ana's phone"]);

    // The same holds for a REST client with Bo's API token.
    let token = body(bo.post("/api/tokens", json!({"name": "bo-cli"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = reqwest::Client::new();
    let response = rest.get(app.url(&path)).bearer_auth(&token).send().await.unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "device not found").await;
    let response = rest.delete(app.url(&path)).bearer_auth(&token).send().await.unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "device not found").await;
    assert_eq!(ana.device_names().await, ["Ana's phone"]);

    // Tokens are per user too.
    let anas_token = body(ana.post("/api/tokens", json!({"name": "ana-cli"})).await).await["results"]["id"]
        .as_i64()
        .unwrap();
    expect_error(
        bo.delete(&format!("/api/tokens/{anas_token}")).await,
        StatusCode::NOT_FOUND,
        "API token not found",
    )
    .await;
    let listed = body(ana.get("/api/tokens").await).await;
    assert_eq!(listed["results"].as_array().unwrap().len(), 1, "Ana's token survives");
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => another_users_devices_are_invisible);
