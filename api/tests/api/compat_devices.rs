//! The upstream REST API's device management (`/devices`…), `/app/status` and `/app/info`: the
//! documented shapes (with `status` in the envelope), devices named by id or by the `device_id`
//! they were added under, and the documented refusals.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::actions::linked;
use crate::device_webhooks::token;
use crate::helpers::{TestApp, body, expect_error};

/// Calls `method path` with `token` as Basic auth, as upstream clients do.
async fn call(app: &TestApp, token: &str, method: Method, path: &str, payload: Option<Value>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .request(method, app.url(path))
        .basic_auth("admin", Some(token));
    if let Some(payload) = payload {
        request = request.json(&payload);
    }
    request.send().await.unwrap()
}

/// The `results` of a 200 in the upstream envelope, after checking the envelope.
async fn ok(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    let reply = body(response).await;
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["code"], "SUCCESS", "{reply}");
    assert!(reply["message"].is_string(), "{reply}");
    reply["results"].clone()
}

async fn devices_are_managed_as_the_upstream_documents(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let manage = token(&ana, json!(["read", "send", "manage"])).await;
    let read = token(&ana, json!(["read"])).await;
    let bos = bo.add_device("Bo's", None).await;

    assert_eq!(
        ok(call(&app, &manage, Method::GET, "/devices", None).await).await,
        json!([])
    );

    // Added under an id of the client's choosing, with a webhook of its own.
    let added = ok(call(
        &app,
        &manage,
        Method::POST,
        "/devices",
        Some(
            json!({"device_id": "org_2", "webhook_url": "https://example.com/hooks/org2", "webhook_events": "message"}),
        ),
    )
    .await)
    .await;
    assert_eq!(added["display_name"], "org_2");
    assert_eq!(added["state"], "disconnected");
    assert_eq!(added["jid"], "");
    let id: i64 = added["id"].as_str().unwrap().parse().unwrap();
    let hook = ok(call(&app, &manage, Method::GET, "/devices/org_2/webhook", None).await).await;
    assert_eq!(hook["webhook_url"], "https://example.com/hooks/org2");
    assert_eq!(hook["webhook_events"], "message");

    for (payload, needle) in [
        (json!({"device_id": "42"}), "is a number"),
        (json!({"device_id": "org_2"}), "device_id:"),
        (json!({"device_id": "x", "webhook_insecure_skip_verify": true}), "TLS"),
        (json!({"device_id": "y", "webhook_url": "ftp://example.com/h"}), "url"),
    ] {
        let response = call(&app, &manage, Method::POST, "/devices", Some(payload)).await;
        expect_error(response, StatusCode::BAD_REQUEST, needle).await;
    }
    let generated = ok(call(&app, &manage, Method::POST, "/devices", None).await).await;
    assert!(
        generated["display_name"].as_str().unwrap().starts_with("device-"),
        "{generated}"
    );
    let listed = ok(call(&app, &manage, Method::GET, "/devices", None).await).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "the refused ones left nothing: {listed}"
    );

    // Named by id or by name, the same device.
    let by_name = ok(call(&app, &manage, Method::GET, "/devices/org_2", None).await).await;
    let by_id = ok(call(&app, &manage, Method::GET, &format!("/devices/{id}"), None).await).await;
    assert_eq!(by_name, by_id);
    let status = ok(call(&app, &manage, Method::GET, "/devices/org_2/status", None).await).await;
    assert_eq!(status["device_id"], id.to_string());
    assert_eq!(status["is_connected"], false);
    assert_eq!(status["is_logged_in"], false);

    linked(&app, id).await;
    let info = ok(call(&app, &manage, Method::GET, "/devices/org_2", None).await).await;
    assert_eq!(info["state"], "logged_in");
    assert_eq!(info["phone_number"], "60123456789");
    assert_eq!(info["jid"], "60123456789@s.whatsapp.net");
    let response = reqwest::Client::new()
        .get(app.url("/app/status"))
        .bearer_auth(&manage)
        .header("X-Device-Id", "org_2")
        .send()
        .await
        .unwrap();
    let status = ok(response).await;
    assert_eq!(
        status,
        json!({"device_id": id.to_string(), "is_connected": true, "is_logged_in": true, "jid": "60123456789@s.whatsapp.net"})
    );
    // Linked and online: pairing again would drop the session.
    let response = call(&app, &manage, Method::GET, "/devices/org_2/login", None).await;
    expect_error(response, StatusCode::BAD_REQUEST, "already logged in").await;
    let response = call(&app, &manage, Method::POST, "/devices/org_2/login/code", None).await;
    expect_error(response, StatusCode::BAD_REQUEST, "phone").await;

    ok(call(&app, &manage, Method::POST, "/devices/org_2/logout", None).await).await;
    let status = ok(call(&app, &manage, Method::GET, "/devices/org_2/status", None).await).await;
    assert_eq!(status["is_connected"], false);
    let response = call(&app, &manage, Method::POST, "/devices/org_2/reconnect", None).await;
    expect_error(response, StatusCode::CONFLICT, "log in first").await;

    let about = ok(call(&app, &read, Method::GET, "/app/info", None).await).await;
    assert_eq!(about["os"], "wafleet");
    assert_eq!(about["chatwoot_enabled"], false);
    assert!(about["max_image_size"].as_u64().unwrap() >= 20_000_000, "{about}");

    // Scopes, and nobody else's device.
    let response = call(&app, &read, Method::POST, "/devices", Some(json!({"device_id": "z"}))).await;
    expect_error(response, StatusCode::FORBIDDEN, "manage").await;
    let response = call(&app, &read, Method::GET, "/devices/org_2/login", None).await;
    expect_error(response, StatusCode::FORBIDDEN, "manage").await;
    for path in [
        format!("/devices/{bos}"),
        format!("/devices/{bos}/status"),
        "/devices/Bo's".to_owned(),
    ] {
        let response = call(&app, &manage, Method::GET, &path, None).await;
        expect_error(response, StatusCode::NOT_FOUND, "device").await;
    }
    let response = call(&app, &manage, Method::DELETE, &format!("/devices/{bos}"), None).await;
    expect_error(response, StatusCode::NOT_FOUND, "device").await;
    assert_eq!(bo.device_names().await, ["Bo's"]);

    assert!(
        ok(call(&app, &manage, Method::DELETE, "/devices/org_2", None).await)
            .await
            .is_null()
    );
    let response = call(&app, &manage, Method::GET, "/devices/org_2", None).await;
    expect_error(response, StatusCode::NOT_FOUND, "device").await;
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => devices_are_managed_as_the_upstream_documents);
