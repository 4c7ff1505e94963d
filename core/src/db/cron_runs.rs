//! Scheduler ticks: one row per (job, tick), so a tick runs once however many replicas fire it.
//!
//! Every scheduler replica fires every cron tick. The tick time is the schedule's own (not the
//! moment it fired), so all replicas compute the same key and the primary key lets exactly one of
//! them claim it. While it runs the tick, the claimant beats (`heartbeat_at`); a tick whose
//! claimant stopped beating without finishing (the process died) is taken over by another
//! replica, which runs it again: the jobs are idempotent, so a tick finished twice in part is
//! still done once.

use crate::types::Timestamp;
use crate::{Db, Result};

use super::on_db;

impl Db {
    /// Claims tick `tick_at` of `job` for `runner`; `true` when this call claimed it and the caller
    /// should run the tick, `false` when another caller already had.
    #[tracing::instrument(skip(self))]
    pub async fn claim_cron_tick(&self, job: &str, tick_at: Timestamp, runner: &str) -> Result<bool> {
        let inserted = on_db!(self, pool => sqlx::query(
            "INSERT INTO cron_runs (job, tick_at, started_at, runner, heartbeat_at) VALUES ($1, $2, $3, $4, $3) \
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

    /// Tells the other replicas that `runner` is still running tick `tick_at` of `job`.
    #[tracing::instrument(skip(self))]
    pub async fn beat_cron_tick(&self, job: &str, tick_at: Timestamp, runner: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE cron_runs SET heartbeat_at = $4 WHERE job = $1 AND tick_at = $2 AND runner = $3 \
             AND finished_at IS NULL")
            .bind(job)
            .bind(tick_at)
            .bind(runner)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Records that `runner`'s run of the tick failed: it is not taken over (the job's next tick
    /// runs it again, as any failed run).
    #[tracing::instrument(skip(self))]
    pub async fn fail_cron_tick(&self, job: &str, tick_at: Timestamp, runner: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE cron_runs SET heartbeat_at = NULL WHERE job = $1 AND tick_at = $2 AND runner = $3 \
             AND finished_at IS NULL")
            .bind(job)
            .bind(tick_at)
            .bind(runner)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Takes over, for `runner`, the unfinished ticks since `since` whose claimant has not beaten
    /// since `silent_since` (it died mid-run); returns them as (job, tick). A row is taken by one
    /// replica only: the update re-checks the beat on the row it changes.
    #[tracing::instrument(skip(self))]
    pub async fn take_over_cron_ticks(
        &self,
        runner: &str,
        silent_since: Timestamp,
        since: Timestamp,
    ) -> Result<Vec<(String, Timestamp)>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "UPDATE cron_runs SET runner = $1, heartbeat_at = $2 WHERE finished_at IS NULL \
             AND heartbeat_at < $3 AND tick_at >= $4 RETURNING job, tick_at")
            .bind(runner)
            .bind(Timestamp::now())
            .bind(silent_since)
            .bind(since)
            .fetch_all(pool)
            .await)?)
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
