//! Webhook URLs lead to public addresses only: a URL whose host is, or resolves to, a loopback,
//! private, link-local or unique-local address is refused with a 422 naming the address class,
//! unless the operator allows the host (`WEBHOOK_ALLOWED_HOSTS`). Delivery checks again when it
//! connects (the workers crate's tests).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp, body, expect_error, spawn_app_with};
use crate::webhooks::{URL, set, user_id};

async fn internal_targets_are_refused_when_saved(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    for (url, needle) in [
        ("http://127.0.0.1:6379/", "`127.0.0.1` is a loopback address"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "`169.254.169.254` is a link-local address",
        ),
        ("http://[::1]/", "`::1` is a loopback address"),
        ("http://10.0.0.1/", "`10.0.0.1` is a private (RFC 1918) address"),
        ("http://[fd12::1]/", "unique-local"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://[::ffff:192.168.0.1]/", "private (RFC 1918)"),
        ("http://localhost:5432/", "`localhost` resolves to"),
    ] {
        let refused = expect_error(
            set(&ana, json!({"url": url})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
        assert!(
            refused["message"].as_str().unwrap().contains("WEBHOOK_ALLOWED_HOSTS"),
            "says how an operator allows it: {refused}"
        );
    }
    let user = user_id(&app, "ana@example.com").await;
    assert!(app.db.webhook(user).await.unwrap().is_none(), "nothing was saved");
    // A public target is saved as before.
    assert_eq!(set(&ana, json!({"url": URL})).await.status(), StatusCode::OK);
    // And an internal one does not replace it.
    let refused = set(&ana, json!({"url": "http://127.0.0.1:9/"})).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body(ana.get("/api/webhook").await).await["results"]["url"], URL);
}

async fn operators_allow_listed_internal_hosts(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.webhook_allowed_hosts = "hooks.internal, 127.0.0.1, 10.0.0.0/8".parse().unwrap();
    })
    .await;
    let ana = app.session("ana@example.com").await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://10.20.30.40/hook",
        "http://hooks.internal/hook",
    ] {
        let response = set(&ana, json!({"url": url})).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}: {}", body(response).await);
    }
    // Only what is listed.
    expect_error(
        set(&ana, json!({"url": "http://192.168.1.1/"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "private",
    )
    .await;
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => internal_targets_are_refused_when_saved; operators_allow_listed_internal_hosts);
