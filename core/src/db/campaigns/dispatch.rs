//! Dispatch: due campaigns start, their recipients are listed, and their sends are recorded a
//! little at a time for the devices' holders, which pace them.
//!
//! Every step is idempotent, so a dispatcher that dies half-way, or two that overlap, neither
//! skip nor repeat anyone: recipients are listed in the transaction that marks the campaign
//! listed, so a second dispatcher finds it listed (`list_recipients`), and each send is
//! recorded under the idempotency key `campaign:{campaign}:{lead}`, which [`Db::record_send`]
//! turns into the same row on a re-run. Sends are recorded only a couple of minutes' worth
//! ahead of each device's pace, so pausing a campaign stops it within about that much, and a
//! holder's queue never fills with work it may not start for hours.

use crate::link::{Attachment, Jid, USER_SERVER};
use crate::text::{self, Message, Variables};
use crate::types::{CampaignId, DeviceId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::super::on_db;
use super::super::outbound::NewSend;
use super::super::webhooks::account_deliveries_in;
use super::model::Distribution;
use super::report::recipient_status;
use crate::db::BeginWrite;
use crate::webhooks::{self, EventKind};

/// What one round of dispatch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// Campaigns that became due and started.
    pub started: u64,
    /// Recipients listed.
    pub listed: u64,
    /// Sends recorded for the holders.
    pub queued: u64,
    /// Campaigns that finished.
    pub finished: u64,
}

/// A recipient waiting for its send: id, lead, number, attempt, and the lead's name and niche
/// (`None` once the lead is deleted).
type Pending = (i64, i64, String, i64, Option<String>, Option<String>);

/// Sends recorded ahead of a device's pace when pacing is off.
const UNPACED_BACKLOG: i64 = 500;

/// The idempotency key of a recipient's send; a retry is a new send under a new key.
pub fn send_key(campaign: CampaignId, lead: i64, attempt: i64) -> String {
    if attempt <= 1 {
        format!("campaign:{campaign}:{lead}")
    } else {
        format!("campaign:{campaign}:{lead}:{attempt}")
    }
}

/// The leads a campaign `$1` may reach: its niche on its devices that are still its owner's,
/// except those marked lost (`FROM …` to the end of the query's joins, aliasing them `l`).
macro_rules! pool_leads {
    () => {
        "FROM campaigns c JOIN campaign_devices cd ON cd.campaign_id = c.id \
         JOIN devices v ON v.id = cd.device_id AND v.user_id = c.user_id \
         JOIN leads l ON l.device_id = cd.device_id AND l.niche = c.niche AND l.status <> 'lost' \
         WHERE c.id = $1"
    };
}

/// Each device's own leads, in the leads' order.
const LIST_PER_DEVICE: &str = concat!(
    "INSERT INTO campaign_recipients (campaign_id, device_id, lead_id, phone, created_at) \
     SELECT c.id, cd.device_id, l.id, l.phone, $2 ",
    pool_leads!(),
    " ORDER BY l.id"
);

/// One pool: each number once (its first lead), numbered in the leads' order and dealt to the
/// devices in id order (number `k` to device `k mod n`), while `k` is under `n × per_device_cap`.
const LIST_POOL: &str = concat!(
    "INSERT INTO campaign_recipients (campaign_id, device_id, lead_id, phone, created_at) \
     SELECT $1, d.device_id, p.lead_id, p.phone, $2 FROM \
     (SELECT u.lead_id, u.phone, ROW_NUMBER() OVER (ORDER BY u.lead_id) - 1 AS k FROM \
      (SELECT MIN(l.id) AS lead_id, l.phone ",
    pool_leads!(),
    " GROUP BY l.phone) u) p \
     JOIN (SELECT cd.device_id, ROW_NUMBER() OVER (ORDER BY cd.device_id) - 1 AS slot, COUNT(*) OVER () AS n \
           FROM campaigns c JOIN campaign_devices cd ON cd.campaign_id = c.id \
           JOIN devices v ON v.id = cd.device_id AND v.user_id = c.user_id WHERE c.id = $1) d ON d.slot = p.k % d.n \
     JOIN campaigns c ON c.id = $1 \
     WHERE c.per_device_cap IS NULL OR p.k < d.n * c.per_device_cap \
     ORDER BY p.k"
);

