//! Job queues through apalis: Redis (apalis-redis) in scale-out mode, the embedded SQLite file
//! (apalis-sqlite) in the default one.
//!
//! apalis moves jobs and keeps them safe from a worker that dies holding one (its in-flight jobs
//! return to the queue once its heartbeats stop). Retries are ours, not apalis': apalis-redis
//! reschedules every failed job up to a hard-coded 25 times with a linear backoff, whatever the
//! worker's policy says. So a handler never fails a job towards apalis. It answers an
//! [`Outcome`], and [`consume`] either pushes the job again with an exponential, jittered delay
//! and the next attempt number, or, once the attempts are spent or the error is permanent, files
//! it as a [dead letter](crate::db::DeadLetter) that can be listed and replayed.

mod jobs;
mod run;
mod tidy;

use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_redis::{ConnectionManager, RedisStorage};
use apalis_sqlite::SqliteStorage;
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::SqlitePool;

use crate::{Db, Settings};

pub use jobs::{SendJob, WEBHOOKS_QUEUE, WebhookJob, sends_queue};
pub use run::{ConsumeOptions, consume};
pub use tidy::Tidied;

/// A job: what a queue carries. The type decides its retry policy.
pub trait Job: Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + std::fmt::Debug + 'static {
    /// How often a job is tried before it becomes a dead letter.
    const MAX_ATTEMPTS: u32 = 8;
    /// The first retry waits about this long; each next one twice as long (with jitter).
    const FIRST_RETRY: Duration = Duration::from_secs(2);
    /// No retry waits longer than this.
    const LONGEST_RETRY: Duration = Duration::from_secs(600);
    /// A run that takes longer is cut off and counts as a failed attempt.
    const TIMEOUT: Duration = Duration::from_secs(60);
}

/// A retry policy chosen at run time (from settings), in place of the job type's constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// How often a job is tried before it becomes a dead letter.
    pub max_attempts: u32,
    /// The first retry waits about this long; each next one twice as long (with jitter).
    pub first: Duration,
    /// No retry waits longer than this.
    pub longest: Duration,
}

impl Retry {
    /// The policy `J` declares.
    pub fn of<J: Job>() -> Retry {
        Retry {
            max_attempts: J::MAX_ATTEMPTS,
            first: J::FIRST_RETRY,
            longest: J::LONGEST_RETRY,
        }
    }
}

/// A job with the number of the attempt it is on, as stored in the queue.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Envelope<J> {
    /// The job.
    pub job: J,
    /// 1 for the first run.
    pub attempt: u32,
}

/// What a handler made of one run of a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Finished (or nothing left to do).
    Done,
    /// Failed in a way that may pass later (a connection dropped, a session still connecting).
    Retry(String),
    /// Failed for good; retrying cannot help.
    Fail(String),
    /// Not now: run this same attempt again after the delay (e.g. a device over its pace). Does
    /// not count as an attempt.
    Later(Duration),
}

/// The delay before attempt `next` (2, 3, …): exponential from `first`, capped at `longest`, with
/// "equal jitter" (half fixed, half random) so jobs that failed together do not retry together.
pub fn backoff(next: u32, first: Duration, longest: Duration) -> Duration {
    let exp = first
        .saturating_mul(1u32 << next.saturating_sub(2).min(20))
        .min(longest);
    let half = exp / 2;
    half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
}

/// Where queues live.
#[derive(Clone)]
enum Store {
    Redis(ConnectionManager),
    Sqlite(SqlitePool),
}

