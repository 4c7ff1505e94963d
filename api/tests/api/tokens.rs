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

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => api_tokens_work_and_revoke);

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
