//! The upstream REST API's actions through a device's live session (played here by the test, as
//! no worker runs): `POST /message/{message_id}/read`, for a received message of the device in the
//! chat the body names, `POST /send/chat-presence`, `GET /user/info`, `GET` and `POST
//! /user/avatar`, `GET /user/business-profile`, `GET /user/my/privacy`, and the account's chat
//! settings (star, delete for me, pin, archive, disappearing timer) and `POST /call/reject`; each
//! with a clear refusal for everything else, and nothing of anyone else's.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_core::types::DeviceId;

use crate::actions::linked;
use crate::chat_view::{hold, store, text};
use crate::device_webhooks::token;
use crate::helpers::{TestApp, body, expect_error};

/// `POST path` with `body` as an upstream client does for `device`: HTTP Basic, the token as
/// password.
async fn post(app: &TestApp, token: &str, device: &str, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url(path))
        .basic_auth("admin", Some(token))
        .header("X-Device-Id", device)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// `POST /message/{id}/read` for `device`.
async fn read(app: &TestApp, token: &str, device: &str, id: &str, body: Value) -> reqwest::Response {
    post(app, token, device, &format!("/message/{id}/read"), body).await
}

/// Plays the worker holding `device`: answers its next `kind` request; returns the question, or
/// `None` when none came within 10 s.
async fn answer(app: &TestApp, device: i64, kind: &str) -> Option<Value> {
    answer_with(app, device, kind, "null").await
}

/// [`answer`] with `result` (JSON) as the link's answer.
async fn answer_with(app: &TestApp, device: i64, kind: &str, result: &str) -> Option<Value> {
    let request = wafleet_core::testing::poll_for(std::time::Duration::from_secs(10), async || {
        let pending = app.db.pending_device_requests().await.unwrap();
        pending
            .into_iter()
            .find(|r| r.device_id == DeviceId(device) && r.kind == kind)
    })
    .await?;
    app.db.finish_device_request(request.id, true, result).await.unwrap();
    Some(serde_json::from_str(&request.payload).unwrap())
}

async fn a_received_message_is_marked_read_through_the_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let bos = bo.add_device("Bo's", None).await;
    let fence = hold(&app, "ana@example.com", shop).await;
    store(
        &app,
        fence,
        vec![
            text("IN1", "60191000001", false, Some("Aisyah"), "is it open?", 1_000),
            text("IN2", "60191000001", false, Some("Aisyah"), "hello?", 2_000),
            text("OUT1", "60191000001", true, None, "yes, until six", 3_000),
            text("B1", "60191000002", false, Some("Ben"), "hi", 4_000),
        ],
    )
    .await;
    let send = token(&ana, json!(["read", "send"])).await;
    let aisyah = json!({"phone": "60191000001@s.whatsapp.net"});

    // Offline: nothing is asked of a session.
    let response = read(&app, &send, "Shop", "IN2", aisyah.clone()).await;
    expect_error(response, StatusCode::CONFLICT, "only while it is online").await;
    assert!(app.db.pending_device_requests().await.unwrap().is_empty());

    linked(&app, shop).await;
    let (response, question) = tokio::join!(
        read(&app, &send, "Shop", "IN2", json!({"phone": "+60 19-100 0001"})),
        answer(&app, shop, "mark_read")
    );
    let status = response.status();
    let reply = body(response).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["code"], "SUCCESS");
    assert_eq!(reply["results"]["message_id"], "IN2");
    assert_eq!(
        question,
        Some(json!({"chat": "60191000001@s.whatsapp.net", "ids": ["IN2"]}))
    );
    let chats = body(ana.get(&format!("/api/devices/{shop}/chats")).await).await;
    let unread: Vec<(&str, i64)> = chats["results"]["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["jid"].as_str().unwrap(), c["unread_count"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        unread,
        [("60191000002@s.whatsapp.net", 1), ("60191000001@s.whatsapp.net", 0)],
        "the chat read, the other not"
    );

    // Refused, with what to fix; nothing asked of the session.
    let refusals = [
        ("NOPE", aisyah.clone(), StatusCode::NOT_FOUND, "message not found"),
        (
            "B1",
            aisyah.clone(),
            StatusCode::BAD_REQUEST,
            "is in the chat with 60191000002@s.whatsapp.net",
        ),
        ("OUT1", aisyah.clone(), StatusCode::BAD_REQUEST, "sent by this account"),
        ("IN1", json!({}), StatusCode::BAD_REQUEST, "phone"),
        ("IN1", json!({"phone": "12ab"}), StatusCode::BAD_REQUEST, "phone:"),
        (
            "IN1",
            json!({"phone": "120363@g.us"}),
            StatusCode::BAD_REQUEST,
            "not a person's chat",
        ),
    ];
    for (id, body, status, message) in refusals {
        let response = read(&app, &send, "Shop", id, body.clone()).await;
        assert_eq!(response.status(), status, "{id} {body}");
        expect_error(response, status, message).await;
    }
    let reader = token(&ana, json!(["read"])).await;
    let response = read(&app, &reader, "Shop", "IN1", aisyah.clone()).await;
    expect_error(response, StatusCode::FORBIDDEN, "`send` scope").await;
    // Nobody else's device or messages.
    let bo_token = token(&bo, json!(["read", "send"])).await;
    let response = read(&app, &bo_token, &shop.to_string(), "IN1", aisyah.clone()).await;
    expect_error(response, StatusCode::NOT_FOUND, "device").await;
    let response = read(&app, &bo_token, &bos.to_string(), "IN1", aisyah).await;
    expect_error(response, StatusCode::NOT_FOUND, "message").await;
    assert!(app.db.pending_device_requests().await.unwrap().is_empty());
    assert_eq!(
        crate::actions::count(&app, "device_requests").await,
        1,
        "only the one read was asked"
    );
}

