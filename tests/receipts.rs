//! A delivery receipt that arrives while a device changes hands is not lost: the network keeps a
//! receipt until the device that got it says it is stored, and replays it to the next holder.
//! On SQLite and on PostgreSQL + Redis, against the project's network simulator.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::faults::{FreezeAfterSend, worker_process};
use support::link_simulated_devices;
use wafleet_core::Db;
use wafleet_core::cache::{Invalidations, ReadCache};
use wafleet_core::db::NewSend;
use wafleet_core::link::Jid;
use wafleet_core::queue::{SendJob, sends_queue};
use wafleet_core::shutdown::{self, ShutdownTrigger};
use wafleet_core::testing::{Backend, TestDb, eventually};
use wafleet_core::types::Email;
use wafleet_sim::{SimConfig, SimHandle, SimLink};

/// The contact's phone reports delivery this long after a message arrives: long enough for the
/// device to change hands in between.
const DELIVERED_AFTER: Duration = Duration::from_secs(3);

/// A worker on `test`'s database and queues.
fn start_worker(test: &TestDb, queues: &wafleet_core::queue::Queues, sim: &SimHandle, id: &str) -> Worker {
    let (trigger, signal) = shutdown::channel();
    let mut options = wafleet_workers::WorkerOptions::from_settings(&test.settings).expect("worker options");
    options.id = id.into();
    let link = Arc::new(SimLink::new(sim.ws_url(), test.db.clone(), test.keys.clone()));
    let task = tokio::spawn(wafleet_workers::run(
        test.db.clone(),
        link,
        queues.clone(),
        Invalidations::Local(ReadCache::off()),
        options,
        signal,
    ));
    Worker { trigger, task }
}

struct Worker {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    /// Stops the worker the way SIGTERM does: devices handed off, buffers written.
    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

async fn status(db: &Db, id: i64) -> String {
    const SQL: &str = "SELECT status FROM outbound_messages WHERE id = $1";
    wafleet_core::testing::fetch_optional(db, SQL, &[id.into()])
        .await
        .expect("the send exists")
}

async fn a_receipt_during_a_hand_over_is_not_lost(backend: Backend) {
    let test = TestDb::with_settings(backend, |s| s.lease_ttl_secs = 3).await;
    let db = &test.db;
    let sim = wafleet_sim::start(SimConfig {
        delivered_ms: DELIVERED_AFTER.as_millis() as u64,
        read_probability: 0.0,
        ..SimConfig::for_tests()
    })
    .await
    .unwrap();
    let control = sim.control();
    let device = link_simulated_devices(db, &control, &sim.ws_url(), 1, &test.keys, |_| "owner".into()).await[0];
    let user = db
        .user_by_email(&Email::parse("owner@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    support::unpaced(db, user.id, &[device]).await;
    let queues = test.queues().await;
    let first = start_worker(&test, &queues, &sim, "first");
    eventually(Duration::from_secs(30), "the first worker holds the device", || async {
        db.device_holder(device).await.unwrap().as_deref() == Some("first")
    })
    .await;

    let (send, _) = db
        .record_send(&NewSend {
            user: user.id,
            device,
            idempotency_key: "hand-over".into(),
            to: Jid("60199990001@s.whatsapp.net".into()),
            body: Some("are you there?".into()),
            media: None,
            structured: None,
            forwarded: false,
        })
        .await
        .unwrap();
    queues
        .push(
            &sends_queue("first"),
            SendJob {
                message: send.id,
                device,
            },
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the send goes out", || async {
        status(db, send.id).await == "sent"
    })
    .await;
    first.stop().await;
    assert_eq!(
        status(db, send.id).await,
        "sent",
        "the receipt must come after the hand-over for this test to mean anything"
    );

    // The receipt comes while no worker holds the device; then another takes it.
    tokio::time::sleep(DELIVERED_AFTER + Duration::from_millis(500)).await;
    let second = start_worker(&test, &queues, &sim, "second");
    eventually(
        Duration::from_secs(30),
        "the replayed receipt marks the send delivered",
        || async { status(db, send.id).await == "delivered" },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the network forgets the stored receipt",
        || async {
            let state = control.state().await.unwrap();
            state.accounts.iter().all(|a| a.pending_receipts == 0)
        },
    )
    .await;
    second.stop().await;
}

/// A worker dies after a send went out and before it recorded it: the next holder resolves the
/// send by its receipt (it went out under an id recorded before it left), so it ends delivered,
/// neither failed nor sent again.
async fn a_send_whose_worker_died_mid_flight_is_resolved_by_its_receipt(backend: Backend) {
    let test = TestDb::with_settings(backend, |s| {
        s.lease_ttl_secs = 3;
        s.send_confirm_wait_secs = 60;
    })
    .await;
    let db = &test.db;
    // The receipt comes after the worker is gone (else that worker would store it itself).
    let sim = wafleet_sim::start(SimConfig {
        delivered_ms: DELIVERED_AFTER.as_millis() as u64,
        read_probability: 0.0,
        ..SimConfig::for_tests()
    })
    .await
    .unwrap();
    let control = sim.control();
    let device = link_simulated_devices(db, &control, &sim.ws_url(), 1, &test.keys, |_| "owner".into()).await[0];
    let user = db
        .user_by_email(&Email::parse("owner@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    support::unpaced(db, user.id, &[device]).await;
    let url = sim.ws_url();
    let frozen = worker_process(&test.settings, &test.keys, "frozen", move |db, keys| {
        Arc::new(FreezeAfterSend(Arc::new(SimLink::new(url, db, keys))))
    });
    eventually(
        Duration::from_secs(30),
        "the freezing worker holds the device",
        || async { db.device_holder(device).await.unwrap().as_deref() == Some("frozen") },
    )
    .await;
    let (send, _) = db
        .record_send(&NewSend {
            user: user.id,
            device,
            idempotency_key: "mid-flight".into(),
            to: Jid("60199990002@s.whatsapp.net".into()),
            body: Some("did you get this?".into()),
            media: None,
            forwarded: false,
            structured: None,
        })
        .await
        .unwrap();
    let phone = db.device(user.id, device).await.unwrap().phone.unwrap().to_string();
    eventually(Duration::from_secs(30), "the send reaches the network", || async {
        !control.sent(&phone).await.unwrap().is_empty()
    })
    .await;
    assert_eq!(status(db, send.id).await, "sending", "on the wire, not yet recorded");
    frozen.shutdown_background();

    let next = start_worker(&test, &test.queues().await, &sim, "next");
    eventually(Duration::from_secs(30), "the receipt resolves the send", || async {
        status(db, send.id).await == "delivered"
    })
    .await;
    let sent = control.sent(&phone).await.unwrap();
    assert_eq!(sent.len(), 1, "sent once: {sent:?}");
    let recorded = db.outbound_message(user.id, send.id).await.unwrap();
    assert_eq!(
        recorded.wa_message_id.as_deref(),
        Some(sent[0].id.as_str()),
        "recorded under the id it went out with"
    );
    assert!(recorded.sent_at.is_some(), "resolved sends count as sent");
    let chat = db
        .message_page(user.id, device, "60199990002@s.whatsapp.net", None, 10)
        .await
        .unwrap();
    assert_eq!(chat.len(), 1, "the send shows in its chat once: {chat:?}");
    assert_eq!(chat[0].status.as_deref(), Some("delivered"), "with its receipt's tick");
    next.stop().await;
}

wafleet_core::testing::on_both_backends!(
    a_receipt_during_a_hand_over_is_not_lost,
    a_send_whose_worker_died_mid_flight_is_resolved_by_its_receipt
);
