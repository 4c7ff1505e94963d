//! A typed client of the control API.

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::*;
use crate::SimConfig;

/// Scripts a running simulator over HTTP.
#[derive(Clone, Debug)]
pub struct ControlClient {
    /// `http://HOST:PORT/control`.
    base: String,
    /// Shared connection pool.
    http: reqwest::Client,
}

impl ControlClient {
    /// A client of the control API at `control_url` (`http://HOST:PORT/control`).
    pub fn new(control_url: impl Into<String>) -> Self {
        ControlClient {
            base: control_url.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await;
        decode(path, response).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        let response = self.http.post(format!("{}{path}", self.base)).json(body).send().await;
        decode(path, response).await
    }

    /// Accounts, sessions, pairings and counters.
    pub async fn state(&self) -> anyhow::Result<StateView> {
        self.get("/state").await
    }

    /// The settings in force.
    pub async fn config(&self) -> anyhow::Result<SimConfig> {
        self.get("/config").await
    }

    /// The phone of `phone` scans the QR code `code`.
    pub async fn scan(&self, code: &str, phone: &str) -> anyhow::Result<Paired> {
        let body = ScanRequest {
            code: code.into(),
            phone: phone.into(),
        };
        self.post("/scan", &body).await
    }

    /// The phone confirms the pair code `code`.
    pub async fn confirm_pair_code(&self, code: &str) -> anyhow::Result<Paired> {
        let body = PairCodeRequest {
            code: code.into(),
            phone: None,
        };
        self.post("/pair-code", &body).await
    }

    /// The phone of `phone` scans the QR code `code` a wa-rs client shows on the WhatsApp Web
    /// front end.
    pub async fn waweb_scan(&self, code: &str, phone: &str) -> anyhow::Result<Paired> {
        let body = ScanRequest {
            code: code.into(),
            phone: phone.into(),
        };
        self.post("/waweb/scan", &body).await
    }

    /// The phone of `phone` types the pair code `code` a wa-rs client shows on the WhatsApp Web
    /// front end; answers once the device is linked.
    pub async fn waweb_enter_code(&self, phone: &str, code: &str) -> anyhow::Result<Paired> {
        let body = PairCodeRequest {
            code: code.into(),
            phone: Some(phone.into()),
        };
        self.post("/waweb/pair-code", &body).await
    }

    /// JIDs of the devices logged in to the WhatsApp Web front end now.
    pub async fn waweb_logged_in(&self) -> anyhow::Result<Vec<String>> {
        self.get("/waweb/logged-in").await
    }

    /// What the WhatsApp Web front end holds now: linked devices, logins, pairings, replaced logins.
    pub async fn waweb_stats(&self) -> anyhow::Result<WaWebStats> {
        self.get("/waweb/stats").await
    }

    /// The key that signs the WhatsApp Web front end's certificate chain in place of WhatsApp's
    /// root, for clients that check the chain (Baileys).
    pub async fn waweb_root_key(&self) -> anyhow::Result<[u8; 32]> {
        let hex: String = self.get("/waweb/root-key").await?;
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .with_context(|| format!("not a hex key: {hex:?}"))?;
        bytes
            .try_into()
            .map_err(|b: Vec<u8>| anyhow::anyhow!("a root key of {} bytes", b.len()))
    }

    /// Links one device per number without pairing; returns their tokens.
    pub async fn provision(&self, phones: Vec<String>) -> anyhow::Result<Vec<Provisioned>> {
        self.post("/provision", &ProvisionRequest { phones }).await
    }

    /// Delivers a message to an account.
    pub async fn inject(&self, message: &InjectMessage) -> anyhow::Result<Injected> {
        self.post("/messages", message).await
    }

    /// A personal text message from `from` to `to`.
    pub async fn inject_text(&self, to: &str, from: &str, text: &str) -> anyhow::Result<Injected> {
        self.inject(&InjectMessage {
            to: to.into(),
            from: from.into(),
            chat: ChatKind::Personal,
            text: Some(text.into()),
            kind: None,
            push_name: None,
            media: None,
        })
        .await
    }

    /// A personal message from `from` to `to` carrying `file` as a message of `kind` (its
    /// caption as the text).
    pub async fn inject_file(
        &self,
        to: &str,
        from: &str,
        kind: wafleet_core::link::MessageKind,
        file: &MediaFile<'_>,
    ) -> anyhow::Result<Injected> {
        use base64::Engine as _;
        self.inject(&InjectMessage {
            to: to.into(),
            from: from.into(),
            chat: ChatKind::Personal,
            text: file.caption.map(str::to_owned),
            kind: Some(kind),
            push_name: None,
            media: Some(InjectMedia {
                mime: Some(file.mime.to_owned()),
                data: Some(base64::engine::general_purpose::STANDARD.encode(file.bytes)),
                size: None,
                file_name: file.file_name.map(str::to_owned),
            }),
        })
        .await
    }

    /// Starts a closed-loop flood of incoming messages; returns how many accounts it feeds.
    pub async fn flood(&self, request: &FloodRequest) -> anyhow::Result<usize> {
        let count: Count = self.post("/flood", request).await?;
        Ok(count.count)
    }

    /// What the current or last flood did.
    pub async fn flood_report(&self) -> anyhow::Result<FloodReport> {
        self.get("/flood").await
    }

    /// Sets how a number behaves as a recipient.
    pub async fn set_number(&self, rule: &NumberRule) -> anyhow::Result<NumberRule> {
        self.post("/numbers", rule).await
    }

    /// What the devices of `phone`'s account sent, oldest first.
    pub async fn sent(&self, phone: &str) -> anyhow::Result<Vec<SentRecord>> {
        self.get(&format!("/accounts/{}/sent", digits(phone))).await
    }

    /// The messages `phone`'s devices marked read, oldest first.
    pub async fn read(&self, phone: &str) -> anyhow::Result<Vec<ReadRecord>> {
        self.get(&format!("/accounts/{}/read", digits(phone))).await
    }

    /// The typing indicators `phone`'s devices showed, oldest first.
    pub async fn chat_states(&self, phone: &str) -> anyhow::Result<Vec<ChatStateRecord>> {
        self.get(&format!("/accounts/{}/chat-states", digits(phone))).await
    }

    /// `from` calls `phone`: the call rings on its connected devices. Returns the call's id.
    pub async fn place_call(&self, phone: &str, from: &str, video: bool) -> anyhow::Result<String> {
        let body = PlaceCall {
            from: from.into(),
            video,
        };
        let placed: Placed = self.post(&format!("/accounts/{}/calls", digits(phone)), &body).await?;
        Ok(placed.call_id)
    }

    /// The calls that rang on `phone`, oldest first, and whether a device declined each.
    pub async fn calls(&self, phone: &str) -> anyhow::Result<Vec<CallRecord>> {
        self.get(&format!("/accounts/{}/calls", digits(phone))).await
    }

    /// The settings of its own view of chats `phone`'s devices changed, oldest first.
    pub async fn chat_settings(&self, phone: &str) -> anyhow::Result<Vec<ChatSettingRecord>> {
        self.get(&format!("/accounts/{}/chat-settings", digits(phone))).await
    }

    /// The push names and presences `phone`'s devices sent, oldest first.
    pub async fn presences(&self, phone: &str) -> anyhow::Result<Vec<PresenceRecord>> {
        self.get(&format!("/accounts/{}/presences", digits(phone))).await
    }

    /// The reactions, deletions for everyone and edits `phone`'s devices sent, oldest first.
    pub async fn actions(&self, phone: &str) -> anyhow::Result<Vec<ActionRecord>> {
        self.get(&format!("/accounts/{}/actions", digits(phone))).await
    }

    /// Drops the sockets of `phone`'s devices; returns how many.
    pub async fn disconnect(&self, phone: &str) -> anyhow::Result<usize> {
        let count: Count = self
            .post(&format!("/accounts/{}/disconnect", digits(phone)), &())
            .await?;
        Ok(count.count)
    }

    /// Unlinks `phone`'s devices from the phone; returns how many.
    pub async fn logout(&self, phone: &str) -> anyhow::Result<usize> {
        let count: Count = self.post(&format!("/accounts/{}/logout", digits(phone)), &()).await?;
        Ok(count.count)
    }

    /// Bans `phone`'s account; returns how many devices were logged out.
    pub async fn ban(&self, phone: &str) -> anyhow::Result<usize> {
        let count: Count = self.post(&format!("/accounts/{}/ban", digits(phone)), &()).await?;
        Ok(count.count)
    }

    /// WhatsApp tells `phone`'s devices that `contact`'s LID (`ChatKind::Lid` messages) and
    /// number are the same person; returns how many of its devices were connected to hear it
    /// at once (the others hear it when they connect).
    pub async fn reveal_number(&self, phone: &str, contact: &str) -> anyhow::Result<usize> {
        let path = format!("/accounts/{}/lid-mappings/{}", digits(phone), digits(contact));
        let count: Count = self.post(&path, &()).await?;
        Ok(count.count)
    }

    /// The phone of `phone` saves `contact` as `name` (empty removes it); returns how many of
    /// its devices were connected to hear it at once (the others hear it on their next link).
    pub async fn save_contact(&self, phone: &str, contact: &str, name: &str) -> anyhow::Result<usize> {
        let path = format!("/accounts/{}/contacts/{}", digits(phone), digits(contact));
        let count: Count = self.post(&path, &SaveContact { name: name.into() }).await?;
        Ok(count.count)
    }

    /// Restricts `phone`'s new chats: a timelock, a cap, or both.
    pub async fn restrict(&self, phone: &str, restrict: &Restrict) -> anyhow::Result<()> {
        let _: Count = self
            .post(&format!("/accounts/{}/restrict", digits(phone)), restrict)
            .await?;
        Ok(())
    }

    /// Incoming messages for `phone` at `per_minute` from `from` in turn (0 stops).
    pub async fn schedule(&self, phone: &str, per_minute: f64, from: Vec<String>) -> anyhow::Result<()> {
        let body = Schedule { per_minute, from };
        let _: Count = self
            .post(&format!("/accounts/{}/schedule", digits(phone)), &body)
            .await?;
        Ok(())
    }
}

/// Numbers go into paths as bare digits (no `+` to escape).
fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

async fn decode<T: DeserializeOwned>(path: &str, response: reqwest::Result<reqwest::Response>) -> anyhow::Result<T> {
    let response = response.with_context(|| format!("calling the simulator's control API {path}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("reading the answer of {path}"))?;
    if !status.is_success() {
        bail!("control API {path} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("decoding the answer of {path}: {text}"))
}
