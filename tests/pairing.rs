//! The session layer end to end: the real API and a real worker with the simulator's client link,
//! against an in-process simulator over real sockets, on SQLite and on PostgreSQL.
//!
//! Everything here runs against the project's WhatsApp network simulator, never real WhatsApp.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::stack::Stack;
use wafleet_core::testing::Backend;

async fn pair_by_qr_receive_check_and_survive_a_worker_restart(backend: Backend) {
    let mut stack = Stack::start(backend).await;
    let (status, added) = stack
        .post("/api/devices", json!({"name": "Sales", "phone": "+60123456789"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = added["results"]["id"].as_i64().unwrap();
    let device = format!("/api/devices/{id}");

    let (status, qr) = stack.post(&format!("{device}/qr"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{qr}");
    let code = qr["results"]["qr_code"].as_str().unwrap().to_owned();
    assert!(
        qr["results"]["qr_svg"].as_str().unwrap().starts_with("<?xml"),
        "the QR code comes rendered as SVG"
    );
    // The QR code refreshes while nobody scans it.
    let refreshed = stack
        .eventually(&format!("{device}/qr"), "a new QR code", |v| {
            v["qr_code"].as_str().is_some_and(|c| c != code)
        })
        .await;
    let code = refreshed["qr_code"].as_str().unwrap().to_owned();

    stack
        .sim
        .control()
        .scan(&code, "+60123456789")
        .await
        .expect("the simulated phone scans");
    let online = stack
        .eventually(&device, "device online", |d| d["status"] == "online")
        .await;
    assert_eq!(online["jid"], "60123456789@s.whatsapp.net");
    assert!(online["last_seen_at"].is_string());

    // Personal messages are stored, group and status messages are not.
    let control = stack.sim.control();
    control
        .inject_text("+60123456789", "+60191000001", "hello from a person")
        .await
        .unwrap();
    for chat in [
        wafleet_sim::control::ChatKind::Group,
        wafleet_sim::control::ChatKind::Status,
    ] {
        let message = wafleet_sim::control::InjectMessage {
            to: "+60123456789".into(),
            from: "+60191000002".into(),
            chat,
            text: Some("not personal".into()),
            kind: None,
            push_name: None,
            media: None,
        };
        control.inject(&message).await.unwrap();
    }
    control
        .inject_text("+60123456789", "+60191000003", "a second person")
        .await
        .unwrap();
    let chats = stack
        .eventually(&format!("{device}/chats"), "two personal chats", |c| {
            c["chats"].as_array().unwrap().len() == 2
        })
        .await;
    let text = chats.to_string();
    assert!(
        text.contains("hello from a person") && text.contains("a second person"),
        "{text}"
    );
    assert!(
        !text.contains("not personal"),
        "group and status messages never reach storage: {text}"
    );

    // The worker's metrics say what it holds and stored (same process, same recorder).
    let metrics = stack
        .client
        .get(format!("{}/metrics", stack.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wafleet_sessions_held{") && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(metrics.contains("wafleet_messages_stored_total"), "{metrics}");
    assert!(metrics.contains("wafleet_leases_claimed_total{"), "{metrics}");

    // Numbers: the simulator says which have accounts.
    control
        .set_number(&wafleet_sim::control::NumberRule {
            phone: "+60129990000".into(),
            on_whatsapp: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, checked) = stack
        .post(
            &format!("{device}/check"),
            json!({"phones": ["+60129990000", "0191000001"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    assert!(checked["results"][0]["jid"].is_null(), "not on WhatsApp: {checked}");
    assert_eq!(checked["results"][1]["jid"], "60191000001@s.whatsapp.net");

    // A new worker (another process) resumes the session from the stored credentials, no pairing.
    stack.stop_worker().await;
    control
        .inject_text("+60123456789", "+60191000004", "sent while no worker held the device")
        .await
        .unwrap();
    stack.start_worker();
    let chats = stack
        .eventually(&format!("{device}/chats"), "the queued message after restart", |c| {
            c["chats"].as_array().unwrap().len() == 3
        })
        .await;
    assert!(chats.to_string().contains("sent while no worker held the device"));
    assert_eq!(stack.get(&device).await["status"], "online");

    // Remote logout (from the phone): the device shows it and needs pairing again.
    control.logout("+60123456789").await.unwrap();
    stack
        .eventually(&device, "logged out", |d| d["status"] == "logged_out")
        .await;
    let (status, body) = stack
        .post(&format!("{device}/check"), json!({"phones": ["+60191000001"]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

async fn pair_by_code_then_log_out_from_wafleet(backend: Backend) {
    let stack = Stack::start(backend).await;
    let (_, added) = stack
        .post("/api/devices", json!({"name": "Support", "phone": "+60123450000"}))
        .await;
    let device = format!("/api/devices/{}", added["results"]["id"].as_i64().unwrap());
    let (status, body) = stack.post(&format!("{device}/pair-code"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code = body["results"]["pair_code"].as_str().unwrap().to_owned();
    assert!(
        code.len() == 9
            && code.as_bytes()[4] == b'-'
            && code.chars().filter(|c| *c != '-').all(|c| c.is_ascii_alphanumeric()),
        "pair codes look like 6ZPJ-KFNJ: {code}"
    );
    stack.sim.control().confirm_pair_code(&code).await.unwrap();
    stack
        .eventually(&device, "online after the code", |d| d["status"] == "online")
        .await;

    let (status, _) = stack.post(&format!("{device}/logout"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    stack
        .eventually(&device, "logged out by its owner", |d| d["status"] == "logged_out")
        .await;
    // Its credentials are gone: reconnecting cannot work, and says to link it again.
    let (status, body) = stack.post(&format!("{device}/reconnect"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("log in")), "{body}");
    assert_eq!(stack.get(&device).await["status"], "logged_out");
}

/// A PNG of `width` x `height`, base64-encoded.
fn png_base64(width: u32, height: u32) -> String {
    use base64::Engine;
    // Photo-like: a gradient with grain, which PNG stores poorly and JPEG well.
    let mut seed = 0x2545_f491_u32;
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let grain = (seed % 24) as u8;
        image::Rgb([(x / 10 % 200) as u8 + grain, (y / 8 % 200) as u8 + grain, 90 + grain])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn sends_go_out_once_per_key_and_follow_receipts(backend: Backend) {
    let mut stack = Stack::start(backend).await;
    let phone = "+60123457777";
    let (_, added) = stack
        .post("/api/devices", json!({"name": "Sender", "phone": phone}))
        .await;
    let id = added["results"]["id"].as_i64().unwrap();
    let device = format!("/api/devices/{id}");
    let (status, body) = stack.post(&format!("{device}/pair-code"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code = body["results"]["pair_code"].as_str().unwrap().to_owned();
    let control = stack.sim.control();
    control.confirm_pair_code(&code).await.unwrap();
    stack.eventually(&device, "online", |d| d["status"] == "online").await;
    // This test is about delivery, not pace: the default pace would space these sends minutes apart.
    let mut pacing = stack.get(&format!("{device}/pacing")).await["policy"].clone();
    pacing["enabled"] = json!(false);
    let (status, body) = stack
        .call(reqwest::Method::PUT, &format!("{device}/pacing"), Some(pacing))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (client, url, csrf) = (
        stack.client.clone(),
        format!("{}{device}/send", stack.base),
        stack.csrf.clone(),
    );
    let send = |key: &'static str, body: Value| {
        client
            .post(&url)
            .header("X-CSRF-Token", &csrf)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send("order-1", json!({"to": "+60191000001", "text": "your order shipped"}))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let message = first["results"]["id"].as_i64().unwrap();
    assert_eq!(first["results"]["status"], "queued");

    // The same key again is the same send, never a second one.
    let again = send("order-1", json!({"to": "+60191000001", "text": "your order shipped"}))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["results"]["id"].as_i64(), Some(message));
    // The same key for another message is refused.
    let clash = send("order-1", json!({"to": "+60191000001", "text": "something else"}))
        .await
        .unwrap();
    assert_eq!(clash.status(), StatusCode::CONFLICT);

    let status_path = format!("/api/messages/{message}");
    let done = stack
        .eventually(&status_path, "delivered or read", |m| {
            m["status"] == "delivered" || m["status"] == "read"
        })
        .await;
    let wa_id = done["wa_message_id"].as_str().unwrap().to_owned();
    assert!(done["sent_at"].is_string(), "{done}");

    // An image goes out as a JPEG of at most 1200 px, much smaller than the upload.
    let upload = png_base64(2400, 1600);
    let image = send(
        "photo-1",
        json!({"to": "0191000003", "text": "the catalogue", "image_base64": upload}),
    )
    .await
    .unwrap();
    assert_eq!(image.status(), StatusCode::ACCEPTED);
    let image: Value = image.json().await.unwrap();
    let image_path = format!("/api/messages/{}", image["results"]["id"].as_i64().unwrap());
    stack
        .eventually(&image_path, "image sent", |m| {
            m["status"] != "queued" && m["status"] != "sending"
        })
        .await;

    let sent = control.sent(phone).await.unwrap();
    let texts: Vec<_> = sent
        .iter()
        .filter(|r| r.text.as_deref() == Some("your order shipped"))
        .collect();
    assert_eq!(texts.len(), 1, "sent exactly once: {sent:?}");
    assert_eq!(texts[0].id, wa_id);
    let photo = sent
        .iter()
        .find(|r| r.text.as_deref() == Some("the catalogue"))
        .expect("the image arrived");
    let bytes = photo.media_bytes.expect("an image");
    let png_bytes = upload.len() * 3 / 4;
    assert!(
        bytes > 0 && bytes * 4 < png_bytes,
        "compressed: {bytes} bytes from {png_bytes}"
    );

    // Sent messages appear in their chat.
    let chats = stack
        .eventually(&format!("{device}/chats"), "the sent message in its chat", |c| {
            c.to_string().contains("your order shipped")
        })
        .await;
    assert!(chats.to_string().contains("60191000001@s.whatsapp.net"));

    // Accepted while no worker holds the device: the next holder sends it.
    stack.stop_worker().await;
    let later = send(
        "order-2",
        json!({"to": "+60191000002", "text": "sent by the next holder"}),
    )
    .await
    .unwrap();
    assert_eq!(later.status(), StatusCode::ACCEPTED);
    let later: Value = later.json().await.unwrap();
    let later_path = format!("/api/messages/{}", later["results"]["id"].as_i64().unwrap());
    assert_eq!(stack.get(&later_path).await["status"], "queued");
    stack.start_worker();
    stack
        .eventually(&later_path, "sent after the restart", |m| {
            ["sent", "delivered", "read"].contains(&m["status"].as_str().unwrap_or_default())
        })
        .await;

    // Bad input changes nothing.
    for (body, what) in [
        (json!({"to": "120363999@g.us", "text": "hi"}), "personal chats only"),
        (json!({"to": "not a number", "text": "hi"}), "to:"),
        (json!({"to": "+60191000001"}), "give the text"),
        (json!({"to": "+60191000001", "image_base64": "aGVsbG8="}), "image:"),
    ] {
        let response = send("bad", body).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let text = response.text().await.unwrap();
        assert!(text.contains(what), "{text}");
    }
    let (status, _) = stack.call(reqwest::Method::GET, "/api/messages/999999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

wafleet_core::testing::on_both_backends!(
    sends_go_out_once_per_key_and_follow_receipts,
    pair_by_qr_receive_check_and_survive_a_worker_restart,
    pair_by_code_then_log_out_from_wafleet
);
