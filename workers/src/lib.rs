//! The connection worker role: holds device sessions and runs their work.
//!
//! A worker reconciles: it reads what each device's owner asked for (`device_sessions`), opens,
//! reopens or closes live sessions through a [`Link`] to match, and writes what the sessions report
//! (pairing codes, status, messages, receipts) back to the database. The API never talks to a
//! worker directly, so either can restart or move without the other noticing.

mod events;
mod requests;
mod sessions;

use std::sync::Arc;

use wafleet_core::Db;
use wafleet_core::link::Link;
use wafleet_core::shutdown::Shutdown;

pub use sessions::SessionManager;

/// Runs the worker until `shutdown`, then closes every session (keeping credentials).
#[tracing::instrument(name = "worker", skip_all)]
pub async fn run(db: Db, link: Arc<dyn Link>, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(backend = db.backend_name(), "worker started");
    let mut manager = SessionManager::new(db, link);
    manager.run(shutdown).await;
    tracing::info!("worker drained");
    Ok(())
}
