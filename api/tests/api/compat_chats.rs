//! The upstream REST API's `GET /chats` and `GET /chat/{chat_jid}/messages`: numbered pages with
//! a total, its filters, its field names, and nobody else's chats; `GET /user/my/contacts`; and
//! `/app/passkey`, where no request is ever pending.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_core::link::MessageKind;
use wafleet_core::types::DeviceId;

use crate::chat_view::{hold, store, text};
use crate::device_webhooks::token;
use crate::helpers::{TestApp, body, expect_error};

/// `GET path` as an upstream client does for device `device`.
async fn get(app: &TestApp, token: &str, device: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url(path))
        .bearer_auth(token)
        .header("X-Device-Id", device)
        .send()
        .await
        .unwrap()
}

/// The `results` of a 200 in the upstream envelope.
async fn results(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    let reply = body(response).await;
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["code"], "SUCCESS");
    reply["results"].clone()
}

async fn chats_and_messages_page_by_offset_with_filters(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let bos = bo.add_device("Bo's", None).await;
    let fence = hold(&app, "ana@example.com", shop).await;
    let mut photo = text("P1", "60111000003", false, Some("Chandra"), "look at this", 5_000);
    photo.kind = MessageKind::Image;
    store(
        &app,
        fence,
        vec![
            text("A1", "60111000001", false, Some("Aisyah"), "hello there", 1_000),
            text("A2", "60111000001", true, None, "hi Aisyah, welcome", 2_000),
            text("A3", "60111000001", false, Some("Aisyah"), "price please", 3_000),
            text("B1", "60111000002", false, Some("Ben"), "hello", 4_000),
            photo,
        ],
    )
    .await;
    let manage = token(&ana, json!(["read", "send", "manage"])).await;

    let all = results(get(&app, &manage, "Shop", "/chats").await).await;
    assert_eq!(all["pagination"], json!({"limit": 25, "offset": 0, "total": 3}));
    let names: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Chandra", "Ben", "Aisyah"], "most recent first");
    let aisyah = &all["data"][2];
    assert_eq!(aisyah["jid"], "60111000001@s.whatsapp.net");
    assert_eq!(aisyah["archived"], false);
    assert_eq!(aisyah["ephemeral_expiration"], 0);
    assert_eq!(aisyah["created_at"], "1970-01-01T00:00:01.000Z", "its first message");
    assert_eq!(aisyah["last_message_time"], "1970-01-01T00:00:03.000Z");

    let second = results(get(&app, &manage, "Shop", "/chats?limit=1&offset=1").await).await;
    assert_eq!(second["data"][0]["name"], "Ben");
    assert_eq!(second["pagination"], json!({"limit": 1, "offset": 1, "total": 3}));
    let found = results(get(&app, &manage, "Shop", "/chats?search=AIS").await).await;
    assert_eq!(found["pagination"]["total"], 1);
    let media = results(get(&app, &manage, "Shop", "/chats?has_media=true").await).await;
    assert_eq!(media["data"][0]["name"], "Chandra");
    assert_eq!(media["pagination"]["total"], 1);
    let archived = results(get(&app, &manage, "Shop", "/chats?archived=true").await).await;
    assert_eq!(archived["pagination"]["total"], 0, "wafleet archives nothing");
    for bad in [
        "/chats?limit=0",
        "/chats?limit=101",
        "/chats?offset=-1",
        "/chats?limit=many",
    ] {
        let response = get(&app, &manage, "Shop", bad).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    let path = "/chat/60111000001@s.whatsapp.net/messages";
    let messages = results(get(&app, &manage, &shop.to_string(), path).await).await;
    assert_eq!(messages["pagination"], json!({"limit": 50, "offset": 0, "total": 3}));
    let ids: Vec<&str> = messages["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A3", "A2", "A1"], "newest first");
    let mine = &messages["data"][1];
    assert_eq!(mine["is_from_me"], true);
    assert_eq!(
        mine["sender_display_name"], "Shop",
        "the device's name for its own messages"
    );
    assert_eq!(mine["content"], "hi Aisyah, welcome");
    assert!(mine["media_type"].is_null());
    assert_eq!(messages["data"][0]["sender_display_name"], "Aisyah");
    assert_eq!(messages["chat_info"]["jid"], "60111000001@s.whatsapp.net");
    assert_eq!(messages["chat_info"]["created_at"], "1970-01-01T00:00:01.000Z");

    let theirs = results(get(&app, &manage, "Shop", &format!("{path}?is_from_me=false")).await).await;
    assert_eq!(theirs["pagination"]["total"], 2);
    let between = "?start_time=1970-01-01T00:00:02Z&end_time=1970-01-01T00:00:03Z&limit=1&offset=1";
    let window = results(get(&app, &manage, "Shop", &format!("{path}{between}")).await).await;
    assert_eq!(window["pagination"]["total"], 2);
    assert_eq!(window["data"][0]["id"], "A2");
    let searched = results(get(&app, &manage, "Shop", &format!("{path}?search=PRICE")).await).await;
    assert_eq!(searched["data"][0]["id"], "A3");
    assert_eq!(searched["pagination"]["total"], 1);
    let photos = "/chat/60111000003@s.whatsapp.net/messages?media_only=true&is_from_me=true";
    let photos = results(get(&app, &manage, "Shop", photos).await).await;
    assert_eq!(
        photos["data"][0]["media_type"], "image",
        "media only wins over the sender filter"
    );

    let response = get(&app, &manage, "Shop", &format!("{path}?start_time=yesterday")).await;
    expect_error(response, StatusCode::BAD_REQUEST, "start_time").await;
    let response = get(&app, &manage, "Shop", "/chat/60199999999@s.whatsapp.net/messages").await;
    expect_error(response, StatusCode::NOT_FOUND, "chat").await;
    // Nobody else's device or chats.
    let response = get(&app, &manage, &bos.to_string(), "/chats").await;
    expect_error(response, StatusCode::NOT_FOUND, "device").await;
    let bo_token = token(&bo, json!(["read"])).await;
    let response = get(&app, &bo_token, &shop.to_string(), path).await;
    expect_error(response, StatusCode::NOT_FOUND, "device").await;
    let own = results(get(&app, &bo_token, "Bo's", "/chats").await).await;
    assert_eq!(own["pagination"]["total"], 0);
}

