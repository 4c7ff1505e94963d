//! The scheduler role: periodic housekeeping (and, later, campaign dispatch and roll-ups).

use std::time::Duration;

use wafleet_core::Db;
use wafleet_core::shutdown::Shutdown;
use wafleet_core::types::Timestamp;

/// How often expired login sessions are removed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(600);
/// How often the fleet gauges (devices wanted and unheld, live workers) are refreshed.
const FLEET_GAUGES_EVERY: Duration = Duration::from_secs(5);
/// Heartbeats older than this mean a worker is gone (matches the default lease time).
const LIVE_WORKER_SECS: i64 = 15;

/// Runs the scheduler until `shutdown`.
///
/// Housekeeping is idempotent (deleting expired rows), so several replicas running it at once do no
/// harm; jobs that must fire once per tick across replicas arrive with the distributed scheduler.
#[tracing::instrument(name = "scheduler", skip_all)]
pub async fn run(db: Db, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(backend = db.backend_name(), "scheduler started");
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    let mut gauges = tokio::time::interval(FLEET_GAUGES_EVERY);
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => housekeeping(&db).await,
            _ = gauges.tick() => fleet_gauges(&db).await,
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Publishes how many devices want a session, how many of those no live worker holds (what worker
/// autoscaling follows), and how many workers are alive.
pub async fn fleet_gauges(db: &Db) {
    use wafleet_core::metrics as m;
    let counts =
        async { Ok::<_, wafleet_core::Error>((db.fleet(LIVE_WORKER_SECS).await?, db.unheld_devices().await?)) };
    match counts.await {
        Ok((fleet, unheld)) => {
            metrics::gauge!(m::DEVICES_WANTED).set(fleet.wanted as f64);
            metrics::gauge!(m::WORKERS_LIVE).set(fleet.live_workers as f64);
            metrics::gauge!(m::DEVICES_UNHELD).set(unheld as f64);
        }
        Err(err) => tracing::warn!(error = ?err, "reading fleet counts failed"),
    }
}

/// One round of housekeeping; failures are logged and retried next round.
pub async fn housekeeping(db: &Db) {
    match db.delete_expired_sessions(Timestamp::now()).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "expired login sessions removed"),
        Err(err) => tracing::warn!(error = ?err, "removing expired sessions failed; will retry"),
    }
}
