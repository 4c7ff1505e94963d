//! Many concurrent sessions on one simulator: all connect and each receives a message.

use std::time::Duration;

use futures_util::StreamExt;
use wafleet_core::db::NewUserRole;
use wafleet_core::link::{Link, LinkEvent, OpenMode};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::Email;
use wafleet_sim::{SimConfig, SimLink};

const SESSIONS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sessions_connect_and_receive() {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let db = test_db.db.clone();
    let sim = wafleet_sim::start(SimConfig::for_tests())
        .await
        .expect("start the simulator");
    let network = sim.control();
    let link = SimLink::new(sim.ws_url(), db.clone(), test_db.keys.clone());

    let email = Email::parse("scale@example.com").expect("email");
    let user = db
        .create_user(&email, "not-a-hash", NewUserRole::Admin)
        .await
        .expect("user");
    let phones: Vec<String> = (0..SESSIONS).map(|n| format!("+6013{n:07}")).collect();
    let provisioned = network.provision(phones.clone()).await.expect("provision");
    let mut devices = Vec::with_capacity(SESSIONS);
    for (n, account) in provisioned.iter().enumerate() {
        let device = db
            .create_device(user.id, &format!("device {n}"), None)
            .await
            .expect("device")
            .id;
        link.adopt(device, account).await.expect("store credentials");
        devices.push(device);
    }

    let opened: Vec<_> = futures_util::stream::iter(devices)
        .map(|device| {
            let link = link.clone();
            async move {
                let mut session = link.open(device, OpenMode::Connect).await.expect("open");
                let mut events = session.take_events().expect("events");
                let first = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
                assert!(matches!(first, Ok(Some(LinkEvent::Connected))), "{first:?}");
                (session, events)
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let state = network.state().await.expect("state");
    assert_eq!(state.connected_sessions, SESSIONS);

    let injected: Vec<String> = futures_util::stream::iter(phones.iter())
        .map(|phone| {
            let network = network.clone();
            async move {
                network
                    .inject_text(phone, "+60191234567", "hello")
                    .await
                    .expect("inject")
                    .id
            }
        })
        .buffered(32)
        .collect()
        .await;
    let received: Vec<String> = futures_util::stream::iter(opened)
        .map(|(session, mut events)| async move {
            let event = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
            let Ok(Some(LinkEvent::Message { message, ack })) = event else {
                panic!("expected a message: {event:?}");
            };
            ack.done();
            drop(session);
            message.id
        })
        .buffer_unordered(SESSIONS)
        .collect()
        .await;
    let mut received = received;
    received.sort();
    let mut injected = injected;
    injected.sort();
    assert_eq!(received, injected, "every session got its message exactly once");
}
