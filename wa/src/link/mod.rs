//! [`WaLink`]: wafleet's [`Link`] on the real WhatsApp client (whatsapp-rust), with each device's
//! state in wafleet's database ([`WaStore`]).
//!
//! What the client is given: our store, a WebSocket with a connect deadline, an HTTP client for
//! media, an event handler that keeps events in order ([`events`]), and the inbound durability
//! hook ([`hook`]) that holds back the acknowledgement of every incoming message until wafleet has
//! stored it. Sends go out under the id wafleet chose and wait for WhatsApp's answer ([`acks`]).

mod acks;
mod errors;
mod events;
mod hook;
mod media;
mod received;
mod restrictions;
mod session;
mod transport;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use wafleet_core::Db;
use wafleet_core::keys::KeyRing;
use wafleet_core::link::{Link, LinkError, OpenMode, Session};
use wafleet_core::types::DeviceId;
use whatsapp_rust::bot::Bot;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::wacore::net::WHATSAPP_WEB_WS_URL;
use whatsapp_rust::wacore::pair_code::PairCodeOptions;

use crate::WaStore;
pub use events::{map_event, map_history, map_message, map_receipt};
pub use session::WaSession;

/// How a [`WaLink`] reaches WhatsApp.
#[derive(Clone, Debug)]
pub struct WaLinkConfig {
    /// The WebSocket URL (setting `WA_SERVER_URL`); `None` is WhatsApp's own.
    pub server_url: Option<String>,
    /// Deadline for reaching the server and for each connection attempt.
    pub connect_timeout: Duration,
    /// The WhatsApp Web version to announce; `None` fetches the current one from WhatsApp (once
    /// a day per device). Set it where web.whatsapp.com is not reachable over HTTP.
    pub app_version: Option<(u32, u32, u32)>,
    /// Capacity of each session's event channel.
    pub event_capacity: usize,
    /// Upload and download media over plain HTTP where the client asks for HTTPS: only for the
    /// simulator's media host, which serves plain HTTP on loopback.
    pub plain_http_media: bool,
}

impl Default for WaLinkConfig {
    fn default() -> Self {
        WaLinkConfig {
            server_url: None,
            connect_timeout: Duration::from_secs(10),
            app_version: None,
            event_capacity: 256,
            plain_http_media: false,
        }
    }
}

impl WaLinkConfig {
    /// The URL sessions connect to.
    pub fn url(&self) -> &str {
        self.server_url.as_deref().unwrap_or(WHATSAPP_WEB_WS_URL)
    }
}

/// Opens sessions whose state lives in `db`. Cheap to share across a worker's devices.
#[derive(Clone, Debug)]
pub struct WaLink {
    /// Where every device's client state lives.
    db: Db,
    /// Seals that state's key material at rest.
    keys: KeyRing,
    /// How to reach WhatsApp.
    config: WaLinkConfig,
}

impl WaLink {
    /// A link on `db` sealing key material with `keys`, connecting to `server_url` (`None`:
    /// WhatsApp itself) with default settings.
    pub fn new(db: Db, keys: KeyRing, server_url: Option<String>) -> WaLink {
        Self::with_config(
            db,
            keys,
            WaLinkConfig {
                server_url,
                ..WaLinkConfig::default()
            },
        )
    }

    /// A link with explicit settings.
    pub fn with_config(db: Db, keys: KeyRing, config: WaLinkConfig) -> WaLink {
        if config.server_url.is_some() && !cfg!(feature = "sim-server") {
            tracing::warn!(
                url = config.url(),
                "WA_SERVER_URL is set, and this binary verifies WhatsApp's certificate: the \
                 simulator's front end needs a binary built with `--features sim-server`"
            );
        }
        WaLink { db, keys, config }
    }

    /// The settings in use.
    pub fn config(&self) -> &WaLinkConfig {
        &self.config
    }
}

/// The mode without its phone number, for logs.
fn mode_name(mode: &OpenMode) -> &'static str {
    match mode {
        OpenMode::Connect => "connect",
        OpenMode::PairQr => "pair_qr",
        OpenMode::PairCode(_) => "pair_code",
    }
}

#[async_trait]
impl Link for WaLink {
    #[tracing::instrument(skip(self, mode), fields(mode = mode_name(&mode), url = self.config.url()))]
    async fn open(&self, device: DeviceId, mode: OpenMode) -> Result<Box<dyn Session>, LinkError> {
        let store = WaStore::new(self.db.clone(), self.keys.clone(), device);
        if mode == OpenMode::Connect {
            let paired = store
                .preload()
                .await
                .map_err(|e| LinkError::Transient(format!("loading the device's credentials: {e}")))?;
            if !paired {
                return Err(LinkError::Device("the device is not linked: pair it first".into()));
            }
        }
        let url = self.config.url().to_owned();
        transport::check_reachable(&url, self.config.connect_timeout).await?;

        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        store.report_mappings_to(queue_tx.clone());
        let (events_tx, events_rx) = mpsc::channel(self.config.event_capacity);
        let acks = acks::SendAcks::default();
        let factory = transport::TimedTransportFactory {
            inner: TokioWebSocketTransportFactory::new().with_url(url.clone()),
            url,
            timeout: self.config.connect_timeout,
            events: queue_tx.clone(),
        };
        let mut builder = Bot::builder()
            .with_backend(store.clone())
            .with_transport_factory(factory)
            .with_http_client(media::MediaHttp::new(self.config.plain_http_media))
            .with_event_handler(events::Forwarder {
                device,
                queue: queue_tx.clone(),
                acks: acks.clone(),
                account: std::sync::Arc::new(std::sync::Mutex::new(store.preloaded_account())),
            })
            .with_inbound_durability_hook(hook::Durability {
                device,
                queue: queue_tx,
            })
            .with_cache_config(cache_config());
        if let Some(version) = self.config.app_version {
            builder = builder.with_version(version);
        }
        if let OpenMode::PairCode(phone) = &mode {
            builder = builder.with_pair_code(PairCodeOptions {
                phone_number: phone.digits().to_owned(),
                ..PairCodeOptions::default()
            });
        }
        let bot = builder
            .build()
            .await
            .map_err(|e| LinkError::Transient(format!("starting the WhatsApp client: {e:#}")))?;
        let pump = tokio::spawn(events::pump(queue_rx, events_tx, store.clone()));
        let bot = bot.spawn();
        tracing::info!("WhatsApp session started");
        Ok(Box::new(WaSession::new(device, store, bot, events_rx, pump, acks)))
    }
}

/// The client's caches, sized for thousands of sessions in one process: each session keeps
/// little in memory beyond what the store holds. Per-message secrets are not kept for what
/// wafleet sends (they decrypt reactions and poll votes to a message, which wafleet does not
/// store).
fn cache_config() -> whatsapp_rust::CacheConfig {
    use whatsapp_rust::wacore::msg_secret::MsgSecretPolicy;
    whatsapp_rust::CacheConfig {
        msg_secret_policy: MsgSecretPolicy::Disabled,
        ..whatsapp_rust::CacheConfig::default()
    }
}