/// `POST /send/chat-presence` for `device`.
async fn typing(app: &TestApp, token: &str, device: &str, body: Value) -> reqwest::Response {
    post(app, token, device, "/send/chat-presence", body).await
}

async fn typing_is_shown_through_the_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    bo.add_device("Bo's", None).await;
    let send = token(&ana, json!(["read", "send"])).await;
    let start = json!({"phone": "60191000001", "action": "start"});

    let response = typing(&app, &send, "Shop", start.clone()).await;
    expect_error(response, StatusCode::CONFLICT, "only while it is online").await;
    linked(&app, shop).await;
    for (action, shown) in [("start", true), ("stop", false)] {
        let body = json!({"phone": "60191000001@s.whatsapp.net", "action": action});
        let (response, question) = tokio::join!(typing(&app, &send, "Shop", body), answer(&app, shop, "chat_presence"));
        let status = response.status();
        let reply = crate::helpers::body(response).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(
            reply["results"]["status"],
            format!("Send chat presence {action} success")
        );
        assert_eq!(
            question,
            Some(json!({"chat": "60191000001@s.whatsapp.net", "typing": shown}))
        );
    }

    let refusals = [
        (json!({"phone": "60191000001", "action": "dance"}), "action: `dance`"),
        (json!({"phone": "60191000001"}), "action"),
        (
            json!({"phone": "120363@g.us", "action": "start"}),
            "not a person's chat",
        ),
    ];
    for (body, message) in refusals {
        let response = typing(&app, &send, "Shop", body).await;
        expect_error(response, StatusCode::BAD_REQUEST, message).await;
    }
    let reader = token(&ana, json!(["read"])).await;
    let response = typing(&app, &reader, "Shop", start.clone()).await;
    expect_error(response, StatusCode::FORBIDDEN, "`send` scope").await;
    let bo_token = token(&bo, json!(["read", "send"])).await;
    let response = typing(&app, &bo_token, &shop.to_string(), start).await;
    expect_error(response, StatusCode::NOT_FOUND, "device").await;
    assert_eq!(
        crate::actions::count(&app, "device_requests").await,
        2,
        "only start and stop were asked"
    );
}

/// `POST /message/{id}/{action}` for `device`.
async fn act(app: &TestApp, token: &str, device: &str, id: &str, action: &str, body: Value) -> reqwest::Response {
    post(app, token, device, &format!("/message/{id}/{action}"), body).await
}

