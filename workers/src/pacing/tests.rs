use wafleet_core::db::Pacing;

use super::{Schedule, Slot};

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// Noon of some day, long after the device was added.
const NOON: i64 = 20_000 * DAY + DAY / 2;

fn warmed(policy: Pacing) -> Schedule {
    Schedule::new(policy, 0, NOON, 0, None)
}

fn slots(schedule: &mut Schedule, messages: std::ops::Range<i64>, now: i64) -> Vec<i64> {
    messages
        .map(|m| match schedule.slot(m, now, |_| 0) {
            Slot::Now => now,
            Slot::At(at) => at,
        })
        .collect()
}

#[test]
fn sends_are_spaced_to_the_per_minute_pace_and_keep_their_slots() {
    let mut schedule = warmed(Pacing {
        jitter_ms: 0,
        ..Pacing::default()
    });
    let at = slots(&mut schedule, 0..10, NOON);
    assert_eq!(at[0], NOON, "the first goes at once");
    for pair in at.windows(2) {
        assert_eq!(pair[1] - pair[0], MIN / 3);
    }
    for window in at.windows(4) {
        assert!(window[3] - window[0] >= MIN, "never four within a minute: {window:?}");
    }
    // Asking again gives the same slot, and at the slot the send goes without taking another.
    assert_eq!(schedule.slot(5, NOON + 1, |_| 0), Slot::At(at[5]));
    assert!(schedule.holds(5));
    assert_eq!(schedule.slot(5, at[5], |_| 0), Slot::Now);
    assert!(!schedule.holds(5));
    assert_eq!(
        schedule.slot(10, NOON, |_| 0),
        Slot::At(at[9] + MIN / 3),
        "the next is behind the rest"
    );
}

#[test]
fn waiting_sends_that_come_back_late_together_still_keep_the_pace() {
    let mut schedule = warmed(Pacing {
        jitter_ms: 0,
        ..Pacing::default()
    });
    let at = slots(&mut schedule, 0..3, NOON);
    assert_eq!(at, [NOON, NOON + MIN / 3, NOON + 2 * MIN / 3]);
    // Both waiting jobs return at once, well after their slots.
    let late = NOON + MIN;
    assert_eq!(schedule.slot(1, late, |_| 0), Slot::Now);
    assert_eq!(
        schedule.slot(2, late + 2, |_| 0),
        Slot::At(late + MIN / 3),
        "not two at once: the next slot after the one that just went"
    );
    assert_eq!(schedule.slot(2, late + MIN / 3, |_| 0), Slot::Now);
    assert_eq!(
        schedule.slot(3, late + MIN / 3, |_| 0),
        Slot::At(late + 2 * MIN / 3),
        "a new send is behind both"
    );
}

#[test]
fn jitter_only_adds_to_the_gap() {
    let mut schedule = warmed(Pacing::default());
    let mut last = None;
    for m in 0..50 {
        let at = match schedule.slot(m, NOON, |most| most) {
            Slot::Now => NOON,
            Slot::At(at) => at,
        };
        if let Some(prev) = last {
            assert_eq!(at - prev, MIN / 3 + 8_000);
        }
        last = Some(at);
    }
}

#[test]
fn the_daily_cap_moves_sends_to_the_next_day() {
    let mut schedule = warmed(Pacing {
        daily_cap: 5,
        per_minute: 600,
        jitter_ms: 0,
        ..Pacing::default()
    });
    let at = slots(&mut schedule, 0..7, NOON);
    assert!(at[..5].iter().all(|t| t / DAY == NOON / DAY));
    assert_eq!(at[5], (NOON / DAY + 1) * DAY, "the sixth waits for midnight UTC");
    // A new holder starts from what the database says was sent today.
    let mut taken_over = Schedule::new(schedule.policy.clone(), 0, NOON, 5, Some(NOON));
    assert!(matches!(taken_over.slot(99, NOON + MIN, |_| 0), Slot::At(at) if at >= (NOON / DAY + 1) * DAY));
}

#[test]
fn a_new_number_warms_up() {
    let policy = Pacing {
        daily_cap: 200,
        warmup_days: 10,
        warmup_first_day: 20,
        ..Pacing::default()
    };
    let added = NOON;
    let schedule = Schedule::new(policy, added, NOON, 0, None);
    let today = NOON / DAY;
    assert_eq!(schedule.cap(today), 20);
    assert_eq!(schedule.cap(today + 5), 110);
    assert_eq!(schedule.cap(today + 10), 200);
    assert_eq!(schedule.cap(today + 400), 200);
}

#[test]
fn a_burst_of_refusals_pauses_the_device_and_the_pause_ends() {
    let mut schedule = warmed(Pacing {
        error_burst: 3,
        pause_minutes: 30,
        ..Pacing::default()
    });
    assert_eq!(schedule.failed(NOON), None);
    assert_eq!(schedule.failed(NOON + 11 * MIN), None, "the first is too old to count");
    assert_eq!(schedule.failed(NOON + 12 * MIN), None);
    let (until, reason) = schedule.failed(NOON + 13 * MIN).expect("three within ten minutes");
    assert_eq!(until, NOON + 43 * MIN);
    assert!(reason.contains("refusals"));
    assert_eq!(schedule.slot(1, NOON + 14 * MIN, |_| 0), Slot::At(until));
    assert_eq!(schedule.slot(1, until, |_| 0), Slot::Now, "over once it ends");
}

#[test]
fn a_high_unreplied_share_pauses_until_replies_come() {
    let mut schedule = warmed(Pacing::default());
    assert_eq!(schedule.check_unreplied(NOON, 14, 14), None, "too few sends to judge");
    assert_eq!(schedule.check_unreplied(NOON, 100, 65), None, "at the limit");
    let (until, _) = schedule.check_unreplied(NOON, 100, 66).expect("over it");
    assert_eq!(schedule.slot(1, NOON, |_| 0), Slot::At(until));
}

#[test]
fn pacing_off_lets_everything_go() {
    let mut schedule = warmed(Pacing {
        enabled: false,
        ..Pacing::default()
    });
    assert!(slots(&mut schedule, 0..1000, NOON).iter().all(|t| *t == NOON));
    assert_eq!(schedule.check_unreplied(NOON, 100, 100), None);
}