async fn contacts_are_the_address_book_and_the_chats(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let bo = app.session("bo@example.com").await;
    let shop = ana.add_device("Shop", Some("+60123456789")).await;
    let other = ana.add_device("Other", None).await;
    let bos = bo.add_device("Bo's", None).await;
    let fence = hold(&app, "ana@example.com", shop).await;
    store(
        &app,
        fence,
        vec![
            text("A1", "60111000001", false, Some("Aisyah"), "hello", 1_000),
            text("B1", "60111000002", false, Some("Ben"), "hello", 2_000),
            text("C1", "60111000003", false, None, "hello", 3_000),
        ],
    )
    .await;
    let jid = |n: &str| wafleet_core::link::Jid(format!("{n}@s.whatsapp.net"));
    // The phone saved Ben under another name, and someone it never chatted with.
    app.db
        .set_contact_name(DeviceId(shop), &jid("60111000002"), "Ben (bakery)")
        .await
        .unwrap();
    app.db
        .set_contact_name(DeviceId(shop), &jid("60111000009"), "Zed")
        .await
        .unwrap();
    app.db
        .set_contact_name(DeviceId(other), &jid("60111000008"), "Other's")
        .await
        .unwrap();
    let read = token(&ana, json!(["read"])).await;

    let response = get(&app, &read, "Shop", "/user/my/contacts").await;
    assert_eq!(response.status(), StatusCode::OK);
    let reply = body(response).await;
    assert_eq!(reply["code"], "SUCCESS");
    assert_eq!(
        reply["results"]["data"],
        json!([
            {"jid": "60111000003@s.whatsapp.net", "name": ""},
            {"jid": "60111000001@s.whatsapp.net", "name": "Aisyah"},
            {"jid": "60111000002@s.whatsapp.net", "name": "Ben (bakery)"},
            {"jid": "60111000009@s.whatsapp.net", "name": "Zed"},
        ]),
        "saved names over push names, each person once, by name; the other device's contacts not"
    );
    // Nobody else's device.
    let bo_token = token(&bo, json!(["read"])).await;
    let response = get(&app, &bo_token, &shop.to_string(), "/user/my/contacts").await;
    expect_error(response, StatusCode::NOT_FOUND, "device").await;
    let response = get(&app, &bo_token, &bos.to_string(), "/user/my/contacts").await;
    assert_eq!(body(response).await["results"]["data"], json!([]));
}

async fn no_passkey_request_is_ever_pending(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", None).await;
    let manage = token(&ana, json!(["read", "send", "manage"])).await;
    let reply = body(get(&app, &manage, "Shop", "/app/passkey").await).await;
    assert_eq!(
        reply["results"],
        json!({"device_id": shop.to_string(), "status": "none", "challenge": null})
    );
    for path in ["/app/passkey/response", "/app/passkey/confirm"] {
        let response = reqwest::Client::new()
            .post(app.url(path))
            .bearer_auth(&manage)
            .header("X-Device-Id", "Shop")
            .json(&json!({"id": "Y3JlZA", "type": "public-key"}))
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, "no passkey request is pending").await;
    }
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => chats_and_messages_page_by_offset_with_filters, contacts_are_the_address_book_and_the_chats, no_passkey_request_is_ever_pending);
