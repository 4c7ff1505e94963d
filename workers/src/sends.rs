//! Outbound sends, run on the worker that holds the device.
//!
//! The database is the only list of waiting sends. Every held device has one send loop here: it
//! reads the device's oldest queued send that is due, asks the device's [`Pacer`] whether it may
//! go now (if not, it says why on the send and sleeps until its slot), begins it under the lease's
//! fencing token with the WhatsApp message id it goes out under, sends through the session and
//! records the outcome. Then the next.
//!
//! WhatsApp may restrict new chats (a reach-out timelock, a used-up monthly cap). The loop reads
//! the restrictions each time the session connects and whenever a send is refused for one; while
//! one blocks, sends to recipients who never wrote to the device wait until it lifts, with the
//! reason on each, and sends to existing chats go on. None of them fails for it.
//!
//! The queue only wakes a loop early: the API pushes a [`SendJob`] to the holder's queue when it
//! records a send, and the handler here just wakes that device's loop. A lost job (a Redis that
//! restarted empty, a holder that moved) costs at most one sweep interval, since the holder also
//! sweeps the database for devices with due sends; nothing waits in memory or in the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use wafleet_core::Db;
use wafleet_core::cache::Invalidations;
use wafleet_core::db::{Fence, NextSend, SendWork};
use wafleet_core::link::{Content, Jid, LinkError, Outgoing, OutgoingMedia, Session, new_message_id};
use wafleet_core::media_store::MediaStore;
use wafleet_core::metrics as m;
use wafleet_core::queue::{Outcome, SendJob, backoff, sends_queue};
use wafleet_core::sync;
use wafleet_core::types::{DeviceId, Timestamp};

use crate::pacing::Pacer;

/// Longest wait for WhatsApp to accept one send.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries of a send whose failures reached nothing (a dropped connection) before it fails.
const MAX_ATTEMPTS: i64 = 6;
/// First and longest wait before trying such a send again.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_LONGEST: Duration = Duration::from_secs(60);
/// How often a loop settles sends left unconfirmed while it has any. A loop with none, and
/// nothing due, sleeps until woken: an idle device costs no statement (the holder's sweep wakes
/// loops whose wake-up was lost).
const SETTLE_EVERY: Duration = Duration::from_secs(10);
/// A loop whose database reads fail tries again after this long.
const DB_RETRY: Duration = Duration::from_secs(1);
/// How long sends to new chats wait after a refusal for a restriction that could not be read,
/// or that had already ended by WhatsApp's clock.
const RESTRICTED_RETRY_SECS: i64 = 30;
/// Held sends move this long after the restriction's end, so a clock a little behind
/// WhatsApp's does not meet the restriction again.
const RESTRICTION_MARGIN_MS: i64 = 1_000;

/// A held device's live session, as sends see it.
#[derive(Clone)]
pub struct Entry {
    /// The lease it is held under.
    pub fence: Fence,
    /// The session.
    pub session: Arc<dyn Session>,
    /// The send loop holds it shared while a send is under way; closing the session takes it
    /// exclusively, so a hand-off waits for that send instead of cutting it off mid-flight.
    pub gate: Arc<tokio::sync::RwLock<()>>,
    /// Notified each time the session connects: WhatsApp's restrictions are read then.
    pub connected: Arc<Notify>,
}

/// What a send loop knows of WhatsApp's restrictions on its device's new chats: blocked until
/// when, and why (for people).
#[derive(Clone, Default)]
struct Blocked(Arc<Mutex<Option<(Timestamp, String)>>>);

impl Blocked {
    /// The block in force now, if any.
    fn now(&self) -> Option<(Timestamp, String)> {
        let mut block = sync::lock(&self.0);
        if block
            .as_ref()
            .is_some_and(|(until, _)| until.millis() <= Timestamp::now().millis())
        {
            *block = None;
        }
        block.clone()
    }

