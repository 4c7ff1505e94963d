//! API + worker + simulated network in one test process, each on its own loopback port, on SQLite
//! or on PostgreSQL + Redis: the stack the end-to-end tests of pairing, sends and device actions
//! drive over real sockets. The network is the simulator, reached through its own link, or its
//! WhatsApp Web front end, reached by the real whatsapp-rust client ([`Network`]).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_api::AppState;
use wafleet_core::Db;
use wafleet_core::cache::Invalidations;
use wafleet_core::keys::KeyRing;
use wafleet_core::link::{Link, MessageKind};
use wafleet_core::shutdown::{self, ShutdownTrigger};
use wafleet_core::testing::{Backend, TestDb, poll_for};
use wafleet_core::types::PhoneNumber;
use wafleet_sim::conformance::{Phones, Sent};
use wafleet_sim::control::{ChatKind, MediaFile};
use wafleet_sim::waweb::{self, WaWebConfig, WaWebHandle};
use wafleet_sim::{SimConfig, SimHandle, SimLink};
use wafleet_wa::{WaLink, WaLinkConfig};

/// The simulated WhatsApp side of a [`Stack`], and how a worker links to it.
pub trait Network: Sized {
    /// How long [`StackOn::eventually`] waits for the worker by default.
    const PATIENCE: Duration;

    /// Whether a device that sends to a number learns the LID behind it at once, as WhatsApp's
    /// device lookup (usync) tells the real client; the simulator's own link learns it only when
    /// the network says so.
    const SEND_REVEALS_LID: bool;

    /// Starts it on a loopback port.
    async fn start() -> Self {
        Self::start_with_history(0).await
    }

    /// Starts it on a loopback port, pushing `chats` personal chats from before (and a group
    /// message) to every newly linked device, as WhatsApp's history sync does.
    async fn start_with_history(chats: usize) -> Self;

    /// A fresh link to it, as a newly started worker process makes, sealing key material with `keys`.
    fn link(&self, db: &Db, keys: &KeyRing) -> Arc<dyn Link>;

    /// The phone of `phone` (digits) types the pair code `code` a device shows.
    async fn enter_pair_code(&self, phone: &str, code: &str);

    /// `phone` (digits) has WhatsApp, so messages to it go out.
    fn add_contact(&self, phone: &str);

    /// The phone `from` (digits) writes `text` to the account of `to` (digits).
    async fn write(&self, from: &str, to: &str, text: &str);

    /// The phone `from` (digits) sends `file` as a message of `kind` to the account of `to`
    /// (digits); returns the message id.
    async fn write_file(&self, from: &str, to: &str, kind: MessageKind, file: &MediaFile<'_>) -> String;

    /// The phone `from` (digits) writes `text` to the account of `to` (digits) from its LID,
    /// its number hidden, or given beside the LID when `with_number`.
    async fn write_from_lid(&self, from: &str, to: &str, text: &str, with_number: bool);

    /// The network tells the devices of `phone` (digits) which number the LID of `contact`
    /// (digits) stands for.
    async fn reveal_number(&self, phone: &str, contact: &str);

    /// The phone of `phone` (digits) saves `name` for `contact` (digits) in its address book.
    async fn save_contact(&self, phone: &str, contact: &str, name: &str);

    /// Puts the account of `phone` (digits) under a reach-out timelock for `length`.
    async fn timelock(&self, phone: &str, length: Duration);

    /// The recipients (digits) of what the devices of `phone` (digits) sent, in order.
    async fn sent_to(&self, phone: &str) -> Vec<String>;

    /// What the devices of `phone` (digits) sent, as the recipients' phones saw it (a file's
    /// size as they decrypted it), in order.
    async fn sent(&self, phone: &str) -> Vec<Sent>;
}

impl Network for SimHandle {
    const PATIENCE: Duration = Duration::from_secs(15);
    const SEND_REVEALS_LID: bool = false;

