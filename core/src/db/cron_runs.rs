//! Scheduler ticks: one row per (job, tick), so a tick runs once however many replicas fire it.
//!
//! Every scheduler replica fires every cron tick. The tick time is the schedule's own (not the
//! moment it fired), so all replicas compute the same key and the primary key lets exactly one of
//! them claim it.

use crate::types::Timestamp;
use crate::{Db, Result};

use super::on_db;

impl Db {
    /// Claims tick `tick_at` of `job` for `runner`; `true` when this call claimed it and the caller
    /// should run the tick, `false` when another caller already had.
    #[tracing::instrument(skip(self))]
    pub async fn claim_cron_tick(&self, job: &str, tick_at: Timestamp, runner: &str) -> Result<bool> {
        let inserted = on_db!(self, pool => sqlx::query(
            "INSERT INTO cron_runs (job, tick_at, started_at, runner) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job, tick_at) DO NOTHING")
            .bind(job)
            .bind(tick_at)
            .bind(Timestamp::now())
            .bind(runner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(inserted == 1)
    }

    /// Records that the run of tick `tick_at` of `job` completed.
    #[tracing::instrument(skip(self))]
    pub async fn finish_cron_tick(&self, job: &str, tick_at: Timestamp) -> Result<()> {
        on_db!(self, pool => sqlx::query("UPDATE cron_runs SET finished_at = $1 WHERE job = $2 AND tick_at = $3")
            .bind(Timestamp::now())
            .bind(job)
            .bind(tick_at)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Forgets ticks before `before`; returns how many (scheduled housekeeping).
    #[tracing::instrument(skip(self))]
    pub async fn delete_cron_runs_before(&self, before: Timestamp) -> Result<u64> {
        let done = on_db!(self, pool => sqlx::query("DELETE FROM cron_runs WHERE tick_at < $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done)
    }
}
