//! Campaigns: one message sent from chosen devices to their leads of one niche, from a given time.
//!
//! Every query reaches a campaign through its owner, so another user's campaign is
//! indistinguishable from one that does not exist. Sending is [`dispatch`]'s work.

mod dispatch;
mod model;
mod recipients;
mod report;

pub use dispatch::Dispatched;
pub use dispatch::send_key;
pub use model::{Campaign, CampaignChanges, CampaignStatus, Distribution, NewCampaign};
pub use recipients::{CampaignRecipient, RECIPIENTS_PAGE_MAX};
pub use report::{CalendarDay, CalendarEntry, CampaignReport, DeviceReport, StatusCounts};

use crate::types::{CampaignId, DeviceId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::on_db;
use crate::db::BeginWrite;

/// The columns of [`Campaign`], as a literal so queries stay `&'static str`.
macro_rules! campaign_columns {
    () => {
        "id, title, niche, message, image IS NOT NULL AS has_image, send_at, time_zone, status, created_at, updated_at, \
         distribution, per_device_cap, left_out"
    };
}

/// Links `$devices` to campaign `$id`, each only if it is `$user`'s; a foreign one is not found.
macro_rules! set_devices {
    ($tx:ident, $user:expr, $id:expr, $devices:expr) => {
        for device in $devices {
            let linked = sqlx::query(
                "INSERT INTO campaign_devices (campaign_id, device_id) SELECT $1, id FROM devices \
                 WHERE id = $2 AND user_id = $3 ON CONFLICT DO NOTHING",
            )
            .bind($id)
            .bind(*device)
            .bind($user)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if linked == 0 {
                let owned: Option<i64> = sqlx::query_scalar("SELECT id FROM devices WHERE id = $1 AND user_id = $2")
                    .bind(*device)
                    .bind($user)
                    .fetch_optional(&mut *$tx)
                    .await?;
                if owned.is_none() {
                    return Err(Error::NotFound);
                }
            }
        }
    };
}

impl Db {
    /// Creates a campaign on the user's devices; [`Error::NotFound`] if a device is not theirs.
    #[tracing::instrument(skip(self, new), fields(devices = new.devices.len()))]
    pub async fn create_campaign(&self, user: UserId, new: &NewCampaign) -> Result<Campaign> {
        let now = Timestamp::now();
        let id: CampaignId = on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let id: CampaignId = sqlx::query_scalar(
                "INSERT INTO campaigns (user_id, title, niche, message, image, send_at, time_zone, status, \
                 created_at, updated_at, distribution, per_device_cap) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11) RETURNING id")
                .bind(user)
                .bind(&new.title)
                .bind(&new.niche)
                .bind(&new.message)
                .bind(new.image.as_deref())
                .bind(new.send_at)
                .bind(&new.time_zone)
                .bind(new.status.as_str())
                .bind(now)
                .bind(new.distribution)
                .bind(new.per_device_cap)
                .fetch_one(&mut *tx)
                .await?;
            set_devices!(tx, user, id, &new.devices);
            tx.commit().await?;
            Ok::<_, Error>(id)
        })?;
        self.campaign(user, id).await
    }

    /// One of the user's campaigns.
    #[tracing::instrument(skip(self))]
    pub async fn campaign(&self, user: UserId, id: CampaignId) -> Result<Campaign> {
        let sql = concat!(
            "SELECT ",
            campaign_columns!(),
            " FROM campaigns WHERE id = $1 AND user_id = $2"
        );
        let mut campaign =
            on_db!(self, pool => sqlx::query_as::<_, Campaign>(sql).bind(id).bind(user).fetch_one(pool).await)?;
        campaign.device_ids = on_db!(self, pool => sqlx::query_scalar(
            "SELECT device_id FROM campaign_devices WHERE campaign_id = $1 ORDER BY device_id")
            .bind(id)
            .fetch_all(pool)
            .await)?;
        Ok(campaign)
    }

    /// The user's campaigns sending between `from` and `to`, by send time.
    #[tracing::instrument(skip(self))]
    pub async fn list_campaigns(&self, user: UserId, from: Timestamp, to: Timestamp) -> Result<Vec<Campaign>> {
        let sql = concat!(
            "SELECT ",
            campaign_columns!(),
            " FROM campaigns WHERE user_id = $1 AND send_at >= $2 AND send_at < $3 ORDER BY send_at, id"
        );
        let mut campaigns = on_db!(self, pool => sqlx::query_as::<_, Campaign>(sql)
            .bind(user)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await)?;
        let links: Vec<(CampaignId, DeviceId)> = on_db!(self, pool => sqlx::query_as(
            "SELECT d.campaign_id, d.device_id FROM campaign_devices d JOIN campaigns c ON c.id = d.campaign_id \
             WHERE c.user_id = $1 AND c.send_at >= $2 AND c.send_at < $3 ORDER BY d.device_id")
            .bind(user)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await)?;
        for campaign in &mut campaigns {
            campaign.device_ids = links
                .iter()
                .filter(|(c, _)| *c == campaign.id)
                .map(|(_, d)| *d)
                .collect();
        }
        Ok(campaigns)
    }

    /// Applies `changes`. Content changes only while the campaign is a draft or scheduled; status
    /// moves follow [`CampaignStatus::move_to`]. Both are checked against the row as it is when
    /// written, so a dispatcher starting the campaign meanwhile makes this a conflict, not a race.
    #[tracing::instrument(skip(self, changes))]
    pub async fn update_campaign(&self, user: UserId, id: CampaignId, changes: &CampaignChanges) -> Result<Campaign> {
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let (status, expanded): (String, Option<i64>) = sqlx::query_as(
                "SELECT status, expanded_at FROM campaigns WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
            let current: CampaignStatus = status.parse().map_err(Error::Invalid)?;
            if changes.touches_content() && !current.editable() {
                return Err(Error::Conflict(format!(
                    "a {} campaign can no longer be edited; only its status can change", current.as_str())));
            }
            let next = match changes.status {
                Some(wanted) => current.move_to(wanted, expanded.is_some()).map_err(Error::Conflict)?,
                None => current,
            };
            let done = sqlx::query(
                "UPDATE campaigns SET title = COALESCE($3, title), niche = COALESCE($4, niche), \
                 message = COALESCE($5, message), image = CASE WHEN $6 THEN $7 ELSE image END, \
                 send_at = COALESCE($8, send_at), time_zone = COALESCE($9, time_zone), status = $10, updated_at = $11, \
                 distribution = COALESCE($13, distribution), \
                 per_device_cap = CASE WHEN $13 IS NULL THEN per_device_cap ELSE $14 END \
                 WHERE id = $1 AND user_id = $2 AND status = $12")
                .bind(id)
                .bind(user)
                .bind(changes.title.as_deref())
                .bind(changes.niche.as_deref())
                .bind(changes.message.as_deref())
                .bind(changes.image.is_some())
                .bind(changes.image.clone().flatten())
                .bind(changes.send_at)
                .bind(changes.time_zone.as_deref())
                .bind(next.as_str())
                .bind(now)
                .bind(current.as_str())
                .bind(changes.distribution.map(|(d, _)| d))
                .bind(changes.distribution.and_then(|(_, cap)| cap))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(Error::Conflict("the campaign changed meanwhile; reload and try again".into()));
            }
            if let Some(devices) = &changes.devices {
                sqlx::query("DELETE FROM campaign_devices WHERE campaign_id = $1").bind(id).execute(&mut *tx).await?;
                set_devices!(tx, user, id, devices);
            }
            tx.commit().await?;
            Ok::<_, Error>(())
        })?;
        self.campaign(user, id).await
    }

    /// Deletes one of the user's campaigns, unless it is running (pause or cancel it first: its
    /// queued sends would otherwise go out with no campaign to show them).
    #[tracing::instrument(skip(self))]
    pub async fn delete_campaign(&self, user: UserId, id: CampaignId) -> Result<()> {
        let done = on_db!(self, pool => sqlx::query(
            "DELETE FROM campaigns WHERE id = $1 AND user_id = $2 AND status <> 'running'")
            .bind(id)
            .bind(user)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if done == 0 {
            self.campaign(user, id).await?;
            return Err(Error::Conflict(
                "the campaign is running: pause or cancel it before deleting it".into(),
            ));
        }
        Ok(())
    }
}
