//! API tokens: shown once, usable as Bearer without CSRF, revocable.

use reqwest::StatusCode;
use serde_json::json;

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

on_both_backends!(app: api_tokens_work_and_revoke);
