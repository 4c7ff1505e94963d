//! Device leases: which worker holds which device's session, with fencing tokens.
//!
//! A lease is claimable once `expires_at` has passed. Claiming raises the device's `token`; a
//! holder renews its leases in one statement and learns from the answer which it still holds.
//! Writes a holder makes carry its token ([`Fence`]) and are refused once the token is stale.

use crate::types::{DeviceId, Timestamp};
use crate::{Db, Result};

use super::on_db;

/// Runs `$body` in a transaction (named `$tx`) that first confirms `$fence` still holds, and fails
/// with [`crate::Error::Fenced`] when it does not. PostgreSQL locks the lease row (`FOR SHARE`), so a
/// concurrent claim waits until this write commits; SQLite's `BEGIN IMMEDIATE` takes the one write
/// lock up front. Either way no claim can slip between the check and the write.
macro_rules! fenced {
    ($db:expr, $fence:expr, $tx:ident => $body:block) => {
        match $db {
            $crate::db::Db::Sqlite(pool) => fenced!(@run $crate::db::BeginWrite::begin_write(pool),
                "SELECT token FROM device_leases WHERE device_id = $1 AND token = $2 AND holder IS NOT NULL",
                $fence, $tx => $body),
            $crate::db::Db::Postgres(pool) => fenced!(@run pool.begin(),
                "SELECT token FROM device_leases WHERE device_id = $1 AND token = $2 AND holder IS NOT NULL FOR SHARE",
                $fence, $tx => $body),
        }
    };
    (@run $begin:expr, $check:literal, $fence:expr, $tx:ident => $body:block) => {{
        let mut $tx = $begin.await?;
        let held: Option<(i64,)> =
            sqlx::query_as($check).bind($fence.device).bind($fence.token).fetch_optional(&mut *$tx).await?;
        if held.is_none() {
            return Err($crate::Error::Fenced);
        }
        let out = $body;
        $tx.commit().await?;
        out
    }};
}
pub(crate) use fenced;

/// A worker's proof that it holds a device: the device and the token its claim raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The device.
    pub device: DeviceId,
    /// The fencing token of the holder's claim.
    pub token: i64,
}

/// Counts that decide a worker's fair share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fleet {
    /// Devices whose owners want a session.
    pub wanted: i64,
    /// Workers that sent a heartbeat within the lease time.
    pub live_workers: i64,
}

