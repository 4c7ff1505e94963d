//! The per-device gate every send passes on the worker holding the device: "may this send go
//! now, or when?". Pacing belongs to the device, across all its campaigns and single sends, so it
//! lives where they all meet: the holder's send path.
//!
//! A device's [`Schedule`] is loaded when its first send comes (seeded from what the database says
//! it sent today, so a new holder does not start a fresh day's allowance) and refreshed every
//! minute (the owner's policy changes, pauses, and the unreplied share).

#[cfg(test)]
mod ban_tests;
mod schedule;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use wafleet_core::Db;
use wafleet_core::sync;
use wafleet_core::types::{DeviceId, Timestamp};

pub use schedule::{Schedule, Slot};

/// How often a device's policy and counts are read again.
const REFRESH: Duration = Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;
/// The sends the unreplied share is taken over. Long, because the ban rules count a number's
/// unanswered messages over a long time, not a week.
const UNREPLIED_WINDOW_DAYS: i64 = 90;

struct Gate {
    schedule: Schedule,
    refreshed: Instant,
}

/// The gates of the devices this worker holds. Cheap to clone.
#[derive(Clone)]
pub struct Pacer {
    db: Db,
    gates: Arc<Mutex<HashMap<DeviceId, Gate>>>,
}

impl Pacer {
    /// A pacer reading policies from `db`.
    pub fn new(db: Db) -> Self {
        Pacer {
            db,
            gates: Arc::default(),
        }
    }

    /// How long `message` of `device` must wait before it may be sent, and why (for its owner);
    /// `None` when it may go now. When the database cannot be read, sends wait rather than go
    /// unpaced.
    pub async fn wait(&self, device: DeviceId, message: i64) -> Option<(Duration, String)> {
        if let Err(err) = self.refresh(device).await {
            tracing::warn!(error = ?err, %device, "reading the device's pacing failed; holding its sends");
            return Some((
                Duration::from_secs(10),
                "the device's pacing could not be read; trying again".into(),
            ));
        }
        let now = Timestamp::now().millis();
        let mut gates = sync::lock(&self.gates);
        let gate = gates.get_mut(&device)?;
        match gate.schedule.slot(message, now, |most| {
            if most > 0 {
                rand::rng().random_range(0..=most)
            } else {
                0
            }
        }) {
            Slot::Now => None,
            Slot::At(at) => Some((
                Duration::from_millis((at - now).max(1) as u64),
                gate.schedule.explain(at, now),
            )),
        }
    }

    /// Counts a send refused by its recipient or failed by the device; a burst pauses the device.
    pub async fn failed(&self, device: DeviceId) {
        let pause = {
            let mut gates = sync::lock(&self.gates);
            gates
                .get_mut(&device)
                .and_then(|g| g.schedule.failed(Timestamp::now().millis()))
        };
        if let Some((until, reason)) = pause {
            self.record_pause(device, until, &reason).await;
        }
    }

    /// Forgets a device (its lease moved away).
    pub fn forget(&self, device: DeviceId) {
        sync::lock(&self.gates).remove(&device);
    }

    async fn refresh(&self, device: DeviceId) -> wafleet_core::Result<()> {
        let fresh = sync::lock(&self.gates)
            .get(&device)
            .is_some_and(|g| g.refreshed.elapsed() < REFRESH);
        if fresh {
            return Ok(());
        }
        let now = Timestamp::now().millis();
        let pacing = self.db.device_pacing(device).await?;
        let day_start = Timestamp(now.div_euclid(DAY_MS) * DAY_MS);
        let stats = self
            .db
            .send_stats(device, day_start, Timestamp(now - UNREPLIED_WINDOW_DAYS * DAY_MS))
            .await?;
        let pause = {
            let mut gates = sync::lock(&self.gates);
            let gate = gates.entry(device).or_insert_with(|| Gate {
                schedule: Schedule::new(
                    pacing.policy.clone(),
                    stats.device_added_at.millis(),
                    now,
                    stats.sent_today,
                    stats.last_sent_at.map(Timestamp::millis),
                ),
                refreshed: Instant::now(),
            });
            gate.refreshed = Instant::now();
            gate.schedule.policy = pacing.policy;
            gate.schedule.paused = match (pacing.paused_until, pacing.pause_reason) {
                (Some(until), reason) if until.millis() > now => Some((until.millis(), reason.unwrap_or_default())),
                _ => None,
            };
            gate.schedule
                .check_unreplied(now, stats.recent_sent, stats.recent_unreplied)
        };
        if let Some((until, reason)) = pause {
            self.record_pause(device, until, &reason).await;
        }
        Ok(())
    }

    async fn record_pause(&self, device: DeviceId, until: i64, reason: &str) {
        tracing::warn!(%device, reason, "device's sends paused");
        if let Err(err) = self.db.pause_device_sends(device, Timestamp(until), reason).await {
            tracing::warn!(error = ?err, %device, "recording a pause failed");
        }
    }
}
