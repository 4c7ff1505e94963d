//! The reconcile loop: this worker's leased devices → live sessions in this process.
//!
//! Each round the worker keeps its leases (renewing them, stepping down from any it lost, and from
//! all of them if it cannot renew before they expire), balances its load against the fair share of
//! the live workers (claiming free devices, handing excess ones off), and then opens, reopens or
//! closes sessions so they match what each held device's owner asked for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;
use wafleet_core::Db;
use wafleet_core::db::{Desired, DeviceStatus, Fence, SessionTarget};
use wafleet_core::link::{Link, LinkError, OpenMode, Session};
use wafleet_core::metrics as m;
use wafleet_core::shutdown::Shutdown;
use wafleet_core::types::{DeviceId, PhoneNumber};

use crate::events;
use crate::flush::Ingest;
use crate::liveness::{Keep, Liveness};
use crate::media::MediaFetcher;
use crate::requests::RequestRunner;
use crate::sends::{Entry, Roster, Sender};

/// How often a round runs.
const ROUND_EVERY: Duration = Duration::from_millis(500);
/// How often the holder sweeps the database for queued sends of its devices (and at once after
/// claiming devices).
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Sessions a worker opens at once (see [`SessionManager::open_all`]).
const OPENS_AT_ONCE: usize = 32;
/// Devices handed off per round at most when over the fair share.
const MAX_RELEASES_PER_ROUND: usize = 20;
/// First and longest wait before retrying a session that failed to open.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// How a worker identifies itself and how much it takes on.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Unique name in leases.
    pub id: String,
    /// Most sessions held at once.
    pub capacity: u32,
    /// Devices claimed (sessions opened) per second at most (`WORKER_CLAIM_RATE`).
    pub claim_rate: u32,
    /// How long a claim lasts without renewal.
    pub lease_ttl: Duration,
    /// How long a send left unconfirmed waits for a receipt before it fails (`SEND_CONFIRM_WAIT_SECS`).
    pub confirm_wait: Duration,
    /// How webhook events are delivered.
    pub webhooks: crate::WebhookOptions,
    /// Where the files of received messages go; `None`: they are left for another worker.
    pub media: Option<crate::MediaOptions>,
}

/// Devices claimed per round at most for `rate` claims a second: at least one.
fn claims_per_round(rate: u32) -> i64 {
    let per_round = (f64::from(rate) * ROUND_EVERY.as_secs_f64()).ceil() as i64;
    per_round.max(1)
}

/// A live session this worker holds.
struct Held {
    /// The lease it is held under.
    fence: Fence,
    /// The request generation it was opened for; a newer one reopens it.
    generation: i64,
    /// The session, shared with request handlers.
    session: Arc<dyn Session>,
    /// Consumes the session's events; ends when the session ends for good.
    events: JoinHandle<()>,
    /// The device's send loop, when this worker runs sends.
    sends: Option<JoinHandle<()>>,
    /// Taken exclusively before closing, so sends under way finish first (see [`Entry::gate`]).
    gate: Arc<tokio::sync::RwLock<()>>,
}

impl Held {
    /// Closes the connection (credentials kept) and stops consuming its events, once the send
    /// under way on it has finished. No new send starts: it leaves `roster` first, and its send
    /// loop stops.
    async fn close(self, roster: &Roster, sender: Option<&Sender>) {
        roster.remove(self.fence.device);
        let _no_sends = self.gate.write().await;
        if let Some(sends) = self.sends {
            sends.abort();
        }
        if let Some(sender) = sender {
            sender.stopped(self.fence.device);
        }
        self.session.close().await;
        self.events.abort();
    }
}

/// When to try a failed device again.
struct Retry {
    at: Instant,
    wait: Duration,
}

/// Holds this worker's sessions and keeps them matching what owners asked for.
pub struct SessionManager {
    db: Db,
    link: Arc<dyn Link>,
    options: WorkerOptions,
    /// Leases this worker holds, by device.
    leases: HashMap<DeviceId, Fence>,
    /// When the leases were last renewed successfully.
    renewed_at: Instant,
    held: HashMap<DeviceId, Held>,
    retries: HashMap<DeviceId, Retry>,
    requests: RequestRunner,
    /// Fetches the files of received messages.
    media: Option<MediaFetcher>,
    /// The held sessions as the send handler sees them.
    roster: Roster,
    /// Where sessions' messages and receipts go to be written in batches.
    ingest: Ingest,
    /// Runs sends; `None` when this process runs no send queue (tests of leases alone).
    sender: Option<Sender>,
    /// When queued sends were last swept for.
    swept_at: Option<Instant>,
    /// This worker's liveness lock, and the dead workers it finds.
    liveness: Liveness,
}

