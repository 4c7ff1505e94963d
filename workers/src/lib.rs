//! The connection worker role: holds device sessions and runs their work.
//!
//! A worker reconciles: it reads what each device's owner asked for (`device_sessions`), opens,
//! reopens or closes live sessions through a [`Link`] to match, and writes what the sessions report
//! (pairing codes, status, messages, receipts) back to the database. The API never talks to a
//! worker directly, so either can restart or move without the other noticing.

mod events;
mod flush;
mod liveness;
mod media;
mod pacing;
mod requests;
mod sends;
mod sessions;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use wafleet_core::Db;
use wafleet_core::cache::Invalidations;
use wafleet_core::link::Link;
use wafleet_core::queue::{ConsumeOptions, Queues};
use wafleet_core::shutdown::Shutdown;

pub use flush::{Flusher, Ingest, MAX_BATCH};
pub use media::MediaOptions;
pub use sends::{Roster, Sender};
pub use sessions::{SessionManager, WorkerOptions};
pub use webhooks::WebhookOptions;

/// Wake-up jobs handled at once per worker (each only wakes a device's send loop).
const SEND_CONCURRENCY: usize = 16;

impl WorkerOptions {
    /// Options from settings; without `WORKER_ID`, a name from the host, process id and a random
    /// suffix. Fails when the media directory cannot be made.
    pub fn from_settings(settings: &wafleet_core::Settings) -> anyhow::Result<Self> {
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
        Ok(WorkerOptions {
            id,
            capacity: settings.worker_capacity,
            claim_rate: settings.worker_claim_rate,
            lease_ttl: std::time::Duration::from_secs(settings.lease_ttl_secs.max(1)),
            confirm_wait: std::time::Duration::from_secs(settings.send_confirm_wait_secs),
            webhooks: WebhookOptions::from_settings(settings),
            media: Some(MediaOptions {
                store: wafleet_core::media_store::MediaStore::from_settings(settings)?,
                max_bytes: settings.max_received_media_bytes,
            }),
        })
    }
}

/// Runs the worker until `shutdown`, then drains: the send queue stops taking wake-ups, every
/// device is handed off (sends under way finish, sessions close with their credentials kept,
/// leases are released), and the ingest buffer is written out. What the worker writes is announced to
/// `invalidations`, so the API's cached reads follow.
#[tracing::instrument(name = "worker", skip_all, fields(worker = %options.id))]
pub async fn run(
    db: Db,
    link: Arc<dyn Link>,
    queues: Queues,
    invalidations: Invalidations,
    options: WorkerOptions,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    tracing::info!(
        backend = db.backend_name(),
        capacity = options.capacity,
        "worker started"
    );
    let flusher = Flusher::start(db.clone(), invalidations.clone());
    let roster = Roster::default();
    let sender = Sender::new(
        db.clone(),
        options.id.clone(),
        roster.clone(),
        invalidations,
        options.confirm_wait,
        options.media.as_ref().map(|m| m.store.clone()),
    );
    let consume = ConsumeOptions {
        worker: options.id.clone(),
        concurrency: SEND_CONCURRENCY,
        heartbeat: Duration::from_secs(options.lease_ttl.as_secs().max(1)),
        retry: None,
    };
    let handler = sender.clone();
    let sends = tokio::spawn(wafleet_core::queue::consume(
        queues.clone(),
        sender.queue(),
        consume,
        move |job, _attempt| {
            let handler = handler.clone();
            async move { handler.on_job(job).await }
        },
        shutdown.clone(),
    ));
    // Webhooks are delivered by every worker, for every user: nothing ties them to a device.
    let webhooks = tokio::spawn(webhooks::run(
        db.clone(),
        queues.clone(),
        options.id.clone(),
        options.webhooks.clone(),
        shutdown.clone(),
    ));
    let mut manager = SessionManager::new(db, link, options, flusher.ingest(), roster, Some(sender));
    manager.run(shutdown).await;
    match sends.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = ?err, "the send queue stopped with an error"),
        Err(err) => tracing::warn!(error = ?err, "the send queue task failed"),
    }
    if let Err(err) = webhooks.await {
        tracing::warn!(error = ?err, "the webhook deliverer failed");
    }
    manager.drain().await;
    drop(manager);
    flusher.close().await;
    tracing::info!("worker drained");
    Ok(())
}
