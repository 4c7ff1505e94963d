//! The worker end to end with the real WhatsApp client: the API and `wafleet_workers::run` with
//! the whatsapp-rust link (`WaLink`, session state in our database) pointed at the simulator's WhatsApp
//! Web front end over real sockets, on SQLite and on PostgreSQL. One device links by QR code and
//! one by pair code; a new worker resumes both without pairing; text and images go both ways;
//! a received message is marked read and "typing…" shown through the upstream API; sends follow delivered and read
//! receipts; a logout from the phone shows on the device.
//!
//! Everything here runs against the project's simulator, never real WhatsApp.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use wafleet_core::Db;
use wafleet_core::link::{ChatSetting, Jid, MessageRef};
use wafleet_core::testing::Backend;
use wafleet_sim::waweb::WaWebHandle;

/// API + worker + the front end, for the real whatsapp-rust client.
type Stack = support::stack::StackOn<WaWebHandle>;

/// A PNG of 600 x 400, base64-encoded.
fn png_base64() -> String {
    use base64::Engine;
    let image = image::RgbImage::from_fn(600, 400, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The LID → number mappings wafleet keeps for `device`.
async fn lid_mappings(db: &Db, device: i64) -> Vec<(String, String)> {
    const SQL: &str = "SELECT lid, phone_jid FROM lid_mappings WHERE device_id = $1 ORDER BY lid";
    match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).bind(device).fetch_all(pool).await,
        Db::Postgres(pool) => sqlx::query_as(SQL).bind(device).fetch_all(pool).await,
    }
    .unwrap()
}