    async fn start_with_history(chats: usize) -> Self {
        let config = SimConfig {
            history_chats: chats,
            ..SimConfig::for_tests()
        };
        wafleet_sim::start(config).await.expect("simulator starts")
    }

    fn link(&self, db: &Db, keys: &KeyRing) -> Arc<dyn Link> {
        Arc::new(SimLink::new(self.ws_url(), db.clone(), keys.clone()))
    }

    async fn enter_pair_code(&self, _phone: &str, code: &str) {
        self.control()
            .confirm_pair_code(code)
            .await
            .expect("the phone confirms the code");
    }

    fn add_contact(&self, _phone: &str) {
        // Every number has WhatsApp unless a rule says otherwise.
    }

    async fn write(&self, from: &str, to: &str, text: &str) {
        self.control().inject_text(to, from, text).await.expect("inject");
    }

    async fn write_file(&self, from: &str, to: &str, kind: MessageKind, file: &MediaFile<'_>) -> String {
        self.control()
            .inject_file(to, from, kind, file)
            .await
            .expect("inject")
            .id
    }

    async fn write_from_lid(&self, from: &str, to: &str, text: &str, with_number: bool) {
        let message = wafleet_sim::control::InjectMessage {
            to: to.into(),
            from: from.into(),
            chat: if with_number {
                ChatKind::LidWithNumber
            } else {
                ChatKind::Lid
            },
            text: Some(text.into()),
            kind: None,
            push_name: Some(format!("Sim {from}")),
            media: None,
        };
        self.control().inject(&message).await.expect("inject");
    }

    async fn reveal_number(&self, phone: &str, contact: &str) {
        self.control().reveal_number(phone, contact).await.expect("reveal");
    }

    async fn save_contact(&self, phone: &str, contact: &str, name: &str) {
        self.control().save_contact(phone, contact, name).await.expect("save");
    }

    async fn timelock(&self, phone: &str, length: Duration) {
        let restrict = wafleet_sim::control::Restrict {
            timelock_secs: Some(length.as_secs()),
            ..Default::default()
        };
        self.control().restrict(phone, &restrict).await.expect("restrict");
    }

    async fn sent_to(&self, phone: &str) -> Vec<String> {
        let sent = self.control().sent(phone).await.expect("sent");
        sent.into_iter().map(|m| m.to.user().to_owned()).collect()
    }

    async fn sent(&self, phone: &str) -> Vec<Sent> {
        let phone: PhoneNumber = format!("+{phone}").parse().expect("a phone number");
        Phones::sent(&self.control(), &phone).await.expect("sent")
    }
}

/// The front end for the real whatsapp-rust client; whatsapp-rust waits up to 5 s after each login before it
/// reports being connected, hence more patience.
impl Network for WaWebHandle {
    const PATIENCE: Duration = Duration::from_secs(30);
    const SEND_REVEALS_LID: bool = true;

    async fn start_with_history(chats: usize) -> Self {
        let config = WaWebConfig {
            history_chats: chats,
            ..WaWebConfig::for_tests()
        };
        waweb::start(config).await.expect("front end starts")
    }

    fn link(&self, db: &Db, keys: &KeyRing) -> Arc<dyn Link> {
        Arc::new(WaLink::with_config(
            db.clone(),
            keys.clone(),
            wa_link_config(&self.url()),
        ))
    }

    async fn enter_pair_code(&self, phone: &str, code: &str) {
        self.enter_code(phone, code).await.expect("the phone types the code");
    }

    fn add_contact(&self, phone: &str) {
        self.add_account(phone);
    }

    async fn write(&self, from: &str, to: &str, text: &str) {
        self.add_account(from);
        self.send_text(from, to, text).await.expect("the phone writes");
    }

    async fn write_file(&self, from: &str, to: &str, kind: MessageKind, file: &MediaFile<'_>) -> String {
        self.add_account(from);
        self.send_media(from, to, kind, file)
            .await
            .expect("the phone sends the file")
    }

