//! Analytics: what became of a user's sends per UTC day, read from the roll-ups: `analytics_daily`
//! per device and day, `analytics_user_daily` per user and day (all of a user's devices together).
//!
//! Counting rule. Every send recorded in `outbound_messages` counts (campaign sends and single
//! sends alike), on the UTC day it went out (`sent_at`), or, for a send that never went out, the day
//! it was recorded. A send is
//! - *sent* once WhatsApp accepted it (status sent, delivered or read);
//! - *delivered* when delivered or read; *not delivered* = sent − delivered;
//! - *read* when read; *not read* = delivered − read;
//! - *replied* when it went out and the contact later wrote in that chat (a message not from us with
//!   `sent_at` at or after the send's, not from the history synced when the device was linked), as
//!   the campaign report counts it; each roll-up marks the
//!   sends newly answered (`replied_at`) and counts a day's marks;
//! - *failed* when it was not sent (never part of `sent`).
//!
//! Sends still queued or being sent are not counted yet. Percentages compare each figure with its
//! base: delivered and not delivered with sent, read and not read with delivered, replied with
//! sent, failed with sent + failed; a zero base gives 0.

use chrono::NaiveDate;

use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::on_db;

/// Milliseconds in a day.
pub(super) const DAY_MS: i64 = 86_400_000;
/// How far before the watermark a roll-up looks again. Writers stamp `updated_at` and
/// `received_at` before they commit, so a transaction committing after a roll-up read the tables
/// can carry a stamp older than that roll-up's start; recounting a day twice changes nothing.
const OVERLAP_SECS: i64 = 300;

/// Marks the sends that messages received since `$1` answer for the first time: `replied_at`
/// becomes the earliest such message's send time and `updated_at` becomes `$2`, so the recount
/// that follows takes in their days. A send an earlier message already answered keeps its mark.
/// The devices lead, so each device's new messages are found through its index on receipt time.
///
/// A message answers a send when the contact wrote it after the send, to WhatsApp's resolution:
/// WhatsApp stamps messages to the second, so one stamped in the send's second counts
/// (`m.sent_at + 1000 > o.sent_at`, the rule every reply count uses). Otherwise an answer within
/// a second of the send (an auto-reply) would never count.
const MARK_REPLIES_SQL: &str = "\
UPDATE outbound_messages SET updated_at = $2, replied_at = (
    SELECT MIN(m.sent_at) FROM messages m
    WHERE m.device_id = outbound_messages.device_id AND m.chat_jid = outbound_messages.recipient
      AND m.from_me = FALSE AND m.history = FALSE AND m.sent_at + 1000 > outbound_messages.sent_at AND m.received_at >= $1)
WHERE replied_at IS NULL AND status IN ('sent', 'delivered', 'read') AND id IN (
    SELECT o.id FROM devices d
      JOIN messages m ON m.device_id = d.id AND m.received_at >= $1 AND m.from_me = FALSE AND m.history = FALSE
      JOIN outbound_messages o ON o.device_id = m.device_id AND o.recipient = m.chat_jid AND o.sent_at < m.sent_at + 1000
        AND o.replied_at IS NULL)";

/// Recounts each (device, day) with a send changed since `$1` (recorded, sent, a receipt, a
/// failure, or marked replied just before) from its sends, in one upsert. The join on the day
/// itself lets PostgreSQL hash on (device, day) rather than on the device alone and filter every
/// send of a device against each of its touched days; the range beside it keeps the index on
/// (device, send time) usable.
const ROLLUP_SQL: &str = "\
WITH dirty AS (
    SELECT DISTINCT device_id,
        COALESCE(sent_at, created_at) - COALESCE(sent_at, created_at) % 86400000 AS day
    FROM outbound_messages WHERE updated_at >= $1
)
INSERT INTO analytics_daily (device_id, day, sent, delivered, read, replied, failed, updated_at)
SELECT d.device_id, d.day,
    SUM(CASE WHEN o.status IN ('sent', 'delivered', 'read') THEN 1 ELSE 0 END),
    SUM(CASE WHEN o.status IN ('delivered', 'read') THEN 1 ELSE 0 END),
    SUM(CASE WHEN o.status = 'read' THEN 1 ELSE 0 END),
    SUM(CASE WHEN o.status IN ('sent', 'delivered', 'read') AND o.replied_at IS NOT NULL THEN 1 ELSE 0 END),
    SUM(CASE WHEN o.status = 'failed' THEN 1 ELSE 0 END),
    $2