/// Handle to the job queues; cheap to clone. Queue names are prefixed with the namespace, so
/// several deployments (or tests) can share one Redis.
#[derive(Clone)]
pub struct Queues {
    store: Store,
    namespace: String,
    /// Where dead letters are filed.
    db: Db,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.store {
            Store::Redis(_) => "redis",
            Store::Sqlite(_) => "sqlite",
        };
        f.debug_struct("Queues")
            .field("store", &kind)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Queues {
    /// Connects to `REDIS_URL`, or without it uses the embedded SQLite database (its apalis tables
    /// are created here). PostgreSQL without Redis is refused: the scale-out queue is Redis.
    pub async fn connect(settings: &Settings, db: &Db) -> anyhow::Result<Queues> {
        let namespace = settings.queue_namespace.clone();
        let store = match (&settings.redis_url, db) {
            (Some(url), _) => {
                let conn = tokio::time::timeout(Duration::from_secs(10), apalis_redis::connect(url.expose()))
                    .await
                    .map_err(|_| anyhow::anyhow!("timed out"))
                    .and_then(|r| r.map_err(anyhow::Error::from))
                    .context("cannot connect to Redis at REDIS_URL (is the server running and the URL right?)")?;
                Store::Redis(conn)
            }
            (None, Db::Sqlite(pool)) => {
                let mut migrator = SqliteStorage::<()>::migrations();
                // The queue's tables share sqlx's bookkeeping table with wafleet's own migrations.
                migrator.set_ignore_missing(true);
                migrator.run(pool).await.context("creating the job queue's tables")?;
                Store::Sqlite(pool.clone())
            }
            (None, Db::Postgres(_)) => anyhow::bail!(
                "REDIS_URL is not set: with PostgreSQL (scale-out mode) the job queue lives in Redis; \
                 set REDIS_URL=redis://host:6379"
            ),
        };
        Ok(Queues {
            store,
            namespace,
            db: db.clone(),
        })
    }

    /// The stored name of `queue`.
    pub fn full_name(&self, queue: &str) -> String {
        format!("{}:{queue}", self.namespace)
    }

    /// Queues `job` for its first attempt.
    pub async fn push<J: Job>(&self, queue: &str, job: J) -> crate::Result<()> {
        self.push_envelope(queue, Envelope { job, attempt: 1 }, None).await
    }

    /// Queues `envelope` to run after `delay` (at once when `None`).
    pub(crate) async fn push_envelope<J: Job>(
        &self,
        queue: &str,
        envelope: Envelope<J>,
        delay: Option<Duration>,
    ) -> crate::Result<()> {
        let mut task = TaskBuilder::new(envelope);
        if let Some(delay) = delay {
            task = task.run_after(delay);
        }
        let task = task.build();
        let name = self.full_name(queue);
        let pushed = match &self.store {
            Store::Redis(conn) => {
                let mut storage = RedisStorage::<Envelope<J>>::new(conn.clone())
                    .with_config(apalis_redis::Config::default().queue(&name));
                storage.push_task(task).await.map_err(|e| anyhow::anyhow!("{e}"))
            }
            Store::Sqlite(pool) => {
                let mut storage =
                    SqliteStorage::<Envelope<J>>::new(pool).with_config(apalis_sqlite::Config::default().queue(&name));
                storage.push_task(task).await.map_err(|e| anyhow::anyhow!("{e}"))
            }
        };
        pushed.with_context(|| format!("queueing a job on {name}"))?;
        Ok(())
    }

    /// Jobs waiting in `queue` (due now or scheduled later), for metrics and autoscaling.
    pub async fn depth(&self, queue: &str) -> crate::Result<u64> {
        let name = self.full_name(queue);
        match &self.store {
            Store::Redis(conn) => {
                let config = apalis_redis::Config::default().queue(&name);
                let mut conn = conn.clone();
                let (active, scheduled): (u64, u64) = redis::pipe()
                    .llen(config.active_jobs_list())
                    .zcard(config.scheduled_jobs_set())
                    .query_async(&mut conn)
                    .await
                    .context("reading a queue's depth from Redis")?;
                Ok(active + scheduled)
            }
            Store::Sqlite(pool) => {
                let (n,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM Jobs WHERE job_type = $1 AND status = 'Pending'")
                        .bind(&name)
                        .fetch_one(pool)
                        .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    }

    /// Files a job that failed for good as a dead letter.
    pub(crate) async fn bury<J: Job>(&self, queue: &str, envelope: &Envelope<J>, error: &str) -> crate::Result<i64> {
        let job = serde_json::to_string(&envelope.job).context("encoding a dead letter")?;
        self.db
            .insert_dead_letter(queue, &job, error, i64::from(envelope.attempt))
            .await
    }

    /// Queues a dead letter's job again, from its first attempt, and marks the letter replayed.
    pub async fn replay<J: Job>(&self, queue: &str, letter: i64) -> crate::Result<()> {
        let dead = self.db.dead_letter(letter).await?;
        let job: J = serde_json::from_str(&dead.job).context("decoding a dead letter")?;
        self.push(queue, job).await?;
        self.db.mark_replayed(letter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let first = Duration::from_secs(2);
        let longest = Duration::from_secs(60);
        for _ in 0..100 {
            let second = backoff(2, first, longest);
            assert!(
                second >= Duration::from_secs(1) && second <= Duration::from_secs(2),
                "{second:?}"
            );
            let third = backoff(3, first, longest);
            assert!(
                third >= Duration::from_secs(2) && third <= Duration::from_secs(4),
                "{third:?}"
            );
            let late = backoff(30, first, longest);
            assert!(late >= Duration::from_secs(30) && late <= longest, "{late:?}");
        }
    }
}
