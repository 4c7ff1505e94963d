//! The ban model, after published community thresholds: too many messages a minute to numbers
//! that never wrote to the account, or too many of them left unreplied. The first breach puts the
//! account under a reach-out timelock (messages to new chats refused with 463 for a while, its
//! existing chats untouched) when timelocks are on; a breach after that bans it. A monthly cap on
//! messages to new chats may apply too (refused with 475 once used up). The simulator and its
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
    /// How long the reach-out timelock after a first breach lasts; 0: a breach bans at once.
    pub timelock: Duration,
    /// Messages to strangers allowed per cap cycle; 0: no cap.
    pub new_chat_cap: u32,
}

/// How long a new-chat cap cycle lasts.
pub const CAP_CYCLE: Duration = Duration::from_secs(30 * 86_400);

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
            timelock: Duration::from_secs(config.timelock_secs),
            new_chat_cap: config.new_chat_cap,
        }
    }
}

/// One contact of an account, as the ban model sees it.
#[derive(Default)]
pub struct Contact {
    /// The contact has written to the account (so it is no stranger).
    pub has_written: bool,
    /// Messages sent to it while it was a stranger, not yet replied.
    pub unreplied: u32,
}

/// What the ban model remembers of an account's messages.
#[derive(Default)]
pub struct Reputation {
    /// Contacts by digits.
    pub contacts: HashMap<String, Contact>,
    /// Times of recent messages to strangers (last minute).
    pub recent_stranger_sends: VecDeque<Instant>,
    /// Messages to strangers, ever.
    pub stranger_messages: u32,
    /// Of those, unreplied.
    pub unreplied: u32,
    /// Messages to new chats are refused until then (a reach-out timelock).
    pub timelocked_until: Option<Instant>,
    /// Timelocks so far: a breach after one bans.
    pub timelocks: u32,
    /// The current cap cycle: when it began and the messages to strangers counted in it.
    pub cycle: Option<(Instant, u32)>,
    /// A cap set for this account alone (WhatsApp tries the cap on some accounts).
    pub cap_override: Option<u32>,
}

/// Why the network refuses a message before it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The account is under a reach-out timelock and the recipient is a new chat (463).
    Timelocked,
    /// The monthly cap on messages to new chats is used up (475).
    Capped,
}

impl Refusal {
    /// The error code WhatsApp refuses with.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Refusal::Timelocked => "463",
            Refusal::Capped => "475",
        }
    }
}

/// What a message did to the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Fine,
    /// It breached a rule for the first time: new chats are refused for a while, and why.
    Timelocked(String),
    /// It breached a rule again (or timelocks are off): the account is banned, and why.
    Banned(String),
}

/// The account's restrictions as WhatsApp reports them, at `now` (`now_ms` in UTC ms).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Restrictions {
    /// The timelock's end (UTC ms), while one is in force.
    pub timelocked_until_ms: Option<i64>,
    /// The cap, when one applies: (used, total, cycle end in UTC ms).
    pub cap: Option<(u32, u32, i64)>,
}

impl Reputation {
    fn cap(&self, limits: &BanLimits) -> u32 {
        self.cap_override.unwrap_or(limits.new_chat_cap)
    }

    fn cycle_used(&self, now: Instant) -> u32 {
        match self.cycle {
            Some((start, used)) if now.duration_since(start) < CAP_CYCLE => used,
            _ => 0,
        }
    }

    fn is_stranger(&self, to: &str) -> bool {
        !self.contacts.get(to).is_some_and(|c| c.has_written)
    }

    /// Puts the account under a reach-out timelock for `length` from `now`.
    pub(crate) fn timelock(&mut self, now: Instant, length: Duration) {
        self.timelocked_until = Some(now + length);
        self.timelocks += 1;
        self.recent_stranger_sends.clear();
    }

    /// The restrictions in force at `now` (`now_ms`: the same instant in UTC ms).
    pub fn restrictions(&self, limits: &BanLimits, now: Instant, now_ms: i64) -> Restrictions {
        let wall = |at: Instant| now_ms + i64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(0);
        let cap = self.cap(limits);
        Restrictions {
            timelocked_until_ms: self.timelocked_until.filter(|until| *until > now).map(wall),
            cap: (cap > 0).then(|| {
                let end = match self.cycle {
                    Some((start, _)) if now.duration_since(start) < CAP_CYCLE => start + CAP_CYCLE,
                    _ => now + CAP_CYCLE,
                };
                (self.cycle_used(now), cap, wall(end))
            }),
        }
    }
}

/// Whether the network refuses a message from the account to `to` (digits) at `now`: only
/// messages to new chats are ever refused.
pub fn refusal(account: &Reputation, to: &str, limits: &BanLimits, now: Instant) -> Option<Refusal> {
    if !account.is_stranger(to) {
        return None;
    }
    if account.timelocked_until.is_some_and(|until| until > now) {
        return Some(Refusal::Timelocked);
    }
    let cap = account.cap(limits);
    (cap > 0 && account.cycle_used(now) >= cap).then_some(Refusal::Capped)
}

