//! Finishing ticks a dead replica left unfinished.
//!
//! A replica that claims a tick beats while it runs it ([`crate::cron_job::run_claimed`]). Every
//! replica looks, every [`LOOK_EVERY`], for unfinished ticks whose claimant has been silent for
//! [`SILENT_FOR`] and takes them over, one replica per tick, to run them again: a scheduler
//! killed mid-tick (half a campaign's sends recorded, say) delays the rest by seconds, not until
//! the job's next tick. Jobs are idempotent, so the part already done is not done twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use wafleet_core::Db;
use wafleet_core::shutdown::Shutdown;
use wafleet_core::types::Timestamp;

use crate::cron_job::{BEAT_EVERY, CronJob, Fire, TickContext, run_claimed};

/// How often a replica looks for ticks to take over.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// A claimant silent this long is taken for dead: a few missed beats.
const SILENT_FOR: Duration = Duration::from_secs(BEAT_EVERY.as_secs() * 4);
/// Ticks older than this are left alone: the job's later ticks have done their work since.
const TAKE_OVER_WITHIN: Duration = Duration::from_secs(600);

/// Takes over silent ticks of `jobs` until `shutdown`.
pub(crate) async fn run(db: Db, runner: Arc<str>, jobs: Vec<Arc<CronJob>>, shutdown: Shutdown) {
    let jobs: HashMap<&'static str, Arc<CronJob>> = jobs
        .into_iter()
        .filter(|job| job.fire == Fire::Once)
        .map(|job| (job.name, job))
        .collect();
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = look.tick() => {}
        }
        let now = Timestamp::now();
        let silent_since = now.plus_millis(-i64::try_from(SILENT_FOR.as_millis()).unwrap_or(i64::MAX));
        let since = now.plus_secs(-i64::try_from(TAKE_OVER_WITHIN.as_secs()).unwrap_or(i64::MAX));
        let taken = match db.take_over_cron_ticks(&runner, silent_since, since).await {
            Ok(taken) => taken,
            Err(err) => {
                tracing::warn!(error = ?err, "looking for ticks left unfinished failed");
                continue;
            }
        };
        for (name, tick_at) in taken {
            let Some(job) = jobs.get(name.as_str()) else {
                // A job of another release: it falls silent again here, and a replica that
                // runs it takes it over.
                tracing::warn!(job = name, %tick_at, "a silent tick of a job unknown here");
                continue;
            };
            tracing::warn!(job = name, %tick_at, "a replica died mid-tick; running the tick again here");
            let ctx = TickContext {
                db: db.clone(),
                runner: runner.clone(),
                job: job.clone(),
            };
            let span =
                tracing::info_span!("cron_job", job = job.name, tick = %tick_at, runner = %runner, taken_over = true);
            tokio::spawn(
                async move {
                    if let Err(err) = run_claimed(&ctx, tick_at).await {
                        tracing::warn!(error = ?err, "the tick taken over failed; the next tick runs it again");
                    }
                }
                .instrument(span),
            );
        }
    }
}