async fn two_devices_pair_resume_talk_and_log_out(backend: Backend) {
    let mut stack = Stack::start(backend).await;
    let (qr_phone, code_phone, contact) = ("60123400001", "60123400002", "60191000001");
    stack.sim.add_account(contact);

    // One device links by QR code: the phone scans what the API shows.
    let by_qr = stack.add_device("By QR", &format!("+{qr_phone}")).await;
    let (status, body) = stack.post(&format!("{by_qr}/qr"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut code = body["results"]["qr_code"].as_str().unwrap().to_owned();
    while let Err(err) = stack.sim.scan(&code, qr_phone) {
        // Replaced meanwhile: scan the newest one.
        let fresh = stack
            .eventually(&format!("{by_qr}/qr"), "a newer QR code", |v| {
                v["qr_code"].as_str().is_some_and(|c| c != code)
            })
            .await;
        tracing::info!(%err, "scanning a newer QR code");
        code = fresh["qr_code"].as_str().unwrap().to_owned();
    }
    let online = stack
        .eventually(&by_qr, "online by QR", |d| d["status"] == "online")
        .await;
    assert_eq!(online["jid"], format!("{qr_phone}@s.whatsapp.net"));

    // The other by pair code: the phone types the code the API shows.
    let by_code = stack.add_device("By code", &format!("+{code_phone}")).await;
    let (status, body) = stack.post(&format!("{by_code}/pair-code"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pair_code = body["results"]["pair_code"].as_str().unwrap().to_owned();
    assert_eq!((pair_code.len(), pair_code.as_bytes()[4]), (9, b'-'), "{pair_code}");
    stack
        .sim
        .enter_code(code_phone, &pair_code)
        .await
        .expect("the phone types the code");
    let online = stack
        .eventually(&by_code, "online by code", |d| d["status"] == "online")
        .await;
    assert_eq!(online["jid"], format!("{code_phone}@s.whatsapp.net"));
    let linked = vec![
        format!("{qr_phone}:1@s.whatsapp.net"),
        format!("{code_phone}:1@s.whatsapp.net"),
    ];
    // The client may log in once more right after pairing: wait for both logins to settle.
    for _ in 0..100 {
        if stack.sim.logged_in() == linked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stack.sim.logged_in(), linked);

    // A new worker with a fresh link resumes both from the stored state: no pairing.
    stack.stop_worker().await;
    // The client's close returns before the front end has read the socket's end.
    for _ in 0..100 {
        if stack.sim.logged_in().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stack.sim.logged_in().is_empty(), "the old worker closed its sessions");
    stack
        .sim
        .send_text(contact, qr_phone, "sent while no worker ran")
        .await
        .unwrap();
    stack.start_worker();
    // The same devices log in again, not new ones.
    for _ in 0..300 {
        if stack.sim.logged_in() == linked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stack.sim.logged_in(), linked, "both devices logged in again");
    for device in [&by_qr, &by_code] {
        stack
            .eventually(device, "online again", |d| d["status"] == "online")
            .await;
    }
    assert!(stack.sim.pairing_refs().is_empty(), "nothing pairs again");

    // Incoming text and image are stored and visible through the chat views.
    let hello = stack
        .sim
        .send_text(contact, qr_phone, "hello from a person")
        .await
        .unwrap();
    stack
        .sim
        .send_image(contact, qr_phone, &[0xFF, 0xD8, 0xFF, 0xD9], "a photo")
        .await
        .unwrap();
    let chat = format!("{contact}@s.whatsapp.net");
    let messages = stack
        .eventually(&format!("{by_qr}/messages/{chat}"), "three incoming messages", |m| {
            // The messages themselves: the chat's preview may already name the last one.
            let text = m["messages"].to_string();
            ["sent while no worker ran", "hello from a person", "a photo"]
                .iter()
                .all(|t| text.contains(t))
        })
        .await;
    assert!(messages.to_string().contains("\"kind\":\"image\""), "{messages}");
    assert!(
        stack.sim.receipts_for(&hello).contains(&"delivery".to_owned()),
        "the device told the phone it got the message"
    );
    let chats = stack.get(&format!("{by_qr}/chats")).await;
    assert!(chats.to_string().contains(&chat), "{chats}");
    assert!(chats["chats"][0]["unread_count"].as_i64() > Some(0), "{chats}");

    // Marked read through the upstream API: the client sends the read receipt to the phone.
    assert!(
        !stack.sim.receipts_for(&hello).contains(&"read".to_owned()),
        "not read yet"
    );
    let (_, token) = stack.post("/api/tokens", json!({"name": "gowa"})).await;
    let response = reqwest::Client::new()
        .post(format!("{}/message/{hello}/read", stack.base))
        .bearer_auth(token["results"]["token"].as_str().unwrap())
        .header("X-Device-Id", by_qr.rsplit('/').next().unwrap())
        .json(&json!({"phone": contact}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"]["message_id"], hello.as_str());
    // The receipt is a frame the client sends without waiting for an answer, so it can reach
    // the phone a moment after the API answered.
    wafleet_core::testing::eventually(Duration::from_secs(10), "the phone got the read receipt", async || {
        stack.sim.receipts_for(&hello).contains(&"read".to_owned())
    })
    .await;
    let chats = stack.get(&format!("{by_qr}/chats")).await;
    assert_eq!(chats["chats"][0]["unread_count"], 0, "{chats}");
    // And "typing…" shows in the chat, then stops.
    for action in ["start", "stop"] {
        let response = reqwest::Client::new()
            .post(format!("{}/send/chat-presence", stack.base))
            .bearer_auth(token["results"]["token"].as_str().unwrap())
            .header("X-Device-Id", by_qr.rsplit('/').next().unwrap())
            .json(&json!({"phone": contact, "action": action}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{action}");
    }
    assert_eq!(
        stack.sim.chat_states(qr_phone),
        [(chat.clone(), true), (chat.clone(), false)],
        "the phone saw the typing indicator start and stop"
    );

    // Outgoing text and image through the send path, followed by delivered and read receipts.
    let mut policy = stack.get(&format!("{by_qr}/pacing")).await["policy"].clone();
    policy["enabled"] = json!(false);
    let (status, body) = stack
        .call(reqwest::Method::PUT, &format!("{by_qr}/pacing"), Some(policy))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = stack
        .send(
            &by_qr,
            "order-1",
            json!({"to": format!("+{contact}"), "text": "your order shipped"}),
        )
        .await;
    let image = stack
        .send(
            &by_qr,
            "photo-1",
            json!({"to": format!("+{contact}"), "text": "the catalogue", "image_base64": png_base64()}),
        )
        .await;
    // The phone reports delivery, then reading; the send ends `read` only through both.
    for path in [&text, &image] {
        let read = stack.eventually(path, "read", |m| m["status"] == "read").await;
        assert!(
            read["wa_message_id"].is_string() && read["sent_at"].is_string(),
            "{read}"
        );
    }
    // On the way the client learned the contact's LID from WhatsApp's answer about the number
    // (usync): wafleet keeps it, so that a message from that LID lands in this chat.
    let device: i64 = by_qr.rsplit('/').next().unwrap().parse().unwrap();
    let lid = format!("{}@lid", wafleet_sim::protocol::lid_of(contact));
    let contacts = (lid, format!("{contact}@s.whatsapp.net"));
    let mut known = Vec::new();
    for _ in 0..100 {
        known = lid_mappings(&stack.db.db, device).await;
        if known.contains(&contacts) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(known.contains(&contacts), "{known:?}");

    // Through the upstream API: a reaction to the contact's message, and the text deleted for
    // everyone; the phone gets both, each naming its message.
    let shipped = stack.get(&text).await["wa_message_id"].as_str().unwrap().to_owned();
    for (path, body) in [
        (
            format!("/message/{hello}/reaction"),
            json!({"phone": contact, "emoji": "👍"}),
        ),
        (format!("/message/{shipped}/revoke"), json!({"phone": contact})),
    ] {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", stack.base))
            .bearer_auth(token["results"]["token"].as_str().unwrap())
            .header("X-Device-Id", by_qr.rsplit('/').next().unwrap())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let sent = stack.sim.sent(qr_phone);
    let acted: Vec<_> = sent
        .iter()
        .filter(|m| m.kind == "reaction" || m.kind == "revoke")
        .map(|m| (m.kind.as_str(), m.target.as_deref(), m.text.as_deref()))
        .collect();
    assert_eq!(
        acted,
        [
            ("reaction", Some(hello.as_str()), Some("👍")),
            ("revoke", Some(shipped.as_str()), None)
        ]
    );

    // The account's own settings of the chat: the contact's message starred, the chat archived
    // (app state the phone reads), and a week's disappearing timer (a message in the chat).
    // wafleet lists the chat as archived, with its timer, once WhatsApp took them.
    for (path, body) in [
        (format!("/message/{hello}/star"), json!({"phone": contact})),
        (format!("/chat/{chat}/archive"), json!({"archived": true})),
        (format!("/chat/{chat}/disappearing"), json!({"timer_seconds": 604_800})),
    ] {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", stack.base))
            .bearer_auth(token["results"]["token"].as_str().unwrap())
            .header("X-Device-Id", by_qr.rsplit('/').next().unwrap())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let hello_ref = MessageRef {
        id: hello.clone(),
        from_me: false,
    };
    assert_eq!(
        stack.sim.chat_settings(qr_phone),
        [
            (
                Jid(chat.clone()),
                ChatSetting::Starred {
                    message: hello_ref,
                    starred: true
                }
            ),
            (Jid(chat.clone()), ChatSetting::Archived { archived: true }),
        ],
        "the phone read the star and the archive"
    );
    assert!(
        stack
            .sim
            .sent(qr_phone)
            .iter()
            .any(|m| m.kind == "disappearing" && m.text.as_deref() == Some("604800")),
        "the chat got the timer"
    );
    for archived in [true, false] {
        let chats = reqwest::Client::new()
            .get(format!("{}/chats?archived={archived}", stack.base))
            .bearer_auth(token["results"]["token"].as_str().unwrap())
            .header("X-Device-Id", by_qr.rsplit('/').next().unwrap())
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        let data = chats["results"]["data"].as_array().unwrap();
        let listed = data.iter().find(|c| c["jid"] == chat.as_str());
        assert_eq!(listed.is_some(), archived, "archived={archived}: {chats}");
        if let Some(listed) = listed {
            assert_eq!(listed["archived"], true, "{listed}");
            assert_eq!(listed["ephemeral_expiration"], 604_800, "{listed}");
        }
    }

    let texts: Vec<_> = sent
        .iter()
        .filter(|m| m.text.as_deref() == Some("your order shipped"))
        .collect();
    assert_eq!(texts.len(), 1, "sent exactly once: {sent:?}");
    let photo = sent
        .iter()
        .find(|m| m.text.as_deref() == Some("the catalogue"))
        .expect("the image reached the phone");
    let jpeg = stack.sim.media_bytes(photo).expect("the phone decrypts the image");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "re-encoded as JPEG");

    // The phone unlinks the pair-code device: it shows logged out, and the other stays online.
    assert_eq!(stack.sim.logout(code_phone), 1);
    stack
        .eventually(&by_code, "logged out", |d| d["status"] == "logged_out")
        .await;
    assert_eq!(stack.get(&by_qr).await["status"], "online");
    let (status, body) = stack
        .post(&format!("{by_code}/check"), json!({"phones": [format!("+{contact}")]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

wafleet_core::testing::on_both_backends!(two_devices_pair_resume_talk_and_log_out);
