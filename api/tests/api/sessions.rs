//! Session routes without a worker: ownership, bad input, compatible routes' authentication, and
//! a clear 503 when no worker answers. (Pairing end to end runs with the simulator in `tests/`.)

use reqwest::StatusCode;
use serde_json::json;
use wafleet_core::db::Desired;
use wafleet_core::types::{DeviceId, UserId};

use crate::helpers::{TestApp, body, expect_error};

async fn session_routes_are_owner_only(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Ana", Some("+60123456789")).await;
    let post = |path: &str| format!("/api/devices/{device}/{path}");
    expect_error(
        bo.post(&post("qr"), json!({})).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        bo.post(&post("pair-code"), json!({"phone": "+60123456789"})).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        bo.post(&post("logout"), json!({})).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        bo.post(&post("reconnect"), json!({})).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(
        bo.post(&post("check"), json!({"phones": ["+60123456789"]})).await,
        StatusCode::NOT_FOUND,
        "device not found",
    )
    .await;
    expect_error(bo.get(&post("chats")).await, StatusCode::NOT_FOUND, "device not found").await;
    expect_error(bo.get(&post("qr")).await, StatusCode::NOT_FOUND, "device not found").await;
    assert!(
        app.db.session_targets().await.unwrap().is_empty(),
        "Bo's requests recorded nothing"
    );

    let token = body(bo.post("/api/tokens", json!({"name": "bo"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = reqwest::Client::new();
    let response = rest
        .get(app.url("/app/logout"))
        .bearer_auth(&token)
        .header("X-Device-Id", device.to_string())
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "device not found").await;
    let listed = body(
        rest.get(app.url("/app/devices"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        listed["results"].as_array().unwrap().len(),
        0,
        "Bo sees none of Ana's devices"
    );
    assert!(app.db.session_targets().await.unwrap().is_empty());
}

async fn session_routes_explain_bad_requests(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("No phone", None).await;
    let path = |p: &str| format!("/api/devices/{device}/{p}");
    expect_error(
        ana.post(&path("reconnect"), json!({})).await,
        StatusCode::CONFLICT,
        "not linked yet",
    )
    .await;
    expect_error(
        ana.post(&path("check"), json!({"phones": ["+60123456789"]})).await,
        StatusCode::CONFLICT,
        "only while it is online",
    )
    .await;
    expect_error(
        ana.post(&path("check"), json!({"phones": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "1 to 50",
    )
    .await;
    expect_error(
        ana.post(&path("pair-code"), json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone",
    )
    .await;
    expect_error(
        ana.post(&path("pair-code"), json!({"phone": "12ab"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone",
    )
    .await;
    assert!(
        app.db.session_targets().await.unwrap().is_empty(),
        "refused requests recorded nothing"
    );
    expect_error(ana.get(&path("qr")).await, StatusCode::NOT_FOUND, "QR code not found").await;
    expect_error(
        ana.post(&format!("/api/demo/devices/{device}/scan"), json!({})).await,
        StatusCode::NOT_FOUND,
        "",
    )
    .await;

    // With no worker running, pairing is recorded and the API says plainly that nobody answered.
    let response = ana.post(&path("qr"), json!({})).await;
    expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "no worker produced a QR code",
    )
    .await;
    let targets = app.db.session_targets().await.unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(
        (targets[0].device_id, targets[0].desired),
        (DeviceId(device), Desired::PairQr)
    );
    let status = body(ana.get(&format!("/api/devices/{device}")).await).await["results"]["status"].clone();
    assert_eq!(status, "pairing");

    // Each request raises the generation, so a worker reopens the session for a repeated request.
    app.db
        .request_session(UserId(1), DeviceId(device), Desired::PairQr, None)
        .await
        .unwrap();
    assert_eq!(
        app.db.session_targets().await.unwrap()[0].generation,
        targets[0].generation + 1
    );
    assert_eq!(ana.post(&path("logout"), json!({})).await.status(), StatusCode::OK);
    assert_eq!(app.db.session_targets().await.unwrap()[0].desired, Desired::Unlinked);
}

async fn compatible_routes_take_api_tokens_only(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let first = ana.add_device("One", None).await;
    // A browser session (cookie) cannot drive the GET routes that change state.
    let response = ana.get("/app/logout").await;
    expect_error(response, StatusCode::UNAUTHORIZED, "API token").await;

    let token = body(ana.post("/api/tokens", json!({"name": "gowa"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = reqwest::Client::new();
    let devices = body(
        rest.get(app.url("/app/devices"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(devices["code"], "SUCCESS");
    assert_eq!(
        devices["results"][0],
        json!({"name": "One", "device": first.to_string(), "jid": ""})
    );
    // HTTP Basic with the token as password works too, as existing clients send it.
    let basic = rest
        .get(app.url("/app/devices"))
        .basic_auth("anyone", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);

    // With one device, it is the default; with two, the request must name one.
    let response = rest
        .get(app.url("/app/reconnect"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::CONFLICT, "not linked yet").await;
    ana.add_device("Two", None).await;
    let response = rest
        .get(app.url("/app/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "X-Device-Id").await;
    let response = rest
        .get(app.url("/app/logout"))
        .bearer_auth(&token)
        .header("X-Device-Id", "abc")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "device not found").await;
    let response = rest
        .get(app.url(&format!("/app/logout?device_id={first}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(body(response).await["code"], "SUCCESS");
    let response = rest
        .get(app.url("/app/login-with-code?phone=nope"))
        .bearer_auth(&token)
        .header("X-Device-Id", first.to_string())
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "phone").await;
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => session_routes_are_owner_only, session_routes_explain_bad_requests, compatible_routes_take_api_tokens_only);