    async fn write_from_lid(&self, from: &str, to: &str, text: &str, with_number: bool) {
        self.add_account(from);
        let chat = if with_number {
            ChatKind::LidWithNumber
        } else {
            ChatKind::Lid
        };
        self.send_in(chat, from, to, text).await.expect("the phone writes");
    }

    async fn reveal_number(&self, phone: &str, contact: &str) {
        WaWebHandle::reveal_number(self, phone, contact)
            .await
            .expect("the phone pushes the mapping");
    }

    async fn save_contact(&self, phone: &str, contact: &str, name: &str) {
        WaWebHandle::save_contact(self, phone, contact, name).expect("the phone saves the contact");
    }

    async fn timelock(&self, phone: &str, length: Duration) {
        WaWebHandle::timelock(self, phone, length);
    }

    async fn sent_to(&self, phone: &str) -> Vec<String> {
        WaWebHandle::sent(self, phone).into_iter().map(|m| m.to).collect()
    }

    async fn sent(&self, phone: &str) -> Vec<Sent> {
        WaWebHandle::sent(self, phone)
            .into_iter()
            .map(|m| Sent {
                media_bytes: self.media_bytes(&m).ok().map(|b| b.len()),
                mime: m.media.as_ref().and_then(|f| f.mime.clone()),
                file_name: m.media.as_ref().and_then(|f| f.file_name.clone()),
                structured: m.structured.clone(),
                forwarded: m.forwarded,
                kind: MessageKind::from_name(&m.kind),
                to: wafleet_core::link::Jid(format!("{}@s.whatsapp.net", m.to)),
                id: m.id,
                text: m.text,
            })
            .collect()
    }
}

/// How a worker's real client reaches the front end at `url`.
pub fn wa_link_config(url: &str) -> WaLinkConfig {
    WaLinkConfig {
        server_url: Some(url.to_owned()),
        connect_timeout: Duration::from_secs(5),
        // Nothing may be fetched from web.whatsapp.com.
        app_version: Some((2, 3000, 1)),
        // The simulated media host speaks plain HTTP.
        plain_http_media: true,
        ..WaLinkConfig::default()
    }
}

/// The stack on the simulator's own link, which most tests use.
pub type Stack = StackOn<SimHandle>;

/// API + worker + simulated network, each on its own loopback port.
pub struct StackOn<N: Network> {
    pub base: String,
    pub client: reqwest::Client,
    pub csrf: String,
    pub sim: N,
    pub db: TestDb,
    pub queues: wafleet_core::queue::Queues,
    pub api: ShutdownTrigger,
    pub worker: Option<(ShutdownTrigger, tokio::task::JoinHandle<anyhow::Result<()>>)>,
    pub invalidations: Invalidations,
}

impl<N: Network> StackOn<N> {
    pub async fn start(backend: Backend) -> StackOn<N> {
        Self::start_on(backend, N::start().await).await
    }

    /// The stack on a network the caller started (with settings of its own).
    pub async fn start_on(backend: Backend, sim: N) -> StackOn<N> {
        Self::start_configured(backend, sim, |_| {}).await
    }

    /// [`StackOn::start_on`] with wafleet's settings changed by `configure`.
    pub async fn start_configured(
        backend: Backend,
        sim: N,
        configure: impl FnOnce(&mut wafleet_core::Settings),
    ) -> StackOn<N> {
        let db = TestDb::with_settings(backend, |s| {
            // The real client derives a pair code's key (PBKDF2, 2^17 rounds) before it shows the
            // code: seconds in a debug build on a busy machine.
            s.worker_wait_secs = 30;
            // Room for a photo uploaded as base64 JSON.
            s.max_body_bytes = 32 << 20;
            configure(s);
        })
        .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (api, api_shutdown) = shutdown::channel();
        let queues = db.queues().await;
        let state = AppState::new(db.db.clone(), Arc::new(db.settings.clone())).with_queues(queues.clone());
        // The worker announces its writes to the API's read cache, as in one embedded process.
        let invalidations = state.invalidations.clone();
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
        let mut stack = StackOn {
            base,
            client,
            csrf,
            sim,
            db,
            queues,
            invalidations,
            api,
            worker: None,
        };
        stack.start_worker();
        stack
    }

