//! [`WaSession`]: one device's live wa-rs client.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wa_rs::Client;
use wa_rs::request::InfoQuery;
use wa_rs::wa_rs_proto::whatsapp as wa;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::jid::{Jid as WaJid, SERVER_JID};
use wa_rs_binary::node::NodeContent;
use wa_rs_core::download::MediaType;
use wa_rs_core::store::traits::DeviceStore;
use wafleet_core::link::{Content, Jid, LinkError, LinkEvent, NumberCheck, Outgoing, OutgoingImage, Session};
use wafleet_core::types::{DeviceId, PhoneNumber};

use super::errors::{classify, classify_iq};
use crate::WaStore;

/// How long the unlink request may take before logout reports a transient failure.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a WebSocket close may take before the socket is simply dropped (see
/// [`WaSession::disconnect`]).
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One device's session on wa-rs. Dropping it without [`Session::close`] stops its tasks.
pub struct WaSession {
    /// The device, for logs.
    device: DeviceId,
    /// The device's wa-rs state.
    store: WaStore,
    /// The wa-rs client.
    client: Arc<Client>,
    /// Ordered events, until taken.
    events: Option<mpsc::Receiver<LinkEvent>>,
    /// The client's run loop and the event pump.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Numbers WhatsApp confirmed during this session, so that only the first send to each
    /// pays for the check.
    registered: Mutex<HashSet<String>>,
}

impl WaSession {
    pub(crate) fn new(
        device: DeviceId,
        store: WaStore,
        client: Arc<Client>,
        events: mpsc::Receiver<LinkEvent>,
        tasks: Vec<JoinHandle<()>>,
    ) -> WaSession {
        WaSession {
            device,
            store,
            client,
            events: Some(events),
            tasks: Mutex::new(tasks),
            registered: Mutex::new(HashSet::new()),
        }
    }

    /// Fails unless the client is logged in, so that sends say why instead of timing out: as
    /// the device's problem once it was logged out (its store is retired then), as a passing
    /// one while it connects.
    fn ready(&self) -> Result<(), LinkError> {
        if self.store.is_retired() {
            Err(LinkError::Device("the device was logged out: link it again".into()))
        } else if self.client.is_logged_in() {
            Ok(())
        } else {
            Err(LinkError::Transient(
                "the session is not connected to WhatsApp yet".into(),
            ))
        }
    }

    fn stop_tasks(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|poison| poison.into_inner()));
        for task in tasks {
            task.abort();
        }
    }

    /// Disconnects wa-rs's client, giving up after [`DISCONNECT_TIMEOUT`]. wa-rs closes its
    /// WebSocket by reading until the server ends the stream, and its message loop may still be
    /// reading the same socket: the close then waits for a wake-up that goes to the loop instead,
    /// forever. Giving up drops the socket, which ends the connection all the same; the client
    /// was told first that the disconnect is intended, so it does not reconnect.
    async fn disconnect(&self) {
        if tokio::time::timeout(DISCONNECT_TIMEOUT, self.client.disconnect())
            .await
            .is_err()
        {
            tracing::warn!(
                device = %self.device,
                timeout = ?DISCONNECT_TIMEOUT,
                "the WebSocket close did not finish; dropping the socket instead"
            );
        }
    }

    /// Disconnects, saves what wa-rs still holds in memory, and retires the store so wa-rs's
    /// background saver cannot write after the next session has started.
    async fn shut_down(&self) {
        self.disconnect().await;
        self.stop_tasks();
        let device = self.client.persistence_manager().get_device_snapshot().await;
        // A no-op when the store was already retired (after a logout).
        if let Err(e) = self.store.save(&device).await {
            tracing::warn!(device = %self.device, error = %e, "saving the device at close failed");
        }
        self.store.retire();
    }
}

impl Drop for WaSession {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

impl WaSession {
    /// Which of `phones` WhatsApp says are registered, by the same usync query as
    /// `Client::contacts().is_on_whatsapp`. That call cannot be used: its parser reads the `jid`
    /// attribute with `optional_string`, which is `None` for JID-encoded values, and the binary
    /// codec encodes every attribute that looks like a JID as one (wa-rs-core 0.2.0
    /// src/iq/usync.rs:283, wa-rs-binary src/attrs.rs:56), so it finds no number at all.
    async fn registered(&self, digits: Vec<String>) -> Result<Vec<WaJid>, LinkError> {
        use wa_rs_core::iq::spec::IqSpec;
        let sid = format!("check-{}", chrono_free_now_secs());
        let query = wa_rs_core::iq::usync::IsOnWhatsAppSpec::new(digits, sid).build_iq();
        let response = self
            .client
            .send_iq(query)
            .await
            .map_err(|e| classify_iq(format!("checking numbers: {e}"), &e))?;
        let users = response
            .get_optional_child_by_tag(&["usync", "list"])
            .map(|list| list.get_children_by_tag("user").collect::<Vec<_>>())
            .unwrap_or_default();
        Ok(users
            .into_iter()
            .filter(|user| {
                user.get_optional_child("contact")
                    .is_some_and(|c| c.attrs().optional_string("type") == Some("in"))
            })
            .filter_map(|user| user.attrs().optional_jid("jid"))
            .map(|jid| jid.to_non_ad())
            .collect())
    }

