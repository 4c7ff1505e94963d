//! Noticing a dead worker before its leases expire.
//!
//! On PostgreSQL each worker holds an advisory lock, keyed by its name, on a connection of its
//! own for as long as it lives ([`LivenessLock`]). A process that dies (kill -9, a crash, a lost
//! machine whose kernel closes its sockets) drops that connection and the server releases the
//! lock at once. The other workers see the lock gone ([`Db::silent_workers`]) and, after a short
//! grace, expire the dead worker's leases and drop it from the live set ([`Db::bury_worker`]), so
//! its devices move within a couple of seconds instead of a lease time.
//!
//! Safety still rests on the leases' fencing: a worker that is alive but lost its lock connection
//! notices on its next round and steps down from every device, and any write it makes with an old
//! token is refused. A partitioned worker keeps its lock (the server does not see its connection
//! die until TCP gives up, long after the lease time), so for it the lease TTL bounds the move as
//! before. SQLite runs one process: there is nobody to notice.

use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::types::Timestamp;
use crate::{Db, Result};

/// Longest wait for the lock connection to answer a check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the advisory lock of the worker named by `$n` is held in this database (SQL text).
macro_rules! lock_held {
    ($worker:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted \
             AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND k.classid = 2003266676::oid AND k.objsubid = 2 AND k.objid = hashtext(",
            $worker,
            ")::oid)"
        )
    };
}

/// A worker's liveness lock: held while this value and its connection live.
pub struct LivenessLock {
    conn: PgConnection,
}

impl std::fmt::Debug for LivenessLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LivenessLock")
    }
}

impl LivenessLock {
    /// Whether the lock is still held: its connection answers. `false` means the server may
    /// already have let other workers take this worker's devices.
    pub async fn check(&mut self) -> bool {
        matches!(tokio::time::timeout(CHECK_TIMEOUT, self.conn.ping()).await, Ok(Ok(())))
    }
}

impl Db {
    /// Takes `worker`'s liveness lock on a connection of its own. `None` on SQLite, and when the
    /// lock is taken (another process under the same name, or a name whose hash collides): that
    /// worker is then judged by its leases' expiry alone.
    #[tracing::instrument(skip(self))]
    pub async fn hold_liveness_lock(&self, worker: &str) -> Result<Option<LivenessLock>> {
        let Db::Postgres(pool) = self else {
            return Ok(None);
        };
        let options = (*pool.connect_options())
            .clone()
            .application_name(&format!("wafleet-worker {worker}"));
        let mut conn = options.connect().await?;
        // Keys: wafleet's space (`'wflt'`), and the hash of the worker's name.
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(2003266676, hashtext($1))")
            .bind(worker)
            .fetch_one(&mut conn)
            .await?;
        Ok(locked.then_some(LivenessLock { conn }))
    }

    /// Live workers other than `me` that hold leases, took a liveness lock, and no longer hold it:
    /// their process is gone. Empty on SQLite.
    #[tracing::instrument(skip(self))]
    pub async fn silent_workers(&self, me: &str) -> Result<Vec<String>> {
        let Db::Postgres(pool) = self else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_scalar(concat!(
            "SELECT w.id FROM fleet_workers w WHERE w.liveness_lock AND w.id <> $1 \
             AND EXISTS (SELECT 1 FROM device_leases l WHERE l.holder = w.id AND l.expires_at > $2) \
             AND NOT ",
            lock_held!("w.id")
        ))
        .bind(me)
        .bind(Timestamp::now())
        .fetch_all(pool)
        .await?)
    }

    /// Expires every lease of `worker` and removes it from the live set, if its liveness lock is
    /// still gone; returns how many leases moved. Its devices are claimable at once; its writes
    /// are refused once another worker claims them (their tokens rise).
    #[tracing::instrument(skip(self))]
    pub async fn bury_worker(&self, worker: &str) -> Result<u64> {
        let Db::Postgres(pool) = self else {
            return Ok(0);
        };
        let mut tx = pool.begin().await?;
        let gone = sqlx::query(concat!(
            "DELETE FROM fleet_workers WHERE id = $1 AND liveness_lock AND NOT ",
            lock_held!("$1")
        ))
        .bind(worker)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if gone == 0 {
            return Ok(0);
        }
        let moved = sqlx::query("UPDATE device_leases SET expires_at = 0 WHERE holder = $1 AND expires_at > 0")
            .bind(worker)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(moved)
    }
}
