//! One cron job as an apalis worker: a [`CronScheduler`] backend and a handler that claims the tick.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use apalis_cron::Tick;
use tracing::Instrument;
use wafleet_core::Db;
use wafleet_core::types::Timestamp;

/// What a job's body returns: a boxed future, so jobs of any shape fit one list.
pub type JobFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A job's body, called with the database and the tick time.
pub(crate) type JobBody = Arc<dyn Fn(Db, Timestamp) -> JobFuture + Send + Sync>;

/// How many replicas run each tick of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fire {
    /// Exactly one replica per tick: the one whose claim of the tick in `cron_runs` succeeds.
    Once,
    /// Every replica, every tick, without touching `cron_runs`: for work that is about the process
    /// itself, such as refreshing the gauges its metrics endpoint exports.
    EveryReplica,
}

/// A registered job.
pub(crate) struct CronJob {
    /// Names the job in `cron_runs`, worker names and logs.
    pub(crate) name: &'static str,
    /// When it fires (seconds field first).
    pub(crate) schedule: cron::Schedule,
    /// Whether ticks are claimed across replicas.
    pub(crate) fire: Fire,
    /// The work.
    pub(crate) body: JobBody,
}

/// What every tick of one job's worker needs; given to the handler as apalis [`Data`].
#[derive(Clone)]
pub(crate) struct TickContext {
    /// The database ticks are claimed in and jobs work on.
    pub(crate) db: Db,
    /// This replica's name, recorded with the ticks it claims.
    pub(crate) runner: Arc<str>,
    /// The job.
    pub(crate) job: Arc<CronJob>,
}

/// The apalis handler: runs one tick of a job, if this replica claims it.
pub(crate) async fn on_tick(tick: Tick, ctx: Data<TickContext>) -> Result<(), BoxDynError> {
    // The schedule's tick in whole seconds: the same on every replica, unlike the moment it fired.
    let secs = i64::try_from(tick.get_timestamp())?;
    let tick_at = Timestamp(secs.saturating_mul(1000));
    let span = tracing::info_span!("cron_job", job = ctx.job.name, tick = %tick_at, runner = %ctx.runner);
    run_tick(&ctx, tick_at).instrument(span).await.map_err(|err| {
        tracing::warn!(error = ?err, "cron job failed; the next tick runs it again");
        err.into()
    })
}

async fn run_tick(ctx: &TickContext, tick_at: Timestamp) -> anyhow::Result<()> {
    use anyhow::Context;
    let job = &ctx.job;
    if job.fire == Fire::EveryReplica {
        return (job.body)(ctx.db.clone(), tick_at).await;
    }
    let claimed = ctx
        .db
        .claim_cron_tick(job.name, tick_at, &ctx.runner)
        .await
        .context("claiming the cron tick")?;
    if !claimed {
        tracing::trace!("tick already claimed by another replica");
        return Ok(());
    }
    run_claimed(ctx, tick_at).await
}

/// How often a replica running a claimed tick says so.
pub(crate) const BEAT_EVERY: Duration = Duration::from_secs(1);

/// Runs a tick this replica claimed (or took over), beating while it runs, and records how it
/// ended: finished, or failed (left for the job's next tick).
pub(crate) async fn run_claimed(ctx: &TickContext, tick_at: Timestamp) -> anyhow::Result<()> {
    use anyhow::Context;
    let job = &ctx.job;
    let beats = async {
        loop {
            tokio::time::sleep(BEAT_EVERY).await;
            if let Err(err) = ctx.db.beat_cron_tick(job.name, tick_at, &ctx.runner).await {
                tracing::warn!(error = ?err, "telling the other replicas this tick still runs failed");
            }
        }
    };
    let ran = tokio::select! {
        ran = (job.body)(ctx.db.clone(), tick_at) => ran,
        never = beats => never,
    };
    match ran {
        Ok(()) => ctx
            .db
            .finish_cron_tick(job.name, tick_at)
            .await
            .context("recording the cron tick as finished"),
        Err(err) => {
            if let Err(record) = ctx.db.fail_cron_tick(job.name, tick_at, &ctx.runner).await {
                tracing::warn!(error = ?record, "recording the failed run failed");
            }
            Err(err)
        }
    }
}
