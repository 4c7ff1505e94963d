//! Users are isolated on leads: another user's device or lead answers 404 on every route (list,
//! read, change, delete, export, import, the page) and nothing of it changes.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, body, expect_error};
use crate::leads::{add_lead, listed, names};

async fn another_users_leads_are_invisible(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Ana's phone", None).await;
    let bos_device = bo.add_device("Bo's phone", None).await;
    let lead = add_lead(&ana, device, json!({"name": "Aminah", "phone": "+60123456789"})).await;
    let lead_path = format!("/api/leads/{}", lead["id"]);
    let device_leads = format!("/api/devices/{device}/leads");

    expect_error(bo.get(&device_leads).await, StatusCode::NOT_FOUND, "device not found").await;
    expect_error(bo.get(&lead_path).await, StatusCode::NOT_FOUND, "lead not found").await;
    expect_error(
        bo.put(&lead_path, json!({"name": "stolen"})).await,
        StatusCode::NOT_FOUND,
        "lead not found",
    )
    .await;
    expect_error(bo.delete(&lead_path).await, StatusCode::NOT_FOUND, "lead not found").await;
    expect_error(
        bo.post(
            "/api/leads",
            json!({"device_id": device, "name": "Planted", "phone": "+60198765432"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        bo.get(&format!("{device_leads}/export")).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    let import = bo
        .client
        .post(bo.url(&format!("{device_leads}/import")))
        .header("X-CSRF-Token", &bo.csrf)
        .header("Content-Type", "text/csv")
        .body("name,phone\nPlanted,+60198765432\n")
        .send()
        .await
        .unwrap();
    expect_error(import, StatusCode::NOT_FOUND, "device not found").await;
    // Not even the page of the device opens: a page that says so, naming nothing of Ana's,
    // the same as for a device that does not exist.
    let page = bo.get(&format!("/device/{device}/leads")).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Device not found") && !html.contains("Ana's phone"),
        "{html}"
    );
    let missing = bo.get("/device/999999/leads").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing = missing.text().await.unwrap();
    let strip_csrf = |h: &str| h.lines().filter(|l| !l.contains("csrf")).collect::<Vec<_>>().join("\n");
    assert_eq!(
        strip_csrf(&missing),
        strip_csrf(&html),
        "another user's device looks like a missing one"
    );

    // An API token reaches no further.
    let token = body(bo.post("/api/tokens", json!({"name": "bo-cli"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = reqwest::Client::new();
    let response = rest.get(app.url(&lead_path)).bearer_auth(&token).send().await.unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "lead not found").await;
    let response = rest
        .delete(app.url(&lead_path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "lead not found").await;

    assert!(names(&bo, &format!("/api/devices/{bos_device}/leads")).await.is_empty());
    let still = listed(&ana, &device_leads).await;
    assert_eq!(still.len(), 1, "Bo's attempts added nothing");
    assert_eq!(still[0]["name"], "Aminah", "and changed nothing");
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => another_users_leads_are_invisible);
