//! The scheduler's standard jobs and their schedules.

use std::time::Duration;

use anyhow::Context as _;
use wafleet_core::Db;
use wafleet_core::cache::{Invalidations, Topic};
use wafleet_core::db::Batches;
use wafleet_core::queue::Queues;
use wafleet_core::types::Timestamp;

use crate::{Fire, Scheduler};

/// Housekeeping every ten minutes, on the minute.
pub const HOUSEKEEPING_SCHEDULE: &str = "0 */10 * * * *";
/// Fleet gauges every five seconds.
pub const FLEET_GAUGES_SCHEDULE: &str = "*/5 * * * * *";
/// Campaign dispatch at the start of every minute.
pub const CAMPAIGN_DISPATCH_SCHEDULE: &str = "0 * * * * *";
/// Sequence dispatch every minute, at three quarters past (clear of the other minute jobs).
pub const SEQUENCE_DISPATCH_SCHEDULE: &str = "45 * * * * *";
/// Analytics roll-ups every minute, at a quarter past (clear of campaign dispatch).
pub const ANALYTICS_ROLLUP_SCHEDULE: &str = "15 * * * * *";
/// Read-cache cleanup every minute, at half past.
pub const CACHE_CLEANUP_SCHEDULE: &str = "30 * * * * *";
/// Retention every ten minutes, at five past (clear of housekeeping).
pub const RETENTION_SCHEDULE: &str = "0 5/10 * * * *";
/// Messages deleted per statement by retention: small enough that each delete is a short
/// transaction ingest can wait behind without notice.
const RETENTION_BATCH: i64 = 5_000;
/// A pause between retention's batches, so that other writers get the database in between.
const RETENTION_PAUSE: Duration = Duration::from_millis(50);
/// The most batches one retention run deletes; the next run goes on from there.
const RETENTION_MAX_BATCHES: u32 = 200;
/// Workers silent this long are removed from the `fleet_workers` table, and their send queues with them.
const STALE_WORKER_SECS: i64 = 3600;
/// Finished jobs are kept this long in the queue's storage (for inspection), then deleted. Short:
/// every send, webhook and retry is a row in the database, and a job is only its wake-up, so a
/// finished one is worth nothing after a while and thousands of sends an hour must not pile up
/// in Redis.
const KEEP_FINISHED_JOBS: Duration = Duration::from_secs(3600);
/// A pending webhook delivery untouched this long lost its job (the longest retry wait is ten
/// minutes), so it is queued again.
const STALE_DELIVERY_SECS: i64 = 3600;
/// How long `cron_runs` remembers a tick.
const CRON_RUNS_KEPT_SECS: i64 = 7 * 24 * 3600;

/// What the standard jobs need besides the database.
#[derive(Clone, Debug)]
pub struct Context {
    /// Where the cache cleanup is announced (every API process cleans its own read cache).
    pub invalidations: Invalidations,
    /// A worker whose heartbeat is older than this is gone: the lease time (`LEASE_TTL_SECS`).
    pub live_worker: Duration,
    /// The job queues, tidied by the housekeeping.
    pub queues: Queues,
    /// How long webhook deliveries stay listed (`WEBHOOK_KEEP_DAYS`).
    pub webhook_keep: Duration,
    /// Where the files of received messages are kept: retention removes those of the messages
    /// it deletes.
    pub media: wafleet_core::media_store::MediaStore,
}

