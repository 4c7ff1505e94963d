//! Fixtures shared by the end-to-end tests that run `wafleet` processes against the simulator:
//! devices that want a session, linked with the simulator without pairing, and where their leases
//! stand. Each test file uses part of it.
#![allow(dead_code)]

pub mod faults;
pub mod redis;
pub mod stack;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wafleet_core::Db;
use wafleet_core::db::{Desired, NewUserRole};
use wafleet_core::keys::KeyRing;
use wafleet_core::testing::poll_for;
use wafleet_core::types::{DeviceId, Email, PhoneNumber, Timestamp};
use wafleet_sim::{ControlClient, SimLink};

/// A device named `name` of the user `owner@example.com` (created when missing; the first user
/// becomes the administrator), whose owner asked for a session.
pub async fn device_of(db: &Db, owner: &str, name: &str, phone: &str) -> DeviceId {
    let email = Email::parse(&format!("{owner}@example.com")).unwrap();
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

/// A device of a user of its own (`name@example.com`) that wants a session.
pub async fn device_wanting_a_session(db: &Db, name: &str, phone: &str) -> DeviceId {
    device_of(db, name, name, phone).await
}

/// `count` devices the simulator knows as linked: each number is provisioned in the simulator
/// (no pairing) and its credentials stored sealed with `keys`, so a worker given that key opens
/// the session as after a restart.
/// `owner(i)` names the owner of the i-th device (see [`device_of`]).
pub async fn link_simulated_devices(
    db: &Db,
    control: &ControlClient,
    ws_url: &str,
    count: usize,
    keys: &KeyRing,
    owner: impl Fn(usize) -> String,
) -> Vec<DeviceId> {
    let phones: Vec<String> = (0..count).map(|i| format!("+6012{:07}", 1_000_000 + i)).collect();
    let provisioned = control.provision(phones).await.unwrap();
    let link = SimLink::new(ws_url.to_owned(), db.clone(), keys.clone());
    let mut devices = Vec::with_capacity(count);
    for (i, account) in provisioned.iter().enumerate() {
        let device = device_of(db, &owner(i), &format!("d{i}"), &account.phone).await;
        link.adopt(device, account).await.unwrap();
        // As pairing would have recorded it.
        wafleet_core::testing::execute(
            db,
            "UPDATE devices SET jid = $1 WHERE id = $2",
            &[account.jid.0.as_str().into(), device.0.into()],
        )
        .await;
        devices.push(device);
    }
    devices
}

/// The PostgreSQL pool behind `db` (the multi-process tests run on PostgreSQL).
pub fn postgres(db: &Db) -> &sqlx::PgPool {
    let Db::Postgres(pool) = db else {
        unreachable!("multi-process tests run on PostgreSQL")
    };
    pool
}

/// Live leases by holder, and how many devices are online.
pub async fn holdings(db: &Db) -> (HashMap<String, usize>, usize) {
    let pool = postgres(db);
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT holder, COUNT(*) FROM device_leases WHERE holder IS NOT NULL AND expires_at > $1 GROUP BY holder",
    )
    .bind(Timestamp::now())
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

/// The safety property, which holds at every moment and not only at the end: no account has two
/// live sessions at the simulator.
pub fn assert_never_twice(state: &wafleet_sim::control::StateView) {
    let twice: Vec<&str> = state
        .accounts
        .iter()
        .filter(|a| a.connected > 1)
        .map(|a| a.phone.as_str())
        .collect();
    assert!(twice.is_empty(), "devices connected twice: {twice:?}");
}

/// Waits until `devices` devices are held, online and connected at the simulator exactly once;
/// returns how long that took. Fails if any device is ever connected twice, or after `limit`.
pub async fn wait_all_held(db: &Db, sim: &ControlClient, devices: usize, limit: Duration) -> Duration {
    wait_held_where(db, sim, devices, limit, "all held", |_| true).await
}

/// [`wait_all_held`], until the live leases by holder also satisfy `settled` (`what` says how).
pub async fn wait_held_where(
    db: &Db,
    sim: &ControlClient,
    devices: usize,
    limit: Duration,
    what: &str,
    settled: impl Fn(&HashMap<String, usize>) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    let done = poll_for(limit, async || {
        let (held, online) = holdings(db).await;
        let state = sim.state().await.unwrap();
        assert_never_twice(&state);
        let total: usize = held.values().sum();
        let connected = state.connected_sessions;
        if total == devices && online == devices && connected == devices && settled(&held) {
            return Some(());
        }
        last = format!("held {held:?}, online {online}, connected {connected}");
        None
    })
    .await;
    assert!(done.is_some(), "not {what} after {limit:?}: {last}");
    start.elapsed()
}

/// A `wafleet worker` process, killed (SIGKILL) when dropped unless it already exited.
pub struct Worker {
    /// The process.
    pub child: Child,
}

impl Worker {
    /// kill -9: no drain, no hand-off, as when a machine dies.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `wafleet worker` named `id` on the test's database and queue namespace (scale-out mode),
/// connecting to the simulator at `simulator_url`.
pub fn spawn_worker(id: &str, settings: &wafleet_core::Settings, simulator_url: &str, lease_ttl_secs: u64) -> Worker {
    let child = Command::new(env!("CARGO_BIN_EXE_wafleet"))
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", settings.database_url.as_ref().unwrap().expose())
        .env("REDIS_URL", settings.redis_url.as_ref().unwrap().expose())
        .env("QUEUE_NAMESPACE", &settings.queue_namespace)
        .env("DATABASE_MAX_CONNECTIONS", "4")
        .env("WHATSAPP_LINK", "simulator")
        .env("SIMULATOR_URL", simulator_url)
        .env("LEASE_TTL_SECS", lease_ttl_secs.to_string())
        // The simulator's receipts come within milliseconds: an unconfirmed send need not wait
        // the production default for one.
        .env("SEND_CONFIRM_WAIT_SECS", "10")
        .env("WORKER_ID", id)
        .env("WA_KEYS_SECRET", settings.wa_keys_secret.as_ref().unwrap().expose())
        .env("PORT", "0")
        // WAFLEET_TEST_WORKER_LOG sets the workers' log filter, to see what they do.
        .env(
            "RUST_LOG",
            std::env::var("WAFLEET_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        // … and WAFLEET_TEST_WORKER_LOG_DIR where their logs go (by worker id).
        .stdout(match std::env::var("WAFLEET_TEST_WORKER_LOG_DIR") {
            Ok(dir) => Stdio::from(std::fs::File::create(format!("{dir}/{id}.log")).unwrap()),
            Err(_) => Stdio::null(),
        })
        .spawn()
        .unwrap();
    Worker { child }
}

/// Turns pacing off for `devices` of `user`: for tests about delivery guarantees, where the
/// default pace (a few sends a minute) would make a thousand sends take hours.
pub async fn unpaced(db: &Db, user: wafleet_core::types::UserId, devices: &[DeviceId]) {
    for &device in devices {
        let mut policy = db.device_pacing(device).await.unwrap().policy;
        policy.enabled = false;
        db.set_pacing(user, device, &policy).await.unwrap();
    }
}
