//! The session layer end to end: the real API and a real worker with the simulator's client link,
//! against an in-process simulator over real sockets, on SQLite and on PostgreSQL.
//!
//! Everything here runs against the project's WhatsApp network simulator, never real WhatsApp.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_api::AppState;
use wafleet_core::shutdown::{self, ShutdownTrigger};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_sim::{SimConfig, SimHandle, SimLink};

/// API + worker + simulator, each on its own loopback port.
struct Stack {
    base: String,
    client: reqwest::Client,
    csrf: String,
    sim: SimHandle,
    db: TestDb,
    api: ShutdownTrigger,
    worker: Option<(ShutdownTrigger, tokio::task::JoinHandle<anyhow::Result<()>>)>,
}

impl Stack {
    async fn start(backend: Backend) -> Stack {
        let db = TestDb::with_settings(backend, |s| s.worker_wait_secs = 10).await;
        let sim = wafleet_sim::start(SimConfig::for_tests())
            .await
            .expect("simulator starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (api, api_shutdown) = shutdown::channel();
        let state = AppState::new(db.db.clone(), Arc::new(db.settings.clone()));
        tokio::spawn(wafleet_api::serve(state, listener, api_shutdown));
        let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let creds = json!({"email": "ana@example.com", "password": "correct horse battery"});
        assert_eq!(
            client
                .post(format!("{base}/api/register"))
                .json(&creds)
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::CREATED
        );
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
            sim,
            db,
            api,
            worker: None,
        };
        stack.start_worker();
        stack
    }

    /// Starts a worker with a fresh link instance (as a new process would).
    fn start_worker(&mut self) {
        let (trigger, shutdown) = shutdown::channel();
        let link = Arc::new(SimLink::new(self.sim.ws_url(), self.db.db.clone()));
        let options = wafleet_workers::WorkerOptions::from_settings(&self.db.settings);
        let task = tokio::spawn(wafleet_workers::run(self.db.db.clone(), link, options, shutdown));
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

    /// Waits until `probe` holds for `GET path`'s results (the worker acts asynchronously).
    async fn eventually(&self, path: &str, what: &str, probe: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..150 {
            last = self.get(path).await;
            if probe(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: never true; last {path} = {last}");
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
        };
        control.inject(&message).await.unwrap();
    }
    control
        .inject_text("+60123456789", "+60191000003", "a second person")
        .await
        .unwrap();
    let chats = stack
        .eventually(&format!("{device}/chats"), "two personal chats", |c| {
            c.as_array().unwrap().len() == 2
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
            c.as_array().unwrap().len() == 3
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
    let (status, _) = stack.post(&format!("{device}/reconnect"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "the JID stays, so reconnecting is allowed");
    stack
        .eventually(&device, "reconnect fails: credentials are gone", |d| {
            d["status"] == "logged_out"
        })
        .await;
}

macro_rules! on_both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

on_both_backends!(
    pair_by_qr_receive_check_and_survive_a_worker_restart,
    pair_by_code_then_log_out_from_wafleet
);