    /// Fails with [`LinkError::Recipient`] when `to` (a phone-number JID) has no WhatsApp account.
    /// wa-rs sends to such a number without complaint (the stanza reaches nobody), so the
    /// number is checked first, once per session.
    async fn ensure_registered(&self, to: &WaJid) -> Result<(), LinkError> {
        if to.server != wa_rs_binary::jid::DEFAULT_USER_SERVER {
            return Ok(());
        }
        let known = |s: &Self| {
            s.registered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&to.user)
        };
        if known(self) {
            return Ok(());
        }
        if self
            .registered(vec![to.user.clone()])
            .await?
            .iter()
            .any(|j| j.user == to.user)
        {
            self.registered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(to.user.clone());
            Ok(())
        } else {
            Err(LinkError::Recipient(format!("{} is not on WhatsApp", to.user)))
        }
    }
}

/// A personal chat's JID in wa-rs's type.
fn recipient(to: &Jid) -> Result<WaJid, LinkError> {
    if !to.is_personal() {
        return Err(LinkError::Invalid(format!("`{to}` is not a personal chat")));
    }
    to.0.parse()
        .map_err(|e| LinkError::Invalid(format!("`{to}` is not a JID: {e}")))
}

#[async_trait]
impl Session for WaSession {
    fn take_events(&mut self) -> Option<mpsc::Receiver<LinkEvent>> {
        self.events.take()
    }

    /// Sends under wa-rs's own id: wa-rs 0.2 makes the id inside `send_message` and does not take
    /// one, so `message.id` is not used and the id returned is the one to record.
    async fn send(&self, message: &Outgoing) -> Result<String, LinkError> {
        match &message.content {
            Content::Text(text) => self.send_text(&message.to, text).await,
            Content::Image(image) => self.send_image(&message.to, image.clone()).await,
        }
    }
    #[tracing::instrument(skip_all, fields(device = %self.device, count = phones.len()))]
    async fn check_numbers(&self, phones: &[PhoneNumber]) -> Result<Vec<NumberCheck>, LinkError> {
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        self.ready()?;
        let found = self
            .registered(phones.iter().map(|p| p.digits().to_owned()).collect())
            .await?;
        Ok(phones
            .iter()
            .map(|phone| NumberCheck {
                phone: phone.clone(),
                jid: found
                    .iter()
                    .find(|jid| jid.user == phone.digits())
                    .map(|jid| Jid(jid.to_string())),
            })
            .collect())
    }

    /// wa-rs has no logout call: this sends WhatsApp Web's unlink request (`remove-companion-device`)
    /// for our own JID, disconnects, then wipes the device's stored state. When the request
    /// fails, nothing is wiped (the phone would keep listing the device), and the error says why.
    #[tracing::instrument(skip_all, fields(device = %self.device))]
    async fn logout(&self) -> Result<(), LinkError> {
        if let Some(own) = self.client.get_pn().await {
            self.ready()?;
            let unlink = NodeBuilder::new("remove-companion-device")
                .attr("jid", own.to_string())
                .attr("reason", "user_initiated")
                .build();
            let mut query = InfoQuery::set("md", WaJid::new("", SERVER_JID), Some(NodeContent::Nodes(vec![unlink])));
            query.timeout = Some(LOGOUT_TIMEOUT);
            self.client.send_iq(query).await.map_err(|e| match &e {
                wa_rs::request::IqError::ServerError { .. } => classify_iq(format!("unlinking: {e}"), &e),
                _ => LinkError::Transient(format!("unlinking: {e}")),
            })?;
        }
        // Not paired yet (or unlinked above): nothing remains on WhatsApp's side.
        self.disconnect().await;
        self.stop_tasks();
        self.store
            .wipe()
            .await
            .map_err(|e| LinkError::Transient(format!("forgetting the device's credentials: {e}")))?;
        tracing::info!("logged out and wiped");
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(device = %self.device))]
    async fn close(&self) {
        self.shut_down().await;
    }
}

impl WaSession {
    #[tracing::instrument(skip_all, fields(device = %self.device, to = %to))]
    async fn send_text(&self, to: &Jid, text: &str) -> Result<String, LinkError> {
        let to = recipient(to)?;
        if text.trim().is_empty() {
            return Err(LinkError::Invalid("empty text".into()));
        }
        self.ready()?;
        let message = wa::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        };
        self.ensure_registered(&to).await?;
        self.client
            .send_message(to, message)
            .await
            .map_err(|e| classify("sending a text", &e))
    }

    #[tracing::instrument(skip_all, fields(device = %self.device, to = %to, bytes = image.bytes.len()))]
    async fn send_image(&self, to: &Jid, image: OutgoingImage) -> Result<String, LinkError> {
        let to = recipient(to)?;
        if image.bytes.is_empty() || !image.mime.starts_with("image/") {
            return Err(LinkError::Invalid(format!(
                "not an image ({} bytes of {})",
                image.bytes.len(),
                image.mime
            )));
        }
        self.ready()?;
        self.ensure_registered(&to).await?;
        let upload = self
            .client
            .upload(image.bytes, MediaType::Image)
            .await
            .map_err(|e| classify("uploading an image", &e))?;
        let message = wa::Message {
            image_message: Some(Box::new(wa::message::ImageMessage {
                mimetype: Some(image.mime),
                caption: image.caption,
                url: Some(upload.url),
                direct_path: Some(upload.direct_path),
                media_key: Some(upload.media_key),
                file_enc_sha256: Some(upload.file_enc_sha256),
                file_sha256: Some(upload.file_sha256),
                file_length: Some(upload.file_length),
                media_key_timestamp: Some(chrono_free_now_secs()),
                ..Default::default()
            })),
            ..Default::default()
        };
        self.client
            .send_message(to, message)
            .await
            .map_err(|e| classify("sending an image", &e))
    }
}

/// Seconds since the Unix epoch (media key timestamps are in seconds).
fn chrono_free_now_secs() -> i64 {
    wafleet_core::types::Timestamp::now().millis() / 1000
}