    /// Starts a worker with a fresh link instance (as a new process would).
    pub fn start_worker(&mut self) {
        let (trigger, shutdown) = shutdown::channel();
        let link = self.sim.link(&self.db.db, &self.db.keys);
        let options = wafleet_workers::WorkerOptions::from_settings(&self.db.settings).expect("worker options");
        let queues = self.queues.clone();
        let task = tokio::spawn(wafleet_workers::run(
            self.db.db.clone(),
            link,
            queues,
            self.invalidations.clone(),
            options,
            shutdown,
        ));
        self.worker = Some((trigger, task));
    }

    pub async fn stop_worker(&mut self) {
        let (trigger, task) = self.worker.take().expect("a worker runs");
        trigger.trigger();
        task.await.unwrap().unwrap();
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
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

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body["results"].clone()
    }

    /// Waits up to the network's [`Network::PATIENCE`] until `probe` holds for `GET path`'s
    /// results (the worker acts asynchronously, so until then the path may not exist yet: an
    /// error answer is waited out like a probe that does not hold).
    pub async fn eventually(&self, path: &str, what: &str, probe: impl Fn(&Value) -> bool) -> Value {
        self.eventually_within(N::PATIENCE, path, what, probe).await
    }

    /// [`StackOn::eventually`] with a time limit of its own (for sends that wait for their pace).
    pub async fn eventually_within(
        &self,
        limit: Duration,
        path: &str,
        what: &str,
        probe: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let found = poll_for(limit, async || {
            let (status, body) = self.call(reqwest::Method::GET, path, None).await;
            if status != StatusCode::OK {
                last = body;
                return None;
            }
            last = body["results"].clone();
            probe(&last).then(|| last.clone())
        })
        .await;
        found.unwrap_or_else(|| panic!("{what}: never true; last {path} = {last}"))
    }

    /// Adds a device with `phone` and returns its API path.
    pub async fn add_device(&self, name: &str, phone: &str) -> String {
        let (status, added) = self.post("/api/devices", json!({"name": name, "phone": phone})).await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        format!("/api/devices/{}", added["results"]["id"].as_i64().unwrap())
    }

    /// Sends through the API with an idempotency key; returns the send's status path.
    pub async fn send(&self, device: &str, key: &str, body: Value) -> String {
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

impl<N: Network> Drop for StackOn<N> {
    fn drop(&mut self) {
        self.api.trigger();
        if let Some((trigger, _)) = &self.worker {
            trigger.trigger();
        }
    }
}

impl<N: Network> StackOn<N> {
    /// Adds a device and links it by pair code, as its owner would; returns its id once it is
    /// online.
    pub async fn linked_device(&self, name: &str, phone: &str) -> i64 {
        let device = self.add_device(name, phone).await;
        let id = device.rsplit('/').next().unwrap().parse().unwrap();
        let (status, body) = self.post(&format!("{device}/pair-code"), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let code = body["results"]["pair_code"].as_str().unwrap().to_owned();
        self.sim.enter_pair_code(phone.trim_start_matches('+'), &code).await;
        self.eventually(&device, "online", |d| d["status"] == "online").await;
        id
    }

    /// Changes the device's pacing policy: `change` edits the current one.
    pub async fn pace(&self, device: i64, change: impl FnOnce(&mut Value)) {
        let path = format!("/api/devices/{device}/pacing");
        let mut policy = self.get(&path).await["policy"].clone();
        change(&mut policy);
        let (status, body) = self.call(reqwest::Method::PUT, &path, Some(policy)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
