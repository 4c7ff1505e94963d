//! [`SimLink`]: the [`Link`] to the simulator, over one WebSocket per session.
//!
//! Credentials (the simulator's device token and the account's JID, as JSON) live in our
//! database under the link name `sim`, sealed at rest like every credential, so any worker
//! process can resume a device.

mod session;
mod task;
mod wire;

use std::time::Duration;

use wafleet_core::Db;
use wafleet_core::keys::KeyRing;
use wafleet_core::link::{Link, LinkError, OpenMode, Session};
use wafleet_core::types::DeviceId;

use crate::protocol::HelloMode;
use task::Task;
use wire::Resume;

/// The name credentials are stored under in `link_credentials`.
pub const LINK_NAME: &str = "sim";

/// Timings and sizes of [`SimLink`] sessions.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// How long connecting (TCP, WebSocket upgrade and the server's first answer) may take.
    pub connect_timeout: Duration,
    /// How long a request (send, check, logout) may wait for its answer.
    pub request_timeout: Duration,
    /// First wait before reconnecting after a drop; doubles on each failure.
    pub backoff_initial: Duration,
    /// Longest wait between reconnection attempts.
    pub backoff_max: Duration,
    /// WebSocket read and write buffer size, in bytes.
    pub ws_buffer_bytes: usize,
    /// Capacity of each session's event channel.
    pub event_capacity: usize,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(15),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            ws_buffer_bytes: 4096,
            event_capacity: 256,
        }
    }
}

/// The client of the WhatsApp network simulator.
#[derive(Clone)]
pub struct SimLink {
    /// `ws://HOST:PORT/ws`.
    url: String,
    /// Where credentials live.
    db: Db,
    /// Seals the credentials.
    keys: KeyRing,
    /// Timings.
    options: LinkOptions,
}

impl SimLink {
    /// A link to the simulator at `ws_url` (`ws://HOST:PORT/ws`), keeping credentials in `db`
    /// sealed with `keys`.
    pub fn new(ws_url: impl Into<String>, db: Db, keys: KeyRing) -> Self {
        Self::with_options(ws_url, db, keys, LinkOptions::default())
    }

    /// Like [`SimLink::new`], with other timings.
    pub fn with_options(ws_url: impl Into<String>, db: Db, keys: KeyRing, options: LinkOptions) -> Self {
        SimLink {
            url: ws_url.into(),
            db,
            keys,
            options,
        }
    }

    /// Stores credentials for `device` from a device the control API provisioned (benchmarks,
    /// demo fleets), so that [`OpenMode::Connect`] resumes it.
    pub async fn adopt(&self, device: DeviceId, provisioned: &crate::control::Provisioned) -> Result<(), LinkError> {
        let credentials = wire::Credentials {
            token: provisioned.token.clone(),
            jid: provisioned.jid.clone(),
        };
        let data = serde_json::to_string(&credentials)
            .map_err(|err| LinkError::Invalid(format!("encoding credentials: {err}")))?;
        self.db
            .put_link_credentials(&self.keys, device, LINK_NAME, &data)
            .await
            .map_err(|err| LinkError::Transient(format!("storing the credentials of device {device}: {err}")))
    }

    async fn stored_token(&self, device: DeviceId) -> Result<String, LinkError> {
        let stored = self
            .db
            .link_credentials(&self.keys, device, LINK_NAME)
            .await
            .map_err(|err| LinkError::Transient(format!("reading the credentials of device {device}: {err}")))?
            .ok_or_else(|| LinkError::Device(format!("device {device} is not paired with the simulator")))?;
        let credentials: wire::Credentials = serde_json::from_str(&stored)
            .map_err(|err| LinkError::Device(format!("unreadable credentials of device {device}: {err}")))?;
        Ok(credentials.token)
    }
}

#[async_trait::async_trait]
impl Link for SimLink {
    #[tracing::instrument(skip(self), fields(url = %self.url))]
    async fn open(&self, device: DeviceId, mode: OpenMode) -> Result<Box<dyn Session>, LinkError> {
        let (ws, token) = match mode {
            OpenMode::Connect => {
                let token = self.stored_token(device).await?;
                match wire::resume(&self.url, &self.options, &token).await? {
                    Resume::Connected(ws) => (*ws, Some(token)),
                    Resume::Refused { reason, banned } => {
                        if let Err(err) = self.db.delete_link_credentials(device).await {
                            tracing::warn!(%err, "cannot forget refused credentials");
                        }
                        let what = if banned { "banned" } else { "logged out" };
                        return Err(LinkError::Device(format!("device {device} is {what}: {reason}")));
                    }
                }
            }
            OpenMode::PairQr => (wire::hello(&self.url, &self.options, HelloMode::PairQr).await?, None),
            OpenMode::PairCode(phone) => {
                let mode = HelloMode::PairCode {
                    phone: phone.as_str().to_owned(),
                };
                (wire::hello(&self.url, &self.options, mode).await?, None)
            }
        };
        let connected = token.is_some();
        let (session, task) = Task::new(
            device,
            self.url.clone(),
            self.db.clone(),
            self.keys.clone(),
            self.options.clone(),
            token,
        );
        task.start(ws, connected);
        Ok(Box::new(session))
    }
}