FROM dirty d JOIN outbound_messages o ON o.device_id = d.device_id
    AND COALESCE(o.sent_at, o.created_at) - COALESCE(o.sent_at, o.created_at) % 86400000 = d.day
    AND COALESCE(o.sent_at, o.created_at) >= d.day AND COALESCE(o.sent_at, o.created_at) < d.day + 86400000
WHERE o.status IN ('sent', 'delivered', 'read', 'failed')
GROUP BY d.device_id, d.day
ON CONFLICT (device_id, day) DO UPDATE SET sent = excluded.sent, delivered = excluded.delivered,
    read = excluded.read, replied = excluded.replied, failed = excluded.failed, updated_at = excluded.updated_at";

/// Recounts each user-day one of whose device-days the roll-up just recounted (`updated_at` at or
/// after `$1`, the roll-up's start) from that user's device-days, so that a user's analytics read
/// one row per day. A refresh cut short before this statement is redone whole by the next one: it
/// recounts the same device-days again, with its own start.
const USER_ROLLUP_SQL: &str = "\
INSERT INTO analytics_user_daily (user_id, day, sent, delivered, read, replied, failed)
SELECT t.user_id, t.day, SUM(a.sent), SUM(a.delivered), SUM(a.read), SUM(a.replied), SUM(a.failed)
FROM (SELECT DISTINCT d.user_id, a.day FROM analytics_daily a JOIN devices d ON d.id = a.device_id
      WHERE a.updated_at >= $1) t
    JOIN devices d ON d.user_id = t.user_id
    JOIN analytics_daily a ON a.device_id = d.id AND a.day = t.day
GROUP BY t.user_id, t.day
ON CONFLICT (user_id, day) DO UPDATE SET sent = excluded.sent, delivered = excluded.delivered,
    read = excluded.read, replied = excluded.replied, failed = excluded.failed";

/// Recounts every day of one user (`$1`) from its devices' days, after a device was deleted (its
/// days went with it, by cascade, and nothing else marks them changed). The user's rows are deleted
/// first in the same transaction.
pub(super) const USER_RECOUNT_SQL: &str = "\
INSERT INTO analytics_user_daily (user_id, day, sent, delivered, read, replied, failed)
SELECT d.user_id, a.day, SUM(a.sent), SUM(a.delivered), SUM(a.read), SUM(a.replied), SUM(a.failed)
FROM devices d JOIN analytics_daily a ON a.device_id = d.id
WHERE d.user_id = $1
GROUP BY d.user_id, a.day";

/// A range of days of one user's devices together (`$1` the user, `$2`..`$3` the days).
const USER_DAYS_SQL: &str = "\
SELECT day, sent, delivered, read, replied, failed FROM analytics_user_daily
WHERE user_id = $1 AND day >= $2 AND day < $3 ORDER BY day";

/// A range of days of one device (`$2`), reached through its owner (`$1`).
const DEVICE_DAYS_SQL: &str = "\
SELECT a.day, a.sent, a.delivered, a.read, a.replied, a.failed
FROM analytics_daily a JOIN devices d ON d.id = a.device_id
WHERE d.user_id = $1 AND a.device_id = $2 AND a.day >= $3 AND a.day < $4 ORDER BY a.day";

/// How many of the user's devices there are and how many are online, with the roll-ups' watermark.
const USER_DEVICES_SQL: &str = "\
SELECT COUNT(*), CAST(SUM(CASE WHEN status = 'online' THEN 1 ELSE 0 END) AS BIGINT),
    (SELECT watermark FROM analytics_rollup WHERE id = 1)
FROM devices WHERE user_id = $1";

/// The same for one device of the user (`$2`).
const ONE_DEVICE_SQL: &str = "\
SELECT COUNT(*), CAST(SUM(CASE WHEN status = 'online' THEN 1 ELSE 0 END) AS BIGINT),
    (SELECT watermark FROM analytics_rollup WHERE id = 1)
