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

async fn a_bearer_header_does_not_excuse_a_cookie_form_post(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    // The session cookie authenticates these page routes; a bogus token beside it must not
    // switch the CSRF check off.
    let logout = ana
        .client
        .post(ana.url("/logout"))
        .bearer_auth("not-a-token")
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    expect_error(logout, StatusCode::FORBIDDEN, "missing CSRF token").await;
    let account = ana
        .client
        .post(ana.url("/account"))
        .bearer_auth("not-a-token")
        .form(&[
            ("current_password", "correct horse battery"),
            ("new_password", "forged passphrase"),
        ])
        .send()
        .await
        .unwrap();
    expect_error(account, StatusCode::FORBIDDEN, "missing CSRF token").await;
    let json = ana
        .client
        .post(ana.url("/api/devices"))
        .bearer_auth("not-a-token")
        .json(&json!({"name": "Forged"}))
        .send()
        .await
        .unwrap();
    expect_error(json, StatusCode::FORBIDDEN, "missing CSRF token").await;

    assert_eq!(
        ana.get("/api/me").await.status(),
        StatusCode::OK,
        "the session was not logged out"
    );
    let login = reqwest::Client::new()
        .post(app.url("/api/login"))
        .json(&json!({"email": "ana@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK, "the password was not changed");
    assert!(ana.device_names().await.is_empty(), "nothing was created");
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => session_changes_need_the_csrf_token, a_bearer_header_does_not_excuse_a_cookie_form_post);
