//! A campaign against the simulator's ban model, paced by the workers' own [`Schedule`] on a
//! virtual clock: with the default pacing no device is timelocked or banned; with pacing off each
//! is timelocked and then banned. A send the network refuses for a restriction waits until it
//! lifts, as wafleet's send loop holds it. The clock is virtual because the default pace (three a
//! minute, 200 a day) makes a 2,000-recipient campaign take days of real time; the ban model and
//! the schedule are the code that runs in production.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use wafleet_core::db::Pacing;
use wafleet_sim::SimConfig;
use wafleet_sim::ban::{BanLimits, Refusal, Reputation, Verdict, record_incoming, record_send, refusal};

use super::{Schedule, Slot};

/// A campaign still stalled after this long (virtual) is stopped where it is.
const DEADLINE_MS: i64 = 60 * 86_400_000;
/// The share of sends the unreplied rule looks back on (as the holder does).
const WINDOW_MS: i64 = 90 * 86_400_000;

/// What became of a campaign.
#[derive(Debug, Default)]
struct Run {
    sent: usize,
    banned: usize,
    /// Devices the model timelocked.
    timelocked: usize,
    /// Sends refused for a restriction (and held until it lifted).
    refused_timelocked: usize,
    refused_capped: usize,
    /// Virtual time until the last send, in hours.
    hours: f64,
}

/// A small deterministic generator, so the figures repeat.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: i64) -> i64 {
        if n <= 0 {
            0
        } else {
            (self.next() % (n as u64 + 1)) as i64
        }
    }
}

/// `recipients` strangers spread over `devices` accounts; each replies with `reply_percent`
/// chance after `reply_after_ms`. Sends follow `policy`; the unreplied share is checked each
/// virtual minute, as the holder does.
fn campaign(
    limits: &BanLimits,
    recipients: usize,
    devices: usize,
    policy: &Pacing,
    reply_percent: u64,
    reply_after_ms: i64,
) -> Run {
    let start = Instant::now();
    let noon = 20_000 * 86_400_000 + 43_200_000;
    let mut rng = Lcg(7);
    let mut run = Run::default();
    for d in 0..devices {
        let mut account = Reputation::default();
        // An established number (added long before): the warm-up is over.
        let mut schedule = Schedule::new(policy.clone(), 0, noon, 0, None);
        let mut replies: VecDeque<(i64, String)> = VecDeque::new();
        let mut sent: Vec<(i64, Option<i64>)> = Vec::new();
        let mut now = noon;
        let mut checked = 0;
        for r in (0..recipients).filter(|r| r % devices == d) {
            if now - noon > DEADLINE_MS {
                break;
            }
            let to = format!("60129{r:06}");
            loop {
                while replies.front().is_some_and(|(at, _)| *at <= now) {
                    let (_, from) = replies.pop_front().expect("a reply");
                    record_incoming(&mut account, &from);
                }
                if now - checked >= 60_000 {
                    checked = now;
                    let week: Vec<_> = sent.iter().filter(|(at, _)| *at > now - WINDOW_MS).collect();
                    let unreplied = week.iter().filter(|(_, reply)| reply.is_none_or(|at| at > now)).count();
                    schedule.check_unreplied(now, week.len() as i64, unreplied as i64);
                }
                match schedule.slot(r as i64, now, |most| rng.below(most)) {
                    Slot::Now => break,
                    Slot::At(at) => now = at.min(now + 60_000),
                }
                if now - noon > DEADLINE_MS {
                    break;
                }
            }
            let mut at = start + Duration::from_millis((now - noon) as u64);
            // Refused for a restriction: the send waits until it lifts, as wafleet holds it.
            while let Some(why) = refusal(&account, &to, limits, at) {
                let state = account.restrictions(limits, at, now);
                let lifts = match why {
                    Refusal::Timelocked => {
                        run.refused_timelocked += 1;
                        state.timelocked_until_ms
                    }
                    Refusal::Capped => {
                        run.refused_capped += 1;
                        state.cap.map(|(_, _, ends)| ends)
                    }
                };
                now = lifts.expect("a restriction has an end") + 1;
                at = start + Duration::from_millis((now - noon) as u64);
            }
            match record_send(&mut account, &to, limits, at) {
                Verdict::Fine => {}
                Verdict::Timelocked(reason) => {
                    eprintln!("device {d} timelocked after {} sends: {reason}", sent.len());
                    run.timelocked += 1;
                }
                Verdict::Banned(reason) => {
                    eprintln!(
                        "device {d} banned after {} sends at {:.1} h: {reason}",
                        sent.len(),
                        (now - noon) as f64 / 3.6e6
                    );
                    run.banned += 1;
                    break;
                }
            }
            run.sent += 1;
            let reply = (rng.below(99) < reply_percent as i64).then_some(now + reply_after_ms);
            if let Some(at) = reply {
                replies.push_back((at, to));
            }
            sent.push((now, reply));
        }
        let replied = sent.iter().filter(|(_, r)| r.is_some()).count();
        eprintln!(
            "device {d}: {} sent, {replied} replied, pause {:?}",
            sent.len(),
            schedule.paused.as_ref().map(|p| &p.1)
        );
        run.hours = run.hours.max((now - noon) as f64 / 3_600_000.0);
    }
    run
}

