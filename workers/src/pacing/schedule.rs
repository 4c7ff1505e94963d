//! The pacing arithmetic of one device, without IO: times are UTC milliseconds passed in, so it
//! is tested (and simulated) with any clock.

use std::collections::{HashMap, VecDeque};

use wafleet_core::db::Pacing;

const DAY_MS: i64 = 86_400_000;
/// Failures older than this do not count towards a burst.
const BURST_WINDOW_MS: i64 = 600_000;
/// A slot this close is "now".
const GRACE_MS: i64 = 50;

/// When one send may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Now.
    Now,
    /// At this instant (UTC ms); the slot is kept for this send until then.
    At(i64),
}

/// One device's pace: its policy, what it has sent, and the slots handed out.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The device's policy.
    pub policy: Pacing,
    /// When the device was added (UTC ms): the warm-up counts from it.
    pub added_at: i64,
    /// No send before this.
    next_free: i64,
    /// Sends given a slot, per UTC day number.
    per_day: HashMap<i64, i64>,
    /// Slots handed to sends that must wait: send id → UTC ms.
    reserved: HashMap<i64, i64>,
    /// Recent refusals and device errors (UTC ms).
    failures: VecDeque<i64>,
    /// Sends are paused until then (UTC ms), and why.
    pub paused: Option<(i64, String)>,
    /// When the last send was let go (UTC ms). Waiting sends come back late and together when
    /// their jobs are delayed (a busy queue, the holder's sweep): their slots alone would then
    /// let them go at once, so every release also keeps the pace from this one.
    last_go: Option<i64>,
}

impl Schedule {
    /// A schedule for a device with `sent_today` sends so far today, the last at `last_sent`.
    pub fn new(policy: Pacing, added_at: i64, now: i64, sent_today: i64, last_sent: Option<i64>) -> Self {
        let interval = 60_000 / policy.per_minute.max(1);
        Schedule {
            policy,
            added_at,
            next_free: last_sent.map_or(0, |at| at + interval),
            per_day: HashMap::from([(now.div_euclid(DAY_MS), sent_today)]),
            reserved: HashMap::new(),
            failures: VecDeque::new(),
            paused: None,
            last_go: last_sent,
        }
    }

    /// The most sends allowed on UTC day `day`: the daily cap, ramped up linearly from the
    /// warm-up's first day over its length for a newly added number.
    pub fn cap(&self, day: i64) -> i64 {
        let p = &self.policy;
        let age = day - self.added_at.div_euclid(DAY_MS);
        if p.warmup_days <= 0 || age >= p.warmup_days {
            return p.daily_cap;
        }
        let first = p.warmup_first_day.min(p.daily_cap);
        first + (p.daily_cap - first) * age.max(0) / p.warmup_days
    }

    /// Whether `message` holds a slot (what the tests look at).
    #[cfg(test)]
    pub fn holds(&self, message: i64) -> bool {
        self.reserved.contains_key(&message)
    }

    /// When `message` may be sent; `jitter` gives a random extra wait below its argument (ms).
    /// A send that must wait keeps its slot, so it is not overtaken when it comes back.
    pub fn slot(&mut self, message: i64, now: i64, jitter: impl FnOnce(i64) -> i64) -> Slot {
        if !self.policy.enabled {
            return Slot::Now;
        }
        if let Some((until, _)) = &self.paused {
            if *until > now {
                return Slot::At(*until);
            }
            self.paused = None;
        }
        let interval = 60_000 / self.policy.per_minute.max(1);
        let paced_from = self.last_go.map_or(i64::MIN, |last| last + interval);
        if let Some(&at) = self.reserved.get(&message) {
            if at <= now + GRACE_MS {
                if paced_from > now + GRACE_MS {
                    // Late, and another send went meanwhile: the next slot after it.
                    self.reserved.insert(message, paced_from);
                    self.next_free = self.next_free.max(paced_from + interval);
                    return Slot::At(paced_from);
                }
                self.reserved.remove(&message);
                self.last_go = Some(now);
                return Slot::Now;
            }
            return Slot::At(at);
        }
        // Slots of sends that never came back (their job was lost) are forgotten after a while.
        self.reserved.retain(|_, at| *at + BURST_WINDOW_MS > now);
        self.per_day.retain(|day, _| *day >= now.div_euclid(DAY_MS) - 1);
        let mut at = now.max(self.next_free).max(paced_from);
        loop {
            let day = at.div_euclid(DAY_MS);
            if self.per_day.get(&day).copied().unwrap_or(0) < self.cap(day) {
                *self.per_day.entry(day).or_default() += 1;
                break;
            }
            at = at.max((day + 1) * DAY_MS);
        }
        self.next_free = at + interval + jitter(self.policy.jitter_ms.max(0));
        if at <= now + GRACE_MS {
            self.last_go = Some(now);
            Slot::Now
        } else {
            self.reserved.insert(message, at);
            Slot::At(at)
        }
    }

    /// Why a send given the slot `at` (UTC ms) waits until then at `now`, for its owner.
    pub fn explain(&self, at: i64, now: i64) -> String {
        if let Some((until, reason)) = &self.paused
            && *until >= at
        {
            return format!("the device's sends are paused: {reason}");
        }
        let today = now.div_euclid(DAY_MS);
        if at.div_euclid(DAY_MS) > today {
            let cap = self.cap(today);
            let age = today - self.added_at.div_euclid(DAY_MS);
            let warmup = self.policy.warmup_days;
            return if warmup > 0 && age < warmup {
                format!(
                    "daily cap reached: {cap} sends today on day {} of this new number's {warmup}-day warm-up; \
                     it sends again tomorrow (UTC)",
                    age.max(0) + 1
                )
            } else {
                format!("daily cap reached: {cap} sends today; it sends again tomorrow (UTC)")
            };
        }
        format!(
            "waiting for its turn at the device's pace of {} sends a minute",
            self.policy.per_minute
        )
    }

    /// Counts a refusal or device error; returns the pause it starts when it completes a burst.
    pub fn failed(&mut self, now: i64) -> Option<(i64, String)> {
        let burst = self.policy.error_burst;
        if burst <= 0 {
            return None;
        }
        self.failures.push_back(now);
        while self.failures.front().is_some_and(|at| *at + BURST_WINDOW_MS < now) {
            self.failures.pop_front();
        }
        if (self.failures.len() as i64) < burst {
            return None;
        }
        self.failures.clear();
        let pause = (
            now + self.policy.pause_minutes * 60_000,
            format!("{burst} recipient refusals or device errors within 10 minutes"),
        );
        self.paused = Some(pause.clone());
        Some(pause)
    }

    /// Applies the unreplied-share rule to recent counts; returns the pause it starts.
    pub fn check_unreplied(&mut self, now: i64, sent: i64, unreplied: i64) -> Option<(i64, String)> {
        let p = &self.policy;
        if !p.enabled || sent < p.unreplied_min_sends || unreplied * 100 <= p.unreplied_max_percent * sent {
            return None;
        }
        // Re-checked every minute: sending resumes as soon as enough replies come in.
        let pause = (
            now + 60_000,
            format!(
                "{unreplied} of the last {sent} sends are unanswered (more than {}%)",
                p.unreplied_max_percent
            ),
        );
        self.paused = Some(pause.clone());
        Some(pause)
    }
}
