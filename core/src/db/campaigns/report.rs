//! What campaigns achieved: per-recipient status counts, and the year calendar.

use std::collections::BTreeMap;

use chrono::Datelike;

use crate::types::{CampaignId, DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::super::on_db;
use super::super::outbound::Waiting;
use super::{Campaign, CampaignStatus};

/// A recipient's status, derived from its send: `queued` until WhatsApp accepted it, then the
/// send's own status (moved on by receipts), `replied` once the recipient wrote back after it.
macro_rules! recipient_status {
    () => {
        "CASE WHEN o.id IS NULL THEN r.status \
              WHEN o.status = 'failed' THEN 'failed' \
              WHEN o.status IN ('queued', 'sending') THEN 'queued' \
              WHEN EXISTS (SELECT 1 FROM messages m WHERE m.device_id = r.device_id AND m.chat_jid = o.recipient \
                           AND m.from_me = FALSE AND m.history = FALSE AND m.sent_at + 1000 > o.sent_at) THEN 'replied' \
              ELSE o.status END"
    };
}
pub(super) use recipient_status;

/// Most campaigns the calendar names on one day.
pub const CALENDAR_PER_DAY: usize = 5;

/// How many recipients stand where.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct StatusCounts {
    /// Recipients in all.
    pub total: i64,
    /// Not sent yet.
    pub queued: i64,
    /// Accepted by WhatsApp.
    pub sent: i64,
    /// On the recipient's phone.
    pub delivered: i64,
    /// Opened.
    pub read: i64,
    /// Wrote back.
    pub replied: i64,
    /// Not sent (the send's reason says why).
    pub failed: i64,
    /// Each status as a percentage of `total` (0-100, one decimal).
    pub percent: BTreeMap<String, f64>,
    /// Why the queued ones wait, while some do and something holds them: the device's pace,
    /// its daily cap (with the warm-up day of a new number), a pause after refusals, or the
    /// device not online. `null` when nothing is queued or nothing holds it back.
    pub waiting_reason: Option<String>,
    /// When the queued ones are expected to move (`null` when that waits on the device coming
    /// back online).
    pub next_attempt_at: Option<Timestamp>,
}

impl StatusCounts {
    pub(crate) fn add(&mut self, status: &str, n: i64) {
        let slot = match status {
            "sent" => &mut self.sent,
            "delivered" => &mut self.delivered,
            "read" => &mut self.read,
            "replied" => &mut self.replied,
            "failed" => &mut self.failed,
            _ => &mut self.queued,
        };
        *slot += n;
        self.total += n;
    }

    pub(crate) fn finish(mut self) -> Self {
        let total = self.total.max(1) as f64;
        let pairs = [
            ("queued", self.queued),
            ("sent", self.sent),
            ("delivered", self.delivered),
            ("read", self.read),
            ("replied", self.replied),
            ("failed", self.failed),
        ];
        self.percent = pairs
            .into_iter()
            .map(|(k, n)| (k.to_owned(), (n as f64 * 1000.0 / total).round() / 10.0))
            .collect();
        self
    }

    /// Says why the queued ones wait, when some do and `waiting` says why.
    pub(crate) fn waiting(mut self, waiting: Option<Waiting>) -> Self {
        if let Some(w) = waiting.filter(|_| self.queued > 0) {
            self.waiting_reason = Some(w.reason);
            self.next_attempt_at = w.next_attempt_at;
        }
        self
    }
}

/// One device's part of a campaign.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceReport {
    /// The device.
    pub device_id: DeviceId,
    /// Its name.
    pub name: String,
    /// Its recipients.
    pub counts: StatusCounts,
}

/// Where a campaign's recipients stand, in all and per device.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CampaignReport {
    /// The campaign.
    pub campaign: CampaignId,
    /// Its status.
    pub status: CampaignStatus,
    /// All recipients.
    pub totals: StatusCounts,
    /// Per target device.
    pub devices: Vec<DeviceReport>,
}

/// A campaign as the calendar names it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CalendarEntry {
    /// The campaign.
    pub id: CampaignId,
    /// Its title.
    pub title: String,
    /// Its niche (the label shown).
    pub niche: String,
    /// Its status.
    pub status: CampaignStatus,
    /// When it goes out.
    pub send_at: Timestamp,
}

/// One day of the calendar with campaigns on it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CalendarDay {
    /// `YYYY-MM-DD`, in each campaign's own time zone.
    pub date: String,
    /// Campaigns that day.
    pub count: usize,
    /// The first five of them, by time.
    pub campaigns: Vec<CalendarEntry>,
}

