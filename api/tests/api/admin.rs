//! The admin API: only administrators reach it; disabling an account stops its sessions, tokens
//! and sends at once and enabling it lets them go again; a temporary password allows nothing but
//! changing it; deleting needs the email typed and takes everything with it; every action is in
//! the log.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_core::db::NextSend;
use wafleet_core::types::{DeviceId, Timestamp};

use crate::actions::{count, linked};
use crate::helpers::{Session, TestApp, body, browser_like_client, expect_error};
use crate::webhooks::user_id;

/// Every admin route, as (method, path, body) with `{id}` for an account's id.
const ROUTES: [(&str, &str, Option<&str>); 9] = [
    ("GET", "/api/admin/users", None),
    ("POST", "/api/admin/users/{id}/disable", None),
    ("POST", "/api/admin/users/{id}/enable", None),
    (
        "POST",
        "/api/admin/users/{id}/temporary-password",
        Some(r#"{"password": "temporary-1"}"#),
    ),
    (
        "DELETE",
        "/api/admin/users/{id}",
        Some(r#"{"confirm": "ana@example.com"}"#),
    ),
    ("GET", "/api/admin/fleet", None),
    ("GET", "/api/admin/actions", None),
    ("GET", "/api/admin/dead-letters", None),
    ("POST", "/api/admin/dead-letters/1/replay", None),
];

async fn call(session: &Session, method: &str, path: &str, body: Option<&str>) -> reqwest::Response {
    let body = body.map(|b| serde_json::from_str::<Value>(b).unwrap());
    session.send(method.parse().unwrap(), path, body).await
}

/// Logs `email` in with `password` in a fresh client; the response and the client.
async fn log_in(app: &TestApp, email: &str, password: &str) -> (reqwest::Response, reqwest::Client) {
    let client = browser_like_client();
    let response = client
        .post(app.url("/api/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    (response, client)
}

/// The status of `GET /api/devices` with `token`.
async fn with_token(app: &TestApp, token: &str) -> StatusCode {
    browser_like_client()
        .get(app.url("/api/devices"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn only_administrators_reach_the_admin_routes(app: TestApp) {
    let _admin = app.session("root@example.com").await;
    let ana = app.session("ana@example.com").await;
    let token = body(ana.post("/api/tokens", json!({"name": "crm"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ana_id = user_id(&app, "ana@example.com").await;
    for (method, path, payload) in ROUTES {
        let path = path.replace("{id}", &ana_id.0.to_string());
        let response = call(&ana, method, &path, payload).await;
        expect_error(response, StatusCode::FORBIDDEN, "only administrators").await;
        let response = browser_like_client()
            .request(method.parse().unwrap(), app.url(&path))
            .bearer_auth(&token)
            .json(&payload.map_or(Value::Null, |b| serde_json::from_str(b).unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path} with a token");
    }
    assert_eq!(ana.get("/admin").await.status(), StatusCode::FORBIDDEN);
    assert!(
        app.db.user_by_id(ana_id).await.unwrap().is_some(),
        "nothing was done to ana"
    );
}

/// For `session`'s account: an API token, and a linked device with one queued send; returns the
/// token, the device and the send.
pub async fn a_token_and_a_queued_send(app: &TestApp, session: &Session) -> (String, i64, i64) {
    let made = session.post("/api/tokens", json!({"name": "crm"})).await;
    let token = body(made).await["results"]["token"].as_str().unwrap().to_owned();
    let device = session.add_device("Shop", Some("+60123456789")).await;
    linked(app, device).await;
    let sent = session
        .post(
            &format!("/api/devices/{device}/send"),
            json!({"to": "+60191000001", "text": "hi"}),
        )
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let send = body(sent).await["results"]["id"].as_i64().unwrap();
    (token, device, send)
}

async fn disabling_stops_sessions_tokens_and_sends_at_once(app: TestApp) {
    let admin = app.session("root@example.com").await;
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let (token, device, send) = a_token_and_a_queued_send(&app, &ana).await;
    let next = || app.db.next_send(DeviceId(device), Timestamp::now());
    assert!(matches!(next().await.unwrap(), NextSend::Due(id) if id == send));

    // The list finds her by any part of her email, in any case; `_` and `%` are letters.
    let listed = body(admin.get("/api/admin/users?search=ANA@").await).await["results"].clone();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["email"], "ana@example.com");
    assert_eq!(listed[0]["devices"], 1);
    assert!(listed[0]["disabled_at"].is_null());
    assert!(!listed[0]["last_active_at"].is_null(), "she logged in: {listed}");
    let all = body(admin.get("/api/admin/users").await).await["results"].clone();
    assert_eq!(all.as_array().unwrap().len(), 3);
    for wildcard in ["%25", "_"] {
        let none = body(admin.get(&format!("/api/admin/users?search={wildcard}")).await).await;
        assert_eq!(none["results"].as_array().unwrap().len(), 0, "{wildcard}: {none}");
    }
    expect_error(
        admin.get("/api/admin/users?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "limit",
    )
    .await;
    let ana_id = listed[0]["id"].as_i64().unwrap();
    let root_id = user_id(&app, "root@example.com").await.0;
    expect_error(
        admin
            .post(&format!("/api/admin/users/{root_id}/disable"), json!({}))
            .await,
        StatusCode::CONFLICT,
        "your own account",
    )
    .await;
    expect_error(
        admin.post("/api/admin/users/999999/disable", json!({})).await,
        StatusCode::NOT_FOUND,
        "account",
    )
    .await;

    let disabled = admin
        .post(&format!("/api/admin/users/{ana_id}/disable"), json!({}))
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);
    assert!(!body(disabled).await["results"]["disabled_at"].is_null());
    // At once: her session, her token, her login and her queued send.
    assert_eq!(ana.get("/api/devices").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(with_token(&app, &token).await, StatusCode::UNAUTHORIZED);
    let (refused, _) = log_in(&app, "ana@example.com", "correct horse battery").await;
    expect_error(refused, StatusCode::FORBIDDEN, "disabled").await;
    let (wrong, _) = log_in(&app, "ana@example.com", "not her password").await;
    expect_error(wrong, StatusCode::UNAUTHORIZED, "wrong email or password").await;
    assert!(
        matches!(next().await.unwrap(), NextSend::Idle),
        "a disabled account sends nothing"
    );
    // Others go on.
    assert_eq!(bo.get("/api/devices").await.status(), StatusCode::OK);

    let enabled = admin
        .post(&format!("/api/admin/users/{ana_id}/enable"), json!({}))
        .await;
    assert_eq!(enabled.status(), StatusCode::OK);
    assert!(body(enabled).await["results"]["disabled_at"].is_null());
    assert_eq!(with_token(&app, &token).await, StatusCode::OK, "her token works again");
    let (again, client) = log_in(&app, "ana@example.com", "correct horse battery").await;
    assert_eq!(again.status(), StatusCode::OK);
    let devices = client.get(app.url("/api/devices")).send().await.unwrap();
    assert_eq!(devices.status(), StatusCode::OK);
    assert!(
        matches!(next().await.unwrap(), NextSend::Due(id) if id == send),
        "her send goes again"
    );

    let log = body(admin.get("/api/admin/actions").await).await["results"].clone();
    let actions: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["enable", "disable"], "{log}");
    assert_eq!(log[0]["actor_email"], "root@example.com");
    assert_eq!(log[0]["target_email"], "ana@example.com");
}

async fn a_temporary_password_allows_only_changing_it(app: TestApp) {
    let admin = app.session("root@example.com").await;
    let ana = app.session("ana@example.com").await;
    let ana_id = user_id(&app, "ana@example.com").await.0;
    let path = format!("/api/admin/users/{ana_id}/temporary-password");
    expect_error(
        admin.post(&path, json!({"password": "short"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "password",
    )
    .await;
    let set = admin.post(&path, json!({"password": "temporary-1"})).await;
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(body(set).await["results"]["must_change_password"], true);
    assert_eq!(
        ana.get("/api/devices").await.status(),
        StatusCode::UNAUTHORIZED,
        "her sessions ended"
    );
    let (old, _) = log_in(&app, "ana@example.com", "correct horse battery").await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);

    let (response, client) = log_in(&app, "ana@example.com", "temporary-1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()["location"], "/account", "pages lead to the account page");
    let page = client.get(app.url("/account")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("temporary"), "the account page says why");
    let csrf = crate::helpers::csrf_from_html(&html);
    let ana = Session {
        client,
        base: app.base.clone(),
        csrf,
    };
    expect_error(
        ana.get("/api/devices").await,
        StatusCode::FORBIDDEN,
        "temporary password",
    )
    .await;
    assert_eq!(ana.get("/api/me").await.status(), StatusCode::OK);
    let changed = ana
        .post(
            "/api/account/password",
            json!({"current_password": "temporary-1", "new_password": "her own again"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(
        ana.get("/api/devices").await.status(),
        StatusCode::OK,
        "changed: everything is open"
    );
    assert_eq!(ana.get("/dashboard").await.status(), StatusCode::OK);
    let me = body(ana.get("/api/me").await).await;
    assert_eq!(me["results"]["must_change_password"], false, "{me}");
}

async fn deleting_needs_the_email_and_takes_everything(app: TestApp) {
    let admin = app.session("root@example.com").await;
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    ana.add_device("Shop", Some("+60123456789")).await;
    let kept = bo.add_device("Bo's", Some("+60123456780")).await;
    let ana_id = user_id(&app, "ana@example.com").await.0;
    let path = format!("/api/admin/users/{ana_id}");
    let wrong = admin
        .send(
            reqwest::Method::DELETE,
            &path,
            Some(json!({"confirm": "bo@example.com"})),
        )
        .await;
    expect_error(wrong, StatusCode::UNPROCESSABLE_ENTITY, "ana@example.com").await;
    assert_eq!(
        count(&app, "devices").await,
        2,
        "nothing deleted on a wrong confirmation"
    );
    let deleted = admin
        .send(
            reqwest::Method::DELETE,
            &path,
            Some(json!({"confirm": "ANA@example.com "})),
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(body(deleted).await["results"]["email"], "ana@example.com");
    assert_eq!(ana.get("/api/devices").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(count(&app, "devices").await, 1, "her device went with her");
    assert_eq!(bo.device_names().await, ["Bo's"], "bo keeps device {kept}");
    let again = admin
        .send(
            reqwest::Method::DELETE,
            &path,
            Some(json!({"confirm": "ana@example.com"})),
        )
        .await;
    expect_error(again, StatusCode::NOT_FOUND, "account").await;
    let log = body(admin.get("/api/admin/actions").await).await["results"].clone();
    assert_eq!(log[0]["action"], "delete");
    assert_eq!(
        log[0]["target_email"], "ana@example.com",
        "the log keeps who it was: {log}"
    );
}

async fn the_fleet_and_dead_letters_are_shown_and_replayed(app: TestApp) {
    let admin = app.session("root@example.com").await;
    app.db.worker_heartbeat("worker-a", 500, false).await.unwrap();
    let letter = app
        .db
        .insert_dead_letter("webhooks", r#"{"delivery": 42}"#, "gave up", 6)
        .await
        .unwrap();
    let fleet = body(admin.get("/api/admin/fleet").await).await["results"].clone();
    assert_eq!(fleet["workers"][0]["id"], "worker-a", "{fleet}");
    assert_eq!(fleet["workers"][0]["capacity"], 500);
    assert_eq!(fleet["dead_letters"], 1);
    let replayed = admin
        .post(&format!("/api/admin/dead-letters/{letter}/replay"), json!({}))
        .await;
    assert_eq!(replayed.status(), StatusCode::OK);
    assert!(!body(replayed).await["results"]["replayed_at"].is_null());
    let twice = admin
        .post(&format!("/api/admin/dead-letters/{letter}/replay"), json!({}))
        .await;
    expect_error(twice, StatusCode::CONFLICT, "already replayed").await;
    let fleet = body(admin.get("/api/admin/fleet").await).await["results"].clone();
    assert_eq!(fleet["dead_letters"], 0);
    let log = body(admin.get("/api/admin/actions").await).await["results"].clone();
    assert_eq!(log[0]["action"], "replay_dead_letter", "{log}");
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app =>
    only_administrators_reach_the_admin_routes,
    disabling_stops_sessions_tokens_and_sends_at_once,
    a_temporary_password_allows_only_changing_it,
    deleting_needs_the_email_and_takes_everything,
    the_fleet_and_dead_letters_are_shown_and_replayed);
