//! When a sequence's step may go: its delay in the sequence's time zone, then the first moment
//! inside the send window.
//!
//! Everything here works on the local wall clock of the sequence's IANA time zone, so a window of
//! 09:00-18:00 stays 09:00-18:00 local across a daylight saving change, and a delay of one day
//! lands at the same local time the next day (23 or 25 hours later on the change's night).

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, TimeZone, Weekday};
use chrono_tz::Tz;

use crate::types::Timestamp;

use super::model::DelayFrom;

/// Minutes in a day: a window may end at 24:00.
pub const DAY_MINUTES: u32 = 1440;

/// Every weekday, as the bits of [`SendWindow::weekdays`].
pub const ALL_WEEKDAYS: u8 = 0b111_1111;

/// The days' short names, Monday first, as the API takes and shows them.
pub const WEEKDAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Local minutes `[start, end)` of the weekdays in `weekdays` (bit 0 Monday … bit 6 Sunday).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendWindow {
    /// The time zone the window is read in.
    pub tz: Tz,
    /// Opens at this local minute of the day.
    pub start: u32,
    /// Closes at this local minute (exclusive), after `start`.
    pub end: u32,
    /// The days it opens.
    pub weekdays: u8,
}

impl SendWindow {
    /// Checks a window as given: a known time zone, `start < end <= 24:00`, at least one day.
    pub fn new(time_zone: &str, start: u32, end: u32, weekdays: u8) -> Result<Self, String> {
        let tz = time_zone.parse::<Tz>().map_err(|_| {
            format!("time_zone: unknown time zone `{time_zone}`; give an IANA name such as Europe/Madrid")
        })?;
        if start >= end || end > DAY_MINUTES {
            return Err(format!(
                "window: it must open before it closes, within one day (got {} to {})",
                clock(start),
                clock(end)
            ));
        }
        if weekdays & ALL_WEEKDAYS == 0 {
            return Err("window: give at least one weekday it is open on".into());
        }
        Ok(SendWindow {
            tz,
            start,
            end,
            weekdays: weekdays & ALL_WEEKDAYS,
        })
    }

    /// When step `position` (from 1) is due: its delay of `days` and `hours` counted from
    /// `enrolled` (the first step, or one whose delay counts from enrolment) or from the previous
    /// step's send (`previous`, enrolment when unknown), then the first moment the window is
    /// open. What dispatch plans and what the preview shows, alike.
    pub fn step_due(
        &self,
        position: i64,
        from: DelayFrom,
        (days, hours): (u32, u32),
        enrolled: Timestamp,
        previous: Option<Timestamp>,
    ) -> Timestamp {
        let start = match from {
            DelayFrom::Previous if position > 1 => previous.unwrap_or(enrolled),
            _ => enrolled,
        };
        self.next_open(after(self.tz, start, days, hours))
    }

    fn opens_on(&self, day: Weekday) -> bool {
        self.weekdays & (1 << day.num_days_from_monday()) != 0
    }

    /// The first instant at or after `at` inside the window.
    pub fn next_open(&self, at: Timestamp) -> Timestamp {
        let today = at.to_datetime().with_timezone(&self.tz).date_naive();
        // A window open on any day opens within the next seven.
        for offset in 0..=7 {
            let Some(day) = today.checked_add_days(Days::new(offset)) else {
                break;
            };
            if !self.opens_on(day.weekday()) {
                continue;
            }
            let (open, close) = (local(self.tz, day, self.start), local(self.tz, day, self.end));
            if at < close {
                return at.max(open);
            }
        }
        at
    }

    /// Whether `at` is inside the window.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.next_open(at) == at
    }
}

/// `days` calendar days later at the same local time, then `hours` later.
pub fn after(tz: Tz, from: Timestamp, days: u32, hours: u32) -> Timestamp {
    let wall = from.to_datetime().with_timezone(&tz).naive_local();
    let moved = wall.checked_add_days(Days::new(u64::from(days))).unwrap_or(wall);
    resolve(tz, moved).plus_secs(i64::from(hours) * 3600)
}