async fn reactions_edits_and_deletions_go_through_the_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let fence = hold(&app, "ana@example.com", shop).await;
    store(
        &app,
        fence,
        vec![
            text("IN1", "60191000001", false, Some("Aisyah"), "is it open?", 1_000),
            text("OUT1", "60191000001", true, None, "yes, until six", 2_000),
        ],
    )
    .await;
    linked(&app, shop).await;
    let send = token(&ana, json!(["read", "send"])).await;
    let aisyah = "60191000001@s.whatsapp.net";

    // A reaction to their message and one to the account's own; the reaction's id is answered.
    for (id, from_me, emoji) in [("IN1", false, "👍"), ("OUT1", true, ""), ("IN1", false, " 🙏🏽 ")] {
        let body = json!({"phone": aisyah, "emoji": emoji});
        let (response, question) = tokio::join!(
            act(&app, &send, "Shop", id, "reaction", body),
            answer_with(&app, shop, "react", "\"3EB0REACTION\"")
        );
        let status = response.status();
        let reply = crate::helpers::body(response).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["results"]["message_id"], "3EB0REACTION");
        let expected = json!({"chat": aisyah, "target": {"id": id, "from_me": from_me}, "emoji": emoji.trim()});
        assert_eq!(question, Some(expected));
    }
    // Deleting the account's own message for everyone.
    let (response, question) = tokio::join!(
        act(&app, &send, "Shop", "OUT1", "revoke", json!({"phone": aisyah})),
        answer(&app, shop, "revoke")
    );
    let status = response.status();
    let reply = crate::helpers::body(response).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["results"]["message_id"], "OUT1");
    assert_eq!(question, Some(json!({"chat": aisyah, "id": "OUT1"})));

    // A send of wafleet's can be deleted once it has left (it is kept as a send, not a stored
    // message of the chat).
    let message = json!({"phone": "+60191000001", "message": "price list attached"});
    let sent = crate::helpers::body(post(&app, &send, "Shop", "/send/message", message).await).await;
    let wa_id = sent["results"]["message_id"].as_str().unwrap().to_owned();
    let send_id: i64 = sent["results"]["send_id"].as_str().unwrap().parse().unwrap();
    let response = act(&app, &send, "Shop", &wa_id, "revoke", json!({"phone": aisyah})).await;
    expect_error(response, StatusCode::NOT_FOUND, "message not found").await;
    let left = "UPDATE outbound_messages SET status = 'sent', sent_at = 5000 WHERE id = $1";
    wafleet_core::testing::execute(&app.db, left, &[send_id.into()]).await;
    let (response, question) = tokio::join!(
        act(&app, &send, "Shop", &wa_id, "revoke", json!({"phone": "60191000001"})),
        answer(&app, shop, "revoke")
    );
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(question, Some(json!({"chat": aisyah, "id": wa_id})));

    // An edit of the account's own message, with its new text.
    let (response, question) = tokio::join!(
        act(
            &app,
            &send,
            "Shop",
            "OUT1",
            "update",
            json!({"phone": aisyah, "message": " until seven "})
        ),
        answer(&app, shop, "edit")
    );
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        question,
        Some(json!({"chat": aisyah, "id": "OUT1", "text": "until seven"}))
    );

    let refusals = [
        (
            "IN1",
            "update",
            json!({"phone": aisyah, "message": "changed"}),
            "written by the other person",
        ),
        (
            "OUT1",
            "update",
            json!({"phone": aisyah, "message": "  "}),
            "message: give the new text",
        ),
        ("IN1", "revoke", json!({"phone": aisyah}), "written by the other person"),
        (
            "IN1",
            "reaction",
            json!({"phone": aisyah, "emoji": "👍".repeat(20)}),
            "emoji: give one emoji",
        ),
        (
            "IN1",
            "reaction",
            json!({"phone": "60191000002", "emoji": "👍"}),
            "chat",
        ),
        ("NOPE", "revoke", json!({"phone": aisyah}), "message not found"),
    ];
    for (id, action, body, message) in refusals {
        let response = act(&app, &send, "Shop", id, action, body).await;
        let status = response.status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{id} {action}: {status}"
        );
        expect_error(response, status, message).await;
    }
    assert_eq!(
        crate::actions::count(&app, "device_requests").await,
        6,
        "only the accepted actions were asked"
    );
}