/// Adds the standard jobs to `scheduler`.
pub fn standard(scheduler: Scheduler, context: Context) -> anyhow::Result<Scheduler> {
    let live_worker_secs = i64::try_from(context.live_worker.as_secs().max(1)).unwrap_or(i64::MAX);
    let invalidations = context.invalidations;
    let refreshed = invalidations.clone();
    let pruned = invalidations.clone();
    let queues = context.queues;
    let webhook_keep = context.webhook_keep;
    let media = context.media;
    scheduler
        .job("housekeeping", HOUSEKEEPING_SCHEDULE, Fire::Once, move |db, _| {
            let queues = queues.clone();
            Box::pin(async move { housekeeping(&db, &queues, webhook_keep).await })
        })?
        .job(
            "fleet_gauges",
            FLEET_GAUGES_SCHEDULE,
            Fire::EveryReplica,
            move |db, _| Box::pin(async move { fleet_gauges(&db, live_worker_secs).await }),
        )?
        .job("cache_cleanup", CACHE_CLEANUP_SCHEDULE, Fire::Once, move |_, _| {
            let invalidations = invalidations.clone();
            Box::pin(async move {
                invalidations.clean_everywhere().await;
                Ok(())
            })
        })?
        .job(
            "campaign_dispatch",
            CAMPAIGN_DISPATCH_SCHEDULE,
            Fire::Once,
            |db, tick| Box::pin(async move { campaign_dispatch(&db, tick).await }),
        )?
        .job(
            "sequence_dispatch",
            SEQUENCE_DISPATCH_SCHEDULE,
            Fire::Once,
            |db, tick| Box::pin(async move { sequence_dispatch(&db, tick).await }),
        )?
        .job("retention", RETENTION_SCHEDULE, Fire::Once, move |db, _| {
            let (invalidations, media) = (pruned.clone(), media.clone());
            Box::pin(async move { retention(&db, &invalidations, &media).await })
        })?
        .job(
            "analytics_rollup",
            ANALYTICS_ROLLUP_SCHEDULE,
            Fire::Once,
            move |db, _| {
                let invalidations = refreshed.clone();
                Box::pin(async move { analytics_rollup(&db, &invalidations).await })
            },
        )
}

/// Publishes how many devices want a session, how many of those no live worker holds (what worker
/// autoscaling follows), how many workers are alive, and the send backlog. Runs on every replica, since each exports
/// its own gauges.
pub async fn fleet_gauges(db: &Db, live_worker_secs: i64) -> anyhow::Result<()> {
    use wafleet_core::metrics as m;
    let fleet = db.fleet(live_worker_secs).await.context("reading fleet counts")?;
    let unheld = db.unheld_devices().await.context("counting unheld devices")?;
    metrics::gauge!(m::DEVICES_WANTED).set(fleet.wanted as f64);
    metrics::gauge!(m::WORKERS_LIVE).set(fleet.live_workers as f64);
    metrics::gauge!(m::DEVICES_UNHELD).set(unheld as f64);
    // Sends live in per-worker queues; the database's count is the backlog across all of them.
    let sends = db.queued_send_count().await.context("counting queued sends")?;
    metrics::gauge!(m::QUEUE_DEPTH, "queue" => "sends").set(sends as f64);
    Ok(())
}

/// One round of housekeeping: expired login sessions, workers silent for an hour and their send
/// queues, finished jobs older than an hour, ticks older than a week, and webhook deliveries older
/// than `webhook_keep` (pending ones whose job was lost are queued again). Each step is
/// idempotent; a failure is retried next round.
pub async fn housekeeping(db: &Db, queues: &Queues, webhook_keep: Duration) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let sessions = db
        .delete_expired_sessions(now)
        .await
        .context("removing expired sessions")?;
    if sessions > 0 {
        tracing::info!(removed = sessions, "expired login sessions removed");
    }
    db.worker_gone("", STALE_WORKER_SECS)
        .await
        .context("removing stale workers")?;
    let known = db.recent_workers(STALE_WORKER_SECS).await.context("listing workers")?;
    let tidied = queues
        .tidy(&known, KEEP_FINISHED_JOBS)
        .await
        .context("tidying the job queues")?;
    if tidied != Default::default() {
        tracing::info!(
            finished_jobs = tidied.finished_jobs,
            gone_worker_queues = tidied.queues_removed,
            "job queues tidied"
        );
    }
    let ticks = db
        .delete_cron_runs_before(now.plus_secs(-CRON_RUNS_KEPT_SECS))
        .await
        .context("removing old cron runs")?;
    if ticks > 0 {
        tracing::debug!(removed = ticks, "old cron runs removed");
    }
    let keep = i64::try_from(webhook_keep.as_secs()).unwrap_or(i64::MAX);
    let (removed, requeued) = db
        .tidy_deliveries(now.plus_secs(-keep), now.plus_secs(-STALE_DELIVERY_SECS))
        .await
        .context("tidying webhook deliveries")?;
    if removed + requeued > 0 {
        tracing::info!(removed, requeued, "webhook deliveries tidied");
    }
    Ok(())
}

