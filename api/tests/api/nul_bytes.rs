//! NUL characters (`\0`) are refused at the edge with a 422 naming the field, however text comes
//! in (JSON, URL path and query, forms, multipart fields, CSV cells), and nothing is stored: SQLite
//! would keep them and PostgreSQL's text type would fail with a 500.

use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::json;

use crate::helpers::{TestApp, body, browser_like_client, csrf_from_html, expect_error};

const REFUSED: &str = "must not contain NUL characters";

async fn nul_characters_are_refused_everywhere_text_comes_in(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;

    // JSON bodies, at the top level and nested, on the JSON routes and the compatible ones.
    let named = ana.post("/api/devices", json!({"name": "Bad\u{0}name"})).await;
    expect_error(named, StatusCode::UNPROCESSABLE_ENTITY, &format!("name: {REFUSED}")).await;
    let lead = ana
        .post(
            "/api/leads",
            json!({"device_id": device, "name": "Bo", "phone": "+60198765432", "notes": "x\u{0}"}),
        )
        .await;
    expect_error(lead, StatusCode::UNPROCESSABLE_ENTITY, &format!("notes: {REFUSED}")).await;
    let hook = ana
        .put(
            "/api/webhook",
            json!({"url": "https://example.com/h", "events": ["message\u{0}"]}),
        )
        .await;
    expect_error(hook, StatusCode::UNPROCESSABLE_ENTITY, &format!("events[0]: {REFUSED}")).await;
    let send = ana
        .post(
            &format!("/api/devices/{device}/send"),
            json!({"to": "+60191000001", "text": "hi\u{0}"}),
        )
        .await;
    expect_error(send, StatusCode::UNPROCESSABLE_ENTITY, &format!("text: {REFUSED}")).await;

    // The URL's path and query.
    expect_error(
        ana.get(&format!("/api/devices/{device}/leads?q=a%00b")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!("q: {REFUSED}"),
    )
    .await;
    expect_error(
        ana.get(&format!("/api/devices/{device}/messages/x%00y")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!("path: {REFUSED}"),
    )
    .await;

    // Multipart fields of the compatible image route, with an API token: 400 there, as upstream
    // answers every bad request.
    let token = body(ana.post("/api/tokens", json!({"name": "rest"})).await).await["results"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let form = Form::new().text("phone", "60191000001").text("caption", "a\u{0}b");
    let compat = reqwest::Client::new()
        .post(app.url("/send/image"))
        .bearer_auth(&token)
        .header("X-Device-Id", device.to_string())
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_error(compat, StatusCode::BAD_REQUEST, &format!("caption: {REFUSED}")).await;

    // A CSV cell: the row and column are named, as for any bad cell.
    let import = ana
        .client
        .post(ana.url(&format!("/api/devices/{device}/leads/import")))
        .header("X-CSRF-Token", &ana.csrf)
        .header("Content-Type", "text/csv")
        .body("Name,Phone\nAmi\0nah,+60123456700\n")
        .send()
        .await
        .unwrap();
    assert_eq!(import.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = body(import).await;
    assert_eq!(refused["results"]["errors"][0]["column"], "name", "{refused}");
    assert!(
        refused["results"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(REFUSED),
        "{refused}"
    );

    // A page's form.
    let client = browser_like_client();
    let page = client
        .get(app.url("/register"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_from_html(&page);
    let fields = [
        ("email", "eve\0@example.com"),
        ("password", "correct horse battery"),
        ("csrf_token", &csrf),
    ];
    let form = client.post(app.url("/register")).form(&fields).send().await.unwrap();
    expect_error(form, StatusCode::UNPROCESSABLE_ENTITY, &format!("email: {REFUSED}")).await;

    // Nothing of it was stored.
    assert_eq!(ana.device_names().await, ["Sales"]);
    let leads = body(ana.get(&format!("/api/devices/{device}/leads")).await).await;
    assert_eq!(leads["results"]["leads"], json!([]), "{leads}");
    assert!(body(ana.get("/api/webhook").await).await["results"].is_null());
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => nul_characters_are_refused_everywhere_text_comes_in);
