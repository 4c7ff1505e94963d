//! Simulated devices: provisioned in the simulator and in the database as already linked (so a
//! worker opens each session as after a restart), and where their sessions stand.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::{StreamExt, TryStreamExt};
use wafleet_core::Db;
use wafleet_core::db::NewUserRole;
use wafleet_core::types::{DeviceId, Email, Timestamp};
use wafleet_sim::{ControlClient, SimLink};

/// Rows the provisioning writes at once.
const CONCURRENCY: usize = 8;

/// A device of the run, linked with the simulator.
#[derive(Clone, Debug)]
pub struct Device {
    /// Its id in the database.
    pub id: DeviceId,
    /// Its account's number at the simulator.
    pub phone: String,
}

/// `count` devices of one user, linked with the simulator but not yet wanting a session (see
/// [`want_sessions`]), so that bringing them online can be timed from one moment.
pub async fn provision(db: &Db, sim: &ControlClient, ws_url: &str, count: usize) -> anyhow::Result<Vec<Device>> {
    let started = Instant::now();
    let email = Email::parse("bench@example.com").map_err(anyhow::Error::msg)?;
    let user = db.create_user(&email, "unused", NewUserRole::FirstBecomesAdmin).await?;
    let link = SimLink::new(ws_url.to_owned(), db.clone());
    let phones: Vec<String> = (0..count).map(|i| format!("+6012{:07}", 1_000_000 + i)).collect();
    let mut accounts = Vec::with_capacity(count);
    for chunk in phones.chunks(1000) {
        accounts.extend(sim.provision(chunk.to_vec()).await?);
    }
    let devices: Vec<Device> = futures_util::stream::iter(accounts.into_iter().enumerate())
        .map(|(i, account)| {
            let (db, link) = (db.clone(), link.clone());
            async move {
                let device = db.create_device(user.id, &format!("bench {i}"), None).await?;
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
    let pool = postgres(db);
    let now = Timestamp::now();
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE devices SET status = 'connecting', updated_at = $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO device_sessions (device_id, desired, generation, updated_at) \
         SELECT id, 'connected', 1, $1 FROM devices ON CONFLICT (device_id) DO NOTHING",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO device_leases (device_id) SELECT id FROM devices ON CONFLICT (device_id) DO NOTHING")
        .execute(&mut *tx)
        .await?;
    tx.commit().await.context("asking for sessions")?;
    Ok(())
}

/// Where the sessions stand, from the database and the simulator together.
#[derive(Debug, Default)]
pub struct Standing {
    /// Devices with a live lease whose holder is not `excluded`.
    pub held: usize,
    /// Devices online in the database.
    pub online: usize,
    /// Linked devices with a live connection at the simulator.
    pub connected: usize,
    /// Numbers with more than one live connection now.
    pub twice: Vec<String>,
    /// Connects that replaced a live connection of the same device, since the simulator started.
    pub replaced: u64,
}

/// The standing now; leases of `excluded` (a killed worker) do not count as held.
pub async fn standing(db: &Db, sim: &ControlClient, excluded: &str) -> anyhow::Result<Standing> {
    let pool = postgres(db);
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
    let state = sim.state().await?;
    let twice = state
        .accounts
        .iter()
        .filter(|a| a.connected > 1)
        .map(|a| a.phone.clone())
        .collect();
    Ok(Standing {
        held: held as usize,
        online: online as usize,
        connected: state.connected_sessions,
        twice,
        replaced: state.counters.replaced,
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
    db: &Db,
    sim: &ControlClient,
    devices: usize,
    excluded: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let s = standing(db, sim, excluded).await?;
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
