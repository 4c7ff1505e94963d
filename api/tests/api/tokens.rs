//! API tokens: shown once, usable as Bearer without CSRF, revocable.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use wafleet_core::testing::eventually;

use crate::helpers::{TestApp, body, expect_error};

async fn api_tokens_work_and_revoke(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let created = body(ana.post("/api/tokens", json!({"name": "crm"})).await).await["results"].clone();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("wft_") && token.len() > 40, "{token}");
    assert_eq!(created["hint"], token[token.len() - 4..]);

    let listed = body(ana.get("/api/tokens").await).await["results"].clone();
    assert_eq!(listed[0]["name"], "crm");
    assert!(
        listed[0].get("token").is_none() && !listed.to_string().contains(&token),
        "the secret is shown only once"
    );
    expect_error(
        ana.post("/api/tokens", json!({"name": "crm"})).await,
        StatusCode::CONFLICT,
        "already exists",
    )
    .await;
    expect_error(
        ana.post("/api/tokens", json!({"name": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "name",
    )
    .await;

    // A REST client: bearer token, no cookies, no CSRF token.
    let rest = reqwest::Client::new();
    let response = rest
        .post(app.url("/api/devices"))
        .bearer_auth(&token)
        .json(&json!({"name": "Via API"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let me = body(rest.get(app.url("/api/me")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(me["results"]["email"], "ana@example.com");
    assert_eq!(ana.device_names().await, ["Via API"]);
    let used = body(ana.get("/api/tokens").await).await;
    assert!(used["results"][0]["last_used_at"].is_string(), "use is recorded");

    let id = created["id"].as_i64().unwrap();
    assert_eq!(ana.delete(&format!("/api/tokens/{id}")).await.status(), StatusCode::OK);
    let response = rest
        .get(app.url("/api/devices"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "unknown or revoked").await;
    let response = rest
        .get(app.url("/api/devices"))
        .bearer_auth("wft_made_up")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "unknown or revoked").await;
    let response = rest
        .get(app.url("/api/devices"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "Bearer").await;
    // The name of a revoked token can be used again.
    assert_eq!(
        ana.post("/api/tokens", json!({"name": "crm"})).await.status(),
        StatusCode::CREATED
    );
}

async fn a_token_limited_to_devices_reaches_only_them(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let cafe = ana.add_device("Cafe", Some("+60123456788")).await;
    let bob = app.session("bob@example.com").await;
    let bobs = bob.add_device("Bob's", None).await;
    for (devices, status, needle) in [
        (
            json!([]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "device_ids: name at least one device",
        ),
        (json!([shop, bobs]), StatusCode::NOT_FOUND, "device"),
        (json!([999_999]), StatusCode::NOT_FOUND, "device"),
    ] {
        expect_error(
            ana.post("/api/tokens", json!({"name": "shop-only", "device_ids": devices}))
                .await,
            status,
            needle,
        )
        .await;
    }
    let created = body(
        ana.post("/api/tokens", json!({"name": "shop-only", "device_ids": [shop, shop]}))
            .await,
    )
    .await["results"]
        .clone();
    assert_eq!(created["device_ids"], json!([shop]), "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let listed = body(ana.get("/api/tokens").await).await["results"].clone();
    assert_eq!(listed[0]["device_ids"], json!([shop]), "{listed}");

    crate::actions::linked(&app, shop).await;
    crate::actions::linked(&app, cafe).await;
    let from_cafe = ana
        .post(
            &format!("/api/devices/{cafe}/send"),
            json!({"to": "+60191000002", "text": "hi"}),
        )
        .await;
    assert_eq!(from_cafe.status(), StatusCode::ACCEPTED);
    let from_cafe = body(from_cafe).await["results"]["id"].as_i64().unwrap();

    let rest = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String| rest.request(method, app.url(&path)).bearer_auth(&token);
    let listed = body(call(reqwest::Method::GET, "/api/devices".into()).send().await.unwrap()).await;
    let ids: Vec<i64> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [shop], "only its devices are listed: {listed}");

    // Its device's routes, reads and sends alike.
    let chats = call(reqwest::Method::GET, format!("/api/devices/{shop}/chats"))
        .send()
        .await
        .unwrap();
    assert_eq!(chats.status(), StatusCode::OK);
    let sent = call(reqwest::Method::POST, format!("/api/devices/{shop}/send"))
        .json(&json!({"to": "+60191000001", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let sent = body(sent).await["results"]["id"].as_i64().unwrap();
    let status = call(reqwest::Method::GET, format!("/api/messages/{sent}"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    expect_error(
        call(reqwest::Method::GET, format!("/api/messages/{from_cafe}"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "message",
    )
    .await;
    let me = call(reqwest::Method::GET, "/api/me".into()).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // Another of the owner's devices, and whatever spans the account, is refused.
    for (method, path, needle) in [
        (
            reqwest::Method::GET,
            format!("/api/devices/{cafe}/chats"),
            format!("not device {cafe}"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/devices/{cafe}/send"),
            format!("not device {cafe}"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/devices/{cafe}"),
            format!("not device {cafe}"),
        ),
        (
            reqwest::Method::POST,
            "/api/devices".into(),
            "needs a token for every device".into(),
        ),
        (
            reqwest::Method::POST,
            "/api/leads".into(),
            "needs a token for every device".into(),
        ),
        (
            reqwest::Method::GET,
            "/api/campaigns".into(),
            "needs a token for every device".into(),
        ),
        (
            reqwest::Method::GET,
            "/api/analytics/30".into(),
            "needs a token for every device".into(),
        ),
        (
            reqwest::Method::POST,
            "/api/tokens".into(),
            "needs a token for every device".into(),
        ),
        (
            reqwest::Method::GET,
            "/devices".into(),
            "needs a token for every device".into(),
        ),
        (
            reqwest::Method::POST,
            "/send/message".into(),
            "needs a token for every device".into(),
        ),
    ] {
        let response = call(method.clone(), path.clone())
            .json(&json!({"name": "x", "to": "+60191000003", "text": "no"}))
            .send()
            .await
            .unwrap();
        let what = format!("{method} {path}");
        let refused = expect_error(response, StatusCode::FORBIDDEN, &needle).await;
        assert!(
            refused["message"].as_str().unwrap().contains("shop-only"),
            "{what}: {refused}"
        );
    }
    let mcp = rest
        .post(app.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    expect_error(mcp, StatusCode::FORBIDDEN, "MCP needs a token for every device").await;
    // Nothing was sent from the cafe by the refused calls.
    let cafe_sends: Option<i64> = wafleet_core::testing::fetch_optional(
        &app.db,
        "SELECT COUNT(*) FROM outbound_messages WHERE device_id = $1",
        &[cafe.into()],
    )
    .await;
    assert_eq!(cafe_sends, Some(1));
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => api_tokens_work_and_revoke, a_token_limited_to_devices_reaches_only_them);

/// Two API processes of a scale-out deployment, each with its own cache of who a credential
/// belongs to: ending a credential through one stops it on the other at once (announced over
/// Redis), though both had just answered it. Scale-out only: the embedded default is one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_ended_credentials_stop_working_on_every_api_process() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
    let other = app.another_server().await;
    let ana = app.session("ana@example.com").await;
    let ana_on_other = crate::helpers::Session {
        client: ana.client.clone(),
        base: other.base.clone(),
        csrf: ana.csrf.clone(),
    };
    let created = body(ana.post("/api/tokens", json!({"name": "crm"})).await).await["results"].clone();
    let token = created["token"].as_str().unwrap().to_owned();
    let rest = reqwest::Client::new();
    let me = |base: &str| rest.get(format!("{base}/api/me")).bearer_auth(&token).send();
    // Both processes answer (and so cache) the token and the session.
    for base in [&app.base, &other.base] {
        assert_eq!(me(base).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(ana_on_other.get("/api/me").await.status(), StatusCode::OK);

    let id = created["id"].as_i64().unwrap();
    assert_eq!(ana.delete(&format!("/api/tokens/{id}")).await.status(), StatusCode::OK);
    // Well within the cache's 5 s: announced, not expired.
    eventually(
        Duration::from_secs(2),
        "the other process refuses the token",
        || async { me(&other.base).await.unwrap().status() == StatusCode::UNAUTHORIZED },
    )
    .await;
    expect_error(
        me(&other.base).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unknown or revoked",
    )
    .await;

    // A second browser of ana's, logged in through the first process and seen by both.
    let login = rest
        .post(app.url("/api/login"))
        .json(&json!({"email": "ana@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let browser = |base: &str| rest.get(format!("{base}/api/me")).header("cookie", &cookie).send();
    for base in [&app.base, &other.base] {
        assert_eq!(browser(base).await.unwrap().status(), StatusCode::OK);
    }
    // Changing the password from the first browser ends the second one everywhere.
    let change = json!({"current_password": "correct horse battery", "new_password": "another horse battery"});
    assert_eq!(ana.post("/api/account/password", change).await.status(), StatusCode::OK);
    eventually(Duration::from_secs(2), "the other process ends the session", || async {
        browser(&other.base).await.unwrap().status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(
        ana_on_other.get("/api/me").await.status(),
        StatusCode::OK,
        "the changing browser stays"
    );
}
