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

pub use sessions::{SessionManager, WorkerOptions};

impl WorkerOptions {
    /// Options from settings; without `WORKER_ID`, a name from the host, process id and a random suffix.
    pub fn from_settings(settings: &wafleet_core::Settings) -> Self {
        let id = settings.worker_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default();
            let suffix: u32 = rand::random();
            format!(
                "{}-{}-{suffix:08x}",
                if host.is_empty() { "worker" } else { &host },
                std::process::id()
            )
        });
        WorkerOptions {
            id,
            capacity: settings.worker_capacity,
            lease_ttl: std::time::Duration::from_secs(settings.lease_ttl_secs.max(1)),
        }
    }
}

/// Runs the worker until `shutdown`, then hands its devices off (sessions closed, credentials
/// kept, leases released).
#[tracing::instrument(name = "worker", skip_all, fields(worker = %options.id))]
pub async fn run(db: Db, link: Arc<dyn Link>, options: WorkerOptions, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(
        backend = db.backend_name(),
        capacity = options.capacity,
        "worker started"
    );
    let mut manager = SessionManager::new(db, link, options);
    manager.run(shutdown).await;
    tracing::info!("worker drained");
    Ok(())
}
