//! The MCP endpoint through a real MCP client (the Python SDK): tokens see and call the tools
//! their scopes allow, every tool answers, bad input is explained, sends are idempotent and
//! limited per token, every call is logged, and the docs list exactly the tools the server has.

use reqwest::StatusCode;
use serde_json::json;

use crate::actions::{count, linked};
use crate::helpers::{Session, TestApp, body};
use crate::mcp_client::{assert_tool_error, call, ok_json, one, run, tool_names};

const READ_TOOLS: [&str; 10] = [
    "campaign_report",
    "check_numbers",
    "find_leads",
    "get_analytics",
    "get_lead",
    "list_campaigns",
    "list_chats",
    "list_devices",
    "read_chat",
    "send_status",
];
const SEND_TOOLS: [&str; 2] = ["send_image", "send_text"];
const MANAGE_TOOLS: [&str; 3] = ["create_campaign_draft", "create_lead", "update_lead"];

/// A new API token of `session`'s user with `scopes` (all when `None`).
pub async fn token(session: &Session, name: &str, scopes: Option<&[&str]>) -> String {
    let mut request = json!({"name": name});
    if let Some(scopes) = scopes {
        request["scopes"] = json!(scopes);
    }
    let response = session.post("/api/tokens", request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    body(response).await["results"]["token"].as_str().unwrap().to_owned()
}

fn sorted(groups: &[&[&str]]) -> Vec<String> {
    let mut names: Vec<String> = groups.iter().flat_map(|g| g.iter().map(|s| (*s).to_owned())).collect();
    names.sort();
    names
}

async fn tokens_see_and_call_only_the_tools_of_their_scopes(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    linked(&app, device).await;
    let read = token(&ana, "reader", Some(&["read"])).await;
    let sender = token(&ana, "sender", Some(&["read", "send"])).await;
    let all = token(&ana, "everything", None).await;

    let listed = run(&app.base, &read, json!([{"op": "list_tools"}])).await;
    assert_eq!(listed["server"]["name"], "wafleet");
    assert_eq!(tool_names(&listed["results"][0]), sorted(&[&READ_TOOLS]));
    let listed = one(&app.base, &sender, json!({"op": "list_tools"})).await;
    assert_eq!(tool_names(&listed), sorted(&[&READ_TOOLS, &SEND_TOOLS]));
    let listed = one(&app.base, &all, json!({"op": "list_tools"})).await;
    assert_eq!(tool_names(&listed), sorted(&[&READ_TOOLS, &SEND_TOOLS, &MANAGE_TOOLS]));
    for tool in listed["tools"].as_array().unwrap() {
        assert_eq!(tool["input_schema"]["type"], "object", "{tool}");
        assert!(!tool["description"].as_str().unwrap_or_default().is_empty(), "{tool}");
    }

    // A read-only token cannot send, even by calling the tool it was not shown.
    let refused = one(
        &app.base,
        &read,
        call(
            "send_text",
            json!({"device_id": device, "to": "+60191000001", "text": "hi", "idempotency_key": "k1"}),
        ),
    )
    .await;
    assert_tool_error(&refused, "needs the `send` scope");
    let refused = one(
        &app.base,
        &sender,
        call(
            "create_lead",
            json!({"device_id": device, "name": "Aminah", "phone": "+60191000001"}),
        ),
    )
    .await;
    assert_tool_error(&refused, "needs the `manage` scope");
    assert_eq!(count(&app, "outbound_messages").await, 0);
    assert_eq!(count(&app, "leads").await, 0);

    // The same token on the REST API: reads pass, sends and changes are refused.
    let rest = |path: &str| format!("{}{path}", app.base);
    let client = reqwest::Client::new();
    let devices = client
        .get(rest("/api/devices"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(devices.status(), StatusCode::OK);
    let send = client
        .post(rest(&format!("/api/devices/{device}/send")))
        .bearer_auth(&read)
        .json(&json!({"to": "+60191000001", "text": "hi"}))
        .send()
        .await
        .unwrap();
    crate::helpers::expect_error(send, StatusCode::FORBIDDEN, "lacks the `send` scope").await;
    let delete = client
        .delete(rest(&format!("/api/devices/{device}")))
        .bearer_auth(&sender)
        .send()
        .await
        .unwrap();
    crate::helpers::expect_error(delete, StatusCode::FORBIDDEN, "lacks the `manage` scope").await;
    // A number check changes nothing: `read` is enough (no worker answers here, hence no 200).
    let check = client
        .post(rest(&format!("/api/devices/{device}/check")))
        .bearer_auth(&read)
        .json(&json!({"phones": ["+60191000001"]}))
        .send()
        .await
        .unwrap();
    assert_ne!(check.status(), StatusCode::FORBIDDEN);
    assert_eq!(ana.device_names().await, ["Sales"], "nothing was deleted");
    // Nor can it make itself a stronger token.
    let stronger = client
        .post(rest("/api/tokens"))
        .bearer_auth(&all)
        .json(&json!({"name": "x", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stronger.status(), StatusCode::CREATED);
    let manage_only = token(&ana, "manager", Some(&["manage"])).await;
    let escalate = client
        .post(rest("/api/tokens"))
        .bearer_auth(&manage_only)
        .json(&json!({"name": "y", "scopes": ["read", "send", "manage"]}))
        .send()
        .await
        .unwrap();
    crate::helpers::expect_error(escalate, StatusCode::FORBIDDEN, "cannot make a token with more").await;
    let listed = body(ana.get("/api/tokens").await).await;
    let reader = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "reader")
        .unwrap();
    assert_eq!(reader["scopes"], json!(["read"]));

    // Every call above is in the activity log, refused ones too.
    let log = body(
        client
            .get(rest("/api/mcp/calls"))
            .bearer_auth(&all)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let calls = log["results"]["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{log}");
    assert_eq!(calls[0]["tool"], "create_lead");
    assert_eq!(calls[0]["token_name"], "sender");
    assert_eq!(calls[0]["ok"], false);
    assert_eq!(calls[1]["tool"], "send_text");
    assert!(
        calls[1]["arguments"]
            .as_str()
            .unwrap()
            .contains("\"idempotency_key\":\"k1\"")
    );
}

async fn without_a_token_mcp_answers_401(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let client = reqwest::Client::new();
    for auth in [None, Some("Bearer wft_unknown")] {
        let mut request = client
            .post(app.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
    }
    // A browser session is not a token.
    let response = ana
        .client
        .post(app.url("/mcp"))
        .header("x-csrf-token", &ana.csrf)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn every_tool_answers_and_bad_input_is_explained(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123450001")).await;
    linked(&app, device).await;
    let all = token(&ana, "agent", None).await;
    let key = |k: &str| json!({"device_id": device, "to": "+60191000001", "text": "Hello", "idempotency_key": k});
    let png = png_base64();
    let steps = json!([
        call("list_devices", json!({})),
        call(
            "create_lead",
            json!({"device_id": device, "name": "Aminah", "phone": "+60191000001", "niche": "bakery"})
        ),
        call("find_leads", json!({"device_id": device, "search": "Amin"})),
        call("send_text", key("first")),
        call("send_text", key("first")),
        call(
            "send_image",
            json!({"device_id": device, "to": "+60191000001", "image_base64": png, "caption": "menu", "idempotency_key": "img"})
        ),
        call("list_chats", json!({"device_id": device})),
        call("read_chat", json!({"device_id": device, "chat": "+60191000001"})),
        call(
            "check_numbers",
            json!({"device_id": device, "numbers": ["+60191000001", "not a number"]})
        ),
        call(
            "create_campaign_draft",
            json!({"title": "March promo", "niche": "bakery", "message": "Hi!",
            "send_at": "2030-03-14T09:00", "time_zone": "Asia/Kuala_Lumpur", "device_ids": [device],
            "distribution": "pool", "per_device_cap": 50})
        ),
        call("list_campaigns", json!({"year": 2030})),
        call("get_analytics", json!({"start": "2030-01-01", "end": "2030-01-31"})),
    ]);
    let results = run(&app.base, &all, steps).await["results"].clone();
    let devices = ok_json(&results[0]);
    assert_eq!(devices[0]["id"], device);
    let lead = ok_json(&results[1]);
    assert_eq!(lead["phone"], "+60191000001");
    assert_eq!(ok_json(&results[2])["leads"][0]["id"], lead["id"]);
    let first = ok_json(&results[3]);
    let again = ok_json(&results[4]);
    assert_eq!(
        (first["replayed"].clone(), again["replayed"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(first["id"], again["id"], "a retry answers the same send");
    assert_eq!(ok_json(&results[5])["kind"], "image");
    assert!(ok_json(&results[6])["chats"].is_array());
    // No messages were received on this device: the chat does not exist yet.
    assert_tool_error(&results[7], "chat not found");
    // No worker holds the device in this test: the check cannot be answered, and says so.
    assert_eq!(results[8]["is_error"], true, "{}", results[8]);
    let draft = ok_json(&results[9]);
    assert_eq!(draft["status"], "draft", "campaigns are created as drafts only");
    assert_eq!(
        (draft["distribution"].as_str(), draft["per_device_cap"].as_i64()),
        (Some("pool"), Some(50)),
        "{draft}"
    );
    assert_eq!(ok_json(&results[10])[0]["id"], draft["id"]);
    assert!(ok_json(&results[11])["totals"].is_object() || ok_json(&results[11]).is_object());
    assert_eq!(
        count(&app, "outbound_messages").await,
        2,
        "the retried send was recorded once"
    );

    let (message, lead_id, campaign) = (first["id"].clone(), lead["id"].clone(), draft["id"].clone());
    let steps = json!([
        call("send_status", json!({"message_id": message})),
        call("get_lead", json!({"lead_id": lead_id})),
        call(
            "update_lead",
            json!({"lead_id": lead_id, "status": "interested", "notes": "wants a tasting"})
        ),
        call("campaign_report", json!({"campaign_id": campaign})),
        // Bad input, each answered with what to fix.
        call(
            "send_text",
            json!({"device_id": device, "to": "+60191000001", "text": "x"})
        ),
        call(
            "send_text",
            json!({"device_id": device, "to": "+60191000001", "text": "x", "idempotency_key": " "})
        ),
        call(
            "send_text",
            json!({"device_id": device, "to": "12", "text": "x", "idempotency_key": "bad-to"})
        ),
        call("create_lead", json!({"device_id": device, "name": "", "phone": "abc"})),
        call("update_lead", json!({"lead_id": lead_id, "status": "maybe"})),
        call("get_analytics", json!({"start": "2030-02-30", "end": "2030-03-01"})),
        call("list_chats", json!({"device_id": device, "cursor": "garbage"})),
        call("find_leads", json!({"device_id": device, "colour": "red"})),
        call(
            "create_campaign_draft",
            json!({"title": "x", "niche": "y", "message": "z", "send_at": "soon", "device_ids": [device]})
        ),
        call("check_numbers", json!({"device_id": device, "numbers": []})),
        call("no_such_tool", json!({})),
    ]);
    let results = run(&app.base, &all, steps).await["results"].clone();
    assert_eq!(ok_json(&results[0])["id"], message);
    assert_eq!(ok_json(&results[1])["name"], "Aminah");
    assert_eq!(ok_json(&results[2])["status"], "interested");
    assert!(ok_json(&results[3]).is_object());
    for (i, needle) in [
        (4, "idempotency_key"),
        (5, "idempotency_key"),
        (6, "to:"),
        (7, "name"),
        (8, "status"),
        (9, "start"),
        (10, "cursor"),
        (11, "colour"),
        (12, "send_at"),
        (13, "numbers"),
    ] {
        assert_tool_error(&results[i], needle);
    }
    assert!(
        results[14]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown tool"),
        "{}",
        results[14]
    );
    assert_eq!(count(&app, "outbound_messages").await, 2, "bad input sent nothing");
    assert_eq!(count(&app, "mcp_calls").await, 27, "every call is logged");
}

async fn resources_and_prompts_carry_the_chat(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    let all = token(&ana, "agent", None).await;
    let jid = "60191000001@s.whatsapp.net";
    seed_chat(&app, "ana@example.com", device).await;
    let lead = ok_json(
        &one(
            &app.base,
            &all,
            call(
                "create_lead",
                json!({"device_id": device, "name": "Aminah", "phone": "+60191000001"}),
            ),
        )
        .await,
    );
    let chat_uri = format!("wafleet://devices/{device}/chats/{jid}");
    let results = run(
        &app.base,
        &all,
        json!([
            {"op": "list_resource_templates"},
            {"op": "read_resource", "uri": chat_uri},
            {"op": "read_resource", "uri": format!("wafleet://leads/{}", lead["id"])},
            {"op": "list_prompts"},
            {"op": "get_prompt", "name": "summarise_chat", "arguments": {"device_id": device, "chat": jid}},
            {"op": "get_prompt", "name": "draft_follow_up", "arguments": {"device_id": device, "chat": "+60191000001", "goal": "book a tasting"}},
            {"op": "read_resource", "uri": "wafleet://nothing/here"},
            {"op": "get_prompt", "name": "summarise_chat", "arguments": {"chat": jid}},
        ]),
    )
    .await["results"]
        .clone();
    let templates = results[0]["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2);
    let transcript = results[1]["text"].as_str().unwrap();
    assert!(transcript.contains("Do you deliver on Sundays?"), "{transcript}");
    assert!(transcript.contains("You: Yes, from 9am"), "{transcript}");
    assert!(results[2]["text"].as_str().unwrap().contains("Aminah"));
    assert_eq!(results[3]["prompts"], json!(["summarise_chat", "draft_follow_up"]));
    assert!(
        results[4]["text"]
            .as_str()
            .unwrap()
            .contains("Do you deliver on Sundays?")
    );
    let draft = results[5]["text"].as_str().unwrap();
    assert!(
        draft.contains("book a tasting") && draft.contains("Yes, from 9am"),
        "{draft}"
    );
    assert!(
        results[6]["error"].as_str().unwrap().contains("unknown resource"),
        "{}",
        results[6]
    );
    assert!(
        results[7]["error"].as_str().unwrap().contains("device_id"),
        "{}",
        results[7]
    );
}

async fn sends_over_mcp_are_limited_per_token(backend: crate::helpers::Backend) {
    let app = crate::helpers::spawn_app_with(backend, |s| s.mcp_sends_per_minute = 2).await;
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", None).await;
    linked(&app, device).await;
    let (first, second) = (token(&ana, "one", None).await, token(&ana, "two", None).await);
    let send = |key: &str| {
        call(
            "send_text",
            json!({"device_id": device, "to": "+60191000001", "text": "hi", "idempotency_key": key}),
        )
    };
    let results = run(&app.base, &first, json!([send("a"), send("b"), send("a"), send("c")])).await["results"].clone();
    for result in &results.as_array().unwrap()[..3] {
        ok_json(result);
    }
    assert_tool_error(&results[3], "rate limit");
    // The limit is the token's: another token of the same user still sends.
    ok_json(&one(&app.base, &second, send("d")).await);
    assert_eq!(count(&app, "outbound_messages").await, 3);
}

async fn the_docs_list_every_tool_the_server_has(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let all = token(&ana, "agent", None).await;
    let listed = one(&app.base, &all, json!({"op": "list_tools"})).await;
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/mcp.md")).unwrap();
    let documented = documented_tools(&docs);
    assert_eq!(
        documented,
        tool_names(&listed),
        "docs/mcp.md's tool table must list exactly the server's tools (`wafleet mcp-tools` prints it)"
    );
    for tool in listed["tools"].as_array().unwrap() {
        let line = docs
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", tool["name"].as_str().unwrap())))
            .unwrap();
        assert!(
            line.contains(&tool["description"].as_str().unwrap().replace('\n', " ")),
            "docs/mcp.md describes `{}` as the server does: {line}",
            tool["name"]
        );
    }
}

/// The tool names of the table between the markers of docs/mcp.md, sorted.
fn documented_tools(docs: &str) -> Vec<String> {
    let start = docs.find("<!-- tools:start -->").expect("start marker");
    let end = docs.find("<!-- tools:end -->").expect("end marker");
    let mut names: Vec<String> = docs[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Stores a short conversation with +60191000001 on `device` of `email`, as the worker's ingest
/// does.
pub async fn seed_chat(app: &TestApp, email: &str, device: i64) {
    use crate::chat_view::{hold, store, text};
    let fence = hold(app, email, device).await;
    let chat = "60191000001";
    let messages = vec![
        text("m1", chat, false, Some("Aminah"), "Do you deliver on Sundays?", 1_000),
        text("m2", chat, true, None, "Yes, from 9am", 2_000),
    ];
    store(app, fence, messages).await;
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

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => tokens_see_and_call_only_the_tools_of_their_scopes, without_a_token_mcp_answers_401, every_tool_answers_and_bad_input_is_explained, resources_and_prompts_carry_the_chat, the_docs_list_every_tool_the_server_has; sends_over_mcp_are_limited_per_token);