/// Stars, deletions for the account alone, pins, archives and disappearing timers are asked of
/// the holder with the stored chat and message; a chat the device does not have (or another
/// user's) is 404, a timer WhatsApp does not offer or a group 400, and nothing is asked then.
async fn chat_settings_go_through_the_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let bos = bo.add_device("Bo's", Some("+60123456780")).await;
    let fence = hold(&app, "ana@example.com", shop).await;
    store(
        &app,
        fence,
        vec![
            text("IN1", "60191000001", false, Some("Aisyah"), "is it open?", 1_000),
            text("OUT1", "60191000001", true, None, "yes, until six", 2_000),
        ],
    )
    .await;
    let bo_fence = hold(&app, "bo@example.com", bos).await;
    store(
        &app,
        bo_fence,
        vec![text("BO1", "60191000009", false, Some("Chen"), "hello Bo", 1_000)],
    )
    .await;
    linked(&app, shop).await;
    let send = token(&ana, json!(["read", "send"])).await;
    let aisyah = "60191000001@s.whatsapp.net";

    let asked = [
        (
            "/message/IN1/star",
            json!({"phone": aisyah}),
            json!({"kind": "starred", "message": {"id": "IN1", "from_me": false}, "starred": true}),
        ),
        (
            "/message/IN1/unstar",
            json!({"phone": "60191000001"}),
            json!({"kind": "starred", "message": {"id": "IN1", "from_me": false}, "starred": false}),
        ),
        (
            "/message/OUT1/delete",
            json!({}),
            json!({"kind": "deleted_for_me", "message": {"id": "OUT1", "from_me": true}, "sent_at": "1970-01-01T00:00:02.000Z"}),
        ),
        (
            "/chat/60191000001@s.whatsapp.net/pin",
            json!({"pinned": true}),
            json!({"kind": "pinned", "pinned": true}),
        ),
        (
            "/chat/60191000001%40s.whatsapp.net/archive",
            json!({"archived": true}),
            json!({"kind": "archived", "archived": true}),
        ),
    ];
    for (path, body, setting) in asked {
        let (response, question) = tokio::join!(
            post(&app, &send, "Shop", path, body),
            answer(&app, shop, "chat_setting")
        );
        let status = response.status();
        let reply = crate::helpers::body(response).await;
        assert_eq!(status, StatusCode::OK, "{path}: {reply}");
        assert_eq!(reply["code"], "SUCCESS", "{reply}");
        assert_eq!(question, Some(json!({"chat": aisyah, "setting": setting})), "{path}");
    }
    // The disappearing timer, on a chat with messages or on a number without one yet.
    for (chat, seconds) in [("60191000001@s.whatsapp.net", 86_400), ("60191000002", 0)] {
        let path = format!("/chat/{chat}/disappearing");
        let (response, question) = tokio::join!(
            post(&app, &send, "Shop", &path, json!({"timer_seconds": seconds})),
            answer(&app, shop, "disappearing")
        );
        let status = response.status();
        let reply = crate::helpers::body(response).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["results"]["timer_seconds"], seconds, "{reply}");
        let expected = if chat.contains('@') {
            chat.to_owned()
        } else {
            format!("{chat}@s.whatsapp.net")
        };
        assert_eq!(question, Some(json!({"chat": expected, "seconds": seconds})));
    }
    // WhatsApp refused: the route says so, and nothing is recorded.
    let (response, _) = tokio::join!(
        post(
            &app,
            &send,
            "Shop",
            "/chat/60191000001@s.whatsapp.net/pin",
            json!({"pinned": false})
        ),
        async {
            let request = wafleet_core::testing::poll_for(std::time::Duration::from_secs(10), async || {
                let pending = app.db.pending_device_requests().await.unwrap();
                pending.into_iter().find(|r| r.kind == "chat_setting")
            })
            .await
            .expect("asked");
            app.db
                .finish_device_request(request.id, false, "app state key missing")
                .await
                .unwrap();
        }
    );
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "app state key missing").await;

    let refusals = [
        (
            "/chat/60191000009@s.whatsapp.net/pin",
            json!({"pinned": true}),
            "chat not found",
        ),
        (
            "/chat/60191000009@s.whatsapp.net/archive",
            json!({"archived": true}),
            "chat not found",
        ),
        (
            "/message/BO1/star",
            json!({"phone": "60191000009"}),
            "message not found",
        ),
        ("/message/BO1/delete", json!({}), "message not found"),
        ("/message/IN1/star", json!({"phone": "60191000002"}), "chat"),
        (
            "/chat/60191000001@s.whatsapp.net/disappearing",
            json!({"timer_seconds": 3600}),
            "timer_seconds",
        ),
        (
            "/chat/120363025982934543@g.us/disappearing",
            json!({"timer_seconds": 86_400}),
            "not a person's chat",
        ),
    ];
    for (path, body, message) in refusals {
        let response = post(&app, &send, "Shop", path, body).await;
        let status = response.status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
        expect_error(response, status, message).await;
    }
    assert_eq!(
        crate::actions::count(&app, "device_requests").await,
        8,
        "only the accepted settings were asked"
    );
}

