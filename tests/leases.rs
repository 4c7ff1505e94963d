//! Device leases across workers: fencing of stale holders (both backends), and several real
//! `wafleet worker` processes sharing 300 simulated devices on PostgreSQL: every device held by
//! exactly one worker, the spread within ±10% of the fair share, `kill -9` of a worker (its
//! devices move once its liveness lock is gone, well before its leases expire), a worker whose
//! lock connection is cut (it steps down; nothing is ever held twice), and a worker joining.
//! Runs against the project's network simulator only.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::faults::{OpensAtOnce, SlowOpen, worker_process};
use support::{Worker, device_wanting_a_session, link_simulated_devices, spawn_worker, wait_held_where};
use wafleet_core::Db;
use wafleet_core::db::DeviceStatus;
use wafleet_core::link::{IncomingMessage, Jid, MessageKind};
use wafleet_core::testing::{Backend, TestDb, eventually, fetch_optional};
use wafleet_core::types::{Email, Timestamp};
use wafleet_sim::{SimConfig, SimLink};

async fn a_stale_holder_cannot_write(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let device = device_wanting_a_session(db, "fenced", "+60123456789").await;
    assert_eq!(
        db.unheld_devices().await.unwrap(),
        1,
        "wanted and not held: what autoscaling follows"
    );
    let first = db.claim_leases("worker-a", 10, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(db.unheld_devices().await.unwrap(), 0);
    let a = first[0];
    assert!(
        db.claim_leases("worker-b", 10, 1).await.unwrap().is_empty(),
        "a held lease cannot be claimed"
    );
    db.set_device_status(a, DeviceStatus::Online).await.unwrap();

    // Worker A stalls past its lease (a long pause, a partition); B claims the device.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        db.unheld_devices().await.unwrap(),
        1,
        "an expired lease counts as unheld"
    );
    let taken = db.claim_leases("worker-b", 10, 30).await.unwrap();
    assert_eq!(taken.len(), 1);
    let b = taken[0];
    assert!(b.token > a.token, "every claim raises the fencing token");

    // A wakes up and writes as if it still held the device: every write is refused.
    let err = db.set_device_status(a, DeviceStatus::Offline).await.unwrap_err();
    assert!(matches!(err, wafleet_core::Error::Fenced), "{err:?}");
    let message = IncomingMessage {
        id: "stale-1".into(),
        chat: Jid("60191000001@s.whatsapp.net".into()),
        sender: Jid("60191000001@s.whatsapp.net".into()),
        sender_alt: None,
        from_me: false,
        push_name: None,
        kind: MessageKind::Text,
        text: Some("written by a stale holder".into()),
        sent_at: Timestamp::now(),
        history: false,
        media: None,
    };
    assert!(matches!(
        db.store_message(a, &message).await,
        Err(wafleet_core::Error::Fenced)
    ));
    assert!(matches!(
        db.mark_unlinked(a, DeviceStatus::Banned, "stale").await,
        Err(wafleet_core::Error::Fenced)
    ));
    assert!(
        db.renew_leases("worker-a", 30).await.unwrap().is_empty(),
        "A learns on renewal that it lost the device"
    );
    db.release_lease(a).await.unwrap();
    assert!(
        db.fence_holds(b).await.unwrap(),
        "a stale release does not free B's lease"
    );

    let user = db
        .user_by_email(&Email::parse("fenced@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let stored = db.device(user.id, device).await.unwrap();
    assert_eq!(stored.status, DeviceStatus::Online, "A's late writes changed nothing");
    assert!(db.list_chats(user.id, device, 10).await.unwrap().is_empty());
    // B, the holder, writes normally.
    assert!(db.store_message(b, &message).await.unwrap());
    db.set_device_status(b, DeviceStatus::Connecting).await.unwrap();
}

/// After a failover a worker claims many devices in one round; their sessions open side by side,
/// a bounded number at once, not one after another. Each open here takes 300 ms: one after
/// another, the 48 devices would take 14 s.
async fn a_rounds_claims_open_side_by_side(backend: Backend) {
    const CLAIMED: usize = 48;
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let sim = wafleet_sim::start(SimConfig::for_tests()).await.unwrap();
    let control = sim.control();
    link_simulated_devices(db, &control, &sim.ws_url(), CLAIMED, &test.keys, |i| format!("side{i}")).await;

    let url = sim.ws_url();
    let opens = Arc::new(OpensAtOnce::default());
    let counted = Arc::clone(&opens);
    let worker = worker_process(&test.settings, &test.keys, "side-by-side", move |db, keys| {
        Arc::new(SlowOpen {
            inner: Arc::new(SimLink::new(url, db, keys)),
            delay: Duration::from_millis(300),
            opens: counted,
        })
    });
    eventually(Duration::from_secs(60), "every device online", || async {
        let state = control.state().await.unwrap();
        support::assert_never_twice(&state);
        let online: Option<i64> = fetch_optional(db, "SELECT COUNT(*) FROM devices WHERE status = 'online'", &[]).await;
        online == Some(CLAIMED as i64) && state.accounts.iter().filter(|a| a.connected == 1).count() == CLAIMED
    })
    .await;
    let most = opens.most();
    assert!(most > 1, "the sessions opened one after another");
    assert!(
        most <= 32,
        "{most} sessions opened at once: more than the worker's bound"
    );
    assert_eq!(
        db.unheld_devices().await.unwrap(),
        0,
        "every device is held by the one worker"
    );
    worker.shutdown_background();
}

/// Long, so that devices moving sooner can only be the liveness lock's doing.
const LEASE_TTL_SECS: u64 = 30;
const DEVICES: usize = 300;

/// Waits until every device is held and online, by exactly `workers`, each within ±10% of the fair
/// share; returns how long that took.
async fn wait_balanced(db: &Db, sim: &wafleet_sim::ControlClient, workers: &[&str], limit: Duration) -> Duration {
    let fair = DEVICES as f64 / workers.len() as f64;
    let balanced = |held: &HashMap<String, usize>| {
        held.len() == workers.len()
            && workers.iter().all(|w| {
                held.get(*w)
                    .is_some_and(|n| (*n as f64 - fair).abs() <= fair * 0.1 + 0.5)
            })
    };
    wait_held_where(db, sim, DEVICES, limit, "balanced", balanced).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_devices_survive_kill_9_and_rebalance() {
    let test = TestDb::new(Backend::Postgres).await;
    let db = &test.db;
    let sim = wafleet_sim::start(SimConfig::for_tests()).await.unwrap();
    let control = sim.control();
    link_simulated_devices(db, &control, &sim.ws_url(), DEVICES, &test.keys, |i| format!("d{i}")).await;

    let mut workers: HashMap<&str, Worker> = ["w1", "w2", "w3"]
        .into_iter()
        .map(|id| (id, spawn_worker(id, &test.settings, &sim.ws_url(), LEASE_TTL_SECS)))
        .collect();
    let took = wait_balanced(db, &control, &["w1", "w2", "w3"], Duration::from_secs(60)).await;
    println!("300 devices held and online across 3 workers in {took:?}");

    // kill -9: no hand-off, no release. Its liveness lock goes with its database connection, so
    // the others move its devices without waiting for its leases to expire.
    let killed = workers.remove("w1").unwrap();
    let pid = killed.child.id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let killed_at = Instant::now();
    drop(killed);
    let took = wait_balanced(db, &control, &["w2", "w3"], Duration::from_secs(LEASE_TTL_SECS / 2)).await;
    println!(
        "after kill -9 of a worker, every device was held and online again in {took:?} (lease TTL {LEASE_TTL_SECS} s)"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(LEASE_TTL_SECS / 2),
        "a dead worker's devices move well before its leases expire"
    );

    // A live worker loses its lock's connection (cut by the server): it steps down from every
    // device before the others can move them, takes its lock again, and takes its share again.
    // `wait_balanced` fails if any device is ever connected twice on the way.
    const W2_LEASES: &str = "SELECT device_id, token FROM device_leases WHERE holder = 'w2' ORDER BY device_id";
    let before: Vec<(i64, i64)> = sqlx::query_as(W2_LEASES)
        .fetch_all(support::postgres(db))
        .await
        .unwrap();
    assert!(!before.is_empty(), "w2 holds devices");
    let cut: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'wafleet-worker w2'",
    )
    .fetch_all(support::postgres(db))
    .await
    .unwrap();
    assert_eq!(cut, [(true,)], "w2's lock connection was found and cut");
    eventually(
        Duration::from_secs(LEASE_TTL_SECS / 2),
        "w2 let go of its devices",
        || async {
            let tokens: HashMap<i64, i64> = sqlx::query_as("SELECT device_id, token FROM device_leases")
                .fetch_all(support::postgres(db))
                .await
                .unwrap()
                .into_iter()
                .collect();
            before.iter().all(|(device, token)| tokens[device] > *token)
        },
    )
    .await;
    let took = wait_balanced(db, &control, &["w2", "w3"], Duration::from_secs(LEASE_TTL_SECS)).await;
    println!("after w2's lock connection was cut, all held and balanced again in {took:?}");

    // A fourth worker joins and takes its share by graceful hand-off.
    workers.insert("w4", spawn_worker("w4", &test.settings, &sim.ws_url(), LEASE_TTL_SECS));
    let took = wait_balanced(db, &control, &["w2", "w3", "w4"], Duration::from_secs(60)).await;
    println!("a joining worker took its share in {took:?}");
}

wafleet_core::testing::on_both_backends!(a_stale_holder_cannot_write, a_rounds_claims_open_side_by_side);