    fn set(&self, block: Option<(Timestamp, String)>) {
        *sync::lock(&self.0) = block;
    }
}

/// The sessions this worker holds, shared by the session manager and the send loops.
#[derive(Clone, Default)]
pub struct Roster(Arc<RwLock<HashMap<DeviceId, Entry>>>);

impl Roster {
    /// Adds a held session.
    pub fn insert(&self, device: DeviceId, entry: Entry) {
        sync::write(&self.0).insert(device, entry);
    }

    /// Removes a session; its send loop begins no further send.
    pub fn remove(&self, device: DeviceId) {
        sync::write(&self.0).remove(&device);
    }

    fn holds(&self, fence: Fence) -> bool {
        sync::read(&self.0).get(&fence.device).is_some_and(|e| e.fence == fence)
    }
}

/// Runs the send loops of this worker's devices.
#[derive(Clone)]
pub struct Sender {
    db: Db,
    worker: String,
    roster: Roster,
    /// How long a send that began and was never confirmed waits for a receipt before it fails.
    confirm_wait: Duration,
    /// Wakes each running loop.
    wakes: Arc<Mutex<HashMap<DeviceId, Arc<Notify>>>>,
    /// Each device's pace, across all its sends.
    pacer: Pacer,
    /// A performed send adds a message to the device's chat: its cached reads go.
    invalidations: Invalidations,
    /// Where the file of a performed media send is kept for its chat (as received files are).
    media: Option<MediaStore>,
}

impl Sender {
    /// A sender for `worker`'s devices in `roster`.
    /// Files of performed media sends are kept in `media`, when given.
    pub fn new(
        db: Db,
        worker: String,
        roster: Roster,
        invalidations: Invalidations,
        confirm_wait: Duration,
        media: Option<MediaStore>,
    ) -> Self {
        Sender {
            pacer: Pacer::new(db.clone()),
            db,
            worker,
            roster,
            confirm_wait,
            wakes: Arc::default(),
            invalidations,
            media,
        }
    }

    /// This worker's send queue (wake-ups).
    pub fn queue(&self) -> String {
        sends_queue(&self.worker)
    }

    /// Starts the send loop of a device just added to the roster; abort the handle (after
    /// taking the entry's gate) to stop it.
    pub fn start(&self, entry: Entry) -> JoinHandle<()> {
        let wake = Arc::new(Notify::new());
        sync::lock(&self.wakes).insert(entry.fence.device, wake.clone());
        tokio::spawn(self.clone().run(entry, wake))
    }

    /// A device's send loop, beside the watch on its restrictions.
    async fn run(self, entry: Entry, wake: Arc<Notify>) {
        let blocked = Blocked::default();
        tokio::select! {
            () = self.clone().run_loop(entry.clone(), Arc::clone(&wake), blocked.clone()) => {}
            () = self.watch_restrictions(entry, wake, blocked) => {}
        }
    }

    /// Starts from the restrictions last stored for the device, then reads them from WhatsApp
    /// each time the session connects.
    #[tracing::instrument(name = "restrictions", skip_all, fields(device = %entry.fence.device))]
    async fn watch_restrictions(self, entry: Entry, wake: Arc<Notify>, blocked: Blocked) {
        match self.db.device_restrictions(entry.fence.device).await {
            Ok(stored) => blocked.set(stored.and_then(|s| s.new_chats_blocked(Timestamp::now()))),
            Err(err) => tracing::warn!(error = ?err, "reading the stored restrictions failed"),
        }
        loop {
            entry.connected.notified().await;
            self.learn_restrictions(&entry, &blocked).await;
            wake.notify_one();
        }
    }