impl SessionManager {
    /// A manager that opens sessions through `link`, hands their events to `ingest`, and tells
    /// `sender` (sharing `roster`) about the sessions it holds.
    pub fn new(
        db: Db,
        link: Arc<dyn Link>,
        options: WorkerOptions,
        ingest: Ingest,
        roster: Roster,
        sender: Option<Sender>,
    ) -> Self {
        let requests = RequestRunner::new(db.clone());
        let media = options.media.clone().map(|m| MediaFetcher::new(db.clone(), m));
        let liveness = Liveness::new(db.clone(), options.id.clone());
        // As if the last renewal were a lease time ago: the first round heartbeats at once, so the
        // other workers count this one in their fair share from the start.
        let renewed_at = Instant::now()
            .checked_sub(options.lease_ttl)
            .unwrap_or_else(Instant::now);
        SessionManager {
            db,
            link,
            options,
            leases: HashMap::new(),
            renewed_at,
            held: HashMap::new(),
            retries: HashMap::new(),
            requests,
            media,
            roster,
            ingest,
            sender,
            swept_at: None,
            liveness,
        }
    }

    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.options.lease_ttl.as_secs())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// Runs rounds until `shutdown`. Then call [`SessionManager::drain`].
    pub async fn run(&mut self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(ROUND_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = tick.tick() => {
                    if let Err(err) = self.round().await {
                        tracing::warn!(error = ?err, "worker round failed; retrying");
                    }
                }
            }
        }
    }

    /// Hands every device off: sessions close (credentials kept) and leases are released so
    /// other workers take them at once; then leaves the worker list.
    pub async fn drain(&mut self) {
        self.hand_off_all().await;
        if let Err(err) = self.db.worker_gone(&self.options.id, self.ttl_secs() * 4).await {
            tracing::warn!(error = ?err, "leaving the worker list failed; the entry expires by itself");
        }
    }

    /// One round: keep the liveness lock and the leases, move dead workers' devices, reconcile
    /// sessions (logouts first), balance load (and open what it claimed), answer requests.
    pub async fn round(&mut self) -> wafleet_core::Result<()> {
        if self.liveness.keep().await == Keep::Lost {
            // Other workers may take these devices any moment now: let go of all of them first.
            self.hand_off_all().await;
        }
        self.keep_leases().await;
        self.liveness.bury_silent().await;
        self.reconcile().await?;
        let claimed = if self.liveness.may_claim() {
            self.balance().await?
        } else {
            false
        };
        if claimed {
            // The devices just claimed open now rather than a round later: after a failover
            // this is half a second sooner.
            self.reconcile().await?;
        }
        let sessions = self.sessions();
        self.requests.run_pending(&sessions).await;
        if let Some(media) = &self.media {
            media.run_due(&self.options.id, &sessions).await;
        }
        self.sweep_sends(claimed).await;
        metrics::gauge!(m::SESSIONS_HELD, "worker" => self.options.id.clone()).set(self.held.len() as f64);
        Ok(())
    }

    /// Renews leases (a third of the lease time after the last renewal) and steps down from any
    /// lost. If renewal keeps failing, steps down from everything before the leases can expire, so
    /// no device is ever held twice.
    async fn keep_leases(&mut self) {
        let ttl = self.options.lease_ttl;
        if self.renewed_at.elapsed() >= ttl / 3 || self.liveness.stale_record() {
            let locked = self.liveness.locked();
            let heartbeat = self
                .db
                .worker_heartbeat(&self.options.id, i64::from(self.options.capacity), locked)
                .await;
            let renewed = match heartbeat {
                Ok(()) => {
                    self.liveness.recorded(locked);
                    self.db.renew_leases(&self.options.id, self.ttl_secs()).await
                }
                Err(err) => Err(err),
            };
            match renewed {
                Ok(fences) => {
                    self.leases = fences.into_iter().map(|f| (f.device, f)).collect();
                    self.renewed_at = Instant::now();
                }
                Err(err) => tracing::warn!(error = ?err, "renewing leases failed"),
            }
        }
        if self.renewed_at.elapsed() >= ttl * 2 / 3 && !self.leases.is_empty() {
            tracing::error!(
                held = self.leases.len(),
                "cannot renew leases; stepping down from every device"
            );
            self.leases.clear();
        }
        let lost: Vec<DeviceId> = self
            .held
            .iter()
            .filter(|(device, held)| self.leases.get(device) != Some(&held.fence))
            .map(|(device, _)| *device)
            .collect();
        for device in lost {
            if let Some(held) = self.held.remove(&device) {
                metrics::counter!(m::LEASES_LOST, "worker" => self.options.id.clone()).increment(1);
                tracing::warn!(%device, "lease lost; closing the session");
                held.close(&self.roster, self.sender.as_ref()).await;
            }
        }
    }

    /// Queues the queued sends of held devices: after claiming devices (a new holder picks up
    /// what its predecessor left) and every [`SWEEP_EVERY`].
    async fn sweep_sends(&mut self, claimed: bool) {
        let Some(sender) = &self.sender else {
            return;
        };
        if !claimed && self.swept_at.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
            return;
        }
        match sender.sweep().await {
            Ok(()) => self.swept_at = Some(Instant::now()),
            Err(err) => tracing::warn!(error = ?err, "sweeping for queued sends failed"),
        }
    }

    /// Claims free devices up to the fair share of the live workers (and capacity), and hands off
    /// devices beyond it. The fair share is rounded up, so the shares cover every device and a
    /// worker above its share is over for certain: handing off never makes another worker claim
    /// back, and a joining worker always finds devices to take.
    /// Returns whether it claimed any.
    async fn balance(&mut self) -> wafleet_core::Result<bool> {
        let fleet = self.db.fleet(self.ttl_secs()).await?;
        let live = fleet.live_workers.max(1);
        let fair = ((fleet.wanted + live - 1) / live).min(i64::from(self.options.capacity));
        let held = i64::try_from(self.leases.len()).unwrap_or(i64::MAX);
        let mut claimed = false;
        if held < fair {
            let want = (fair - held).min(claims_per_round(self.options.claim_rate));
            for fence in self.db.claim_leases(&self.options.id, want, self.ttl_secs()).await? {
                claimed = true;
                tracing::debug!(device = %fence.device, token = fence.token, "lease claimed");
                metrics::counter!(m::LEASES_CLAIMED, "worker" => self.options.id.clone()).increment(1);
                self.leases.insert(fence.device, fence);
            }
        } else if held > fair {
            let excess = usize::try_from(held - fair).unwrap_or(0).min(MAX_RELEASES_PER_ROUND);
            let handed: Vec<Fence> = self.leases.values().take(excess).copied().collect();
            for fence in handed {
                self.hand_off(fence).await;
            }
        }
        Ok(claimed)
    }

    /// Hands a device to another worker: the lease goes first (refused if the owner meanwhile
    /// asked for a logout, which this worker must then carry out), then the session closes with
    /// its credentials kept.
    async fn hand_off(&mut self, fence: Fence) {
        match self.db.hand_off_lease(fence).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(device = %fence.device, error = ?err, "handing off failed; keeping the device");
                return;
            }
        }
        metrics::counter!(m::LEASES_HANDED_OFF, "worker" => self.options.id.clone()).increment(1);
        self.let_go(fence.device).await;
    }

    /// Lets go of a device nobody wants a session for any more (its session is already stopped).
    async fn release(&mut self, fence: Fence) {
        self.let_go(fence.device).await;
        if let Err(err) = self.db.release_lease(fence).await {
            tracing::warn!(device = %fence.device, error = ?err, "releasing a lease failed; it expires by itself");
        }
    }

    /// Forgets a device this worker no longer holds: its lease, its retry state, and its session,
    /// which closes with its credentials kept.
    async fn let_go(&mut self, device: DeviceId) {
        self.leases.remove(&device);
        self.retries.remove(&device);
        if let Some(held) = self.held.remove(&device) {
            held.close(&self.roster, self.sender.as_ref()).await;
        }
    }

    /// At shutdown: every session closes (credentials kept) and every lease is released, so other
    /// workers take the devices at once instead of after the lease time.
    async fn hand_off_all(&mut self) {
        let fences: Vec<Fence> = self.leases.values().copied().collect();
        let count = fences.len();
        for fence in fences {
            self.release(fence).await;
        }
        for (_, held) in self.held.drain() {
            held.close(&self.roster, self.sender.as_ref()).await;
        }
        tracing::info!(count, "devices handed off");
    }

    /// Opens, reopens or closes the sessions of held devices to match what their owners asked for.
    async fn reconcile(&mut self) -> wafleet_core::Result<()> {
        let targets = self.db.held_session_targets(&self.options.id).await?;
        let by_device: HashMap<DeviceId, &SessionTarget> = targets.iter().map(|t| (t.device_id, t)).collect();

        let stale: Vec<DeviceId> = self
            .held
            .iter()
            .filter(|(device, held)| match by_device.get(device) {
                Some(t) => {
                    t.desired == Desired::Unlinked || t.generation != held.generation || held.events.is_finished()
                }
                None => true,
            })
            .map(|(device, _)| *device)
            .collect();
        for device in stale {
            let Some(held) = self.held.remove(&device) else {
                continue;
            };
            let unlinked = by_device.get(&device).is_none_or(|t| t.desired == Desired::Unlinked);
            self.stop(held, unlinked).await;
        }

        let now = Instant::now();
        let mut to_open = Vec::new();
        for target in &targets {
            let Some(fence) = self.leases.get(&target.device_id).copied() else {
                continue;
            };
            if target.desired == Desired::Unlinked {
                // Nobody wants this session any more (it was logged out above): let the lease go.
                self.release(fence).await;
                continue;
            }
            if self.held.contains_key(&target.device_id)
                || self.retries.get(&target.device_id).is_some_and(|r| r.at > now)
            {
                continue;
            }
            to_open.push((fence, target));
        }
        self.open_all(to_open).await;
        Ok(())
    }

    fn sessions(&self) -> HashMap<DeviceId, Arc<dyn Session>> {
        self.held
            .iter()
            .map(|(device, held)| (*device, held.session.clone()))
            .collect()
    }

    #[tracing::instrument(skip(self, held), fields(device = %held.fence.device))]
    async fn stop(&mut self, held: Held, logout: bool) {
        if logout && !held.events.is_finished() {
            if let Err(err) = held.session.logout().await {
                tracing::warn!(error = %err, "logout failed; closing the session anyway");
            }
            if let Err(err) = self.set_status(held.fence, DeviceStatus::LoggedOut).await {
                tracing::warn!(error = ?err, "recording logout failed");
            }
        }
        held.close(&self.roster, self.sender.as_ref()).await;
        tracing::info!(logout, "session stopped");
    }

    /// Opens the sessions of `targets`, [`OPENS_AT_ONCE`] at a time: each waits on the database
    /// and the network, so a round's claims (after a failover, a worker's whole share of the dead
    /// one's devices) open side by side rather than one after another. Each outcome is taken into
    /// the worker's state when joined: to make room for the next open, or at the end.
    async fn open_all(&mut self, targets: Vec<(Fence, &SessionTarget)>) {
        let mut opening = JoinSet::new();
        for (fence, target) in targets {
            let mode = match open_mode(target) {
                Ok(Some(mode)) => mode,
                Ok(None) => continue,
                Err(reason) => {
                    self.give_up(fence, DeviceStatus::Offline, reason).await;
                    continue;
                }
            };
            while opening.len() >= OPENS_AT_ONCE {
                if let Some(joined) = opening.join_next().await {
                    self.take_opened(joined).await;
                }
            }
            let span = tracing::info_span!("open", device = %fence.device, desired = ?target.desired);
            let (db, ingest, link) = (self.db.clone(), self.ingest.clone(), Arc::clone(&self.link));
            let generation = target.generation;
            opening.spawn(
                async move {
                    // The status may still say what a previous holder last saw (it may have
                    // died), or `offline` from a failed attempt that this one retries.
                    let status = match mode {
                        OpenMode::Connect => DeviceStatus::Connecting,
                        OpenMode::PairQr | OpenMode::PairCode(_) => DeviceStatus::Pairing,
                    };
                    if let Err(err) = record_status(&db, &ingest, fence, status).await {
                        tracing::warn!(error = ?err, "recording the status failed");
                        return None;
                    }
                    let opened = link.open(fence.device, mode).await;
                    Some(Opened {
                        fence,
                        generation,
                        opened,
                    })
                }
                .instrument(span),
            );
        }
        while let Some(joined) = opening.join_next().await {
            self.take_opened(joined).await;
        }
    }

    /// Takes the outcome of one [`SessionManager::open_all`] attempt into the worker's state.
    async fn take_opened(&mut self, joined: Result<Option<Opened>, tokio::task::JoinError>) {
        match joined {
            Ok(Some(opened)) => {
                let span = tracing::info_span!("open", device = %opened.fence.device);
                self.opened(opened).instrument(span).await;
            }
            Ok(None) => {}
            Err(err) => tracing::error!(error = %err, "opening a session panicked"),
        }
    }

    /// Holds a session that opened, or schedules the device's retry (or gives it up) when it
    /// did not.
    async fn opened(
        &mut self,
        Opened {
            fence,
            generation,
            opened,
        }: Opened,
    ) {
        let device = fence.device;
        match opened {
            Ok(mut session) => {
                let Some(stream) = session.take_events() else {
                    tracing::error!("the link gave a session without events");
                    return;
                };
                self.retries.remove(&device);
                let connected = Arc::new(tokio::sync::Notify::new());
                let events = tokio::spawn(events::consume(
                    self.db.clone(),
                    self.ingest.clone(),
                    fence,
                    stream,
                    Arc::clone(&connected),
                ));
                let session: Arc<dyn Session> = Arc::from(session);
                let gate = Arc::default();
                let entry = Entry {
                    fence,
                    session: session.clone(),
                    gate: Arc::clone(&gate),
                    connected,
                };
                self.roster.insert(device, entry.clone());
                let sends = self.sender.as_ref().map(|sender| sender.start(entry));
                self.held.insert(
                    device,
                    Held {
                        fence,
                        generation,
                        session,
                        events,
                        sends,
                        gate,
                    },
                );
                tracing::info!(token = fence.token, "session opened");
            }
            Err(LinkError::Device(reason)) => self.give_up(fence, DeviceStatus::LoggedOut, &reason).await,
            Err(LinkError::Invalid(reason)) => self.give_up(fence, DeviceStatus::Offline, &reason).await,
            Err(err) => {
                let wait = self
                    .retries
                    .get(&device)
                    .map_or(RETRY_FIRST, |r| (r.wait * 2).min(RETRY_MAX));
                // Jitter spreads the retries of many devices that failed together.
                let jitter = Duration::from_millis(rand::rng().random_range(0..=wait.as_millis() as u64 / 2));
                self.retries.insert(
                    device,
                    Retry {
                        at: Instant::now() + wait + jitter,
                        wait,
                    },
                );
                tracing::warn!(error = %err, retry_in = ?(wait + jitter), "opening the session failed");
                if let Err(err) = self.set_status(fence, DeviceStatus::Offline).await {
                    tracing::warn!(error = ?err, "recording the status failed");
                }
            }
        }
    }

    async fn give_up(&mut self, fence: Fence, status: DeviceStatus, reason: &str) {
        tracing::warn!(device = %fence.device, reason, "session cannot open until its owner acts");
        if let Err(err) = self.db.mark_unlinked(fence, status, reason).await {
            tracing::warn!(error = ?err, "recording the failure failed");
        }
        self.ingest.device_changed(fence.device).await;
        self.release(fence).await;
    }

    /// Records the session's status and lets cached reads of the device go.
    async fn set_status(&self, fence: Fence, status: DeviceStatus) -> wafleet_core::Result<()> {
        record_status(&self.db, &self.ingest, fence, status).await
    }
}