/// The local date of `campaign` in its time zone (UTC when the name is unknown).
fn local_date(campaign: &Campaign) -> chrono::NaiveDate {
    let utc = campaign.send_at.to_datetime();
    match campaign.time_zone.parse::<chrono_tz::Tz>() {
        Ok(tz) => utc.with_timezone(&tz).date_naive(),
        Err(_) => utc.date_naive(),
    }
}

impl Db {
    /// Recipient counts of one of the user's campaigns, in all and per device.
    #[tracing::instrument(skip(self))]
    pub async fn campaign_report(&self, user: UserId, id: CampaignId) -> Result<CampaignReport> {
        let campaign = self.campaign(user, id).await?;
        let sql = concat!(
            "SELECT s.device_id, s.st, COUNT(*) FROM (SELECT r.device_id, ",
            recipient_status!(),
            " AS st FROM campaign_recipients r LEFT JOIN outbound_messages o ON o.id = r.outbound_id \
             WHERE r.campaign_id = $1) s GROUP BY s.device_id, s.st"
        );
        let rows: Vec<(DeviceId, String, i64)> =
            on_db!(self, pool => sqlx::query_as(sql).bind(id).fetch_all(pool).await)?;
        let names: Vec<(DeviceId, String)> = on_db!(self, pool => sqlx::query_as(
            "SELECT d.id, d.name FROM devices d JOIN campaign_devices c ON c.device_id = d.id \
             WHERE c.campaign_id = $1 ORDER BY d.id")
            .bind(id)
            .fetch_all(pool)
            .await)?;
        let mut totals = StatusCounts::default();
        let mut devices = Vec::new();
        // The campaign as a whole waits for the device that moves first (one offline device
        // does not hold the others back, so it explains the whole only when none moves sooner).
        let mut first: Option<Waiting> = None;
        let now = Timestamp::now();
        for (device, name) in names {
            let mut counts = StatusCounts::default();
            for (_, status, n) in rows.iter().filter(|(d, _, _)| *d == device) {
                counts.add(status, *n);
                totals.add(status, *n);
            }
            let waiting = if counts.queued > 0 {
                self.device_waiting(device, now).await?
            } else {
                None
            };
            if let Some(w) = &waiting {
                let sooner = match (&first, w.next_attempt_at) {
                    (None, _) => true,
                    (Some(f), Some(at)) => f.next_attempt_at.is_none_or(|f| at < f),
                    (Some(_), None) => false,
                };
                if sooner {
                    first = Some(w.clone());
                }
            }
            devices.push(DeviceReport {
                device_id: device,
                name,
                counts: counts.finish().waiting(waiting),
            });
        }
        Ok(CampaignReport {
            campaign: id,
            status: campaign.status,
            totals: totals.finish().waiting(first),
            devices,
        })
    }

    /// The days of `year` with campaigns of the user, each with up to [`CALENDAR_PER_DAY`] of them.
    #[tracing::instrument(skip(self))]
    pub async fn campaign_calendar(&self, user: UserId, year: i32) -> Result<Vec<CalendarDay>> {
        let edge = |y: i32| {
            let day = chrono::NaiveDate::from_ymd_opt(y, 1, 1).unwrap_or_default();
            Timestamp(
                day.and_hms_opt(0, 0, 0)
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp_millis(),
            )
        };
        // Time zones reach ±14 h from UTC: a day either side covers every local date of the year.
        let campaigns = self
            .list_campaigns(user, edge(year).plus_secs(-86_400), edge(year + 1).plus_secs(86_400))
            .await?;
        let mut days: BTreeMap<chrono::NaiveDate, CalendarDay> = BTreeMap::new();
        for campaign in campaigns {
            let date = local_date(&campaign);
            if date.year() != year {
                continue;
            }
            let day = days.entry(date).or_insert_with(|| CalendarDay {
                date: date.format("%Y-%m-%d").to_string(),
                count: 0,
                campaigns: Vec::new(),
            });
            day.count += 1;
            if day.campaigns.len() < CALENDAR_PER_DAY {
                day.campaigns.push(CalendarEntry {
                    id: campaign.id,
                    title: campaign.title,
                    niche: campaign.niche,
                    status: campaign.status,
                    send_at: campaign.send_at,
                });
            }
        }
        Ok(days.into_values().collect())
    }
}
