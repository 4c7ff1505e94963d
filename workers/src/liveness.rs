//! This worker's liveness lock, and burying workers whose lock is gone (see
//! [`wafleet_core::db::LivenessLock`]): a killed worker's devices move within seconds instead of
//! a lease time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wafleet_core::Db;
use wafleet_core::db::LivenessLock;
use wafleet_core::metrics as m;

/// A worker whose lock is seen gone stays buried-to-be this long before its leases move: time for
/// a live worker whose lock connection dropped to notice and step down first.
const GRACE: Duration = Duration::from_secs(2);
/// How often a worker without its lock tries to take it again.
const RETAKE_EVERY: Duration = Duration::from_secs(5);

/// What [`Liveness::keep`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Nothing changed.
    Steady,
    /// The lock connection is gone: other workers may take this worker's devices now, so it must
    /// step down from every one of them.
    Lost,
}

/// This worker's lock and what it knows of the others'.
pub(crate) struct Liveness {
    db: Db,
    worker: String,
    lock: Option<LivenessLock>,
    /// Whether the live set records this worker as holding its lock (what the others judge by).
    recorded: Option<bool>,
    /// When the lock was last tried for.
    tried_at: Option<Instant>,
    /// Workers seen without their lock, since when.
    silent: HashMap<String, Instant>,
}

impl Liveness {
    /// Liveness for `worker`, its lock not yet taken.
    pub(crate) fn new(db: Db, worker: String) -> Self {
        Liveness {
            db,
            worker,
            lock: None,
            recorded: None,
            tried_at: None,
            silent: HashMap::new(),
        }
    }

    /// Whether this worker holds its lock.
    pub(crate) fn locked(&self) -> bool {
        self.lock.is_some()
    }

    /// The live set now records `locked` for this worker.
    pub(crate) fn recorded(&mut self, locked: bool) {
        self.recorded = Some(locked);
    }

    /// Whether this worker may take devices: never while the live set says it holds a lock it
    /// lost (the others could bury it and take them back at any moment).
    pub(crate) fn may_claim(&self) -> bool {
        self.recorded.is_some_and(|recorded| !recorded || self.lock.is_some())
    }

    /// Whether the live set needs to hear this worker's lock state at once.
    pub(crate) fn stale_record(&self) -> bool {
        self.recorded != Some(self.lock.is_some())
    }

    /// Checks the lock (taking it when missing); called every round.
    pub(crate) async fn keep(&mut self) -> Keep {
        if let Some(lock) = &mut self.lock {
            if lock.check().await {
                return Keep::Steady;
            }
            tracing::error!("the liveness lock's connection is gone; stepping down from every device");
            self.lock = None;
            return Keep::Lost;
        }
        if self.tried_at.is_some_and(|at| at.elapsed() < RETAKE_EVERY) {
            return Keep::Steady;
        }
        self.tried_at = Some(Instant::now());
        match self.db.hold_liveness_lock(&self.worker).await {
            Ok(lock) => self.lock = lock,
            Err(err) => tracing::warn!(error = ?err, "taking the liveness lock failed; judged by lease expiry"),
        }
        Keep::Steady
    }

    /// Moves the devices of workers whose lock has been gone for the grace period. Only a worker
    /// holding its own lock judges others: after a database restart every lock is gone at once.
    pub(crate) async fn bury_silent(&mut self) {
        if self.lock.is_none() {
            self.silent.clear();
            return;
        }
        let silent = match self.db.silent_workers(&self.worker).await {
            Ok(silent) => silent,
            Err(err) => {
                tracing::warn!(error = ?err, "looking for dead workers failed");
                return;
            }
        };
        self.silent.retain(|worker, _| silent.contains(worker));
        let now = Instant::now();
        for worker in silent {
            let since = *self.silent.entry(worker.clone()).or_insert(now);
            if since.elapsed() < GRACE {
                continue;
            }
            match self.db.bury_worker(&worker).await {
                Ok(moved) => {
                    self.silent.remove(&worker);
                    metrics::counter!(m::WORKERS_BURIED).increment(1);
                    tracing::warn!(dead = worker, moved, "a worker's process is gone; its devices move now");
                }
                Err(err) => tracing::warn!(error = ?err, dead = worker, "moving a dead worker's devices failed"),
            }
        }
    }
}