/// Recipients of the full campaign; `WAFLEET_BAN_TEST_RECIPIENTS` changes it.
fn recipients() -> usize {
    std::env::var("WAFLEET_BAN_TEST_RECIPIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[test]
fn default_pacing_gets_no_device_restricted_and_no_pacing_gets_each_timelocked_then_banned() {
    let n = recipients();
    let limits = BanLimits::default();
    assert!(!limits.timelock.is_zero(), "the model timelocks before it bans");
    // Half the strangers answer, after the simulator's default reply delay.
    let reply_ms = SimConfig::default().reply_ms as i64;
    let paced = campaign(&limits, n, 5, &Pacing::default(), 50, reply_ms);
    eprintln!("default pacing: {paced:?}");
    assert_eq!((paced.banned, paced.timelocked), (0, 0), "{paced:?}");
    assert_eq!(paced.refused_timelocked, 0, "{paced:?}");
    // A device whose first recipients happen to answer less than the policy's limit stops (its
    // pause lasts until replies come, and this model has no late replies): no ban, but not every
    // recipient is reached. The others finish.
    assert!(paced.sent * 2 > n, "most recipients reached: {paced:?}");

    let off = Pacing {
        enabled: false,
        ..Pacing::default()
    };
    let unpaced = campaign(&limits, n, 5, &off, 50, reply_ms);
    eprintln!("pacing off: {unpaced:?}");
    // The first burst timelocks each device; its held sends go once the lock lifts, burst
    // again, and that bans it.
    assert_eq!((unpaced.timelocked, unpaced.banned), (5, 5), "{unpaced:?}");
    assert!(unpaced.refused_timelocked >= 5, "{unpaced:?}");
}

#[test]
fn under_a_new_chat_cap_default_pacing_waits_for_the_next_cycle_and_is_never_restricted_otherwise() {
    // 400 strangers a device against a cap of 150 a cycle: each device is refused once per
    // cycle it runs out in, waits for the next, and is never timelocked or banned.
    let limits = BanLimits {
        new_chat_cap: 150,
        ..BanLimits::default()
    };
    let reply_ms = SimConfig::default().reply_ms as i64;
    let capped = campaign(&limits, 2_000, 5, &Pacing::default(), 50, reply_ms);
    eprintln!("capped: {capped:?}");
    assert_eq!((capped.banned, capped.timelocked), (0, 0), "{capped:?}");
    assert!(capped.refused_capped >= 5, "every device met the cap: {capped:?}");
    assert!(
        capped.hours > 30.0 * 24.0,
        "the campaign went on in the next cycle: {capped:?}"
    );
}

#[test]
fn the_unreplied_rule_pauses_instead_of_getting_banned() {
    // Nobody answers: the default pacing stops sending before the model's unreplied limit bans.
    let silent = campaign(&BanLimits::default(), 200, 2, &Pacing::default(), 0, 600_000);
    eprintln!("nobody replies: {silent:?}");
    assert_eq!((silent.banned, silent.timelocked), (0, 0), "{silent:?}");
    assert!(silent.sent < 200, "{silent:?}");
}
