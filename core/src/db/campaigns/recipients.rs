//! A campaign's recipients one by one: where each send stands and the text it carries.

use crate::types::{CampaignId, DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::super::on_db;
use super::report::recipient_status;

/// Most recipients listed in one page.
pub const RECIPIENTS_PAGE_MAX: i64 = 500;

/// One recipient of a campaign.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct CampaignRecipient {
    /// Row id; the cursor of the next page.
    pub id: i64,
    /// The device it goes out from.
    pub device_id: DeviceId,
    /// The lead it was listed from (which may since have been deleted).
    pub lead_id: i64,
    /// The number, E.164.
    pub phone: String,
    /// `queued`, `sent`, `delivered`, `read`, `replied` or `failed`.
    pub status: String,
    /// The text sent (or to be sent) to this recipient, its choices and variables filled in;
    /// `null` until its send is recorded.
    pub text: Option<String>,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// 1, raised each time a failed send is retried.
    pub attempt: i64,
    /// When WhatsApp accepted it.
    pub sent_at: Option<Timestamp>,
}

impl Db {
    /// The recipients of one of the user's campaigns after recipient `after`, in the order they
    /// are sent, at most `limit` (up to [`RECIPIENTS_PAGE_MAX`]).
    #[tracing::instrument(skip(self))]
    pub async fn campaign_recipients(
        &self,
        user: UserId,
        id: CampaignId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<CampaignRecipient>> {
        // Through the owner: another user's campaign is not found.
        self.campaign(user, id).await?;
        let sql = concat!(
            "SELECT r.id, r.device_id, r.lead_id, r.phone, ",
            recipient_status!(),
            " AS status, o.body AS text, COALESCE(r.reason, o.reason) AS reason, r.attempt, o.sent_at \
             FROM campaign_recipients r LEFT JOIN outbound_messages o ON o.id = r.outbound_id \
             WHERE r.campaign_id = $1 AND r.id > $2 ORDER BY r.id LIMIT $3"
        );
        Ok(on_db!(self, pool => sqlx::query_as::<_, CampaignRecipient>(sql)
            .bind(id)
            .bind(after)
            .bind(limit.clamp(1, RECIPIENTS_PAGE_MAX))
            .fetch_all(pool)
            .await)?)
    }
}