impl Db {
    /// One round of dispatch at `now`; see the module's documentation.
    #[tracing::instrument(skip(self))]
    pub async fn dispatch_campaigns(&self, now: Timestamp) -> Result<Dispatched> {
        let mut done = Dispatched {
            started: on_db!(self, pool => sqlx::query(
                "UPDATE campaigns SET status = 'running', updated_at = $1 WHERE status = 'scheduled' AND send_at <= $1")
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?,
            ..Dispatched::default()
        };
        let running: Vec<(CampaignId, UserId, Option<Timestamp>)> = on_db!(self, pool => sqlx::query_as(
            "SELECT id, user_id, expanded_at FROM campaigns WHERE status = 'running' ORDER BY id")
            .fetch_all(pool)
            .await)?;
        for (campaign, user, expanded) in running {
            if expanded.is_none() {
                done.listed += self.list_recipients(campaign, now).await?;
            }
            done.queued += self.queue_recipients(campaign, user, now).await?;
        }
        done.finished = self.finish_campaigns(now).await?;
        Ok(done)
    }

    /// Marks running campaigns whose every recipient has settled as finished, and records a
    /// `campaign.finished` event for owners with a webhook in the same transaction. The status
    /// change from `running` is what fires the event, so it fires once per finish, however many
    /// dispatchers run (a campaign restarted by "retry failed" finishes, and fires, again).
    async fn finish_campaigns(&self, now: Timestamp) -> Result<u64> {
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let finished: Vec<(CampaignId, UserId, String, String)> = sqlx::query_as(concat!(
                "UPDATE campaigns SET status = 'finished', updated_at = $1 WHERE status = 'running' \
                 AND expanded_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM (SELECT ",
                recipient_status!(),
                " AS st FROM campaign_recipients r LEFT JOIN outbound_messages o ON o.id = r.outbound_id \
                 WHERE r.campaign_id = campaigns.id) s WHERE s.st = 'queued') \
                 RETURNING id, user_id, title, niche"))
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
            let events: Vec<(UserId, EventKind, String)> = finished
                .iter()
                .map(|(id, user, title, niche)| {
                    (*user, EventKind::CampaignFinished, webhooks::campaign_body(id.0, title, niche, now))
                })
                .collect();
            account_deliveries_in!(tx, &events, now);
            tx.commit().await?;
            Ok::<_, Error>(finished.len() as u64)
        })
    }

    /// Lists a campaign's recipients: the leads of its niche on each target device (still the
    /// owner's), except those marked lost, in the leads' order. A pooled campaign takes them from
    /// all its devices at once, each number once (its first lead), and deals them round-robin over
    /// the devices in id order, at most `per_device_cap` to each; how many the cap left out is
    /// stored on the campaign. Returns how many were listed.
    ///
    /// The campaign is marked listed first, in the same transaction: a second dispatcher waits
    /// there for the first to commit, then finds it listed and lists nothing (a crash before the
    /// commit leaves neither). So the insert needs no `ON CONFLICT` (about a tenth of its time);
    /// the key on `(campaign_id, device_id, lead_id)` still refuses anyone listed twice.
    async fn list_recipients(&self, campaign: CampaignId, now: Timestamp) -> Result<u64> {
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let claimed: Option<Distribution> = sqlx::query_scalar(
                "UPDATE campaigns SET expanded_at = $2 WHERE id = $1 AND expanded_at IS NULL RETURNING distribution")
                .bind(campaign)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let listed = match claimed {
                None => return Ok(0),
                Some(Distribution::PerDevice) => sqlx::query(LIST_PER_DEVICE),
                Some(Distribution::Pool) => sqlx::query(LIST_POOL),
            }
            .bind(campaign)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == Some(Distribution::Pool) {
                sqlx::query(concat!(
                    "UPDATE campaigns SET left_out = (SELECT COUNT(DISTINCT l.phone) ",
                    pool_leads!(),
                    ") - $2 WHERE id = $1"))
                    .bind(campaign)
                    .bind(listed as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, Error>(listed)
        })
    }

    /// Records sends for a running campaign's recipients, per device up to two minutes of its pace
    /// ahead of what is already waiting, each with the campaign's message rendered for its lead
    /// (see [`crate::text`]). Returns how many were recorded.
    ///
    /// A recipient's text is drawn from a seed of the campaign and lead ids, so recording its send
    /// again (after a crash between the two writes below) renders the same text and
    /// [`Db::record_send`] finds the same row. Only a variable that changed meanwhile (a renamed
    /// lead, a greeting across noon) could render differently: the send already recorded under
    /// the recipient's key, to the same number from the same device, is then the recipient's
    /// send, with the text it was recorded with.
    async fn queue_recipients(&self, campaign: CampaignId, user: UserId, now: Timestamp) -> Result<u64> {
        let (text, image, niche, time_zone): (String, Option<Vec<u8>>, String, String) = on_db!(self, pool => sqlx::query_as(
            "SELECT message, image, niche, time_zone FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(pool)
            .await)?;
        // Messages saved before variations were checked may not parse: they go out as written,
        // as they did when they were saved.
        let message = Message::parse(&text).unwrap_or_else(|err| {
            tracing::warn!(%campaign, %err, "the campaign's message is sent as written");
            Message::literal(&text)
        });
        let local_hour = Variables::hour_in(now, &time_zone);
        let devices: Vec<DeviceId> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT device_id FROM campaign_devices WHERE campaign_id = $1 ORDER BY device_id")
            .bind(campaign)
            .fetch_all(pool)
            .await)?;
        let mut queued = 0;
        for device in devices {
            let pacing = self.device_pacing(device).await?.policy;
            let backlog = if pacing.enabled {
                pacing.per_minute * 2
            } else {
                UNPACED_BACKLOG
            };
            let waiting: i64 = on_db!(self, pool => sqlx::query_scalar(
                "SELECT COUNT(*) FROM campaign_recipients r JOIN outbound_messages o ON o.id = r.outbound_id \
                 WHERE r.campaign_id = $1 AND r.device_id = $2 AND o.status IN ('queued', 'sending')")
                .bind(campaign)
                .bind(device)
                .fetch_one(pool)
                .await)?;
            if waiting >= backlog {
                continue;
            }
            // The lead may have been deleted since it was listed: its number is still sent to,
            // with an empty name.
            let next: Vec<Pending> = on_db!(self, pool => sqlx::query_as(
                "SELECT r.id, r.lead_id, r.phone, r.attempt, l.name, l.niche FROM campaign_recipients r \
                 LEFT JOIN leads l ON l.id = r.lead_id AND l.device_id IN \
                 (SELECT device_id FROM campaign_devices WHERE campaign_id = $1) \
                 WHERE r.campaign_id = $1 AND r.device_id = $2 \
                 AND r.outbound_id IS NULL AND r.status = 'queued' ORDER BY r.id LIMIT $3")
                .bind(campaign)
                .bind(device)
                .bind(backlog - waiting)
                .fetch_all(pool)
                .await)?;
            for (recipient, lead, phone, attempt, name, lead_niche) in next {
                let variables = Variables {
                    name: name.unwrap_or_default(),
                    phone: phone.clone(),
                    niche: lead_niche.unwrap_or_else(|| niche.clone()),
                    local_hour,
                };
                let send = NewSend {
                    user,
                    device,
                    idempotency_key: send_key(campaign, lead, attempt),
                    to: Jid(format!("{}@{USER_SERVER}", phone.trim_start_matches('+'))),
                    body: Some(message.render(&variables, text::seed(&[campaign.0, lead]))),
                    media: image.clone().map(Attachment::jpeg),
                    structured: None,
                    forwarded: false,
                };
                let outbound = match self.record_or_adopt(&send).await? {
                    Ok(id) => Some(id),
                    Err(reason) => {
                        on_db!(self, pool => sqlx::query(
                            "UPDATE campaign_recipients SET status = 'failed', reason = $2 WHERE id = $1")
                            .bind(recipient)
                            .bind(&reason)
                            .execute(pool)
                            .await
                            .map(drop))?;
                        None
                    }
                };
                if let Some(outbound) = outbound {
                    on_db!(self, pool => sqlx::query(
                        "UPDATE campaign_recipients SET outbound_id = $2 WHERE id = $1 AND outbound_id IS NULL")
                        .bind(recipient)
                        .bind(outbound)
                        .execute(pool)
                        .await
                        .map(drop))?;
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    /// Sends a campaign's failed recipients again, each as a new send under a new key, and
    /// restarts the campaign if it had finished. Returns how many.
    #[tracing::instrument(skip(self))]
    pub async fn retry_failed_recipients(&self, user: UserId, campaign: CampaignId) -> Result<u64> {
        let current = self.campaign(user, campaign).await?;
        if matches!(current.status, super::CampaignStatus::Cancelled) {
            return Err(Error::Conflict("the campaign is cancelled".into()));
        }
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let retried = sqlx::query(
                "UPDATE campaign_recipients SET outbound_id = NULL, attempt = attempt + 1, status = 'queued', \
                 reason = NULL WHERE campaign_id = $1 AND (status = 'failed' OR outbound_id IN \
                 (SELECT id FROM outbound_messages WHERE status = 'failed'))")
                .bind(campaign)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if retried > 0 {
                sqlx::query(
                    "UPDATE campaigns SET status = 'running', updated_at = $2 WHERE id = $1 AND status = 'finished'")
                    .bind(campaign)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, Error>(retried)
        })
    }
}
