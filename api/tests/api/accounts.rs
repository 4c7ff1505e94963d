//! Register, log in, log out, rate limiting, first-admin rule, cookie flags.

use reqwest::StatusCode;
use serde_json::json;
use wafleet_core::types::Email;

use crate::helpers::{Backend, TestApp, body, browser_like_client, expect_error, spawn_app_with};

async fn register_login_logout(app: TestApp) {
    let client = browser_like_client();
    let creds = json!({"email": "Ana@Example.com", "password": "correct horse battery"});
    let response = client.post(app.url("/api/register")).json(&creds).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("wafleet_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "not Secure unless configured: {cookie}");
    let user = body(response).await;
    assert_eq!(user["results"]["email"], "ana@example.com", "email is normalised");
    assert_eq!(user["results"]["is_admin"], true, "the first account becomes admin");
    assert!(user["results"].get("password_hash").is_none(), "the hash is never sent");

    let me = body(client.get(app.url("/api/me")).send().await.unwrap()).await;
    assert_eq!(me["results"]["email"], "ana@example.com");

    let out = client
        .post(app.url("/api/logout"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    // Logging out with the session cookie is a state change: it needs the CSRF token.
    assert_eq!(out.status(), StatusCode::FORBIDDEN);
    let page = client
        .get(app.url("/dashboard"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::helpers::csrf_from_html(&page);
    let out = client
        .post(app.url("/api/logout"))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    expect_error(
        client.get(app.url("/api/me")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "log in",
    )
    .await;

    let wrong = json!({"email": "ana@example.com", "password": "wrong password!"});
    let response = client.post(app.url("/api/login")).json(&wrong).send().await.unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "wrong email or password").await;
    let unknown = json!({"email": "nobody@example.com", "password": "whatever123"});
    let response = client.post(app.url("/api/login")).json(&unknown).send().await.unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "wrong email or password").await;

    let response = client.post(app.url("/api/login")).json(&creds).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body(client.get(app.url("/api/me")).send().await.unwrap()).await["results"]["email"],
        "ana@example.com"
    );

    let second = browser_like_client()
        .post(app.url("/api/register"))
        .json(&json!({"email": "bo@example.com", "password": "another password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        body(second).await["results"]["is_admin"],
        false,
        "only the first account is admin"
    );

    let stored = app
        .db
        .user_by_email(&Email::parse("ana@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.password_hash.starts_with("$argon2id$"),
        "argon2id: {}",
        stored.password_hash
    );
}

async fn register_rejects_bad_input(app: TestApp) {
    let client = browser_like_client();
    let cases = [
        (
            json!({"email": "not-an-email", "password": "long enough pw"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least 8",
        ),
        (
            json!({"email": "a@example.com"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `password`",
        ),
    ];
    for (payload, status, needle) in cases {
        let response = client
            .post(app.url("/api/register"))
            .json(&payload)
            .send()
            .await
            .unwrap();
        expect_error(response, status, needle).await;
    }
    let response = client
        .post(app.url("/api/register"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "").await;
    let response = client
        .post(app.url("/api/register"))
        .body("email=a@example.com")
        .send()
        .await
        .unwrap();
    expect_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Content-Type: application/json",
    )
    .await;
    assert!(
        app.db
            .user_by_email(&Email::parse("a@example.com").unwrap())
            .await
            .unwrap()
            .is_none(),
        "nothing stored"
    );

    let good = json!({"email": "a@example.com", "password": "long enough pw"});
    assert_eq!(
        client
            .post(app.url("/api/register"))
            .json(&good)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let again = json!({"email": "A@EXAMPLE.COM", "password": "a different one"});
    let response = browser_like_client()
        .post(app.url("/api/register"))
        .json(&again)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::CONFLICT, "already exists").await;
    let stored = app
        .db
        .user_by_email(&Email::parse("a@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        wafleet_core::auth::verify_password("long enough pw", &stored.password_hash),
        "the first password stands"
    );
}

async fn login_is_rate_limited(app: TestApp) {
    for email in ["victim@example.com", "other@example.com"] {
        let creds = json!({"email": email, "password": "correct horse battery"});
        let response = browser_like_client()
            .post(app.url("/api/register"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    // A REST client without cookies, so every attempt is a fresh login.
    let client = reqwest::Client::new();
    let wrong = json!({"email": "victim@example.com", "password": "guess guess"});
    for _ in 0..app.settings.login_max_failures {
        let response = client.post(app.url("/api/login")).json(&wrong).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let right = json!({"email": "victim@example.com", "password": "correct horse battery"});
    let response = client.post(app.url("/api/login")).json(&right).send().await.unwrap();
    let retry_after: i64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 0 && retry_after <= 900, "{retry_after}");
    expect_error(response, StatusCode::TOO_MANY_REQUESTS, "too many failed logins").await;

    let other = json!({"email": "other@example.com", "password": "correct horse battery"});
    let response = client.post(app.url("/api/login")).json(&other).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "another account is not locked by the victim's failures"
    );
}

async fn form_pages_log_in_and_out(app: TestApp) {
    let client = browser_like_client();
    let dashboard = client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::SEE_OTHER);
    assert_eq!(dashboard.headers()["location"], "/login");

    let page = client
        .get(app.url("/register"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::helpers::csrf_from_html(&page);
    let fields = [("email", "form@example.com"), ("password", "correct horse battery")];
    let missing = client.post(app.url("/register")).form(&fields).send().await.unwrap();
    expect_error(missing, StatusCode::FORBIDDEN, "missing CSRF token").await;
    assert!(
        app.db
            .user_by_email(&Email::parse("form@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    let with_token = [fields[0], fields[1], ("csrf_token", csrf.as_str())];
    let response = client
        .post(app.url("/register"))
        .form(&with_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/dashboard");
    let html = client
        .get(app.url("/dashboard"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("form@example.com"), "dashboard greets the user");

    let out = client
        .post(app.url("/logout"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.headers()["location"], "/login");
    assert_eq!(
        client.get(app.url("/dashboard")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );

    let bad = [
        ("email", "form@example.com"),
        ("password", "not the password"),
        ("csrf_token", csrf.as_str()),
    ];
    let response = client.post(app.url("/login")).form(&bad).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("wrong email or password") && html.contains("form@example.com"),
        "the form shows the error and keeps the email"
    );
}

async fn closed_registration_and_env_admin(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.allow_registration = false;
        s.cookie_secure = true;
        s.admin_email = Some("Boss@Example.com".into());
        s.admin_password = Some("boss password".into());
    })
    .await;
    let client = browser_like_client();
    let creds = json!({"email": "new@example.com", "password": "correct horse battery"});
    let response = client.post(app.url("/api/register")).json(&creds).send().await.unwrap();
    expect_error(response, StatusCode::FORBIDDEN, "registration is closed").await;

    let admin = json!({"email": "boss@example.com", "password": "boss password"});
    let response = client.post(app.url("/api/login")).json(&admin).send().await.unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("Secure"),
        "COOKIE_SECURE marks the cookie Secure: {cookie}"
    );
    assert_eq!(body(response).await["results"]["is_admin"], true);
    // Running ensure_admin again (a restart) keeps one account and its password.
    wafleet_core::accounts::ensure_admin(&app.db, &app.settings)
        .await
        .unwrap();
    let response = browser_like_client()
        .post(app.url("/api/login"))
        .json(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Logs `email` in with `password` on a fresh client; the client, or the status when refused.
async fn log_in(app: &TestApp, email: &str, password: &str) -> Result<reqwest::Client, StatusCode> {
    let client = browser_like_client();
    let response = client
        .post(app.url("/api/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    match response.status() {
        StatusCode::OK => Ok(client),
        status => Err(status),
    }
}

async fn me_status(app: &TestApp, client: &reqwest::Client) -> StatusCode {
    client.get(app.url("/api/me")).send().await.unwrap().status()
}

async fn changing_the_password_logs_out_other_sessions(app: TestApp) {
    let ana = app.session("pw@example.com").await;
    let other = log_in(&app, "pw@example.com", "correct horse battery").await.unwrap();
    let bob = app.session("bob@example.com").await;
    let change = |current: &str, new: &str| serde_json::json!({"current_password": current, "new_password": new});

    for (body, needle) in [
        (
            change("wrong guess!", "a new passphrase"),
            "current_password: is not your password",
        ),
        (change("correct horse battery", "short"), "new_password:"),
        (
            change("correct horse battery", "correct horse battery"),
            "new_password: is the current password",
        ),
    ] {
        expect_error(
            ana.post("/api/account/password", body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
    }
    assert_eq!(
        me_status(&app, &other).await,
        StatusCode::OK,
        "refused changes end nothing"
    );
    assert!(log_in(&app, "pw@example.com", "correct horse battery").await.is_ok());

    let response = ana
        .post(
            "/api/account/password",
            change("correct horse battery", "a new passphrase"),
        )
        .await;
    let answer = body(response).await;
    assert_eq!(answer["results"]["sessions_ended"], serde_json::json!(2), "{answer}");
    assert_eq!(
        me_status(&app, &ana.client).await,
        StatusCode::OK,
        "the changing session stays"
    );
    assert_eq!(
        me_status(&app, &other).await,
        StatusCode::UNAUTHORIZED,
        "other sessions end"
    );
    assert_eq!(
        log_in(&app, "pw@example.com", "correct horse battery")
            .await
            .unwrap_err(),
        StatusCode::UNAUTHORIZED
    );
    assert!(log_in(&app, "pw@example.com", "a new passphrase").await.is_ok());
    assert_eq!(
        me_status(&app, &bob.client).await,
        StatusCode::OK,
        "another user is untouched"
    );
    assert!(log_in(&app, "bob@example.com", "correct horse battery").await.is_ok());

    let anonymous = browser_like_client()
        .post(app.url("/api/account/password"))
        .json(&change("a new passphrase", "another passphrase"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Wrong current passwords count as failed logins, so a stolen session cannot guess it.
    for _ in 0..app.settings.login_max_failures {
        ana.post("/api/account/password", change("guess guess", "another passphrase"))
            .await;
    }
    let blocked = ana
        .post(
            "/api/account/password",
            change("a new passphrase", "another passphrase"),
        )
        .await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn the_account_page_changes_the_password(app: TestApp) {
    let ana = app.session("page@example.com").await;
    let html = ana.get("/account").await.text().await.unwrap();
    assert!(
        html.contains("page@example.com") && html.contains("Change password"),
        "{html}"
    );
    let csrf = crate::helpers::csrf_from_html(&html);
    let post = |current: &'static str, new: &'static str| {
        let fields = [
            ("current_password", current),
            ("new_password", new),
            ("csrf_token", csrf.as_str()),
        ];
        ana.client.post(ana.url("/account")).form(&fields).send()
    };
    let wrong = post("nope nope nope", "a new passphrase").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("current_password: is not your password")
    );
    let done = post("correct horse battery", "a new passphrase").await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("Password changed."));
    assert!(log_in(&app, "page@example.com", "a new passphrase").await.is_ok());
    let anonymous = browser_like_client().get(app.url("/account")).send().await.unwrap();
    assert_eq!(
        anonymous.status(),
        StatusCode::SEE_OTHER,
        "logged-out visitors go to log in"
    );
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => register_login_logout, register_rejects_bad_input, login_is_rate_limited, form_pages_log_in_and_out, changing_the_password_logs_out_other_sessions, the_account_page_changes_the_password; closed_registration_and_env_admin);