/// `POST /call/reject` asks the holder to decline the call the `call.offer` webhook named; a
/// body without the call or the caller, or naming a group, is a 400 and asks nothing.
async fn a_call_is_declined_through_the_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    linked(&app, shop).await;
    let send = token(&ana, json!(["send"])).await;
    for (caller, expected) in [
        ("60191000001@s.whatsapp.net", "60191000001@s.whatsapp.net"),
        ("60191000001:3@s.whatsapp.net", "60191000001:3@s.whatsapp.net"),
        ("+60 19-100 0001", "60191000001@s.whatsapp.net"),
    ] {
        let body = json!({"caller_jid": caller, "call_id": "5A0F1C2D3E4F"});
        let (response, question) = tokio::join!(
            post(&app, &send, "Shop", "/call/reject", body),
            answer(&app, shop, "reject_call")
        );
        let status = response.status();
        let reply = crate::helpers::body(response).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["code"], "SUCCESS", "{reply}");
        assert_eq!(question, Some(json!({"caller": expected, "call_id": "5A0F1C2D3E4F"})));
    }
    for (body, message) in [
        (json!({"caller_jid": "60191000001@s.whatsapp.net"}), "call_id"),
        (json!({"call_id": "5A0F1C2D3E4F"}), "caller_jid"),
        (
            json!({"caller_jid": "120363025982934543@g.us", "call_id": "5A0F1C2D3E4F"}),
            "not a person's chat",
        ),
    ] {
        let response = post(&app, &send, "Shop", "/call/reject", body).await;
        expect_error(response, StatusCode::BAD_REQUEST, message).await;
    }
    assert_eq!(crate::actions::count(&app, "device_requests").await, 3);
}

/// `GET /user/info?phone=…` for `device`, as an upstream client calls it.
async fn user_info(app: &TestApp, token: &str, device: &str, phone: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url("/user/info"))
        .query(&[("phone", phone)])
        .basic_auth("admin", Some(token))
        .header("X-Device-Id", device)
        .send()
        .await
        .unwrap()
}

async fn a_profile_is_read_through_the_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let bos = bo.add_device("Bo's", None).await;
    let read = token(&ana, json!(["read"])).await;

    // Offline: nothing is asked of a session.
    let response = user_info(&app, &read, "Shop", "60191000001").await;
    expect_error(response, StatusCode::CONFLICT, "only while it is online").await;
    assert!(app.db.pending_device_requests().await.unwrap().is_empty());

    linked(&app, shop).await;
    let profile = json!({
        "jid": "60191000001@s.whatsapp.net",
        "about": "Cakes to order",
        "picture_id": "1651459152",
        "verified_name": "Kedai Aisyah",
        "devices": [0, 3],
    })
    .to_string();
    let (response, question) = tokio::join!(
        user_info(&app, &read, "Shop", "60191000001@s.whatsapp.net"),
        answer_with(&app, shop, "user_info", &profile)
    );
    assert_eq!(question, Some(json!({"phone": "+60191000001"})), "the number, in E.164");
    assert_eq!(response.status(), StatusCode::OK);
    let got = body(response).await;
    assert_eq!(got["code"], "SUCCESS");
    assert_eq!(
        got["results"],
        json!({
            "verified_name": "Kedai Aisyah",
            "status": "Cakes to order",
            "picture_id": "1651459152",
            "devices": [
                {"User": "60191000001", "Agent": 0, "Device": "0", "Server": "s.whatsapp.net", "AD": true},
                {"User": "60191000001", "Agent": 0, "Device": "3", "Server": "s.whatsapp.net", "AD": true},
            ],
        })
    );

    // A profile that shows nothing: empty strings, as upstream answers.
    let bare = json!({"jid": "60191000002@s.whatsapp.net", "about": null, "picture_id": null,
                      "verified_name": null, "devices": [0]})
    .to_string();
    let (response, _) = tokio::join!(
        user_info(&app, &read, "Shop", "+60191000002"),
        answer_with(&app, shop, "user_info", &bare)
    );
    let got = body(response).await;
    assert_eq!(
        (
            &got["results"]["status"],
            &got["results"]["verified_name"],
            &got["results"]["picture_id"]
        ),
        (&json!(""), &json!(""), &json!(""))
    );

    // A number without WhatsApp is the caller's mistake, said so.
    let (response, _) = tokio::join!(
        user_info(&app, &read, "Shop", "60129990000"),
        answer_with(&app, shop, "user_info", "null")
    );
    expect_error(response, StatusCode::BAD_REQUEST, "+60129990000 is not on WhatsApp").await;

    // Bad input never reaches the session.
    for bad in ["", "nope", "120363999@g.us"] {
        let response = user_info(&app, &read, "Shop", bad).await;
        expect_error(response, StatusCode::BAD_REQUEST, "phone").await;
    }
    // Another user's device is not found, and nothing is asked of it.
    let response = user_info(&app, &read, &bos.to_string(), "60191000001").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(app.db.pending_device_requests().await.unwrap().is_empty());
}