/// Campaign dispatch: due campaigns start, their recipients are listed and a couple of minutes'
/// worth of sends per device is recorded for the devices' holders (see
/// [`Db::dispatch_campaigns`]). Idempotent, so a tick run twice, or a failed one retried by the
/// next, neither skips nor repeats a recipient.
pub async fn campaign_dispatch(db: &Db, tick: Timestamp) -> anyhow::Result<()> {
    let done = db.dispatch_campaigns(tick).await.context("dispatching campaigns")?;
    if done != Default::default() {
        tracing::info!(%tick, started = done.started, listed = done.listed, queued = done.queued,
            finished = done.finished, "campaigns dispatched");
    }
    Ok(())
}

/// Sequence dispatch at the tick's time: enrols by rules, lets leads leave, moves each lead to its
/// next step and records the steps that are due (see [`Db::dispatch_sequences`]). Idempotent,
/// so a tick run twice, or a scheduler killed in the middle of one, neither skips nor repeats a
/// step.
pub async fn sequence_dispatch(db: &Db, tick: Timestamp) -> anyhow::Result<()> {
    let done = db.dispatch_sequences(tick).await.context("dispatching sequences")?;
    if done != Default::default() {
        tracing::info!(%tick, enrolled = done.enrolled, exited = done.exited, stepped = done.stepped,
            completed = done.completed, failed = done.failed, planned = done.planned, queued = done.queued,
            "sequences dispatched");
    }
    Ok(())
}

/// Analytics roll-ups: recounts the days whose sends changed or were answered since the last run
/// (see [`Db::refresh_analytics`]). Idempotent, so a missed or repeated tick only delays or
/// repeats the same counts. Cached analytics go when anything changed.
pub async fn analytics_rollup(db: &Db, invalidations: &Invalidations) -> anyhow::Result<()> {
    let rows = db.refresh_analytics().await.context("refreshing analytics roll-ups")?;
    if rows > 0 {
        invalidations.changed(&[Topic::Analytics]).await;
        tracing::debug!(rows, "analytics roll-ups refreshed");
    }
    Ok(())
}

/// Retention: deletes the messages their users no longer keep, device by device, a batch at a
/// time with a pause between batches so that ingest's writes interleave, and clears the preview
/// of chats whose last message went (see [`Db::enforce_retention`]), then lets cached reads of the
/// devices it changed go. A run stops after [`RETENTION_MAX_BATCHES`]; the next one goes on.
pub async fn retention(
    db: &Db,
    invalidations: &Invalidations,
    media: &wafleet_core::media_store::MediaStore,
) -> anyhow::Result<()> {
    let batches = Batches {
        size: RETENTION_BATCH,
        pause: RETENTION_PAUSE,
        max: RETENTION_MAX_BATCHES,
    };
    let pruned = db
        .enforce_retention(Timestamp::now(), batches, media)
        .await
        .context("deleting messages past their retention")?;
    let topics: Vec<Topic> = pruned.devices.iter().copied().map(Topic::Device).collect();
    invalidations.changed(&topics).await;
    if pruned.messages > 0 || pruned.previews > 0 || pruned.files > 0 {
        tracing::info!(
            removed = pruned.messages,
            previews = pruned.previews,
            files = pruned.files,
            more = pruned.more,
            "messages past their retention deleted"
        );
    }
    Ok(())
}
