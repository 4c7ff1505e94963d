//! The simulator's WhatsApp Web front end: the server unmodified WhatsApp Web clients connect
//! to (whatsapp-rust, which wafleet's real link uses).
//!
//! It speaks the real protocol with the building blocks of the previous release of that client
//! (wa-rs: the Noise handshake and frames of `wa-rs-noise`, the binary nodes of `wa-rs-binary`,
//! the protobufs of `wa-rs-proto` and the keys of `wa-rs-libsignal`; the wire has not changed),
//! on its own loopback listener: point the real link at [`WaWebHandle::url`] with
//! `WA_SERVER_URL`. Simulated phones are driven through the handle (the tests' hooks) rather than
//! the JSON control API.

mod appstate;
mod bans;
mod business;
mod chat;
mod conn;
mod contacts;
mod handle;
mod history;
mod identity;
mod iq;
mod login;
mod media;
mod model;
mod nodes;
mod noise;
mod non_personal;
mod pair_code;
mod pairing;
mod picture;
mod restrictions;
mod sender_keys;
mod signal;
mod startup;
mod usync;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use wa_rs_binary::node::Node;
use wafleet_core::sync;

use crate::ban::BanLimits;

pub use handle::WaWebHandle;
use model::{Model, Out};
pub use model::{SentFile, SentMessage};
pub use noise::HandshakeCounts;
use noise::ServerIdentity;

/// How the front end behaves.
#[derive(Clone, Debug)]
pub struct WaWebConfig {
    /// Address to listen on (loopback).
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// How often a pairing companion gets a new ref (a new QR code); only the newest links.
    pub qr_refresh: Duration,
    /// Refs issued before the server stops issuing them (the companion then gives up on its own).
    pub qr_max_codes: u32,
    /// Read and write buffer of each WebSocket, in bytes.
    pub ws_buffer_bytes: usize,
    /// From a message reaching a phone until the phone reports it delivered.
    pub delivered_after: Duration,
    /// From delivery until the phone reports it read.
    pub read_after: Duration,
    /// When an account gets banned.
    pub ban: BanLimits,
    /// Personal chats the phone pushes to a newly linked device (history sync), each with a line
    /// from the contact and the account's answer, plus one group message a client must drop.
    pub history_chats: usize,
}

impl WaWebConfig {
    /// Settings for tests: a free loopback port and a quick QR refresh; the simulator's ban
    /// thresholds.
    pub fn for_tests() -> Self {
        WaWebConfig {
            host: "127.0.0.1".into(),
            port: 0,
            qr_refresh: Duration::from_millis(500),
            qr_max_codes: 40,
            ws_buffer_bytes: 4096,
            delivered_after: Duration::from_millis(20),
            read_after: Duration::from_millis(40),
            ban: BanLimits::from(&crate::SimConfig::for_tests()),
            history_chats: 0,
        }
    }

    /// The front end's settings from the simulator's (`--waweb-port`, the QR timings and the ban
    /// thresholds).
    pub fn from_sim(sim: &crate::SimConfig, port: u16) -> Self {
        WaWebConfig {
            host: sim.host.clone(),
            port,
            qr_refresh: Duration::from_secs_f64(sim.qr_refresh_secs.max(0.05)),
            qr_max_codes: sim.qr_max_codes,
            ws_buffer_bytes: sim.ws_buffer_bytes,
            delivered_after: Duration::from_millis(sim.delivered_ms),
            read_after: Duration::from_millis(sim.read_ms),
            ban: BanLimits::from(sim),
            history_chats: sim.history_chats,
        }
    }
}

/// The front end's shared state.
pub(crate) struct Network {
    /// Settings.
    config: WaWebConfig,
    /// The Noise identity every connection's handshake proves.
    identity: ServerIdentity,
    /// Accounts, devices and connections.
    model: Mutex<Model>,
    /// The media host's blobs.
    media: Arc<media::MediaStore>,
}