async fn privacy_settings_are_read_through_the_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let read = token(&ana, json!(["read"])).await;
    let get = || {
        reqwest::Client::new()
            .get(app.url("/user/my/privacy"))
            .basic_auth("admin", Some(read.as_str()))
            .header("X-Device-Id", "Shop")
            .send()
    };

    let response = get().await.unwrap();
    expect_error(response, StatusCode::CONFLICT, "only while it is online").await;

    linked(&app, shop).await;
    // WhatsApp's category names become upstream's fields; one it did not report is null.
    let settings = json!({"groupadd": "contacts", "last": "none", "profile": "all",
                          "readreceipts": "none", "online": "match_last_seen"})
    .to_string();
    let (response, question) = tokio::join!(get(), answer_with(&app, shop, "privacy", &settings));
    assert_eq!(question, Some(json!({})));
    assert_eq!(response.as_ref().map(|r| r.status()).ok(), Some(StatusCode::OK));
    let got = body(response.unwrap()).await;
    assert_eq!(got["message"], "Success get privacy");
    assert_eq!(
        got["results"],
        json!({"group_add": "contacts", "last_seen": "none", "status": null, "profile": "all",
               "read_receipts": "none"})
    );
}

async fn a_profile_picture_is_found_through_the_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    linked(&app, shop).await;
    let read = token(&ana, json!(["read"])).await;
    let get = |query: &'static str| {
        reqwest::Client::new()
            .get(app.url(&format!("/user/avatar?{query}")))
            .basic_auth("admin", Some(read.as_str()))
            .header("X-Device-Id", "Shop")
            .send()
    };

    let picture =
        json!({"id": "1651459152", "url": "https://pps.whatsapp.net/v/t61/1.jpg", "preview": true}).to_string();
    let (response, question) = tokio::join!(
        get("phone=60191000001&is_preview=true"),
        answer_with(&app, shop, "profile_picture", &picture)
    );
    assert_eq!(question, Some(json!({"phone": "+60191000001", "preview": true})));
    let got = body(response.unwrap()).await;
    assert_eq!(
        got["results"],
        json!({"url": "https://pps.whatsapp.net/v/t61/1.jpg", "id": "1651459152", "type": "preview"})
    );

    // The full picture unless a preview is asked for; none is 404, said so.
    let (response, question) = tokio::join!(
        get("phone=60191000002"),
        answer_with(&app, shop, "profile_picture", "null")
    );
    assert_eq!(question, Some(json!({"phone": "+60191000002", "preview": false})));
    expect_error(response.unwrap(), StatusCode::NOT_FOUND, "profile picture not found").await;

    // A community is a group: refused before anything is asked.
    let response = get("phone=60191000001&is_community=true").await.unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "personal chats only").await;
    let response = get("phone=60191000001&is_preview=maybe").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(app.db.pending_device_requests().await.unwrap().is_empty());
}

