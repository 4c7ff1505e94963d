//! The ban model, after published community thresholds: too many messages a minute to numbers
//! that never wrote to the account, or too many of them left unreplied. The simulator and its
//! WhatsApp Web front end both judge their accounts by it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::SimConfig;

/// When an account gets banned.
#[derive(Clone, Debug, PartialEq)]
pub struct BanLimits {
    /// More messages than this within one minute to numbers that never wrote to the account.
    pub strangers_per_minute: u32,
    /// More than this share (0-1) of its messages to strangers unreplied…
    pub unreplied_ratio: f64,
    /// …once it has sent at least this many messages to strangers.
    pub min_stranger_messages: u32,
}

impl Default for BanLimits {
    /// The simulator's defaults.
    fn default() -> Self {
        BanLimits::from(&SimConfig::default())
    }
}

impl From<&SimConfig> for BanLimits {
    fn from(config: &SimConfig) -> Self {
        BanLimits {
            strangers_per_minute: config.ban_strangers_per_minute,
            unreplied_ratio: config.ban_unreplied_ratio,
            min_stranger_messages: config.ban_min_stranger_messages,
        }
    }
}

/// One contact of an account, as the ban model sees it.
#[derive(Default)]
pub(crate) struct Contact {
    /// The contact has written to the account (so it is no stranger).
    pub has_written: bool,
    /// Messages sent to it while it was a stranger, not yet replied.
    pub unreplied: u32,
}

/// What the ban model remembers of an account's messages.
#[derive(Default)]
pub(crate) struct Reputation {
    /// Contacts by digits.
    pub contacts: HashMap<String, Contact>,
    /// Times of recent messages to strangers (last minute).
    pub recent_stranger_sends: VecDeque<Instant>,
    /// Messages to strangers, ever.
    pub stranger_messages: u32,
    /// Of those, unreplied.
    pub unreplied: u32,
}

/// Records a message from the account to `to` (digits); returns why the account is banned now,
/// if it is.
pub(crate) fn record_send(account: &mut Reputation, to: &str, limits: &BanLimits, now: Instant) -> Option<String> {
    let contact = account.contacts.entry(to.to_owned()).or_default();
    if contact.has_written {
        return None;
    }
    contact.unreplied += 1;
    account.unreplied += 1;
    account.stranger_messages += 1;
    let recent = &mut account.recent_stranger_sends;
    recent.push_back(now);
    while recent
        .front()
        .is_some_and(|at| now.duration_since(*at) > Duration::from_secs(60))
    {
        recent.pop_front();
    }
    if recent.len() > limits.strangers_per_minute as usize {
        return Some(format!(
            "sent {} messages within a minute to numbers that never wrote to it",
            recent.len()
        ));
    }
    let ratio = f64::from(account.unreplied) / f64::from(account.stranger_messages);
    if account.stranger_messages >= limits.min_stranger_messages && ratio > limits.unreplied_ratio {
        return Some(format!(
            "{:.0}% of {} messages to strangers unreplied",
            ratio * 100.0,
            account.stranger_messages
        ));
    }
    None
}

/// `from` (digits) wrote to the account: it is no stranger any more and its messages count as
/// replied.
pub(crate) fn record_incoming(account: &mut Reputation, from: &str) {
    let contact = account.contacts.entry(from.to_owned()).or_default();
    contact.has_written = true;
    account.unreplied = account.unreplied.saturating_sub(contact.unreplied);
    contact.unreplied = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_fast_sends_to_strangers_only() {
        let limits = BanLimits::default();
        let now = Instant::now();
        let mut account = Reputation::default();
        record_incoming(&mut account, "60120000099");
        for _ in 0..50 {
            assert_eq!(
                record_send(&mut account, "60120000099", &limits, now),
                None,
                "a contact"
            );
        }
        for n in 0..5 {
            assert_eq!(record_send(&mut account, &format!("6012100000{n}"), &limits, now), None);
        }
        assert!(
            record_send(&mut account, "60121000009", &limits, now).is_some(),
            "the sixth stranger"
        );
    }

    #[test]
    fn bans_a_high_unreplied_ratio() {
        let limits = BanLimits::default();
        let mut account = Reputation::default();
        let start = Instant::now();
        let mut banned = None;
        for n in 0..20u64 {
            // Slow enough for the rate rule; one in five strangers replies.
            let at = start + Duration::from_secs(20 * n);
            let to = format!("601210000{n:02}");
            banned = record_send(&mut account, &to, &limits, at);
            if n % 5 == 0 {
                record_incoming(&mut account, &to);
            }
        }
        assert!(banned.is_some_and(|reason| reason.contains("unreplied")));
    }
}

/// A campaign run against this ban model with a worker's pacing schedule, on a virtual clock.
#[cfg(test)]
#[path = "ban_pacing_tests.rs"]
mod pacing_tests;
