//! The ingest buffer: what sessions report is written in batches, and acknowledged to WhatsApp
//! only once its batch has committed.
//!
//! Writes are group-committed: while one batch is being written, new events gather, and the next
//! batch takes all of them (up to [`MAX_BATCH`] rows). Under light load a message is written on
//! its own at once; under heavy load batches grow and the row rate rises with them. Nothing here
//! needs to survive a crash: an event is acknowledged only after its batch is durable, so a crash
//! before that makes WhatsApp deliver it again, and replays are skipped by message id.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wafleet_core::Db;
use wafleet_core::cache::{Invalidations, Topic};
use wafleet_core::db::{Fence, IngestItem};
use wafleet_core::link::Ack;
use wafleet_core::metrics as m;
use wafleet_core::types::DeviceId;

/// Most rows written in one batch.
pub const MAX_BATCH: usize = 500;
/// Events waiting to be written, at most, before sessions wait for the writer.
const BUFFER: usize = 10 * MAX_BATCH;
/// Attempts at writing a batch before its events are left unacknowledged (redelivered later).
const WRITE_ATTEMPTS: u32 = 6;

/// An event waiting to be written.
struct Pending {
    fence: Fence,
    item: IngestItem,
    ack: Ack,
}

/// Hands events to the batch writer; cheap to clone (one per session).
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Pending>,
    invalidations: Invalidations,
}

/// The batch writer task.
pub struct Flusher {
    ingest: Ingest,
    task: JoinHandle<()>,
}

impl Flusher {
    /// Starts the writer on `db`; each committed batch invalidates the cached reads of the
    /// devices it wrote to.
    pub fn start(db: Db, invalidations: Invalidations) -> Flusher {
        let (tx, rx) = mpsc::channel(BUFFER);
        Flusher {
            ingest: Ingest {
                tx,
                invalidations: invalidations.clone(),
            },
            task: tokio::spawn(write_loop(db, invalidations, rx)),
        }
    }

    /// Where sessions send their events.
    pub fn ingest(&self) -> Ingest {
        self.ingest.clone()
    }

    /// Writes everything still buffered, then stops (after every session has stopped).
    pub async fn close(self) {
        drop(self.ingest);
        if let Err(err) = self.task.await {
            tracing::error!(error = ?err, "the ingest writer failed");
        }
    }
}

impl Ingest {
    /// Queues an event; `ack` fires once it is durable. Waits when the buffer is full, which
    /// slows the session's reading from WhatsApp rather than losing anything.
    pub async fn push(&self, fence: Fence, item: IngestItem, ack: Ack) {
        if self.tx.send(Pending { fence, item, ack }).await.is_err() {
            tracing::warn!("the ingest writer has stopped; event left unacknowledged");
        }
    }

    /// A device's row changed outside the batches (status, pairing): its cached reads go.
    pub async fn device_changed(&self, device: DeviceId) {
        self.invalidations.device_changed(device).await;
    }
}

async fn write_loop(db: Db, invalidations: Invalidations, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let devices = write(&db, std::mem::take(&mut batch)).await;
        let topics: Vec<Topic> = devices.into_iter().map(Topic::Device).collect();
        invalidations.changed(&topics).await;
    }
}

/// Writes one batch; returns the devices whose chats changed.
#[tracing::instrument(skip_all, fields(rows = batch.len()))]
async fn write(db: &Db, batch: Vec<Pending>) -> Vec<DeviceId> {
    let (acks, items): (Vec<Ack>, Vec<(Fence, IngestItem)>) =
        batch.into_iter().map(|p| (p.ack, (p.fence, p.item))).unzip();
    let started = Instant::now();
    let mut wait = Duration::from_millis(50);
    for attempt in 1..=WRITE_ATTEMPTS {
        match db.write_batch(&items).await {
            Ok(outcome) => {
                metrics::histogram!(m::FLUSH_BATCH_ROWS).record(items.len() as f64);
                metrics::histogram!(m::FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::counter!(m::MESSAGES_STORED).increment(outcome.new_messages);
                let mut fenced = 0;
                for (ack, accepted) in acks.into_iter().zip(outcome.accepted) {
                    if accepted {
                        ack.done();
                    } else {
                        fenced += 1;
                    }
                }
                if fenced > 0 {
                    tracing::warn!(fenced, "events of devices now held by another worker were not written");
                }
                return outcome.devices;
            }
            Err(err) => {
                tracing::warn!(error = ?err, attempt, "writing an ingest batch failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!(
        rows = items.len(),
        "giving up on an ingest batch; WhatsApp will deliver it again"
    );
    Vec::new()
}
