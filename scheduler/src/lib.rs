//! The scheduler role: periodic housekeeping (and, later, campaign dispatch and roll-ups).

use std::time::Duration;

use wafleet_core::Db;
use wafleet_core::shutdown::Shutdown;
use wafleet_core::types::Timestamp;

/// How often expired login sessions are removed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(600);

/// Runs the scheduler until `shutdown`.
///
/// Housekeeping is idempotent (deleting expired rows), so several replicas running it at once do no
/// harm; jobs that must fire once per tick across replicas arrive with the distributed scheduler.
#[tracing::instrument(name = "scheduler", skip_all)]
pub async fn run(db: Db, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(backend = db.backend_name(), "scheduler started");
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => housekeeping(&db).await,
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// One round of housekeeping; failures are logged and retried next round.
pub async fn housekeeping(db: &Db) {
    match db.delete_expired_sessions(Timestamp::now()).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "expired login sessions removed"),
        Err(err) => tracing::warn!(error = ?err, "removing expired sessions failed; will retry"),
    }
}
