//! The worker end to end with the real WhatsApp client: the API and `wafleet_workers::run` with
//! the wa-rs link (`WaLink`, session state in our database) pointed at the simulator's WhatsApp
//! Web front end over real sockets, on SQLite and on PostgreSQL. One device links by QR code and
//! one by pair code; a new worker resumes both without pairing; text and images go both ways;
//! sends follow delivered and read receipts; a logout from the phone shows on the device.
//!
//! Everything here runs against the project's simulator, never real WhatsApp.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_api::AppState;
use wafleet_core::cache::Invalidations;
use wafleet_core::shutdown::{self, ShutdownTrigger};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_sim::waweb::{self, WaWebConfig, WaWebHandle};
use wafleet_wa::{WaLink, WaLinkConfig};

/// API + worker + front end, each on its own loopback port.
struct Stack {
    base: String,
    client: reqwest::Client,
    csrf: String,
    net: WaWebHandle,
    db: TestDb,
    queues: wafleet_core::queue::Queues,
    api: ShutdownTrigger,
    worker: Option<(ShutdownTrigger, tokio::task::JoinHandle<anyhow::Result<()>>)>,
    invalidations: Invalidations,
}

impl Stack {
    async fn start(backend: Backend) -> Stack {
        let db = TestDb::with_settings(backend, |s| {
            s.worker_wait_secs = 10;
            s.max_body_bytes = 32 << 20;
        })
        .await;
        let net = waweb::start(WaWebConfig::for_tests()).await.expect("front end starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (api, api_shutdown) = shutdown::channel();
        let queues = db.queues().await;
        let state = AppState::new(db.db.clone(), Arc::new(db.settings.clone())).with_queues(queues.clone());
        let invalidations = state.invalidations.clone();
        tokio::spawn(wafleet_api::serve(state, listener, api_shutdown));
        let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let creds = json!({"email": "ana@example.com", "password": "correct horse battery"});
        let registered = client
            .post(format!("{base}/api/register"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), StatusCode::CREATED);
        let page = client
            .get(format!("{base}/dashboard"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let marker = "name=\"csrf-token\" content=\"";
        let start = page.find(marker).unwrap() + marker.len();
        let csrf = page[start..].split('"').next().unwrap().to_owned();
        let mut stack = Stack {
            base,
            client,
            csrf,
            net,
            db,
            queues,
            api,
            worker: None,
            invalidations,
        };
        stack.start_worker();
        stack
    }

    /// Starts a worker with a fresh wa-rs link instance (as a new process would).
    fn start_worker(&mut self) {
        let (trigger, shutdown) = shutdown::channel();
        let link = Arc::new(WaLink::with_config(
            self.db.db.clone(),
            WaLinkConfig {
                server_url: Some(self.net.url()),
                connect_timeout: Duration::from_secs(5),
                // Nothing may be fetched from web.whatsapp.com.
                app_version: Some((2, 3000, 1)),
                // The simulated media host speaks plain HTTP.
                plain_http_media: true,
                ..WaLinkConfig::default()
            },
        ));
        let options = wafleet_workers::WorkerOptions::from_settings(&self.db.settings);
        let task = tokio::spawn(wafleet_workers::run(
            self.db.db.clone(),
            link,
            self.queues.clone(),
            self.invalidations.clone(),
            options,
            shutdown,
        ));
        self.worker = Some((trigger, task));
    }

    async fn stop_worker(&mut self) {
        let (trigger, task) = self.worker.take().expect("a worker runs");
        trigger.trigger();
        task.await.unwrap().unwrap();
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("X-CSRF-Token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body["results"].clone()
    }

    /// Waits until `probe` holds for `GET path`'s results (the worker acts asynchronously; wa-rs
    /// waits up to 5 s after each login before it reports being connected).
    async fn eventually(&self, path: &str, what: &str, probe: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            last = self.get(path).await;
            if probe(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: never true; last {path} = {last}");
    }

    /// Adds a device with `phone` and returns its API path.
    async fn add_device(&self, name: &str, phone: &str) -> String {
        let (status, added) = self.post("/api/devices", json!({"name": name, "phone": phone})).await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        format!("/api/devices/{}", added["results"]["id"].as_i64().unwrap())
    }

    /// Sends through the API with an idempotency key; returns the send's status path.
    async fn send(&self, device: &str, key: &str, body: Value) -> String {
        let response = self
            .client
            .post(format!("{}{device}/send", self.base))
            .header("X-CSRF-Token", &self.csrf)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        format!("/api/messages/{}", body["results"]["id"].as_i64().unwrap())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.api.trigger();
        if let Some((trigger, _)) = &self.worker {
            trigger.trigger();
        }
    }
}

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

async fn two_devices_pair_resume_talk_and_log_out(backend: Backend) {
    let mut stack = Stack::start(backend).await;
    let (qr_phone, code_phone, contact) = ("60123400001", "60123400002", "60191000001");
    stack.net.add_account(contact);

    // One device links by QR code: the phone scans what the API shows.
    let by_qr = stack.add_device("By QR", &format!("+{qr_phone}")).await;
    let (status, body) = stack.post(&format!("{by_qr}/qr"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut code = body["results"]["qr_code"].as_str().unwrap().to_owned();
    while let Err(err) = stack.net.scan(&code, qr_phone) {
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
        .net
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
    assert_eq!(stack.net.logged_in(), linked);

    // A new worker with a fresh link resumes both from the stored state: no pairing.
    stack.stop_worker().await;
    assert!(stack.net.logged_in().is_empty(), "the old worker closed its sessions");
    stack
        .net
        .send_text(contact, qr_phone, "sent while no worker ran")
        .await
        .unwrap();
    stack.start_worker();
    // The same devices log in again, not new ones.
    for _ in 0..300 {
        if stack.net.logged_in() == linked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stack.net.logged_in(), linked, "both devices logged in again");
    for device in [&by_qr, &by_code] {
        stack
            .eventually(device, "online again", |d| d["status"] == "online")
            .await;
    }
    assert!(stack.net.pairing_refs().is_empty(), "nothing pairs again");

    // Incoming text and image are stored and visible through the chat views.
    let hello = stack
        .net
        .send_text(contact, qr_phone, "hello from a person")
        .await
        .unwrap();
    stack
        .net
        .send_image(contact, qr_phone, &[0xFF, 0xD8, 0xFF, 0xD9], "a photo")
        .await
        .unwrap();
    let chat = format!("{contact}@s.whatsapp.net");
    let messages = stack
        .eventually(&format!("{by_qr}/messages/{chat}"), "three incoming messages", |m| {
            let text = m.to_string();
            ["sent while no worker ran", "hello from a person", "a photo"]
                .iter()
                .all(|t| text.contains(t))
        })
        .await;
    assert!(messages.to_string().contains("\"kind\":\"image\""), "{messages}");
    assert!(
        stack.net.receipts_for(&hello).contains(&"delivery".to_owned()),
        "the device told the phone it got the message"
    );
    let chats = stack.get(&format!("{by_qr}/chats")).await;
    assert!(chats.to_string().contains(&chat), "{chats}");

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
    let sent = stack.net.sent(qr_phone);
    let texts: Vec<_> = sent
        .iter()
        .filter(|m| m.text.as_deref() == Some("your order shipped"))
        .collect();
    assert_eq!(texts.len(), 1, "sent exactly once: {sent:?}");
    let photo = sent
        .iter()
        .find(|m| m.text.as_deref() == Some("the catalogue"))
        .expect("the image reached the phone");
    let jpeg = stack.net.image_bytes(photo).expect("the phone decrypts the image");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "re-encoded as JPEG");

    // The phone unlinks the pair-code device: it shows logged out, and the other stays online.
    assert_eq!(stack.net.logout(code_phone), 1);
    stack
        .eventually(&by_code, "logged out", |d| d["status"] == "logged_out")
        .await;
    assert_eq!(stack.get(&by_qr).await["status"], "online");
    let (status, body) = stack
        .post(&format!("{by_code}/check"), json!({"phones": [format!("+{contact}")]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_devices_pair_resume_talk_and_log_out() {
        super::two_devices_pair_resume_talk_and_log_out(super::Backend::Sqlite).await
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_devices_pair_resume_talk_and_log_out() {
        super::two_devices_pair_resume_talk_and_log_out(super::Backend::Postgres).await
    }
}
