//! Without a server to talk to, opening a session fails quickly and clearly instead of hanging.

mod common;

use std::time::{Duration, Instant};

use wafleet_core::link::{Link, LinkError, OpenMode};
use wafleet_core::testing::Backend;
use wafleet_wa::{WaLink, WaLinkConfig};
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::traits::DeviceStore;

/// A local port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    port
}

fn link(test: &wafleet_core::testing::TestDb) -> WaLink {
    WaLink::with_config(
        test.db.clone(),
        test.keys.clone(),
        WaLinkConfig {
            server_url: Some(format!("ws://127.0.0.1:{}/ws/chat", closed_port())),
            connect_timeout: Duration::from_secs(2),
            app_version: Some((2, 3000, 1)),
            ..WaLinkConfig::default()
        },
    )
}

#[tokio::test]
async fn pairing_against_a_closed_port_is_a_transient_error() {
    let (test, _user, stores) = common::devices(Backend::Sqlite, 1).await;
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        link(&test).open(stores[0].device(), OpenMode::PairQr),
    )
    .await
    .expect("open must not hang");
    let Err(LinkError::Transient(reason)) = outcome else {
        panic!("expected a transient error, got {:?}", outcome.map(|_| "a session"));
    };
    assert!(reason.contains("127.0.0.1"), "the error names the server: {reason}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connecting_a_paired_device_without_network_is_a_transient_error() {
    let (test, _user, stores) = common::devices(Backend::Sqlite, 1).await;
    let mut device = Device::new();
    device.pn = Some("60123456789:7@s.whatsapp.net".parse().expect("jid"));
    stores[0].save(&device).await.unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        link(&test).open(stores[0].device(), OpenMode::Connect),
    )
    .await
    .expect("open must not hang");
    assert!(matches!(outcome, Err(LinkError::Transient(_))), "{:?}", outcome.err());
}

#[tokio::test]
async fn connecting_an_unpaired_device_is_a_device_error() {
    let (test, _user, stores) = common::devices(Backend::Sqlite, 1).await;
    let outcome = link(&test).open(stores[0].device(), OpenMode::Connect).await;
    assert!(matches!(outcome, Err(LinkError::Device(_))), "{:?}", outcome.err());
}

#[tokio::test]
async fn a_server_that_never_answers_gives_a_disconnected_event() {
    // Accepts TCP connections and holds them without ever completing the WebSocket upgrade.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (test, _user, stores) = common::devices(Backend::Sqlite, 1).await;
    let link = WaLink::with_config(
        test.db.clone(),
        test.keys.clone(),
        WaLinkConfig {
            server_url: Some(format!("ws://127.0.0.1:{port}/ws/chat")),
            connect_timeout: Duration::from_secs(1),
            app_version: Some((2, 3000, 1)),
            ..WaLinkConfig::default()
        },
    );
    let mut session = tokio::time::timeout(Duration::from_secs(10), link.open(stores[0].device(), OpenMode::PairQr))
        .await
        .expect("open must not hang")
        .expect("the server is reachable, so the session starts");
    assert!(
        stores[0].exists().await.unwrap(),
        "the client created the device's row through our store"
    );
    let mut events = session.take_events().expect("events");
    assert!(session.take_events().is_none(), "events are handed out once");
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within a few seconds")
        .expect("channel open");
    assert!(
        matches!(&event, wafleet_core::link::LinkEvent::Disconnected { reason } if reason.contains(&port.to_string())),
        "{event:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), session.close())
        .await
        .expect("close must not hang");
    let saved = stores[0].load().await.unwrap().expect("close keeps the device's state");
    assert_eq!(
        saved.app_version_secondary, 3000,
        "the session's in-memory device was saved"
    );
    silent.abort();
}
