//! Users are isolated on campaigns: another user's campaign or device answers 404 on every route,
//! and nothing of it changes.

use reqwest::StatusCode;
use serde_json::json;

use crate::campaigns::plan;
use crate::helpers::{TestApp, body, expect_error};

async fn another_users_campaigns_are_invisible(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Ana's phone", None).await;
    let bos_device = bo.add_device("Bo's phone", None).await;
    let campaign = plan(
        &ana,
        json!({"title": "Ana's", "niche": "bakery", "message": "Hi", "send_at": "2026-03-14T09:00",
               "device_ids": [device]}),
    )
    .await;
    let path = format!("/api/campaigns/{}", campaign["id"]);

    expect_error(bo.get(&path).await, StatusCode::NOT_FOUND, "campaign not found").await;
    expect_error(
        bo.put(&path, json!({"title": "stolen"})).await,
        StatusCode::NOT_FOUND,
        "campaign not found",
    )
    .await;
    expect_error(
        bo.put(&path, json!({"status": "cancelled"})).await,
        StatusCode::NOT_FOUND,
        "campaign not found",
    )
    .await;
    expect_error(bo.delete(&path).await, StatusCode::NOT_FOUND, "campaign not found").await;
    expect_error(
        bo.get(&format!("{path}/report")).await,
        StatusCode::NOT_FOUND,
        "campaign not found",
    )
    .await;
    expect_error(
        bo.post(&format!("{path}/retry"), json!({})).await,
        StatusCode::NOT_FOUND,
        "campaign not found",
    )
    .await;
    expect_error(
        bo.get(&format!("/api/devices/{device}/pacing")).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    // Bo cannot send from Ana's device, nor move his campaign onto it.
    let planted = json!({"title": "Planted", "niche": "n", "message": "m", "send_at": "2026-03-14T09:00",
                         "device_ids": [bos_device, device]});
    expect_error(
        bo.post("/api/campaigns", planted).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    let own = plan(
        &bo,
        json!({"title": "Bo's", "niche": "n", "message": "m", "send_at": "2026-03-14T09:00", "device_ids": [bos_device]}),
    )
    .await;
    expect_error(
        bo.put(
            &format!("/api/campaigns/{}", own["id"]),
            json!({"device_ids": [device]}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;

    let bos = body(bo.get("/api/campaigns?year=2026").await).await["results"].clone();
    assert_eq!(bos.as_array().unwrap().len(), 1, "only his own: {bos}");
    assert_eq!(
        body(bo.get("/api/campaigns/summary?year=2026").await).await["results"][0]["count"],
        1
    );
    let anas = body(ana.get(&path).await).await["results"].clone();
    assert_eq!(
        (anas["title"].as_str(), anas["status"].as_str()),
        (Some("Ana's"), Some("scheduled"))
    );
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => another_users_campaigns_are_invisible);
