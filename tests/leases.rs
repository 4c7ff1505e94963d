//! Device leases across workers: fencing of stale holders (both backends), and several real
//! `wafleet worker` processes sharing 300 simulated devices on PostgreSQL: every device held by
//! exactly one worker, the spread within ±10% of the fair share, `kill -9` of a worker, and a
//! worker joining. Runs against the project's network simulator only.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wafleet_core::Db;
use wafleet_core::db::{Desired, DeviceStatus, NewUserRole};
use wafleet_core::link::{IncomingMessage, Jid, MessageKind};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::{DeviceId, Email, PhoneNumber, Timestamp};
use wafleet_sim::{SimConfig, SimLink};

async fn device_wanting_a_session(db: &Db, name: &str, phone: &str) -> DeviceId {
    let email = Email::parse(&format!("{name}@example.com")).unwrap();
    let user = match db.user_by_email(&email).await.unwrap() {
        Some(user) => user,
        None => db
            .create_user(&email, "unused", NewUserRole::FirstBecomesAdmin)
            .await
            .unwrap(),
    };
    let phone: PhoneNumber = phone.parse().unwrap();
    let device = db.create_device(user.id, name, Some(&phone)).await.unwrap();
    db.request_session(user.id, device.id, Desired::Connected, None)
        .await
        .unwrap();
    device.id
}

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
        from_me: false,
        push_name: None,
        kind: MessageKind::Text,
        text: Some("written by a stale holder".into()),
        sent_at: Timestamp::now(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_stale_holder_cannot_write() {
    a_stale_holder_cannot_write(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_stale_holder_cannot_write() {
    a_stale_holder_cannot_write(Backend::Postgres).await
}

/// A `wafleet worker` process, killed when dropped.
struct Worker {
    child: Child,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LEASE_TTL_SECS: u64 = 3;
const DEVICES: usize = 300;

fn spawn_worker(id: &str, database_url: &str, simulator_url: &str) -> Worker {
    let child = Command::new(env!("CARGO_BIN_EXE_wafleet"))
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("DATABASE_MAX_CONNECTIONS", "4")
        .env("WHATSAPP_LINK", "simulator")
        .env("SIMULATOR_URL", simulator_url)
        .env("LEASE_TTL_SECS", LEASE_TTL_SECS.to_string())
        .env("WORKER_ID", id)
        .env("PORT", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Worker { child }
}

/// Live leases by holder, and how many devices are online.
async fn holdings(db: &Db) -> (HashMap<String, usize>, usize) {
    let Db::Postgres(pool) = db else {
        unreachable!("multi-process runs on PostgreSQL")
    };
    let now = Timestamp::now();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT holder, COUNT(*) FROM device_leases WHERE holder IS NOT NULL AND expires_at > $1 GROUP BY holder",
    )
    .bind(now)
    .fetch_all(pool)
    .await
    .unwrap();
    let (online,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM devices WHERE status = 'online'")
        .fetch_one(pool)
        .await
        .unwrap();
    (
        rows.into_iter().map(|(h, n)| (h, n as usize)).collect(),
        online as usize,
    )
}

/// Waits until every device is held and online, by exactly `workers`, each within ±10% of the fair
/// share; returns how long that took.
async fn wait_balanced(db: &Db, sim: &wafleet_sim::ControlClient, workers: &[&str], limit: Duration) -> Duration {
    let start = Instant::now();
    let fair = DEVICES as f64 / workers.len() as f64;
    loop {
        let (held, online) = holdings(db).await;
        let state = sim.state().await.unwrap();
        // The safety property holds at every moment, not only at the end: never two sessions.
        let twice: Vec<&str> = state
            .accounts
            .iter()
            .filter(|a| a.connected > 1)
            .map(|a| a.phone.as_str())
            .collect();
        assert!(twice.is_empty(), "devices connected twice: {twice:?}");
        let total: usize = held.values().sum();
        let balanced = workers.iter().all(|w| {
            held.get(*w)
                .is_some_and(|n| (*n as f64 - fair).abs() <= fair * 0.1 + 0.5)
        });
        if total == DEVICES
            && online == DEVICES
            && state.connected_sessions == DEVICES
            && held.len() == workers.len()
            && balanced
        {
            return start.elapsed();
        }
        let connected = state.connected_sessions;
        assert!(
            start.elapsed() < limit,
            "not balanced after {limit:?}: held {held:?}, online {online}, connected {connected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_devices_survive_kill_9_and_rebalance() {
    let test = TestDb::new(Backend::Postgres).await;
    let db = &test.db;
    let sim = wafleet_sim::start(SimConfig::for_tests()).await.unwrap();
    let control = sim.control();
    let phones: Vec<String> = (0..DEVICES).map(|i| format!("+6012{:07}", 1_000_000 + i)).collect();
    let provisioned = control.provision(phones.clone()).await.unwrap();
    let link = SimLink::new(sim.ws_url(), db.clone());
    for (i, account) in provisioned.iter().enumerate() {
        let device = device_wanting_a_session(db, &format!("d{i}"), &account.phone).await;
        link.adopt(device, account).await.unwrap();
    }
    let url = test.settings.database_url.as_ref().unwrap().expose().to_owned();

    let mut workers: HashMap<&str, Worker> = ["w1", "w2", "w3"]
        .into_iter()
        .map(|id| (id, spawn_worker(id, &url, &sim.ws_url())))
        .collect();
    let took = wait_balanced(db, &control, &["w1", "w2", "w3"], Duration::from_secs(60)).await;
    println!("300 devices held and online across 3 workers in {took:?}");

    // kill -9: no hand-off, no release; its leases must expire and others claim them.
    let killed = workers.remove("w1").unwrap();
    let pid = killed.child.id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let killed_at = Instant::now();
    drop(killed);
    let took = wait_balanced(
        db,
        &control,
        &["w2", "w3"],
        Duration::from_secs(LEASE_TTL_SECS * 4 + 30),
    )
    .await;
    println!(
        "after kill -9 of a worker, every device was held and online again in {took:?} (lease TTL {LEASE_TTL_SECS} s)"
    );
    assert!(
        killed_at.elapsed() >= Duration::from_secs(LEASE_TTL_SECS) / 2,
        "leases are not taken before they can have expired"
    );

    // A fourth worker joins and takes its share by graceful hand-off.
    workers.insert("w4", spawn_worker("w4", &url, &sim.ws_url()));
    let took = wait_balanced(db, &control, &["w2", "w3", "w4"], Duration::from_secs(60)).await;
    println!("a joining worker took its share in {took:?}");
}