impl Network {
    /// The model, locked (every change is small, so a panic elsewhere leaves it usable).
    fn lock(&self) -> MutexGuard<'_, Model> {
        sync::lock(&self.model)
    }

    /// A connection finished its handshake: log it in or start pairing. Returns its id.
    fn open(
        self: &Arc<Self>,
        client_static: [u8; 32],
        payload: &wa_rs_proto::whatsapp::ClientPayload,
        tx: mpsc::UnboundedSender<Out>,
    ) -> u64 {
        let mut model = self.lock();
        model.next_conn += 1;
        let id = model.next_conn;
        match payload.username {
            Some(user) => login::login(&mut model, id, &user.to_string(), payload, client_static, tx),
            None => {
                if login::register(&mut model, id, payload, client_static, tx) {
                    drop(model);
                    tokio::spawn(login::rotate_refs(Arc::clone(self), id));
                }
            }
        }
        id
    }

    /// Connection `conn` closed.
    fn closed(&self, conn: u64) {
        self.lock().conns.remove(&conn);
    }

    /// A node from connection `conn`.
    async fn handle(self: &Arc<Self>, conn: u64, node: Node) {
        tracing::trace!(conn, tag = %node.tag, attrs = ?node.attrs, "from the client");
        let xmlns = nodes::attr(&node, "xmlns");
        match node.tag.as_str() {
            "iq" if xmlns.as_deref() == Some("encrypt") && node.get_optional_child("key").is_some() => {
                return chat::fetch_prekeys(self, conn, &node).await;
            }
            "message" => return chat::on_message(self, conn, &node).await,
            _ => {}
        }
        if xmlns.as_deref() == Some("w:m") && node.get_optional_child("media_conn").is_some() {
            let answer = nodes::result(&node, vec![self.media.media_conn()]);
            return self.lock().send(conn, answer);
        }
        let mut model = self.lock();
        if restrictions::is_query(&node)
            && let Some((phone, _)) = iq::logged_in(&model, conn)
        {
            let answer = restrictions::answer(&mut model, &self.config.ban, &phone, &node);
            return model.send(conn, answer);
        }
        if picture::is_picture_iq(&node) {
            let phone = iq::logged_in(&model, conn).map(|(phone, _)| phone);
            let answer = picture::handle(&mut model, &self.media, phone.as_deref(), &node);
            return model.send(conn, answer);
        }
        if pair_code::is_request(&node) {
            return pair_code::on_request(&mut model, conn, &node);
        }
        if node.tag == "iq" {
            match pairing::on_signed(&mut model, conn, &node) {
                pairing::Signed::NotASignature => {}
                pairing::Signed::Refused => return,
                pairing::Signed::Linked(phone, device) => {
                    drop(model);
                    tokio::spawn(linked(Arc::clone(self), phone, device));
                    return;
                }
            }
        }
        iq::handle(&mut model, conn, &node);
    }
}

/// What the phone of `phone` does once its companion `device` linked: it shares its app state
/// key (the companion waits for it before its first sync), then pushes the history.
async fn linked(net: Arc<Network>, phone: String, device: u16) {
    appstate::share_key(&net, &phone, device).await;
    history::on_link(&net, &phone, device).await;
}

/// Starts the front end in this process.
pub async fn start(config: WaWebConfig) -> anyhow::Result<WaWebHandle> {
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("binding the WhatsApp Web front end to {}:{}", config.host, config.port))?;
    let addr = listener.local_addr().context("reading the front end's address")?;
    let net = Arc::new(Network {
        config,
        identity: ServerIdentity::generate(),
        model: Mutex::new(Model::default()),
        media: Arc::new(media::MediaStore::default()),
    });
    media::start(Arc::clone(&net.media), &net.config.host).await?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    let accepting = Arc::clone(&net);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(conn::serve(Arc::clone(&accepting), stream));
                    }
                    Err(err) => tracing::warn!(%err, "accepting a WhatsApp Web connection failed"),
                },
            }
        }
    });
    tracing::info!(%addr, "WhatsApp Web front end listening");
    Ok(WaWebHandle {
        addr,
        net,
        stop: Some(stop),
        task: Some(task),
    })
}