async fn the_accounts_picture_is_changed_through_the_session(app: TestApp) {
    use base64::Engine;
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    linked(&app, shop).await;
    let manage = token(&ana, json!(["manage"])).await;
    let upload = |bytes: Vec<u8>, field: &'static str| {
        let form =
            reqwest::multipart::Form::new().part(field, reqwest::multipart::Part::bytes(bytes).file_name("me.png"));
        reqwest::Client::new()
            .post(app.url("/user/avatar"))
            .basic_auth("admin", Some(manage.as_str()))
            .header("X-Device-Id", "Shop")
            .multipart(form)
            .send()
    };

    // A wide photo: its middle square goes to the session, as a JPEG.
    let (response, question) = tokio::join!(
        upload(crate::compat::png(1000, 500), "avatar"),
        answer_with(&app, shop, "set_profile_picture", "\"1651459154\"")
    );
    let got = body(response.unwrap()).await;
    assert_eq!(
        (&got["code"], &got["message"]),
        (&json!("SUCCESS"), &json!("Success change avatar"))
    );
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(question.unwrap()["jpeg"].as_str().unwrap())
        .unwrap();
    assert_eq!(image::guess_format(&jpeg).unwrap(), image::ImageFormat::Jpeg);
    let picture = image::load_from_memory(&jpeg).unwrap();
    assert_eq!((picture.width(), picture.height()), (500, 500));

    // Not an image, or no file: refused before anything is asked.
    let response = upload(b"not a picture".to_vec(), "avatar").await.unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "avatar: not an image").await;
    let response = upload(b"60191000001".to_vec(), "phone").await.unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "attach the picture").await;
    assert!(app.db.pending_device_requests().await.unwrap().is_empty());

    // Changing the account is for tokens that may manage it.
    let read = token(&ana, json!(["read", "send"])).await;
    let form =
        reqwest::multipart::Form::new().part("avatar", reqwest::multipart::Part::bytes(crate::compat::png(10, 10)));
    let response = reqwest::Client::new()
        .post(app.url("/user/avatar"))
        .basic_auth("admin", Some(read.as_str()))
        .header("X-Device-Id", "Shop")
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::FORBIDDEN, "manage").await;
}

async fn a_business_profile_is_read_through_the_session(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    linked(&app, shop).await;
    let read = token(&ana, json!(["read"])).await;
    let get = |phone: &'static str| {
        reqwest::Client::new()
            .get(app.url("/user/business-profile"))
            .query(&[("phone", phone)])
            .basic_auth("admin", Some(read.as_str()))
            .header("X-Device-Id", "Shop")
            .send()
    };
    let profile = json!({
        "description": "Cakes to order", "email": "kedai@example.com", "address": "12 Jalan Bunga",
        "websites": ["https://kedai.example.com", "https://cakes.example.com"],
        "categories": [{"id": "196", "name": "Bakery"}],
        "hours_timezone": "Asia/Kuala_Lumpur",
        "hours": [{"day": "mon", "mode": "specific_hours", "open_minute": 540, "close_minute": 1050},
                  {"day": "sun", "mode": "open_24h", "open_minute": null, "close_minute": null}],
    })
    .to_string();
    let (response, question) = tokio::join!(
        get("60191000001@s.whatsapp.net"),
        answer_with(&app, shop, "business_profile", &profile)
    );
    assert_eq!(question, Some(json!({"phone": "+60191000001"})));
    let got = body(response.unwrap()).await;
    assert_eq!(
        got["results"],
        json!({
            "jid": "60191000001@s.whatsapp.net", "email": "kedai@example.com", "address": "12 Jalan Bunga",
            "categories": [{"id": "196", "name": "Bakery"}],
            "profile_options": {"website": "https://kedai.example.com", "description": "Cakes to order"},
            "business_hours_timezone": "Asia/Kuala_Lumpur",
            "business_hours": [
                {"day_of_week": "monday", "mode": "specific_hours", "open_time": "09:00", "close_time": "17:30"},
                {"day_of_week": "sunday", "mode": "open_24h", "open_time": null, "close_time": null},
            ],
        })
    );
    let (response, _) = tokio::join!(get("60191000002"), answer_with(&app, shop, "business_profile", "null"));
    expect_error(response.unwrap(), StatusCode::NOT_FOUND, "business profile not found").await;
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => a_business_profile_is_read_through_the_session, the_accounts_picture_is_changed_through_the_session, a_profile_picture_is_found_through_the_session, a_received_message_is_marked_read_through_the_session, typing_is_shown_through_the_session, reactions_edits_and_deletions_go_through_the_session, chat_settings_go_through_the_session, a_call_is_declined_through_the_session, a_profile_is_read_through_the_session, privacy_settings_are_read_through_the_session);