    /// Reads the device's restrictions from WhatsApp, stores them, and holds its sends to new
    /// chats while they block; returns the block, if any (`None` too when they could not be read).
    async fn learn_restrictions(&self, entry: &Entry, blocked: &Blocked) -> Option<(Timestamp, String)> {
        let device = entry.fence.device;
        let state = match entry.session.restrictions().await {
            Ok(state) => state,
            Err(err) => {
                tracing::warn!(error = %err, "reading WhatsApp's restrictions on new chats failed");
                return None;
            }
        };
        if let Err(err) = self.db.set_device_restrictions(device, &state).await {
            tracing::warn!(error = ?err, "storing the device's restrictions failed");
        }
        let block = state
            .new_chats_blocked(Timestamp::now())
            .map(|(until, reason)| (until.plus_millis(RESTRICTION_MARGIN_MS), reason));
        blocked.set(block.clone());
        if let Some((until, reason)) = &block {
            tracing::warn!(%until, reason, "WhatsApp restricts new chats from the device");
            match self.db.hold_new_chat_sends(device, reason, *until).await {
                Ok(held) => tracing::info!(held, "sends to new chats wait for the restriction to lift"),
                Err(err) => tracing::warn!(error = ?err, "holding sends to new chats failed"),
            }
            // Held sends now say why they wait: cached reads of them go. Nothing cached reads
            // the restrictions themselves, so a device without one costs no invalidation.
            self.invalidations.device_changed(device).await;
        }
        block
    }

    /// Forgets a device whose loop was stopped.
    pub fn stopped(&self, device: DeviceId) {
        sync::lock(&self.wakes).remove(&device);
        self.pacer.forget(device);
    }

    /// Wakes `device`'s loop, if it runs here: a send may be due.
    pub fn wake(&self, device: DeviceId) {
        if let Some(wake) = sync::lock(&self.wakes).get(&device) {
            wake.notify_one();
        }
    }

    /// Handles a wake-up job from the queue.
    pub async fn on_job(&self, job: SendJob) -> Outcome {
        self.wake(job.device);
        Outcome::Done
    }

    /// Wakes the loops of held devices with a due send: the safety net for wake-ups lost with
    /// the queue.
    pub async fn sweep(&self) -> wafleet_core::Result<()> {
        for device in self.db.devices_with_due_sends(&self.worker, Timestamp::now()).await? {
            self.wake(device);
        }
        Ok(())
    }

