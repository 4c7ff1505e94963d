//! Device CRUD and its bad-input answers.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, body, expect_error};

async fn device_lifecycle(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let response = ana
        .post("/api/devices", json!({"name": "  Sales 1 ", "phone": "012-345 6789"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let device = body(response).await["results"].clone();
    assert_eq!(device["name"], "Sales 1", "names are trimmed");
    assert_eq!(
        device["phone"], "+60123456789",
        "national numbers use DEFAULT_COUNTRY (MY) and are stored E.164"
    );
    assert_eq!(device["status"], "offline");
    assert!(device["last_seen_at"].is_null());
    let id = device["id"].as_i64().unwrap();

    let second = ana.add_device("Support", None).await;
    assert_eq!(ana.device_names().await, ["Sales 1", "Support"]);

    let fetched = body(ana.get(&format!("/api/devices/{id}")).await).await;
    assert_eq!(fetched["results"]["name"], "Sales 1");

    let renamed = body(ana.put(&format!("/api/devices/{id}"), json!({"name": "Sales A"})).await).await;
    assert_eq!(renamed["results"]["name"], "Sales A");
    assert_eq!(renamed["results"]["phone"], "+60123456789", "an omitted phone is kept");
    let cleared = body(ana.put(&format!("/api/devices/{id}"), json!({"phone": ""})).await).await;
    assert!(cleared["results"]["phone"].is_null(), "an empty phone clears it");
    let phoned = body(
        ana.put(&format!("/api/devices/{second}"), json!({"phone": "+44 20 7946 0958"}))
            .await,
    )
    .await;
    assert_eq!(phoned["results"]["phone"], "+442079460958");

    assert_eq!(ana.delete(&format!("/api/devices/{id}")).await.status(), StatusCode::OK);
    expect_error(
        ana.get(&format!("/api/devices/{id}")).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        ana.delete(&format!("/api/devices/{id}")).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    assert_eq!(ana.device_names().await, ["Support"]);
}

async fn device_bad_input_changes_nothing(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let id = ana.add_device("Sales", Some("+60123456789")).await;

    expect_error(
        ana.post("/api/devices", json!({"name": "  "})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "name",
    )
    .await;
    expect_error(
        ana.post("/api/devices", json!({"name": "x".repeat(65)})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "1 to 64",
    )
    .await;
    expect_error(
        ana.post("/api/devices", json!({"name": "B", "phone": "12ab"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone",
    )
    .await;
    expect_error(
        ana.post("/api/devices", json!({"name": "B", "phone": "+60 1"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone",
    )
    .await;
    expect_error(
        ana.post("/api/devices", json!({"phone": "+60123456789"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing field `name`",
    )
    .await;
    expect_error(
        ana.post("/api/devices", json!({"name": "Sales"})).await,
        StatusCode::CONFLICT,
        "already have a device",
    )
    .await;
    expect_error(
        ana.post("/api/devices", json!({"name": "Other", "phone": "0123456789"}))
            .await,
        StatusCode::CONFLICT,
        "phone",
    )
    .await;
    expect_error(
        ana.put(&format!("/api/devices/{id}"), json!({"phone": "nope"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone",
    )
    .await;
    expect_error(
        ana.get("/api/devices/999999").await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        ana.put("/api/devices/999999", json!({"name": "x"})).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(ana.get("/api/devices/abc").await, StatusCode::BAD_REQUEST, "").await;

    let raw = |body: &'static str, content_type: &'static str| {
        ana.client
            .post(ana.url("/api/devices"))
            .header("X-CSRF-Token", &ana.csrf)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    expect_error(
        raw("{\"name\": ", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "",
    )
    .await;
    expect_error(
        raw("name=x", "text/plain").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    )
    .await;

    let huge = json!({"name": "Big", "phone": "1".repeat(app.settings.max_body_bytes)});
    expect_error(
        ana.post("/api/devices", huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("limit is {} bytes", app.settings.max_body_bytes),
    )
    .await;

    let device = body(ana.get(&format!("/api/devices/{id}")).await).await;
    assert_eq!(
        device["results"]["phone"], "+60123456789",
        "failed updates changed nothing"
    );
    assert_eq!(ana.device_names().await, ["Sales"], "failed creates stored nothing");
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => device_lifecycle, device_bad_input_changes_nothing);
