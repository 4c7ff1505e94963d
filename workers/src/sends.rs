//! Outbound sends, run on the worker that holds the device.
//!
//! The API records a send and pushes a [`SendJob`] to the holder's own queue. The holder begins
//! it under its lease's fencing token (`queued → sending`), sends through the session and records
//! WhatsApp's id. Every few seconds, and whenever it claims devices, a holder also sweeps the
//! database for queued sends of its devices: the path by which sends reach a new holder after
//! failover, or were accepted while no worker held the device.
//!
//! Before beginning a send, the holder asks the device's [`Pacer`] whether it may go now; if not,
//! the job comes back when its slot is due ([`Outcome::Later`], which costs no attempt).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use wafleet_core::Db;
use wafleet_core::cache::Invalidations;
use wafleet_core::db::Fence;
use wafleet_core::link::{Jid, LinkError, OutgoingImage, Session};
use wafleet_core::metrics as m;
use wafleet_core::queue::{Job, Outcome, Queues, SendJob, sends_queue};
use wafleet_core::types::DeviceId;

use crate::pacing::Pacer;

/// Longest wait for WhatsApp to accept one send.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// A send pushed by the sweep is not pushed again for this long; after it, a send still queued is
/// taken for lost (a Redis restart without persistence) and pushed again. Pushing twice is safe:
/// only one run can move it out of `queued`.
const IN_FLIGHT_FOR: Duration = Duration::from_secs(30);
/// Sends queued per sweep at most.
const SWEEP_LIMIT: i64 = 1_000;

/// A held device's live session, as sends see it.
#[derive(Clone)]
pub struct Entry {
    /// The lease it is held under.
    pub fence: Fence,
    /// The session.
    pub session: Arc<dyn Session>,
    /// Sends hold it shared while they run; closing the session takes it exclusively, so a
    /// hand-off waits for sends under way instead of cutting them off mid-flight (which would
    /// leave their outcome unknown).
    pub gate: Arc<tokio::sync::RwLock<()>>,
}

/// The sessions this worker holds, shared by the session manager and the send handler.
#[derive(Clone, Default)]
pub struct Roster(Arc<RwLock<HashMap<DeviceId, Entry>>>);

impl Roster {
    /// Adds a held session.
    pub fn insert(&self, device: DeviceId, entry: Entry) {
        self.0.write().expect("roster").insert(device, entry);
    }

    /// Removes a session; sends not yet begun on it will find it gone.
    pub fn remove(&self, device: DeviceId) {
        self.0.write().expect("roster").remove(&device);
    }

    fn get(&self, device: DeviceId) -> Option<Entry> {
        self.0.read().expect("roster").get(&device).cloned()
    }

    fn holds(&self, fence: Fence) -> bool {
        self.get(fence.device).is_some_and(|e| e.fence == fence)
    }
}

/// Runs sends for this worker's devices.
#[derive(Clone)]
pub struct Sender {
    db: Db,
    queues: Queues,
    worker: String,
    roster: Roster,
    /// Sends pushed by the sweep and not yet finished, so a sweep does not push them twice.
    in_flight: Arc<Mutex<HashMap<i64, Instant>>>,
    /// Sends an attempt in this process is working on (from just before `begin_send` until the
    /// attempt ends or is dropped), so the sweep can tell a cancelled attempt from a live one.
    /// Counted, since a send pushed twice can have two attempts at once (one finds it begun).
    running: Arc<Mutex<HashMap<i64, u32>>>,
    /// Each device's pace, across all its sends.
    pacer: Pacer,
    /// A performed send adds a message to the device's chat: its cached reads go.
    invalidations: Invalidations,
}

impl Sender {
    /// A sender for `worker`'s devices in `roster`.
    pub fn new(db: Db, queues: Queues, worker: String, roster: Roster, invalidations: Invalidations) -> Self {
        Sender {
            invalidations,
            pacer: Pacer::new(db.clone()),
            db,
            queues,
            worker,
            roster,
            in_flight: Arc::default(),
            running: Arc::default(),
        }
    }

    /// This worker's send queue.
    pub fn queue(&self) -> String {
        sends_queue(&self.worker)
    }

    /// Fails sends a dead holder left unconfirmed, and queues the queued sends of this worker's devices.
    pub async fn sweep(&self) -> wafleet_core::Result<()> {
        let abandoned = self.db.fail_abandoned_sends(&self.worker).await?;
        if abandoned > 0 {
            metrics::counter!(m::SENDS, "status" => "unknown").increment(abandoned);
            tracing::warn!(abandoned, "sends left unconfirmed by a previous holder marked failed");
        }
        let running: HashSet<i64> = self.running.lock().expect("running sends").keys().copied().collect();
        let begun_before = wafleet_core::types::Timestamp::now().plus_secs(-(2 * SEND_TIMEOUT.as_secs() as i64));
        let dropped = self.db.fail_dropped_sends(&self.worker, &running, begun_before).await?;
        if dropped > 0 {
            metrics::counter!(m::SENDS, "status" => "unknown").increment(dropped);
            tracing::warn!(dropped, "sends whose attempt was cancelled mid-flight marked failed");
        }
        let queued = self.db.queued_sends(&self.worker, SWEEP_LIMIT).await?;
        for (message, device) in queued {
            {
                let mut in_flight = self.in_flight.lock().expect("in-flight sends");
                // A send waiting for its pacing slot is still in flight, however long it waits.
                in_flight.retain(|id, since| since.elapsed() < IN_FLIGHT_FOR || self.pacer.holds(*id));
                if in_flight.insert(message, Instant::now()).is_some() {
                    continue;
                }
            }
            if let Err(err) = self.queues.push(&self.queue(), SendJob { message, device }).await {
                self.done(message);
                return Err(err);
            }
        }
        Ok(())
    }

