//! Simulated devices: provisioned in the simulator and in the database as already linked (so a
//! worker opens each session as after a restart), or in the database only, to be linked by QR
//! code through the real client (see [`crate::pairing`]); and where their sessions stand.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::{StreamExt, TryStreamExt};
use wafleet_core::Db;
use wafleet_core::db::NewUserRole;
use wafleet_core::types::{DeviceId, Email, Timestamp, UserId};
use wafleet_sim::SimLink;

use crate::cluster::{Cluster, Link};

/// Rows the provisioning writes at once.
const CONCURRENCY: usize = 8;

/// A device of the run.
#[derive(Clone, Debug)]
pub struct Device {
    /// Its id in the database.
    pub id: DeviceId,
    /// Its account's number at the simulator (or the phone that links it, for the real client).
    pub phone: String,
}

/// `count` devices of one user, linked with the simulator but not yet wanting a session (see
/// [`want_sessions`]), so that bringing them online can be timed from one moment.
pub async fn provision(cluster: &Cluster, count: usize) -> anyhow::Result<Vec<Device>> {
    let (db, sim) = (cluster.db(), cluster.sim());
    let started = Instant::now();
    let user = bench_user(db).await?;
    let link = SimLink::new(cluster.sim_ws_url(), db.clone(), cluster.keys().clone());
    let phones: Vec<String> = (0..count).map(phone).collect();
    let mut accounts = Vec::with_capacity(count);
    for chunk in phones.chunks(1000) {
        accounts.extend(sim.provision(chunk.to_vec()).await?);
    }
    let devices: Vec<Device> = futures_util::stream::iter(accounts.into_iter().enumerate())
        .map(|(i, account)| {
            let (db, link) = (db.clone(), link.clone());
            async move {
                let device = db.create_device(user, &format!("bench {i}"), None).await?;
                link.adopt(device.id, &account).await?;
                anyhow::Ok(Device {
                    id: device.id,
                    phone: account.phone,
                })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!("[bench] {count} devices provisioned in {:.1?}", started.elapsed());
    Ok(devices)
}

/// `count` devices of one user in the database only, never linked: the real client pairs them
/// (see [`crate::pairing`]), each as the phone of its number.
pub async fn provision_unlinked(db: &Db, count: usize) -> anyhow::Result<Vec<Device>> {
    let user = bench_user(db).await?;
    futures_util::stream::iter(0..count)
        .map(|i| async move {
            let device = db.create_device(user, &format!("bench {i}"), None).await?;
            anyhow::Ok(Device {
                id: device.id,
                phone: phone(i),
            })
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// The one user every device of a run belongs to.
async fn bench_user(db: &Db) -> anyhow::Result<UserId> {
    let email = Email::parse("bench@example.com").map_err(anyhow::Error::msg)?;
    Ok(db
        .create_user(&email, "unused", NewUserRole::FirstBecomesAdmin)
        .await?
        .id)
}

/// The number of the `i`-th device's account.
fn phone(i: usize) -> String {
    format!("+6012{:07}", 1_000_000 + i)
}

/// The PostgreSQL pool behind `db`.
pub fn postgres(db: &Db) -> &sqlx::PgPool {
    let Db::Postgres(pool) = db else {
        unreachable!("the benchmarks run on PostgreSQL")
    };
    pool
}

/// Every device asks for a session at once: what `request_session` writes, for all in one
/// transaction.
pub async fn want_sessions(db: &Db) -> anyhow::Result<()> {
    want_all(db, "connecting", "connected").await
}

/// Every device asks for `desired` (a session, a QR pairing) at once and shows `status`: what
/// `request_session` writes, for all in one transaction.
pub async fn want_all(db: &Db, status: &str, desired: &str) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let mut tx = postgres(db).begin().await?;
    sqlx::query("UPDATE devices SET status = $2, updated_at = $1")
        .bind(now)
        .bind(status)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO device_sessions (device_id, desired, generation, updated_at) \
         SELECT id, $2, 1, $1 FROM devices ON CONFLICT (device_id) DO NOTHING",
    )
    .bind(now)
    .bind(desired)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO device_leases (device_id) SELECT id FROM devices ON CONFLICT (device_id) DO NOTHING")
        .execute(&mut *tx)
        .await?;
    tx.commit()
        .await
        .with_context(|| format!("asking every device for {desired}"))?;
    Ok(())
}

/// Where the sessions stand, from the database and the network the sessions connect to (the
/// simulator, or its WhatsApp Web front end) together.
#[derive(Debug, Default)]
pub struct Standing {
    /// Devices with a live lease whose holder is not `excluded`.
    pub held: usize,
    /// Devices online in the database.
    pub online: usize,
    /// Linked devices with a live connection (logged in, for the front end).
    pub connected: usize,
    /// Numbers with more than one live connection now (never any at the front end, where a second
    /// login of a device replaces the first and shows in `replaced`).
    pub twice: Vec<String>,
    /// Connects that replaced a live connection of the same device, since the network started.
    pub replaced: u64,
}

/// The standing now; leases of `excluded` (a killed worker) do not count as held.
pub async fn standing(cluster: &Cluster, excluded: &str) -> anyhow::Result<Standing> {
    let pool = postgres(cluster.db());
    let (held,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM device_leases WHERE holder IS NOT NULL AND holder <> $1 AND expires_at > $2",
    )
    .bind(excluded)
    .bind(Timestamp::now())
    .fetch_one(pool)
    .await?;
    let (online,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM devices WHERE status = 'online'")
        .fetch_one(pool)
        .await?;
    let sim = cluster.sim();
    let (connected, twice, replaced) = match cluster.link {
        Link::Sim => {
            let state = sim.state().await?;
            let twice = state
                .accounts
                .iter()
                .filter(|a| a.connected > 1)
                .map(|a| a.phone.clone())
                .collect();
            (state.connected_sessions, twice, state.counters.replaced)
        }
        Link::Wa => {
            let stats = sim.waweb_stats().await?;
            let replaced = stats.replaced.saturating_sub(cluster.replaced_while_linking());
            (stats.logged_in, Vec::new(), replaced)
        }
    };
    Ok(Standing {
        held: held as usize,
        online: online as usize,
        connected,
        twice,
        replaced,
    })
}

/// Fails when any device is, or was, connected twice.
pub fn check_never_twice(s: &Standing) -> anyhow::Result<()> {
    ensure!(s.twice.is_empty(), "devices connected twice at once: {:?}", s.twice);
    ensure!(
        s.replaced == 0,
        "{} connects replaced a live connection of the same device",
        s.replaced
    );
    Ok(())
}

/// Waits until all `devices` are held (not by `excluded`), online and connected exactly once,
/// checking at every poll that no device is connected twice; returns how long that took.
pub async fn wait_all_held(
    cluster: &Cluster,
    devices: usize,
    excluded: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let s = standing(cluster, excluded).await?;
        check_never_twice(&s)?;
        if s.held == devices && s.online == devices && s.connected == devices {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("after {limit:?} only {s:?} of {devices} devices");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