/// A session open attempt's outcome, with what the worker needs to hold it.
struct Opened {
    fence: Fence,
    /// The request generation it was opened for.
    generation: i64,
    opened: Result<Box<dyn Session>, LinkError>,
}

/// How a held device's session opens for what its owner asked; `Err` says why it cannot until
/// the owner acts, `None` that no session is wanted.
fn open_mode(target: &SessionTarget) -> Result<Option<OpenMode>, &'static str> {
    Ok(Some(match target.desired {
        Desired::PairQr => OpenMode::PairQr,
        Desired::Connected => OpenMode::Connect,
        Desired::PairCode => match target.pair_phone.as_deref().map(str::parse::<PhoneNumber>) {
            Some(Ok(phone)) => OpenMode::PairCode(phone),
            _ => return Err("pairing by code needs a valid phone number"),
        },
        Desired::Unlinked => return Ok(None),
    }))
}

/// Records a session's status and lets cached reads of the device go.
async fn record_status(db: &Db, ingest: &Ingest, fence: Fence, status: DeviceStatus) -> wafleet_core::Result<()> {
    let result = db.set_device_status(fence, status).await;
    ingest.device_changed(fence.device).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_per_round_follow_the_rate_and_never_stop() {
        // Two rounds a second.
        assert_eq!(claims_per_round(100), 50);
        assert_eq!(claims_per_round(1_000), 500);
        assert_eq!(claims_per_round(3), 2, "rounded up, so the rate is reached");
        assert_eq!(claims_per_round(1), 1, "a worker always claims something");
    }
}
