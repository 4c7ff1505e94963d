//! The connection worker role: holds device sessions under leases, and runs flush work.
//!
//! Sessions arrive with the session layer; today the worker starts, reports health and drains
//! cleanly on shutdown, so deployments and probes can be wired up ahead of it.

use wafleet_core::Db;
use wafleet_core::shutdown::Shutdown;

/// Runs the worker until `shutdown`.
#[tracing::instrument(name = "worker", skip_all)]
pub async fn run(db: Db, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(
        backend = db.backend_name(),
        "worker started; no device sessions to hold yet"
    );
    shutdown.wait().await;
    tracing::info!("worker drained");
    Ok(())
}
