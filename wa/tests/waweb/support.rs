//! The world each check runs in: a database of its own, a WhatsApp Web front end, and links.

use std::time::Duration;

use tokio::sync::mpsc;
use wafleet_core::keys::KeyRing;
use wafleet_core::link::{Link, LinkEvent, OpenMode, Session};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_sim::conformance;
use wafleet_sim::waweb::{self, WaWebConfig, WaWebHandle};
use wafleet_wa::{WaLink, WaLinkConfig, WaStore};

/// How long any expected event may take (the client's post-login work takes a few seconds on its own).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A test's database, front end and one device's store.
pub struct World {
    /// The database (kept alive for the test's length).
    pub test: TestDb,
    /// The simulated WhatsApp.
    pub net: WaWebHandle,
    /// The device's client state.
    pub store: WaStore,
}

impl World {
    /// A fresh database with one device, and a front end with test timings.
    pub async fn new(backend: Backend) -> World {
        World::in_database(TestDb::new(backend).await).await
    }

    /// [`World::new`] in the database `test` (e.g. one at an older schema).
    pub async fn in_database(test: TestDb) -> World {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("wafleet_sim=debug,wafleet_wa=debug,whatsapp_rust=info,wacore=info")
            .with_test_writer()
            .try_init();
        let (test, _user, mut stores) = crate::common::devices_in(test, 1).await;
        let net = waweb::start(WaWebConfig::for_tests())
            .await
            .expect("start the front end");
        World {
            test,
            net,
            store: stores.remove(0),
        }
    }

    /// A new link instance (as a restarted worker would make), pointed at the front end, sealing
    /// key material with `keys`.
    pub fn link_with(&self, keys: &KeyRing) -> WaLink {
        WaLink::with_config(
            self.test.db.clone(),
            keys.clone(),
            WaLinkConfig {
                server_url: Some(self.net.url()),
                connect_timeout: Duration::from_secs(5),
                // Nothing may be fetched from web.whatsapp.com.
                app_version: Some((2, 3000, 1)),
                // The simulated media host speaks plain HTTP.
                plain_http_media: true,
                ..WaLinkConfig::default()
            },
        )
    }

    /// Opens the device's session on a new link.
    pub async fn open(&self, mode: OpenMode) -> (Box<dyn Session>, mpsc::Receiver<LinkEvent>) {
        self.open_with(&self.test.keys, mode).await
    }

    /// [`World::open`] on a link sealing with `keys`.
    pub async fn open_with(&self, keys: &KeyRing, mode: OpenMode) -> (Box<dyn Session>, mpsc::Receiver<LinkEvent>) {
        let mut session = self
            .link_with(keys)
            .open(self.store.device(), mode)
            .await
            .expect("open a session");
        let events = session.take_events().expect("events");
        (session, events)
    }

    /// Links the device by QR with the phone of `phone` (digits) and waits until it is connected.
    pub async fn pair_by_qr(&self, phone: &str) -> (Box<dyn Session>, mpsc::Receiver<LinkEvent>) {
        let (session, mut events) = self.open(OpenMode::PairQr).await;
        let code = match next(&mut events, "a QR code").await {
            LinkEvent::QrCode { code, .. } => code,
            other => panic!("expected a QR code, got {other:?}"),
        };
        // The code may have been replaced between reading and scanning: scan the newest one.
        let mut code = code;
        while self.net.scan(&code, phone).is_err() {
            match next(&mut events, "a newer QR code").await {
                LinkEvent::QrCode { code: newer, .. } => code = newer,
                other => panic!("expected a QR code, got {other:?}"),
            }
        }
        wait_for(&mut events, "PairSuccess", |e| {
            matches!(e, LinkEvent::PairSuccess { .. })
        })
        .await;
        wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
        (session, events)
    }

    /// Opens the device for linking with `phone` (digits) by pairing code and returns the code
    /// the client shows, with the session and its events.
    pub async fn request_code(&self, phone: &str) -> (String, Box<dyn Session>, mpsc::Receiver<LinkEvent>) {
        let number = format!("+{phone}").parse().expect("a valid number");
        let (session, mut events) = self.open(OpenMode::PairCode(number)).await;
        let LinkEvent::PairCode { code } =
            wait_for(&mut events, "a pair code", |e| matches!(e, LinkEvent::PairCode { .. })).await
        else {
            unreachable!("wait_for returns what it waited for");
        };
        (code, session, events)
    }

    /// Links the device by pairing code, typed on the phone of `phone` (digits), and waits until
    /// it is connected.
    pub async fn pair_by_code(&self, phone: &str) -> (Box<dyn Session>, mpsc::Receiver<LinkEvent>) {
        let (code, session, mut events) = self.request_code(phone).await;
        self.net
            .enter_code(phone, &code)
            .await
            .expect("the phone types the code");
        wait_for(&mut events, "PairSuccess", |e| {
            matches!(e, LinkEvent::PairSuccess { .. })
        })
        .await;
        wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
        (session, events)
    }
}

/// The next event within [`EVENT_TIMEOUT`] (LID mappings skipped), or a panic naming what was
/// expected.
pub async fn next(events: &mut mpsc::Receiver<LinkEvent>, expecting: &str) -> LinkEvent {
    conformance::next_event_within(EVENT_TIMEOUT, events, expecting).await
}

/// The first event matching `wanted`, skipping QR codes and receipts; anything else first fails.
pub async fn wait_for(
    events: &mut mpsc::Receiver<LinkEvent>,
    expecting: &str,
    wanted: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    conformance::wait_for_within(EVENT_TIMEOUT, events, expecting, wanted).await
}
