//! A device's own webhook: set, shown and removed by its owner only; a device that has one sends
//! its events there (filtered by its own events) instead of to the account's webhook, and to the
//! account's again once it is removed; the upstream API's `GET`/`PATCH /devices/{id}/webhook`
//! with its field names.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_core::types::DeviceId;

use crate::actions::linked;
use crate::helpers::{Session, TestApp, body, expect_error};
use crate::webhooks::{URL, set};

const DEVICE_URL: &str = "https://example.com/hooks/shop";

/// The deliveries recorded for the session's account, newest first.
async fn deliveries(session: &Session) -> Vec<Value> {
    body(session.get("/api/webhook/deliveries").await).await["results"]
        .as_array()
        .unwrap()
        .clone()
}

/// Takes the device offline as its owner, which records `device.disconnected` if it was online.
async fn disconnect(app: &TestApp, session: &Session, device: i64) {
    linked(app, device).await;
    let response = session.post(&format!("/api/devices/{device}/logout"), json!({})).await;
    assert!(response.status().is_success(), "logout: {}", body(response).await);
}

/// Where the deliverer would send delivery `id`: the URL and secret.
async fn target(app: &TestApp, id: i64) -> (String, String) {
    let attempt = app.db.delivery_attempt(id).await.unwrap().unwrap();
    let hook = attempt.webhook.expect("a webhook to send it to");
    (hook.url, hook.secret)
}

