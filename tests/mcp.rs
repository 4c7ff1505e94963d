//! AI agents end to end: a real MCP client (the official Python SDK) against a running wafleet
//! (API + worker + simulated network over real sockets), on SQLite and on PostgreSQL + Redis. It
//! initializes, lists the tools of each token's scopes, calls every tool, and counts at the
//! simulator that a send retried by the agent went out once and that a read-only token sent
//! nothing.
//!
//! Everything here runs against the project's WhatsApp network simulator, never real WhatsApp.

mod support;

#[path = "../api/tests/support/mcp.rs"]
mod mcp_client;

use mcp_client::{assert_tool_error, call, ok_json, run, tool_names};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::stack::Stack;
use wafleet_core::testing::Backend;

/// A new API token with `scopes`.
async fn token(stack: &Stack, name: &str, scopes: &[&str]) -> String {
    let (status, created) = stack.post("/api/tokens", json!({"name": name, "scopes": scopes})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["results"]["token"].as_str().unwrap().to_owned()
}

/// A small PNG, base64-encoded.
fn png_base64() -> String {
    use base64::Engine;
    let image = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// How many messages the account of `phone` sent with `text` (as text or caption).
async fn sent_at_sim(stack: &Stack, phone: &str, text: &str) -> usize {
    let sent = stack.sim.control().sent(phone).await.unwrap();
    sent.iter().filter(|r| r.text.as_deref() == Some(text)).count()
}

async fn an_agent_uses_every_tool_and_a_retried_send_goes_out_once(backend: Backend) {
    let stack = Stack::start(backend).await;
    let phone = "+60123457777";
    let device = stack.linked_device("Sales", phone).await;
    // Sends go out at once: pacing is tested elsewhere.
    stack
        .pace(device, |p| {
            p["per_minute"] = json!(600);
            p["jitter_ms"] = json!(0);
            p["warmup_days"] = json!(0);
        })
        .await;
    let control = stack.sim.control();
    control
        .set_number(&wafleet_sim::control::NumberRule {
            phone: "+60129990000".into(),
            on_whatsapp: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    control
        .inject_text(phone, "+60191000001", "Do you deliver on Sundays?")
        .await
        .unwrap();
    let chat = "60191000001@s.whatsapp.net";
    stack
        .eventually(&format!("/api/devices/{device}/chats"), "the chat is stored", |page| {
            page["chats"].as_array().is_some_and(|c| !c.is_empty())
        })
        .await;

    let agent = token(&stack, "agent", &["read", "send", "manage"]).await;
    let reader = token(&stack, "reader", &["read"]).await;
    let text = "Yes, every Sunday from 9am";
    let send = call(
        "send_text",
        json!({"device_id": device, "to": "+60191000001", "text": text, "idempotency_key": "reply-1"}),
    );

    let first = run(
        &stack.base,
        &agent,
        json!([
            {"op": "list_tools"},
            call("list_devices", json!({})),
            call("list_chats", json!({"device_id": device, "search": "Sunday"})),
            call("read_chat", json!({"device_id": device, "chat": chat})),
            call("check_numbers", json!({"device_id": device, "numbers": ["+60191000001", "+60129990000", "12"]})),
            call("create_lead", json!({"device_id": device, "name": "Aminah", "phone": "+60191000001", "niche": "bakery"})),
            call("find_leads", json!({"device_id": device, "niche": "bakery"})),
            send.clone(),
            // The agent retries at once, as after a timeout.
            send.clone(),
            call("send_image", json!({"device_id": device, "to": "+60191000001", "image_base64": png_base64(),
                "caption": "This week's menu", "idempotency_key": "menu-1"})),
            call("create_campaign_draft", json!({"title": "Sunday promo", "niche": "bakery", "message": "Fresh bread!",
                "send_at": "2030-03-14T09:00", "time_zone": "Asia/Kuala_Lumpur", "device_ids": [device]})),
            call("list_campaigns", json!({"year": 2030})),
            call("get_analytics", json!({"start": "2026-01-01", "end": "2026-12-31", "device_id": device})),
        ]),
    )
    .await;
    assert_eq!(first["server"]["name"], "wafleet");
    let results = first["results"].as_array().unwrap().clone();
    assert_eq!(tool_names(&results[0]).len(), 15, "{}", results[0]);
    assert_eq!(ok_json(&results[1])[0]["status"], "online");
    assert_eq!(ok_json(&results[2])["chats"][0]["jid"], chat);
    let messages = ok_json(&results[3]);
    assert_eq!(messages["messages"][0]["body"], "Do you deliver on Sundays?");
    let checked = ok_json(&results[4]);
    let answers: Vec<&str> = checked
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["result"].as_str().unwrap())
        .collect();
    assert_eq!(answers, ["on_whatsapp", "not_on_whatsapp", "invalid"], "{checked}");
    let lead = ok_json(&results[5]);
    assert_eq!(ok_json(&results[6])["leads"][0]["id"], lead["id"]);
    let (sent, retried) = (ok_json(&results[7]), ok_json(&results[8]));
    assert_eq!(sent["id"], retried["id"]);
    assert_eq!(retried["replayed"], true);
    let image = ok_json(&results[9]);
    let draft = ok_json(&results[10]);
    assert_eq!(draft["status"], "draft");
    assert_eq!(ok_json(&results[11])[0]["id"], draft["id"]);
    ok_json(&results[12]);

    // A new client process retries the same send later: still the same send.
    let later = run(&stack.base, &agent, json!([send.clone()])).await;
    assert_eq!(ok_json(&later["results"][0])["id"], sent["id"]);
    // A read-only token cannot send, not even under a new key.
    let refused = run(
        &stack.base,
        &reader,
        json!([
            {"op": "list_tools"},
            call("send_text", json!({"device_id": device, "to": "+60191000001", "text": "from the reader", "idempotency_key": "r-1"})),
        ]),
    )
    .await;
    assert!(!tool_names(&refused["results"][0]).contains(&"send_text".to_owned()));
    assert_tool_error(&refused["results"][1], "needs the `send` scope");

    for id in [&sent["id"], &image["id"]] {
        stack
            .eventually(&format!("/api/messages/{id}"), "sent", |m| {
                matches!(m["status"].as_str(), Some("sent" | "delivered" | "read"))
            })
            .await;
    }
    let rest = run(
        &stack.base,
        &agent,
        json!([
            call("send_status", json!({"message_id": sent["id"]})),
            call("get_lead", json!({"lead_id": lead["id"]})),
            call("update_lead", json!({"lead_id": lead["id"], "status": "contacted"})),
            call("campaign_report", json!({"campaign_id": draft["id"]})),
        ]),
    )
    .await["results"]
        .clone();
    assert!(matches!(
        ok_json(&rest[0])["status"].as_str(),
        Some("sent" | "delivered" | "read")
    ));
    assert_eq!(ok_json(&rest[1])["name"], "Aminah");
    assert_eq!(ok_json(&rest[2])["status"], "contacted");
    assert!(ok_json(&rest[3]).is_object());

    // Counted at the simulator: the retried text once, the image once, the reader's never.
    assert_eq!(sent_at_sim(&stack, phone, text).await, 1, "sent once");
    assert_eq!(sent_at_sim(&stack, phone, "This week's menu").await, 1);
    assert_eq!(sent_at_sim(&stack, phone, "from the reader").await, 0);
    let calls: Value = stack.get("/api/mcp/calls?limit=200").await;
    assert_eq!(
        calls["calls"].as_array().unwrap().len(),
        12 + 1 + 1 + 4,
        "every tool call is logged"
    );
}

wafleet_core::testing::on_both_backends!(an_agent_uses_every_tool_and_a_retried_send_goes_out_once);
