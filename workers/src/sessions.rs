//! The reconcile loop: desired sessions in the database → live sessions in this process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::task::JoinHandle;
use wafleet_core::Db;
use wafleet_core::db::{Desired, DeviceStatus, SessionTarget};
use wafleet_core::link::{Link, LinkError, OpenMode, Session};
use wafleet_core::shutdown::Shutdown;
use wafleet_core::types::{DeviceId, PhoneNumber};

use crate::events;
use crate::requests::RequestRunner;

/// How often desired state is read back.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);
/// Sessions opened per round at most, so thousands of devices do not connect at the same instant.
const MAX_OPENS_PER_ROUND: usize = 50;
/// First and longest wait before retrying a session that failed to open.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A live session this worker holds.
struct Held {
    /// The request generation it was opened for; a newer one reopens it.
    generation: i64,
    /// The session, shared with request handlers.
    session: Arc<dyn Session>,
    /// Consumes the session's events; ends when the session ends for good.
    events: JoinHandle<()>,
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
    held: HashMap<DeviceId, Held>,
    retries: HashMap<DeviceId, Retry>,
    requests: RequestRunner,
}

impl SessionManager {
    /// A manager that opens sessions through `link`.
    pub fn new(db: Db, link: Arc<dyn Link>) -> Self {
        let requests = RequestRunner::new(db.clone());
        SessionManager {
            db,
            link,
            held: HashMap::new(),
            retries: HashMap::new(),
            requests,
        }
    }

    /// Reconciles until `shutdown`, then closes every session, keeping credentials.
    pub async fn run(&mut self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = tick.tick() => {
                    if let Err(err) = self.reconcile().await {
                        tracing::warn!(error = ?err, "reconcile round failed; retrying");
                    }
                }
            }
        }
        for (device, held) in self.held.drain() {
            held.session.close().await;
            held.events.abort();
            tracing::info!(%device, "session closed for shutdown");
        }
    }

    /// How many sessions this worker holds.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// One round: close what is no longer wanted, (re)open what is, answer pending requests.
    pub async fn reconcile(&mut self) -> wafleet_core::Result<()> {
        let targets = self.db.session_targets().await?;
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
            let logout =
                by_device.get(&device).is_some_and(|t| t.desired == Desired::Unlinked) && !held.events.is_finished();
            self.stop(device, held, logout).await;
        }

        let now = Instant::now();
        let mut opened = 0;
        for target in &targets {
            if target.desired == Desired::Unlinked || self.held.contains_key(&target.device_id) {
                continue;
            }
            if self.retries.get(&target.device_id).is_some_and(|r| r.at > now) {
                continue;
            }
            if opened == MAX_OPENS_PER_ROUND {
                break;
            }
            opened += 1;
            self.open(target).await;
        }
        self.requests.run_pending(&self.sessions()).await;
        Ok(())
    }

    fn sessions(&self) -> HashMap<DeviceId, Arc<dyn Session>> {
        self.held
            .iter()
            .map(|(device, held)| (*device, held.session.clone()))
            .collect()
    }

    #[tracing::instrument(skip(self, held))]
    async fn stop(&mut self, device: DeviceId, held: Held, logout: bool) {
        if logout {
            if let Err(err) = held.session.logout().await {
                tracing::warn!(error = %err, "logout failed; closing the session anyway");
            }
            if let Err(err) = self.db.set_device_status(device, DeviceStatus::LoggedOut).await {
                tracing::warn!(error = ?err, "recording logout failed");
            }
        }
        held.session.close().await;
        held.events.abort();
        tracing::info!(logout, "session stopped");
    }

    #[tracing::instrument(skip(self, target), fields(device = %target.device_id, desired = ?target.desired))]
    async fn open(&mut self, target: &SessionTarget) {
        let device = target.device_id;
        let mode = match target.desired {
            Desired::PairQr => OpenMode::PairQr,
            Desired::Connected => OpenMode::Connect,
            Desired::PairCode => match target.pair_phone.as_deref().map(str::parse::<PhoneNumber>) {
                Some(Ok(phone)) => OpenMode::PairCode(phone),
                _ => {
                    self.give_up(
                        device,
                        DeviceStatus::Offline,
                        "pairing by code needs a valid phone number",
                    )
                    .await;
                    return;
                }
            },
            Desired::Unlinked => return,
        };
        match self.link.open(device, mode).await {
            Ok(mut session) => {
                let Some(stream) = session.take_events() else {
                    tracing::error!("the link gave a session without events");
                    return;
                };
                self.retries.remove(&device);
                let events = tokio::spawn(events::consume(self.db.clone(), device, stream));
                self.held.insert(
                    device,
                    Held {
                        generation: target.generation,
                        session: Arc::from(session),
                        events,
                    },
                );
                tracing::info!("session opened");
            }
            Err(LinkError::Device(reason)) => self.give_up(device, DeviceStatus::LoggedOut, &reason).await,
            Err(LinkError::Invalid(reason)) => self.give_up(device, DeviceStatus::Offline, &reason).await,
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
                if let Err(err) = self.db.set_device_status(device, DeviceStatus::Offline).await {
                    tracing::warn!(error = ?err, "recording the status failed");
                }
            }
        }
    }

    async fn give_up(&mut self, device: DeviceId, status: DeviceStatus, reason: &str) {
        tracing::warn!(%device, reason, "session cannot open until its owner acts");
        if let Err(err) = self.db.mark_unlinked(device, status, reason).await {
            tracing::warn!(error = ?err, "recording the failure failed");
        }
    }
}