/// Records a message from the account to `to` (digits) that the network let through
/// ([`refusal`] said nothing); returns what it did to the account.
pub fn record_send(account: &mut Reputation, to: &str, limits: &BanLimits, now: Instant) -> Verdict {
    let Some(reason) = breach(account, to, limits, now) else {
        return Verdict::Fine;
    };
    if limits.timelock.is_zero() || account.timelocks > 0 {
        return Verdict::Banned(reason);
    }
    account.timelock(now, limits.timelock);
    Verdict::Timelocked(reason)
}

/// Counts the message; returns the rule it breaks, if any.
fn breach(account: &mut Reputation, to: &str, limits: &BanLimits, now: Instant) -> Option<String> {
    if !account.is_stranger(to) {
        return None;
    }
    account.cycle = Some(match account.cycle {
        Some((start, used)) if now.duration_since(start) < CAP_CYCLE => (start, used + 1),
        _ => (now, 1),
    });
    let contact = account.contacts.entry(to.to_owned()).or_default();
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
pub fn record_incoming(account: &mut Reputation, from: &str) {
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
        let limits = BanLimits {
            timelock: Duration::ZERO,
            ..BanLimits::default()
        };
        let now = Instant::now();
        let mut account = Reputation::default();
        record_incoming(&mut account, "60120000099");
        for _ in 0..50 {
            assert_eq!(
                record_send(&mut account, "60120000099", &limits, now),
                Verdict::Fine,
                "a contact"
            );
        }
        for n in 0..5 {
            assert_eq!(
                record_send(&mut account, &format!("6012100000{n}"), &limits, now),
                Verdict::Fine
            );
        }
        assert!(
            matches!(
                record_send(&mut account, "60121000009", &limits, now),
                Verdict::Banned(_)
            ),
            "the sixth stranger"
        );
    }

    #[test]
    fn a_first_breach_timelocks_new_chats_and_a_second_bans() {
        let limits = BanLimits {
            timelock: Duration::from_secs(3600),
            ..BanLimits::default()
        };
        let now = Instant::now();
        let mut account = Reputation::default();
        record_incoming(&mut account, "60120000099");
        for n in 0..5 {
            assert_eq!(
                record_send(&mut account, &format!("6012100000{n}"), &limits, now),
                Verdict::Fine
            );
        }
        assert!(matches!(
            record_send(&mut account, "60121000009", &limits, now),
            Verdict::Timelocked(_)
        ));
        // New chats are refused, existing ones are not.
        assert_eq!(
            refusal(&account, "60121000010", &limits, now),
            Some(Refusal::Timelocked)
        );
        assert_eq!(refusal(&account, "60120000099", &limits, now), None);
        let state = account.restrictions(&limits, now, 1_000_000);
        assert_eq!(state.timelocked_until_ms, Some(1_000_000 + 3_600_000));
        // Once it lifts, new chats go again; the next breach bans.
        let later = now + Duration::from_secs(3601);
        assert_eq!(refusal(&account, "60121000010", &limits, later), None);
        assert_eq!(account.restrictions(&limits, later, 0).timelocked_until_ms, None);
        let mut verdict = Verdict::Fine;
        for n in 0..6 {
            verdict = record_send(&mut account, &format!("6012200000{n}"), &limits, later);
        }
        assert!(matches!(verdict, Verdict::Banned(_)), "{verdict:?}");
    }

    #[test]
    fn the_cap_refuses_new_chats_once_used_up_until_the_cycle_ends() {
        let limits = BanLimits {
            new_chat_cap: 3,
            ..BanLimits::default()
        };
        let now = Instant::now();
        let mut account = Reputation::default();
        record_incoming(&mut account, "60120000099");
        for n in 0..3 {
            let at = now + Duration::from_secs(60 * n);
            assert_eq!(refusal(&account, &format!("6012100000{n}"), &limits, at), None);
            assert_eq!(
                record_send(&mut account, &format!("6012100000{n}"), &limits, at),
                Verdict::Fine
            );
        }
        let at = now + Duration::from_secs(600);
        assert_eq!(refusal(&account, "60121000007", &limits, at), Some(Refusal::Capped));
        assert_eq!(refusal(&account, "60120000099", &limits, at), None, "an existing chat");
        assert_eq!(
            account.restrictions(&limits, at, 0).cap.map(|c| (c.0, c.1)),
            Some((3, 3))
        );
        let next_cycle = now + CAP_CYCLE + Duration::from_secs(1);
        assert_eq!(refusal(&account, "60121000007", &limits, next_cycle), None);
    }

    #[test]
    fn bans_a_high_unreplied_ratio() {
        let limits = BanLimits {
            timelock: Duration::ZERO,
            ..BanLimits::default()
        };
        let mut account = Reputation::default();
        let start = Instant::now();
        let mut verdict = Verdict::Fine;
        for n in 0..20u64 {
            // Slow enough for the rate rule; one in five strangers replies.
            let at = start + Duration::from_secs(20 * n);
            let to = format!("601210000{n:02}");
            verdict = record_send(&mut account, &to, &limits, at);
            if n % 5 == 0 {
                record_incoming(&mut account, &to);
            }
        }
        assert!(matches!(verdict, Verdict::Banned(reason) if reason.contains("unreplied")));
    }
}
