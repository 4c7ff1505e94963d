//! The failed-login limit holds under parallel guessing: each attempt is counted before its
//! password is checked, so no more than the limit are ever checked.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp, browser_like_client, spawn_app_with};

async fn parallel_wrong_passwords_are_checked_at_most_the_limit(app: TestApp) {
    let creds = json!({"email": "victim@example.com", "password": "correct horse battery"});
    let response = browser_like_client()
        .post(app.url("/api/register"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let client = reqwest::Client::new();
    let wrong = json!({"email": "victim@example.com", "password": "guess guess"});
    let attempts = (0..60).map(|_| {
        let request = client.post(app.url("/api/login")).json(&wrong);
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(
        checked, app.settings.login_max_failures as usize,
        "exactly the limit of wrong passwords were checked: {statuses:?}"
    );
    assert_eq!(checked + refused, 60, "every other attempt was refused: {statuses:?}");

    // The account stays locked for the right password too, until the window ends.
    let right = client.post(app.url("/api/login")).json(&creds).send().await.unwrap();
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn a_right_password_does_not_use_up_the_address_limit(backend: Backend) {
    // A low limit keeps the number of (slow, argon2) logins small.
    let app = spawn_app_with(backend, |s| s.login_max_failures = 1).await;
    let creds = json!({"email": "often@example.com", "password": "correct horse battery"});
    let client = browser_like_client();
    let response = client.post(app.url("/api/register")).json(&creds).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // More successful logins from one address than its failure limit (4 × the account's).
    let logins = app.settings.login_max_failures * 4 + 2;
    for _ in 0..logins {
        let response = reqwest::Client::new()
            .post(app.url("/api/login"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "successful logins are not failures");
    }
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => parallel_wrong_passwords_are_checked_at_most_the_limit; a_right_password_does_not_use_up_the_address_limit);
