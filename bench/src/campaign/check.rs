//! Pacing checked from send times alone: what the simulator saw each account send, and what the
//! database recorded as sent. A breach of the policy's contract (`per_minute`: most sends in any
//! minute; `daily_cap`: most per UTC day) or a recipient sent to twice is a violation and fails
//! the run. Sends closer together than the pace's interval are counted, not failed: the policy
//! promises a count per minute, and the spacing within it is how the pacer aims to keep it.

use std::collections::HashSet;

use wafleet_core::db::Pacing;

/// Milliseconds in a UTC day.
const DAY_MS: i64 = 86_400_000;
/// How much earlier than its slot a send may go (the pacer's `GRACE_MS`), plus the variation in
/// delay between the pacer's decision and the moment the send is recorded (a send held up on the
/// way makes the gap to the next one shorter).
pub const TOLERANCE_MS: i64 = 250;

/// What one device's send times show.
#[derive(Debug, Default)]
pub struct DeviceFindings {
    /// Sends seen.
    pub sends: usize,
    /// Shortest gap between two sends, ms (`i64::MAX` with fewer than two).
    pub min_gap_ms: i64,
    /// Gaps shorter than the pace's interval (less [`TOLERANCE_MS`]).
    pub short_gaps: usize,
    /// Most sends in any 60 s window.
    pub max_per_minute: usize,
    /// Breaches, each described for people.
    pub violations: Vec<String>,
}

/// Checks one device's send times (UTC ms, any order) and recipients against `policy`: no 60 s
/// window with more than `per_minute`, no UTC day over the daily cap, no recipient twice; and
/// counts the gaps shorter than its interval.
pub fn device(label: &str, policy: &Pacing, mut times: Vec<i64>, recipients: &[String]) -> DeviceFindings {
    times.sort_unstable();
    let interval = 60_000 / policy.per_minute.max(1);
    let mut found = DeviceFindings {
        sends: times.len(),
        min_gap_ms: i64::MAX,
        ..DeviceFindings::default()
    };
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        found.min_gap_ms = found.min_gap_ms.min(gap);
        if gap < interval - TOLERANCE_MS {
            found.short_gaps += 1;
        }
    }
    // Sliding window [t, t + 60 s − tolerance): a pace of n a minute fits n sends in it.
    let mut first = 0;
    for (last, at) in times.iter().enumerate() {
        while times[first] + 60_000 - TOLERANCE_MS <= *at {
            first += 1;
        }
        found.max_per_minute = found.max_per_minute.max(last + 1 - first);
    }
    if found.max_per_minute as i64 > policy.per_minute {
        found.violations.push(format!(
            "{label}: {} sends within a minute, the pace allows {}",
            found.max_per_minute, policy.per_minute
        ));
    }
    let mut days = std::collections::BTreeMap::<i64, i64>::new();
    for at in &times {
        *days.entry(at.div_euclid(DAY_MS)).or_default() += 1;
    }
    for (day, count) in days {
        if count > policy.daily_cap {
            found.violations.push(format!(
                "{label}: {count} sends on UTC day {day}, the daily cap is {}",
                policy.daily_cap
            ));
        }
    }
    let mut seen = HashSet::new();
    for to in recipients {
        if !seen.insert(to) {
            found
                .violations
                .push(format!("{label}: {to} received the campaign twice"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Pacing {
        Pacing {
            per_minute: 60,
            daily_cap: 5,
            ..Pacing::default()
        }
    }

    #[test]
    fn a_send_every_interval_is_within_the_pace() {
        let times: Vec<i64> = (0..5).map(|i| i * 1_000 + 30).collect();
        let to: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let found = device("d", &policy(), times, &to);
        assert!(found.violations.is_empty(), "{:?}", found.violations);
        assert_eq!((found.min_gap_ms, found.short_gaps), (1_000, 0));
    }

    #[test]
    fn over_the_cap_and_twice_are_violations_and_short_gaps_are_counted() {
        let times = vec![0, 100, 1_000, 2_000, 3_000, 4_000];
        let to: Vec<String> = ["a", "b", "c", "d", "e", "a"].map(String::from).to_vec();
        let found = device("d", &policy(), times, &to);
        assert_eq!((found.short_gaps, found.min_gap_ms), (1, 100));
        let text = found.violations.join("\n");
        assert_eq!(found.violations.len(), 2, "{text}");
        assert!(text.contains("daily cap is 5"), "{text}");
        assert!(text.contains("a received the campaign twice"), "{text}");
    }

    #[test]
    fn more_than_the_pace_in_a_minute_is_a_violation() {
        let policy = Pacing {
            per_minute: 2,
            daily_cap: 100,
            ..Pacing::default()
        };
        // 30 s apart each: three inside one minute.
        let found = device("d", &policy, vec![0, 29_900, 59_000], &[]);
        assert_eq!(found.max_per_minute, 3);
        assert_eq!(found.short_gaps, 1);
        assert_eq!(found.violations.len(), 1, "{:?}", found.violations);
    }
}
