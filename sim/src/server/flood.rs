//! Closed-loop inbound load for benchmarks (`POST /control/flood`): each flooded account keeps a
//! fixed number of messages in flight and gets a new one as soon as one is acknowledged, so the
//! rate is whatever the receiving side sustains and the delay is measured from injection to the
//! acknowledgement (which a worker sends only after its batch has committed).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use wafleet_core::link::MessageKind;

use crate::control::{FloodReport, FloodRequest};

use super::traffic::{deliver, personal_message};
use super::world::{World, digits_of};
use super::{ControlError, Sim};

/// Most delays kept for the percentiles (a minute at over 150,000 messages a second).
const MAX_SAMPLES: usize = 10_000_000;

/// A flood in progress, or the last one.
pub(crate) struct Flood {
    /// Receiving accounts, by digits.
    accounts: HashSet<String>,
    /// Distinct senders per account.
    contacts: usize,
    /// When it started.
    started: Instant,
    /// No new messages after this.
    until: Instant,
    /// Messages generated so far (also numbers the next one).
    injected: u64,
    /// Flood messages acknowledged.
    acked: u64,
    /// Acknowledgements of messages no longer pending (replays acknowledged again).
    repeat_acks: u64,
    /// Injection time of each unacknowledged flood message, by id.
    in_flight: HashMap<String, Instant>,
    /// Injection-to-acknowledgement delays, in microseconds.
    delays_us: Vec<u32>,
}

impl Sim {
    /// Starts a flood (replacing any earlier one); returns how many accounts it feeds.
    pub(crate) fn start_flood(&self, request: FloodRequest) -> Result<usize, ControlError> {
        let mut accounts = HashSet::new();
        for phone in &request.phones {
            let digits =
                digits_of(phone).ok_or_else(|| ControlError::Invalid(format!("not a phone number: {phone}")))?;
            accounts.insert(digits);
        }
        let mut w = self.lock();
        if let Some(missing) = accounts.iter().find(|a| !w.accounts.contains_key(*a)) {
            return Err(ControlError::NotFound(format!("no account +{missing}")));
        }
        let now = Instant::now();
        let order: Vec<String> = accounts.iter().cloned().collect();
        w.flood = Some(Flood {
            accounts,
            contacts: request.contacts.max(1),
            started: now,
            until: now + Duration::from_secs_f64(request.seconds.max(0.0)),
            injected: 0,
            acked: 0,
            repeat_acks: 0,
            in_flight: HashMap::new(),
            delays_us: Vec::new(),
        });
        for _ in 0..request.window.max(1) {
            for to in &order {
                flood_one(&mut w, to);
            }
        }
        Ok(order.len())
    }

    /// What the current or last flood did.
    pub(crate) fn flood_report(&self) -> FloodReport {
        let (mut report, mut delays) = {
            let w = self.lock();
            let Some(flood) = &w.flood else {
                return FloodReport::default();
            };
            let report = FloodReport {
                active: Instant::now() < flood.until,
                injected: flood.injected,
                acked: flood.acked,
                repeat_acks: flood.repeat_acks,
                elapsed_secs: flood.started.elapsed().as_secs_f64(),
                ..FloodReport::default()
            };
            // Sorted outside the lock: the network keeps running meanwhile.
            (report, flood.delays_us.clone())
        };
        delays.sort_unstable();
        let at = |q: f64| {
            let rank = (delays.len() as f64 * q).ceil() as usize;
            delays.get(rank.saturating_sub(1)).copied().unwrap_or(0) as u64
        };
        report.p50_us = at(0.50);
        report.p99_us = at(0.99);
        report.max_us = delays.last().copied().unwrap_or(0) as u64;
        report
    }
}

/// A device of `account` acknowledged `id`; `was_pending` says whether it was still unacknowledged.
/// Keeps the account's window full while the flood lasts.
pub(crate) fn on_ack(w: &mut World, account: &str, id: &str, was_pending: bool) {
    let Some(flood) = w.flood.as_mut() else {
        return;
    };
    if !was_pending {
        flood.repeat_acks += 1;
        return;
    }
    let Some(injected_at) = flood.in_flight.remove(id) else {
        return;
    };
    flood.acked += 1;
    if flood.delays_us.len() < MAX_SAMPLES {
        let delay = injected_at.elapsed().as_micros().min(u32::MAX as u128) as u32;
        flood.delays_us.push(delay);
    }
    if Instant::now() < flood.until && flood.accounts.contains(account) {
        flood_one(w, account);
    }
}

/// One new flood message to `to` (digits), from the next of its contacts.
fn flood_one(w: &mut World, to: &str) {
    let Some(flood) = w.flood.as_mut() else {
        return;
    };
    let n = flood.injected;
    flood.injected += 1;
    let sender = format!("60190{:07}", n % flood.contacts as u64);
    let message = personal_message(&sender, MessageKind::Text, Some(format!("Load message {n}")), None);
    flood.in_flight.insert(message.id.clone(), Instant::now());
    deliver(w, to, message);
}