    fn done(&self, message: i64) {
        self.in_flight.lock().expect("in-flight sends").remove(&message);
    }

    /// Runs one attempt of a send job.
    #[tracing::instrument(skip(self), fields(message = job.message, device = %job.device))]
    pub async fn run(&self, job: SendJob, attempt: u32) -> Outcome {
        let outcome = self.attempt(&job, attempt).await;
        if !matches!(outcome, Outcome::Retry(_) | Outcome::Later(_)) {
            self.done(job.message);
        }
        outcome
    }

    async fn attempt(&self, job: &SendJob, attempt: u32) -> Outcome {
        // Not held here (any more): the holder's sweep finds it queued.
        let Some(entry) = self.roster.get(job.device) else {
            return Outcome::Done;
        };
        let _sending = entry.gate.read().await;
        if !self.roster.holds(entry.fence) {
            return Outcome::Done;
        }
        if let Some(wait) = self.pacer.wait(job.device, job.message).await {
            return Outcome::Later(wait);
        }
        let _running = Running::new(&self.running, job.message);
        let work = match self.db.begin_send(entry.fence, job.message).await {
            Ok(Some(work)) => work,
            // Already begun or finished by someone, or the lease moved on: nothing to do here.
            Ok(None) | Err(wafleet_core::Error::Fenced) => return Outcome::Done,
            Err(err) => return Outcome::Retry(format!("database: {err}")),
        };
        let to = Jid(work.recipient);
        let sent = match work.image {
            Some(bytes) => {
                let image = OutgoingImage {
                    bytes,
                    mime: "image/jpeg".into(),
                    caption: work.body,
                };
                tokio::time::timeout(SEND_TIMEOUT, entry.session.send_image(&to, image)).await
            }
            None => {
                let text = work.body.unwrap_or_default();
                tokio::time::timeout(SEND_TIMEOUT, entry.session.send_text(&to, &text)).await
            }
        }
        .unwrap_or_else(|_| Err(LinkError::Unconfirmed(format!("no answer within {SEND_TIMEOUT:?}"))));
        match sent {
            Ok(wa_id) => {
                self.record_sent(work.id, &wa_id).await;
                self.invalidations.device_changed(job.device).await;
                metrics::counter!(m::SENDS, "status" => "sent").increment(1);
                Outcome::Done
            }
            Err(LinkError::Transient(reason)) if attempt < SendJob::MAX_ATTEMPTS => {
                // Nothing reached WhatsApp: it may safely go again.
                if let Err(err) = self.db.requeue_send(work.id, &reason).await {
                    tracing::warn!(error = ?err, "putting a send back in the queue failed");
                }
                Outcome::Retry(reason)
            }
            Err(err) => {
                if matches!(err, LinkError::Recipient(_) | LinkError::Device(_)) {
                    self.pacer.failed(job.device).await;
                }
                let (label, reason) = match &err {
                    LinkError::Unconfirmed(_) => (
                        "unknown",
                        format!("outcome unknown ({err}); not sent again, to avoid a duplicate"),
                    ),
                    LinkError::Transient(_) => ("failed", format!("gave up after {attempt} attempts: {err}")),
                    _ => ("failed", err.to_string()),
                };
                metrics::counter!(m::SENDS, "status" => label).increment(1);
                if let Err(err) = self.db.fail_send(work.id, &reason).await {
                    tracing::warn!(error = ?err, "recording a failed send failed");
                }
                Outcome::Fail(reason)
            }
        }
    }

    /// Records a performed send, retrying while the database is away: the send happened, and
    /// leaving it `sending` would make it look unconfirmed.
    async fn record_sent(&self, id: i64, wa_id: &str) {
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=10 {
            match self.db.finish_send(id, wa_id).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = ?err, attempt, "recording a performed send failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::error!(
            id,
            wa_id,
            "could not record a performed send; it will show as unconfirmed"
        );
    }
}

/// Marks a send as worked on in this process for as long as it lives, dropped future included.
struct Running<'a> {
    set: &'a Mutex<HashMap<i64, u32>>,
    message: i64,
}

impl<'a> Running<'a> {
    fn new(set: &'a Mutex<HashMap<i64, u32>>, message: i64) -> Self {
        *set.lock().expect("running sends").entry(message).or_default() += 1;
        Running { set, message }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut set = self.set.lock().expect("running sends");
        if let Some(count) = set.get_mut(&self.message) {
            *count -= 1;
            if *count == 0 {
                set.remove(&self.message);
            }
        }
    }
}
