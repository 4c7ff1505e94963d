//! NUL characters (`\0`) are refused at the edge with a 422 naming the field, however text comes
//! in (JSON, URL path and query, forms, multipart fields, CSV cells), and nothing is stored: SQLite
//! would keep them and PostgreSQL's text type would fail with a 500.
//!
//! What WhatsApp delivers cannot be refused: a contact's message, name or receipt with a NUL in it
//! is stored with U+FFFD in its place, and the rest of its batch with it, instead of failing the
//! batch (and every message of other devices that shares it) on PostgreSQL at each redelivery.

use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::json;

use wafleet_core::db::IngestItem;
use wafleet_core::link::{Jid, ReceiptKind};
use wafleet_core::types::{DeviceId, Timestamp};

use crate::chat_view::{hold, text};
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

async fn what_whatsapp_delivers_with_nul_characters_is_stored_with_its_batch(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", None).await;
    let stall = ana.add_device("Stall", None).await;
    let (shop_fence, stall_fence) = (
        hold(&app, "ana@example.com", shop).await,
        hold(&app, "ana@example.com", stall).await,
    );
    let now = Timestamp::now().millis();
    let hostile = text("ID\u{0}1", "60191000001", false, Some("Eve\u{0}"), "a\u{0}b", now);
    let items = vec![
        (
            stall_fence,
            IngestItem::Message(text("ok-1", "60191000002", false, Some("Bo"), "before", now)),
        ),
        (shop_fence, IngestItem::Message(hostile.clone())),
        (
            shop_fence,
            IngestItem::Receipt {
                chat: hostile.chat.clone(),
                kind: ReceiptKind::Read,
                ids: vec!["X\u{0}".into()],
            },
        ),
        (
            shop_fence,
            IngestItem::LidMapping {
                lid: Jid("1\u{0}@lid".into()),
                phone: hostile.chat.clone(),
            },
        ),
        (
            stall_fence,
            IngestItem::Message(text("ok-2", "60191000002", false, None, "after", now + 1)),
        ),
    ];
    let outcome = app.db.write_batch(&items).await.expect("the batch is stored");
    assert_eq!(outcome.accepted, vec![true; 5]);
    assert_eq!(outcome.new_messages, 3);
    app.changed(shop_fence.device).await;
    app.changed(stall_fence.device).await;

    let page = body(
        ana.get(&format!("/api/devices/{shop}/messages/60191000001%40s.whatsapp.net"))
            .await,
    )
    .await;
    let messages = page["results"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{page}");
    assert_eq!(messages[0]["body"], "a\u{FFFD}b");
    assert_eq!(messages[0]["id"], "ID\u{FFFD}1");
    assert_eq!(page["results"]["chat"]["name"], "Eve\u{FFFD}");
    let other = body(
        ana.get(&format!("/api/devices/{stall}/messages/60191000002%40s.whatsapp.net"))
            .await,
    )
    .await;
    assert_eq!(other["results"]["messages"].as_array().unwrap().len(), 2, "{other}");

    // A replay of the same message is still one message: the replacement is the same each time.
    let again = app.db.write_batch(&items[1..2]).await.unwrap();
    assert_eq!(again.new_messages, 0, "a replay is recognised");

    // A contact name saved on the phone, from the account's app state.
    let jid = Jid("60191000001@s.whatsapp.net".into());
    app.db
        .set_contact_name(DeviceId(shop), &jid, "Eve\u{0}Saved")
        .await
        .expect("the name is stored");
    app.changed(shop_fence.device).await;
    let page = body(
        ana.get(&format!("/api/devices/{shop}/messages/60191000001%40s.whatsapp.net"))
            .await,
    )
    .await;
    assert_eq!(page["results"]["chat"]["name"], "Eve\u{FFFD}Saved", "{page}");
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => nul_characters_are_refused_everywhere_text_comes_in, what_whatsapp_delivers_with_nul_characters_is_stored_with_its_batch);
