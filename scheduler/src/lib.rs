//! The scheduler role: cron jobs (housekeeping, fleet gauges, campaign dispatch, analytics
//! roll-ups, read-cache cleanup) on apalis-cron.
//!
//! Every replica's cron fires every tick; [`Fire::Once`] jobs claim each tick in the database
//! (`cron_runs`, keyed by job and the schedule's own tick time) so that exactly one replica runs it.
//! The claimant beats while it runs; a tick whose claimant died mid-run is taken over by another
//! replica within seconds and run again (`rescue`), which the jobs' idempotence makes safe.

mod cron_job;
pub mod jobs;
mod rescue;
mod runner;

use wafleet_core::Db;
use wafleet_core::shutdown::Shutdown;

pub use jobs::Context;

pub use cron_job::{Fire, JobFuture};
pub use runner::Scheduler;

/// Runs the scheduler with its standard jobs until `shutdown`.
#[tracing::instrument(name = "scheduler", skip_all)]
pub async fn run(db: Db, context: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    jobs::standard(Scheduler::new(db), context)?.run(shutdown).await
}