FROM devices WHERE user_id = $1 AND id = $2";

/// Counts of sends, as the module's counting rule defines them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AnalyticsCounts {
    /// Accepted by WhatsApp.
    pub sent: i64,
    /// On the contact's phone (read ones included).
    pub delivered: i64,
    /// Sent but not (yet) delivered.
    pub not_delivered: i64,
    /// Opened.
    pub read: i64,
    /// Delivered but not (yet) opened.
    pub not_read: i64,
    /// The contact wrote back afterwards.
    pub replied: i64,
    /// Not sent.
    pub failed: i64,
}

impl AnalyticsCounts {
    fn new(sent: i64, delivered: i64, read: i64, replied: i64, failed: i64) -> Self {
        AnalyticsCounts {
            sent,
            delivered,
            not_delivered: sent - delivered,
            read,
            not_read: delivered - read,
            replied,
            failed,
        }
    }

    fn add(&mut self, other: &AnalyticsCounts) {
        *self = AnalyticsCounts::new(
            self.sent + other.sent,
            self.delivered + other.delivered,
            self.read + other.read,
            self.replied + other.replied,
            self.failed + other.failed,
        );
    }

    /// Each figure as a percentage of its base (see the module's counting rule).
    pub fn percent(&self) -> AnalyticsPercent {
        AnalyticsPercent {
            delivered: percent(self.delivered, self.sent),
            not_delivered: percent(self.not_delivered, self.sent),
            read: percent(self.read, self.delivered),
            not_read: percent(self.not_read, self.delivered),
            replied: percent(self.replied, self.sent),
            failed: percent(self.failed, self.sent + self.failed),
        }
    }
}

/// `part` of `whole` in percent with one decimal; 0 when `whole` is 0.
fn percent(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// Percentages (0-100, one decimal), each of its own base.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AnalyticsPercent {
    /// Delivered of sent.
    pub delivered: f64,
    /// Not delivered of sent.
    pub not_delivered: f64,
    /// Read of delivered.
    pub read: f64,
    /// Not read of delivered.
    pub not_read: f64,
    /// Replied of sent.
    pub replied: f64,
    /// Failed of sent + failed.
    pub failed: f64,
}

/// How many of the devices are connected.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceCounts {
    /// Devices counted (all of yours, or the one filtered on).
    pub total: i64,
    /// Online now.
    pub active: i64,
    /// Any other status (offline, pairing, connecting, logged out, banned).
    pub inactive: i64,
}

/// One day of the chart.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AnalyticsDay {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    /// That day's sends.
    pub counts: AnalyticsCounts,
}

/// Analytics of a range of days.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Analytics {
    /// First day, `YYYY-MM-DD` (UTC).
    pub start: String,
    /// Last day, included.
    pub end: String,
    /// The device filtered on, if any.
    pub device: Option<DeviceId>,
    /// Devices active and inactive now.
    pub devices: DeviceCounts,
    /// Sends of the whole range.
    pub totals: AnalyticsCounts,
    /// Percentages of the totals.
    pub percent: AnalyticsPercent,
    /// Every day of the range, oldest first (days without sends have zeros).
    pub series: Vec<AnalyticsDay>,
    /// When the roll-ups were last refreshed (they lag the sends by up to a minute); `null`
    /// before the first refresh.
    pub updated_at: Option<Timestamp>,
}

/// A day's row: its midnight, then sent, delivered, read, replied and failed.
type DayRow = (i64, i64, i64, i64, i64, i64);
/// Devices counted, how many are online, and the roll-ups' watermark.
type DevicesRow = (i64, Option<i64>, Option<Timestamp>);

/// Midnight UTC starting `day`, in milliseconds.
pub(super) fn day_start(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp_millis()
}

