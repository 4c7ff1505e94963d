//! CSRF: a browser session cannot change anything without the page's token.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, expect_error};

async fn session_changes_need_the_csrf_token(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let id = ana.add_device("Kept", None).await;

    let no_token = ana
        .client
        .post(ana.url("/api/devices"))
        .json(&json!({"name": "Forged"}))
        .send()
        .await
        .unwrap();
    expect_error(no_token, StatusCode::FORBIDDEN, "missing CSRF token").await;
    let wrong = ana
        .client
        .post(ana.url("/api/devices"))
        .header("X-CSRF-Token", "guess")
        .json(&json!({"name": "Forged"}))
        .send()
        .await
        .unwrap();
    expect_error(wrong, StatusCode::FORBIDDEN, "does not match").await;
    let delete = ana
        .client
        .delete(ana.url(&format!("/api/devices/{id}")))
        .send()
        .await
        .unwrap();
    expect_error(delete, StatusCode::FORBIDDEN, "missing CSRF token").await;
    // A cross-site form post carries the session cookie but cannot know the token.
    let form = ana
        .client
        .post(ana.url("/api/devices"))
        .form(&[("name", "Forged")])
        .send()
        .await
        .unwrap();
    expect_error(form, StatusCode::FORBIDDEN, "missing CSRF token").await;

    assert_eq!(ana.device_names().await, ["Kept"], "nothing was created or deleted");
}

on_both_backends!(app: session_changes_need_the_csrf_token);