impl Db {
    /// Records that `worker` is alive with room for `capacity` sessions, and whether it holds its
    /// liveness lock (see [`crate::db::LivenessLock`]).
    #[tracing::instrument(skip(self))]
    pub async fn worker_heartbeat(&self, worker: &str, capacity: i64, liveness_lock: bool) -> Result<()> {
        let now = Timestamp::now();
        on_db!(self, pool => sqlx::query(
            "INSERT INTO fleet_workers (id, capacity, heartbeat_at, started_at, liveness_lock) \
             VALUES ($1, $2, $3, $3, $4) ON CONFLICT (id) DO UPDATE SET capacity = excluded.capacity, \
             heartbeat_at = excluded.heartbeat_at, liveness_lock = excluded.liveness_lock")
            .bind(worker)
            .bind(capacity)
            .bind(now)
            .bind(liveness_lock)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Removes `worker` from the live set (clean shutdown) and forgets workers silent for `stale_secs`.
    #[tracing::instrument(skip(self))]
    pub async fn worker_gone(&self, worker: &str, stale_secs: i64) -> Result<()> {
        let stale = Timestamp::now().plus_secs(-stale_secs);
        on_db!(self, pool => sqlx::query("DELETE FROM fleet_workers WHERE id = $1 OR heartbeat_at < $2")
            .bind(worker)
            .bind(stale)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Names of the workers that sent a heartbeat within the last `secs`.
    #[tracing::instrument(skip(self))]
    pub async fn recent_workers(&self, secs: i64) -> Result<Vec<String>> {
        let since = Timestamp::now().plus_secs(-secs);
        let rows: Vec<(String,)> = on_db!(self, pool => sqlx::query_as(
            "SELECT id FROM fleet_workers WHERE heartbeat_at >= $1 ORDER BY id")
            .bind(since)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// How many devices want a session and how many workers are alive (heartbeat within `ttl_secs`).
    #[tracing::instrument(skip(self))]
    pub async fn fleet(&self, ttl_secs: i64) -> Result<Fleet> {
        let since = Timestamp::now().plus_secs(-ttl_secs);
        let (wanted, live_workers): (i64, i64) = on_db!(self, pool => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM device_sessions WHERE desired <> 'unlinked'), \
                    (SELECT COUNT(*) FROM fleet_workers WHERE heartbeat_at >= $1)")
            .bind(since)
            .fetch_one(pool)
            .await)?;
        Ok(Fleet { wanted, live_workers })
    }

    /// Devices that want a session but have no live lease (the autoscaling signal).
    #[tracing::instrument(skip(self))]
    pub async fn unheld_devices(&self) -> Result<i64> {
        let (count,): (i64,) = on_db!(self, pool => sqlx::query_as(
            "SELECT COUNT(*) FROM device_sessions s LEFT JOIN device_leases l ON l.device_id = s.device_id \
             WHERE s.desired <> 'unlinked' AND (l.device_id IS NULL OR l.holder IS NULL OR l.expires_at <= $1)")
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await)?;
        Ok(count)
    }

    /// Claims up to `limit` free leases of devices that want a session, for `ttl_secs`. Safe with
    /// any number of workers claiming at once: the repeated expiry test makes a row that another
    /// claim just took fail the update (PostgreSQL re-checks it on the new row version).
    #[tracing::instrument(skip(self))]
    pub async fn claim_leases(&self, worker: &str, limit: i64, ttl_secs: i64) -> Result<Vec<Fence>> {
        let now = Timestamp::now();
        let rows: Vec<(DeviceId, i64)> = on_db!(self, pool => sqlx::query_as(
            "UPDATE device_leases SET holder = $1, token = token + 1, expires_at = $2 \
             WHERE expires_at <= $3 AND device_id IN ( \
               SELECT l.device_id FROM device_leases l JOIN device_sessions s ON s.device_id = l.device_id \
               WHERE l.expires_at <= $3 AND s.desired <> 'unlinked' ORDER BY random() LIMIT $4) \
             RETURNING device_id, token")
            .bind(worker)
            .bind(now.plus_secs(ttl_secs))
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(device, token)| Fence { device, token })
            .collect())
    }

    /// Extends every lease `worker` still holds; the answer is exactly the leases it holds now.
    #[tracing::instrument(skip(self))]
    pub async fn renew_leases(&self, worker: &str, ttl_secs: i64) -> Result<Vec<Fence>> {
        let now = Timestamp::now();
        let rows: Vec<(DeviceId, i64)> = on_db!(self, pool => sqlx::query_as(
            "UPDATE device_leases SET expires_at = $2 WHERE holder = $1 AND expires_at > $3 RETURNING device_id, token")
            .bind(worker)
            .bind(now.plus_secs(ttl_secs))
            .bind(now)
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(device, token)| Fence { device, token })
            .collect())
    }

    /// Gives a still-wanted device's lease back for another worker to claim (hand-off). Refused
    /// (`false`) when the owner has asked for no session meanwhile: the holder must log it out
    /// first, which no other worker would do.
    #[tracing::instrument(skip(self))]
    pub async fn hand_off_lease(&self, fence: Fence) -> Result<bool> {
        let done = on_db!(self, pool => sqlx::query(
            "UPDATE device_leases SET holder = NULL, expires_at = 0 WHERE device_id = $1 AND token = $2 \
             AND EXISTS (SELECT 1 FROM device_sessions WHERE device_id = $1 AND desired <> 'unlinked')")
            .bind(fence.device)
            .bind(fence.token)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Gives a lease back at once, if `fence` still holds it.
    #[tracing::instrument(skip(self))]
    pub async fn release_lease(&self, fence: Fence) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE device_leases SET holder = NULL, expires_at = 0 WHERE device_id = $1 AND token = $2")
            .bind(fence.device)
            .bind(fence.token)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// The worker holding `device`'s lease now, if any.
    #[tracing::instrument(skip(self))]
    pub async fn device_holder(&self, device: DeviceId) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = on_db!(self, pool => sqlx::query_as(
            "SELECT holder FROM device_leases WHERE device_id = $1 AND holder IS NOT NULL AND expires_at > $2")
            .bind(device)
            .bind(Timestamp::now())
            .fetch_optional(pool)
            .await)?;
        Ok(row.and_then(|(holder,)| holder))
    }

    /// Whether `fence` is still the current claim of its device.
    #[tracing::instrument(skip(self))]
    pub async fn fence_holds(&self, fence: Fence) -> Result<bool> {
        let row: Option<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "SELECT token FROM device_leases WHERE device_id = $1 AND token = $2 AND holder IS NOT NULL")
            .bind(fence.device)
            .bind(fence.token)
            .fetch_optional(pool)
            .await)?;
        Ok(row.is_some())
    }
}