impl Db {
    /// Marks the sends answered since the last refresh, then recounts the roll-ups of every
    /// (device, day) whose sends changed or were answered since then (all of them on the first).
    /// Idempotent: a day is recounted from its sends, never incremented, and a refresh cut short
    /// is redone by the next one, since the watermark moves only at the end. Returns the rows
    /// written.
    #[tracing::instrument(skip(self))]
    pub async fn refresh_analytics(&self) -> Result<u64> {
        let started = Timestamp::now();
        let watermark: Option<Timestamp> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT watermark FROM analytics_rollup WHERE id = 1")
            .fetch_optional(pool)
            .await)?;
        let since = watermark.map_or(Timestamp(0), |w| w.plus_secs(-OVERLAP_SECS));
        on_db!(self, pool => sqlx::query(MARK_REPLIES_SQL)
            .bind(since)
            .bind(started)
            .execute(pool)
            .await
            .map(drop))?;
        let written = on_db!(self, pool => sqlx::query(ROLLUP_SQL)
            .bind(since)
            .bind(started)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        on_db!(self, pool => sqlx::query(USER_ROLLUP_SQL)
            .bind(started)
            .execute(pool)
            .await
            .map(drop))?;
        on_db!(self, pool => sqlx::query(
            "INSERT INTO analytics_rollup (id, watermark) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET watermark = excluded.watermark")
            .bind(started)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(written)
    }

    /// The user's analytics from `first` to `last` (UTC days, both included), of all their devices
    /// or of `device` only. The caller checks that `device` is the user's; another user's device
    /// simply has nothing counted here, since every row is reached through its owner.
    #[tracing::instrument(skip(self))]
    pub async fn analytics(
        &self,
        user: UserId,
        device: Option<DeviceId>,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Analytics> {
        let (from, until) = (day_start(first), day_start(last) + DAY_MS);
        // Two statements for the two cases rather than one with `$2 IS NULL OR device_id = $2`:
        // a prepared statement's generic plan cannot know which branch holds, and scans.
        let (rows, (total, active, updated_at)): (Vec<DayRow>, DevicesRow) = match device {
            None => on_db!(self, pool => {
                let rows = sqlx::query_as(USER_DAYS_SQL)
                    .bind(user)
                    .bind(from)
                    .bind(until)
                    .fetch_all(pool)
                    .await?;
                let devices = sqlx::query_as(USER_DEVICES_SQL).bind(user).fetch_one(pool).await?;
                (rows, devices)
            }),
            Some(device) => on_db!(self, pool => {
                let rows = sqlx::query_as(DEVICE_DAYS_SQL)
                    .bind(user)
                    .bind(device)
                    .bind(from)
                    .bind(until)
                    .fetch_all(pool)
                    .await?;
                let devices = sqlx::query_as(ONE_DEVICE_SQL).bind(user).bind(device).fetch_one(pool).await?;
                (rows, devices)
            }),
        };

        let mut totals = AnalyticsCounts::default();
        let mut rows = rows.into_iter().peekable();
        let series = first
            .iter_days()
            .take_while(|day| *day <= last)
            .map(|day| {
                let start = day_start(day);
                let counts = match rows.next_if(|r| r.0 == start) {
                    Some((_, sent, delivered, read, replied, failed)) => {
                        AnalyticsCounts::new(sent, delivered, read, replied, failed)
                    }
                    None => AnalyticsCounts::default(),
                };
                totals.add(&counts);
                AnalyticsDay {
                    date: day.format("%Y-%m-%d").to_string(),
                    counts,
                }
            })
            .collect();
        let active = active.unwrap_or(0);
        Ok(Analytics {
            start: first.format("%Y-%m-%d").to_string(),
            end: last.format("%Y-%m-%d").to_string(),
            device,
            devices: DeviceCounts {
                total,
                active,
                inactive: total - active,
            },
            percent: totals.percent(),
            totals,
            series,
            updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_counts_and_percentages() {
        let c = AnalyticsCounts::new(8, 6, 3, 2, 2);
        assert_eq!((c.not_delivered, c.not_read), (2, 3));
        let p = c.percent();
        assert_eq!(
            (p.delivered, p.not_delivered, p.read, p.not_read),
            (75.0, 25.0, 50.0, 50.0)
        );
        assert_eq!((p.replied, p.failed), (25.0, 20.0));
    }

    #[test]
    fn zero_bases_give_zero_not_nan() {
        assert_eq!(AnalyticsCounts::default().percent(), AnalyticsPercent::default());
        assert_eq!(percent(1, 3), 33.3);
    }
}
