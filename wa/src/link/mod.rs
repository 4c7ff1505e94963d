//! [`WaLink`]: wafleet's [`Link`] on the real WhatsApp client, wa-rs, with each device's state in
//! wafleet's database ([`WaStore`]).

mod errors;
mod events;
mod media;
mod session;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use wa_rs::bot::Bot;
use wa_rs::transport::TokioWebSocketTransportFactory;
use wa_rs_core::net::WHATSAPP_WEB_WS_URL;
use wa_rs_core::pair_code::PairCodeOptions;
use wa_rs_core::store::traits::DeviceStore;
use wafleet_core::Db;
use wafleet_core::keys::KeyRing;
use wafleet_core::link::{Link, LinkError, OpenMode, Session};
use wafleet_core::types::DeviceId;

use crate::WaStore;
pub use events::map_event;
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
    /// Upload and download media over plain HTTP where wa-rs asks for HTTPS: only for the
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

/// Opens wa-rs sessions whose state lives in `db`. Cheap to share across a worker's devices.
#[derive(Clone, Debug)]
pub struct WaLink {
    /// Where every device's wa-rs state lives.
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
                .load()
                .await
                .map_err(|e| LinkError::Transient(format!("loading the device's credentials: {e}")))?
                .is_some_and(|d| d.pn.is_some());
            if !paired {
                return Err(LinkError::Device("the device is not linked: pair it first".into()));
            }
        }
        let url = self.config.url().to_owned();
        transport::check_reachable(&url, self.config.connect_timeout).await?;

        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::channel(self.config.event_capacity);
        let factory = transport::TimedTransportFactory {
            inner: TokioWebSocketTransportFactory::new().with_url(url.clone()),
            url,
            timeout: self.config.connect_timeout,
            events: queue_tx.clone(),
        };
        let mut builder = Bot::builder()
            .with_backend(Arc::new(store.clone()))
            .with_transport_factory(factory)
            .with_http_client(media::MediaHttp::new(self.config.plain_http_media))
            // History sync replays old chats; wafleet only handles what arrives from now on.
            .skip_history_sync();
        if let Some(version) = self.config.app_version {
            builder = builder.with_version(version);
        }
        if let OpenMode::PairCode(phone) = &mode {
            builder = builder.with_pair_code(PairCodeOptions {
                phone_number: phone.digits().to_owned(),
                ..PairCodeOptions::default()
            });
        }
        let mut bot = builder
            .build()
            .await
            .map_err(|e| LinkError::Transient(format!("starting the WhatsApp client: {e:#}")))?;
        let client = bot.client();
        client.register_handler(Arc::new(events::Forwarder {
            device,
            queue: queue_tx,
        }));
        let pump = tokio::spawn(events::pump(queue_rx, events_tx, store.clone()));
        let run = bot
            .run()
            .await
            .map_err(|e| LinkError::Transient(format!("running the WhatsApp client: {e:#}")))?;
        tracing::info!("wa-rs session started");
        Ok(Box::new(WaSession::new(
            device,
            store,
            client,
            events_rx,
            vec![run, pump],
        )))
    }
}