/// `HH:MM` of a minute of the day.
pub fn clock(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Parses `HH:MM` (00:00 to 24:00) into a minute of the day.
pub fn parse_clock(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    let minutes = h.checked_mul(60)?.checked_add(m)?;
    (m < 60 && minutes <= DAY_MINUTES).then_some(minutes)
}

/// The instant of local minute `minutes` of `day` (24:00 is the next day's midnight).
fn local(tz: Tz, day: NaiveDate, minutes: u32) -> Timestamp {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    resolve(tz, midnight + chrono::Duration::minutes(i64::from(minutes)))
}

/// A local wall-clock time as an instant: a time repeated by a change back takes its first
/// occurrence; a time skipped by a change forward is read with the offset from before the change
/// (02:30 on a night that jumps from 02:00 to 03:00 is 03:30), as clocks on the wall do.
fn resolve(tz: Tz, wall: NaiveDateTime) -> Timestamp {
    use chrono::Offset as _;
    if let Some(at) = tz.from_local_datetime(&wall).earliest() {
        return Timestamp(at.timestamp_millis());
    }
    // No zone's change skips more than a few hours.
    let before = tz
        .from_local_datetime(&(wall - chrono::Duration::hours(6)))
        .earliest()
        .map_or(0, |at| at.offset().fix().local_minus_utc());
    Timestamp(wall.and_utc().timestamp_millis() - i64::from(before) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp(chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis())
    }

    fn weekdays_only() -> SendWindow {
        SendWindow::new("America/New_York", 9 * 60, 18 * 60, 0b001_1111).unwrap()
    }

    #[test]
    fn a_time_inside_the_window_stays() {
        // Tuesday 2027-03-09 10:00 EST is 15:00 UTC.
        let w = weekdays_only();
        assert_eq!(w.next_open(at("2027-03-09T15:00:00Z")), at("2027-03-09T15:00:00Z"));
        assert!(w.contains(at("2027-03-09T15:00:00Z")));
    }

    #[test]
    fn after_hours_and_weekends_wait_for_the_next_opening() {
        let w = weekdays_only();
        // Tuesday 19:00 EST → Wednesday 09:00 EST.
        assert_eq!(w.next_open(at("2027-03-10T00:00:00Z")), at("2027-03-10T14:00:00Z"));
        // Friday 18:00 EST (closed: the end is exclusive) → Monday 09:00, which is EDT by then.
        assert_eq!(w.next_open(at("2027-03-12T23:00:00Z")), at("2027-03-15T13:00:00Z"));
        // Before opening on a weekday → that day's opening.
        assert_eq!(w.next_open(at("2027-03-09T12:00:00Z")), at("2027-03-09T14:00:00Z"));
    }

    #[test]
    fn a_day_later_keeps_the_local_time_across_daylight_saving() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // Saturday 10:00 EST + 1 day = Sunday 10:00 EDT, 23 hours later.
        assert_eq!(after(tz, at("2027-03-13T15:00:00Z"), 1, 0), at("2027-03-14T14:00:00Z"));
        // And back in November: 25 hours.
        assert_eq!(after(tz, at("2027-11-06T14:00:00Z"), 1, 0), at("2027-11-07T15:00:00Z"));
        assert_eq!(after(tz, at("2027-11-06T14:00:00Z"), 0, 5), at("2027-11-06T19:00:00Z"));
    }

    #[test]
    fn a_window_opening_in_a_skipped_hour_opens_after_the_gap() {
        // 02:30 does not exist on 2027-03-14 in New York; the window opens at 03:30 EDT then.
        let w = SendWindow::new("America/New_York", 150, 240, ALL_WEEKDAYS).unwrap();
        assert_eq!(w.next_open(at("2027-03-14T05:00:00Z")), at("2027-03-14T07:30:00Z"));
    }

    #[test]
    fn bad_windows_say_what_to_fix() {
        assert!(
            SendWindow::new("Mars/Base", 0, 60, 1)
                .unwrap_err()
                .contains("time_zone")
        );
        assert!(
            SendWindow::new("UTC", 600, 540, 1)
                .unwrap_err()
                .contains("10:00 to 09:00")
        );
        assert!(SendWindow::new("UTC", 0, 60, 0).unwrap_err().contains("weekday"));
        assert_eq!(parse_clock("09:30"), Some(570));
        assert_eq!(parse_clock("24:00"), Some(1440));
        assert_eq!(parse_clock("24:01"), None);
        assert_eq!(parse_clock("9h"), None);
    }
}
