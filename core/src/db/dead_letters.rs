//! Jobs that failed for good, kept to be listed and replayed.

use crate::types::Timestamp;
use crate::{Db, Result};

use super::on_db;

/// A job a queue gave up on.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Its id, for replaying it.
    pub id: i64,
    /// The queue it came from.
    pub queue: String,
    /// The job as JSON.
    pub job: String,
    /// The last error.
    pub error: String,
    /// Attempts made.
    pub attempts: i64,
    /// When it was given up on.
    pub failed_at: Timestamp,
    /// When it was queued again, if it was.
    pub replayed_at: Option<Timestamp>,
}

impl Db {
    /// Files a dead letter; returns its id.
    #[tracing::instrument(skip(self, job))]
    pub async fn insert_dead_letter(&self, queue: &str, job: &str, error: &str, attempts: i64) -> Result<i64> {
        let (id,): (i64,) = on_db!(self, pool => sqlx::query_as(
            "INSERT INTO dead_letters (queue, job, error, attempts, failed_at) VALUES ($1, $2, $3, $4, $5) RETURNING id")
            .bind(queue)
            .bind(job)
            .bind(error)
            .bind(attempts)
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await)?;
        Ok(id)
    }

    /// The most recent dead letters, newest first; only those of queues starting with `queue` when given.
    #[tracing::instrument(skip(self))]
    pub async fn dead_letters(&self, queue: Option<&str>, limit: i64) -> Result<Vec<DeadLetter>> {
        let prefix = format!("{}%", queue.unwrap_or_default());
        Ok(on_db!(self, pool => sqlx::query_as::<_, DeadLetter>(
            "SELECT id, queue, job, error, attempts, failed_at, replayed_at FROM dead_letters \
             WHERE queue LIKE $1 ORDER BY failed_at DESC, id DESC LIMIT $2")
            .bind(&prefix)
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }

    /// How many dead letters were not replayed.
    #[tracing::instrument(skip(self))]
    pub async fn open_dead_letters(&self) -> Result<i64> {
        Ok(
            on_db!(self, pool => sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters WHERE replayed_at IS NULL")
            .fetch_one(pool)
            .await)?,
        )
    }

    /// One dead letter.
    #[tracing::instrument(skip(self))]
    pub async fn dead_letter(&self, id: i64) -> Result<DeadLetter> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, DeadLetter>(
            "SELECT id, queue, job, error, attempts, failed_at, replayed_at FROM dead_letters WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await)?)
    }

    /// Marks a dead letter as queued again.
    #[tracing::instrument(skip(self))]
    pub async fn mark_replayed(&self, id: i64) -> Result<()> {
        on_db!(self, pool => sqlx::query("UPDATE dead_letters SET replayed_at = $2 WHERE id = $1")
            .bind(id)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}