async fn a_devices_own_webhook_takes_its_events(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let office = ana.add_device("Office", Some("+60123456788")).await;
    let path = format!("/api/devices/{shop}/webhook");
    let none = body(ana.get(&path).await).await;
    assert!(none["results"].is_null(), "{none}");

    // Refused input, and nobody else's device.
    expect_error(
        ana.put(&path, json!({"url": "http://127.0.0.1:9/x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "url",
    )
    .await;
    expect_error(
        ana.put(&path, json!({"url": DEVICE_URL, "events": ["bogus"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bogus",
    )
    .await;
    for response in [
        bo.get(&path).await,
        bo.put(&path, json!({"url": DEVICE_URL})).await,
        bo.delete(&path).await,
    ] {
        expect_error(response, StatusCode::NOT_FOUND, "device").await;
    }

    let set_hook = body(ana.put(&path, json!({"url": DEVICE_URL})).await).await["results"].clone();
    let secret = set_hook["secret"]
        .as_str()
        .expect("a generated secret, shown once")
        .to_owned();
    assert_eq!(set_hook["device_id"], shop);
    assert_eq!(set_hook["url"], DEVICE_URL);
    let shown = body(ana.get(&path).await).await["results"].clone();
    assert!(shown["secret"].is_null(), "never shown again: {shown}");
    assert_eq!(shown["secret_hint"].as_str().unwrap(), &secret[secret.len() - 4..]);

    // The account's webhook takes the office's events; the shop's go to its own.
    let account = body(set(&ana, json!({"url": URL, "secret": "the-account-secret-1"})).await).await;
    assert_eq!(account["code"], "SUCCESS", "{account}");
    disconnect(&app, &ana, shop).await;
    disconnect(&app, &ana, office).await;
    let recorded = deliveries(&ana).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    let of = |device: i64| {
        recorded
            .iter()
            .find(|d| serde_json::from_str::<Value>(d["body"].as_str().unwrap()).unwrap()["payload"]["id"] == device)
            .unwrap_or_else(|| panic!("no delivery of device {device}: {recorded:?}"))
            .clone()
    };
    let (shop_delivery, office_delivery) = (of(shop), of(office));
    assert_eq!(shop_delivery["device_id"], shop);
    assert!(office_delivery["device_id"].is_null());
    let shop_id = shop_delivery["id"].as_i64().unwrap();
    assert_eq!(target(&app, shop_id).await, (DEVICE_URL.to_owned(), secret));
    let office_id = office_delivery["id"].as_i64().unwrap();
    assert_eq!(
        target(&app, office_id).await,
        (URL.to_owned(), "the-account-secret-1".to_owned())
    );

    // Its own event filter, whatever the account's wants.
    ana.put(&path, json!({"url": DEVICE_URL, "events": ["message"]})).await;
    disconnect(&app, &ana, shop).await;
    assert_eq!(
        deliveries(&ana).await.len(),
        2,
        "the shop's webhook wants messages only"
    );

    // Removed: what was recorded for it, and what comes next, goes to the account's webhook.
    assert_eq!(ana.delete(&path).await.status(), StatusCode::OK);
    expect_error(ana.delete(&path).await, StatusCode::NOT_FOUND, "device webhook").await;
    assert_eq!(target(&app, shop_id).await.0, URL);
    disconnect(&app, &ana, shop).await;
    let latest = deliveries(&ana).await[0].clone();
    assert!(latest["device_id"].is_null(), "{latest}");
    let foreign = app
        .db
        .device_webhook(wafleet_core::types::UserId(0), DeviceId(shop))
        .await;
    assert!(matches!(foreign, Err(wafleet_core::Error::NotFound)), "{foreign:?}");
}

/// A new API token of `session`'s account with `scopes`.
pub async fn token(session: &Session, scopes: Value) -> String {
    let made = session
        .post("/api/tokens", json!({"name": format!("t{scopes}"), "scopes": scopes}))
        .await;
    body(made).await["results"]["token"].as_str().unwrap().to_owned()
}

async fn the_upstream_device_webhook_routes_answer_as_documented(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let bos = bo.add_device("Bo's", Some("+60123456780")).await;
    let manage = token(&ana, json!(["read", "send", "manage"])).await;
    let read = token(&ana, json!(["read"])).await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, token: &str, body: Option<Value>| {
        let mut request = client.request(method, app.url(&path)).basic_auth("user", Some(token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let path = format!("/devices/{shop}/webhook");

    let empty = body(call(reqwest::Method::GET, path.clone(), &manage, None).await.unwrap()).await;
    assert_eq!(empty["status"], 200);
    assert_eq!(empty["code"], "SUCCESS");
    assert_eq!(
        empty["results"],
        json!({"device_id": shop.to_string(), "webhook_url": "", "webhook_secret": "", "webhook_events": "", "webhook_insecure_skip_verify": false})
    );

    let patch = json!({"webhook_url": DEVICE_URL, "webhook_secret": "super-secret-key-1", "webhook_events": "message,message.ack"});
    let set = call(reqwest::Method::PATCH, path.clone(), &manage, Some(patch))
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let set = body(set).await;
    assert_eq!(set["message"], "Device webhook updated");
    assert_eq!(set["results"]["webhook_url"], DEVICE_URL);
    assert_eq!(set["results"]["webhook_secret"], "super-secret-key-1");
    assert_eq!(set["results"]["webhook_events"], "message,message.ack");
    let read_back = body(call(reqwest::Method::GET, path.clone(), &manage, None).await.unwrap()).await;
    assert_eq!(read_back["results"], set["results"]);
    let native = body(ana.get(&format!("/api/devices/{shop}/webhook")).await).await;
    assert_eq!(
        native["results"]["url"], DEVICE_URL,
        "the same webhook as wafleet's route shows"
    );

    // Refusals answer 400, as upstream documents.
    for (bad, needle) in [
        (json!({"webhook_url": "not a url"}), "url"),
        (json!({"webhook_url": DEVICE_URL, "webhook_events": "bogus"}), "bogus"),
        (
            json!({"webhook_url": DEVICE_URL, "webhook_insecure_skip_verify": true}),
            "TLS",
        ),
    ] {
        let response = call(reqwest::Method::PATCH, path.clone(), &manage, Some(bad))
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, needle).await;
    }
    // A device is named by its id or by its name.
    let by_name = call(reqwest::Method::GET, "/devices/Shop/webhook".into(), &manage, None)
        .await
        .unwrap();
    assert_eq!(body(by_name).await["results"], set["results"]);
    let response = call(reqwest::Method::GET, "/devices/nosuch/webhook".into(), &manage, None)
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "device").await;
    // It shows the secret: a read-only token may not; nor may anyone reach another's device.
    let response = call(reqwest::Method::GET, path.clone(), &read, None).await.unwrap();
    expect_error(response, StatusCode::FORBIDDEN, "manage").await;
    let response = call(reqwest::Method::GET, format!("/devices/{bos}/webhook"), &manage, None)
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "device").await;

    // An empty URL clears it.
    let cleared = call(
        reqwest::Method::PATCH,
        path.clone(),
        &manage,
        Some(json!({"webhook_url": ""})),
    )
    .await
    .unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(body(cleared).await["results"]["webhook_url"], "");
    assert!(body(ana.get(&format!("/api/devices/{shop}/webhook")).await).await["results"].is_null());
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app =>
    a_devices_own_webhook_takes_its_events,
    the_upstream_device_webhook_routes_answer_as_documented);
