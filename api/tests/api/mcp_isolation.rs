//! Users are isolated over MCP: with a token of every scope, another user's device, chat, lead,
//! campaign and send are "not found" in every tool, resource and prompt, and nothing of theirs
//! changes or is sent.

use serde_json::json;

use crate::actions::{count, linked};
use crate::helpers::{TestApp, body};
use crate::mcp::{seed_chat, token};
use crate::mcp_client::{assert_tool_error, call, ok_json, run};

async fn another_users_ids_are_refused_by_every_tool(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let device = ana.add_device("Ana's phone", None).await;
    linked(&app, device).await;
    seed_chat(&app, "ana@example.com", device).await;
    let anas = token(&ana, "ana-agent", None).await;
    let made = run(
        &app.base,
        &anas,
        json!([
            call(
                "create_lead",
                json!({"device_id": device, "name": "Aminah", "phone": "+60191000001", "niche": "bakery"})
            ),
            call(
                "send_text",
                json!({"device_id": device, "to": "+60191000001", "text": "hi", "idempotency_key": "k"})
            ),
            call(
                "create_campaign_draft",
                json!({"title": "Promo", "niche": "bakery", "message": "Hi",
                "send_at": "2030-03-14T09:00", "device_ids": [device]})
            ),
        ]),
    )
    .await["results"]
        .clone();
    let (lead, send, campaign) = (
        ok_json(&made[0])["id"].clone(),
        ok_json(&made[1])["id"].clone(),
        ok_json(&made[2])["id"].clone(),
    );
    let before = (
        count(&app, "outbound_messages").await,
        count(&app, "leads").await,
        count(&app, "campaigns").await,
    );
    let lead_before = body(ana.get(&format!("/api/leads/{lead}")).await).await["results"].clone();

    let bos = token(&bo, "bo-agent", None).await;
    let bos_device = bo.add_device("Bo's phone", None).await;
    let jid = "60191000001@s.whatsapp.net";
    let refused = [
        (call("list_chats", json!({"device_id": device})), "device not found"),
        (
            call("read_chat", json!({"device_id": device, "chat": jid})),
            "device not found",
        ),
        (
            call(
                "check_numbers",
                json!({"device_id": device, "numbers": ["+60191000001"]}),
            ),
            "device not found",
        ),
        (
            call(
                "send_text",
                json!({"device_id": device, "to": "+60191000002", "text": "x", "idempotency_key": "b1"}),
            ),
            "device not found",
        ),
        // Even the key Ana used, and a body that would be refused, is a plain "not found".
        (
            call(
                "send_text",
                json!({"device_id": device, "to": "+60191000001", "text": "hi", "idempotency_key": "k"}),
            ),
            "device not found",
        ),
        (
            call(
                "send_image",
                json!({"device_id": device, "to": "+60191000002", "image_base64": "!!", "idempotency_key": "b2"}),
            ),
            "device not found",
        ),
        (call("send_status", json!({"message_id": send})), "message not found"),
        (call("find_leads", json!({"device_id": device})), "device not found"),
        (call("get_lead", json!({"lead_id": lead})), "lead not found"),
        (
            call(
                "create_lead",
                json!({"device_id": device, "name": "X", "phone": "+60191000003"}),
            ),
            "device not found",
        ),
        (
            call(
                "update_lead",
                json!({"lead_id": lead, "status": "lost", "notes": "mine now"}),
            ),
            "lead not found",
        ),
        (
            call("campaign_report", json!({"campaign_id": campaign})),
            "campaign not found",
        ),
        (
            call(
                "create_campaign_draft",
                json!({"title": "T", "niche": "bakery", "message": "M",
            "send_at": "2030-03-14T09:00", "device_ids": [bos_device, device]}),
            ),
            "device not found",
        ),
        (
            call(
                "get_analytics",
                json!({"start": "2030-01-01", "end": "2030-01-02", "device_id": device}),
            ),
            "device not found",
        ),
    ];
    let steps: Vec<_> = refused.iter().map(|(step, _)| step.clone()).collect();
    let mut steps = json!(steps);
    let extra = [
        call("list_devices", json!({})),
        call("list_campaigns", json!({"year": 2030})),
        json!({"op": "read_resource", "uri": format!("wafleet://devices/{device}/chats/{jid}")}),
        json!({"op": "read_resource", "uri": format!("wafleet://leads/{lead}")}),
        json!({"op": "get_prompt", "name": "summarise_chat", "arguments": {"device_id": device, "chat": jid}}),
        json!({"op": "get_prompt", "name": "draft_follow_up", "arguments": {"device_id": device, "chat": jid}}),
    ];
    steps.as_array_mut().unwrap().extend(extra);
    let results = run(&app.base, &bos, steps).await["results"].clone();
    for (i, (_, needle)) in refused.iter().enumerate() {
        assert_tool_error(&results[i], needle);
        let text = results[i]["text"].as_str().unwrap();
        assert!(
            !text.contains("Aminah") && !text.contains("Ana"),
            "nothing of Ana's shows: {text}"
        );
    }
    let n = refused.len();
    let bos_devices = ok_json(&results[n]);
    assert_eq!(
        bos_devices.as_array().unwrap().len(),
        1,
        "only Bo's device: {bos_devices}"
    );
    assert_eq!(bos_devices[0]["id"], bos_device);
    assert_eq!(ok_json(&results[n + 1]), json!([]), "none of Ana's campaigns");
    for i in n + 2..n + 6 {
        let error = results[i]["error"].as_str().unwrap_or_default();
        assert!(error.contains("not found"), "step {i}: {}", results[i]);
        assert!(!error.contains("Sundays"), "no transcript leaks: {error}");
    }

    assert_eq!(
        (
            count(&app, "outbound_messages").await,
            count(&app, "leads").await,
            count(&app, "campaigns").await,
        ),
        before,
        "Bo sent, added and planned nothing"
    );
    let lead_after = body(ana.get(&format!("/api/leads/{lead}")).await).await["results"].clone();
    assert_eq!(lead_after, lead_before, "Ana's lead is unchanged");
    // Each user's log holds their own calls only.
    let anas_log = body(ana.get("/api/mcp/calls").await).await;
    assert_eq!(anas_log["results"]["calls"].as_array().unwrap().len(), 3);
    let bos_log = body(bo.get("/api/mcp/calls").await).await;
    assert_eq!(bos_log["results"]["calls"].as_array().unwrap().len(), refused.len() + 2);
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => another_users_ids_are_refused_by_every_tool);