    #[tracing::instrument(name = "send_loop", skip_all, fields(device = %entry.fence.device, token = entry.fence.token))]
    async fn run_loop(self, entry: Entry, wake: Arc<Notify>, blocked: Blocked) {
        let fence = entry.fence;
        // When to settle next: at once (a predecessor may have left sends unconfirmed), then
        // while any stay unconfirmed, and after each attempt of this loop.
        let mut settle_at: Option<Instant> = Some(Instant::now());
        while self.roster.holds(fence) {
            if settle_at.is_some_and(|at| at <= Instant::now()) {
                settle_at = match self.settle(fence).await {
                    Some(0) => None,
                    _ => Some(Instant::now() + SETTLE_EVERY),
                };
            }
            let until_settle = settle_at.map(|at| at.saturating_duration_since(Instant::now()));
            let now = Timestamp::now();
            let id = match self.db.next_send(fence.device, now).await {
                Ok(NextSend::Due(id)) => id,
                Ok(NextSend::At(at)) => {
                    let until = Duration::from_millis(u64::try_from(at.millis() - now.millis()).unwrap_or(0));
                    sleep_or_wake(&wake, until_settle.map_or(until, |s| s.min(until))).await;
                    continue;
                }
                Ok(NextSend::Idle) => {
                    match until_settle {
                        Some(wait) => sleep_or_wake(&wake, wait).await,
                        None => wake.notified().await,
                    }
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = ?err, "reading the next send failed; trying again");
                    tokio::time::sleep(DB_RETRY).await;
                    continue;
                }
            };
            if let Some((until, reason)) = blocked.now() {
                // Held when it goes to a new chat; a send to an existing chat goes on.
                match self.db.hold_for_restriction(id, &reason, until).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(error = ?err, "holding a send for a restriction failed; trying again");
                        tokio::time::sleep(DB_RETRY).await;
                        continue;
                    }
                }
            }
            if let Some((wait, reason)) = self.pacer.wait(fence.device, id).await {
                let until = now.plus_millis(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                if let Err(err) = self.db.set_send_waiting(id, &reason, until).await {
                    tracing::warn!(error = ?err, "recording why a send waits failed");
                }
                // Not cut short by wake-ups: the pace holds whatever else arrives.
                tokio::time::sleep(wait).await;
                continue;
            }
            self.attempt(&entry, id, &blocked).await;
            // It may have been left unconfirmed: look again once the others have had their turn.
            settle_at.get_or_insert_with(|| Instant::now() + SETTLE_EVERY);
        }
        tracing::debug!("send loop stopped: the device is no longer held here");
    }

    /// Records what WhatsApp's receipts showed about unconfirmed sends, and fails those with no
    /// trace after the wait. Runs only between sends of this loop, so none of them is under way.
    /// Returns how many stay unconfirmed, or `None` when that is not known (the database failed).
    async fn settle(&self, fence: Fence) -> Option<u64> {
        let begun_before = Timestamp::now().plus_secs(-i64::try_from(self.confirm_wait.as_secs()).unwrap_or(0));
        match self.db.settle_sends(fence, begun_before).await {
            Ok(settled) => {
                if settled.confirmed > 0 {
                    metrics::counter!(m::SENDS, "status" => "sent").increment(settled.confirmed);
                    tracing::info!(
                        confirmed = settled.confirmed,
                        "unconfirmed sends resolved by WhatsApp's receipts"
                    );
                    self.invalidations.device_changed(fence.device).await;
                }
                if settled.unknown > 0 {
                    metrics::counter!(m::SENDS, "status" => "unknown").increment(settled.unknown);
                    tracing::warn!(
                        unknown = settled.unknown,
                        "unconfirmed sends with no trace marked failed"
                    );
                }
                Some(settled.pending)
            }
            Err(err) => {
                tracing::warn!(error = ?err, "settling unconfirmed sends failed");
                None
            }
        }
    }

    /// One attempt at send `id`.
    #[tracing::instrument(skip(self, entry, blocked), fields(device = %entry.fence.device))]
    async fn attempt(&self, entry: &Entry, id: i64, blocked: &Blocked) {
        let _sending = entry.gate.read().await;
        if !self.roster.holds(entry.fence) {
            return;
        }
        let work = match self.db.begin_send(entry.fence, id, &new_message_id()).await {
            Ok(Some(work)) => work,
            // Already begun or finished by someone, or the lease moved on: nothing to do here.
            Ok(None) | Err(wafleet_core::Error::Fenced) => return,
            Err(err) => {
                tracing::warn!(error = ?err, "beginning a send failed; trying again");
                tokio::time::sleep(DB_RETRY).await;
                return;
            }
        };
        let (work_id, attempts) = (work.id, work.attempts);
        let message = outgoing(work);
        let sent = tokio::time::timeout(SEND_TIMEOUT, entry.session.send(&message))
            .await
            .unwrap_or_else(|_| Err(LinkError::Unconfirmed(format!("no answer within {SEND_TIMEOUT:?}"))));
        match sent {
            Ok(wa_id) => {
                let kept_at = self.keep_file(entry.fence.device, &wa_id, &message).await;
                self.record_sent(work_id, &wa_id, kept_at.as_deref()).await;
                self.invalidations.device_changed(entry.fence.device).await;
                metrics::counter!(m::SENDS, "status" => "sent").increment(1);
            }
            Err(LinkError::Transient(reason)) if attempts < MAX_ATTEMPTS => {
                // Nothing reached WhatsApp: it may safely go again, under the same id.
                let wait = backoff(
                    u32::try_from(attempts + 1).unwrap_or(u32::MAX),
                    RETRY_FIRST,
                    RETRY_LONGEST,
                );
                let at = Timestamp::now().plus_millis(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                if let Err(err) = self.db.retry_send(work_id, &reason, at).await {
                    tracing::warn!(error = ?err, "putting a send back in the queue failed");
                }
            }
            // Nothing was sent: it waits for the restriction to lift, and so do the device's
            // other sends to new chats.
            Err(LinkError::Restricted(refusal)) => {
                let (until, reason) = self.learn_restrictions(entry, blocked).await.unwrap_or_else(|| {
                    let until = Timestamp::now().plus_secs(RESTRICTED_RETRY_SECS);
                    (
                        until,
                        format!("WhatsApp restricts new chats ({refusal}); trying again at {until}"),
                    )
                });
                blocked.set(Some((until, reason.clone())));
                let held = match self.db.hold_for_restriction(work_id, &reason, until).await {
                    Ok(held) => held,
                    Err(err) => {
                        tracing::warn!(error = ?err, "holding a refused send failed");
                        false
                    }
                };
                // Refused though its recipient has written: it is tried again at the same time.
                if !held && let Err(err) = self.db.retry_send(work_id, &reason, until).await {
                    tracing::warn!(error = ?err, "putting a refused send back in the queue failed");
                }
            }
            // It may have reached WhatsApp: it stays `sending` under its id until a receipt
            // confirms it or the wait for one runs out (see `settle`).
            Err(LinkError::Unconfirmed(reason)) => {
                tracing::warn!(reason, "a send left without confirmation; waiting for a receipt");
            }
            Err(err) => {
                if matches!(err, LinkError::Recipient(_) | LinkError::Device(_)) {
                    self.pacer.failed(entry.fence.device).await;
                }
                let reason = match &err {
                    LinkError::Transient(_) => format!("gave up after {attempts} attempts: {err}"),
                    _ => err.to_string(),
                };
                metrics::counter!(m::SENDS, "status" => "failed").increment(1);
                if let Err(err) = self.db.fail_send(work_id, &reason).await {
                    tracing::warn!(error = ?err, "recording a failed send failed");
                }
            }
        }
    }

    /// Keeps the file of a performed media send where received files are kept, for its chat;
    /// where it is, or `None` (no file, no store, or the store failed: the send keeps its copy).
    async fn keep_file(&self, device: DeviceId, wa_id: &str, message: &Outgoing) -> Option<String> {
        let (Some(store), Content::Media(media)) = (&self.media, &message.content) else {
            return None;
        };
        let key = MediaStore::key_for(device, wa_id);
        match store.keep(&key, media.file.bytes.clone(), &media.file.mime).await {
            Ok(()) => Some(key),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "keeping a sent file failed; the send keeps its copy");
                None
            }
        }
    }

    /// Records a performed send, retrying while the database is away: the send happened, and
    /// leaving it `sending` would make it look unconfirmed.
    async fn record_sent(&self, id: i64, wa_id: &str, kept_at: Option<&str>) {
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=10 {
            match self.db.finish_send(id, wa_id, kept_at).await {
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
            "could not record a performed send; its receipts will resolve it"
        );
    }
}

/// The message a begun send goes out as.
fn outgoing(mut work: SendWork) -> Outgoing {
    let content = match (work.attachment(), work.structured()) {
        (Some(file), _) => Content::Media(OutgoingMedia {
            file,
            caption: work.body,
        }),
        (None, Some(structured)) => Content::Structured(structured),
        (None, None) => Content::Text(work.body.unwrap_or_default()),
    };
    Outgoing {
        id: work.wa_message_id,
        to: Jid(work.recipient),
        content,
        forwarded: work.forwarded,
    }
}

/// Sleeps for `wait`, or less if woken.
async fn sleep_or_wake(wake: &Notify, wait: Duration) {
    tokio::select! {
        () = wake.notified() => {}
        () = tokio::time::sleep(wait) => {}
    }
}
