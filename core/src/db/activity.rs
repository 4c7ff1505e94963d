//! The activity log of a device: what was done from its actions page or the actions API (test
//! sends, number checks, broadcasts), by whom and with what result, newest first.

use crate::types::text_enum::text_enum;
use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::on_db;

text_enum! {
    /// What an activity entry is about.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
    pub enum ActivityKind ("activity kind") {
        /// A test text or image to one number.
        TestSend = "test_send",
        /// A check of which numbers are on WhatsApp.
        CheckNumbers = "check_numbers",
        /// A broadcast to a pasted list of numbers.
        Broadcast = "broadcast",
    }
}

/// An entry to add to a device's log.
#[derive(Clone, Debug)]
pub struct NewActivity {
    /// Whose device it is (and who acted: only the owner can).
    pub user: UserId,
    /// The device acted from.
    pub device: DeviceId,
    /// The account's email, kept as it was when it acted.
    pub actor: String,
    /// `dashboard` (a browser session) or `api` (an API token).
    pub via: &'static str,
    /// What was done.
    pub kind: ActivityKind,
    /// What was asked, for people.
    pub summary: String,
    /// What came of it when it was asked, for people.
    pub result: String,
    /// The send or broadcast it is about.
    pub ref_id: Option<i64>,
}

/// One entry of a device's activity log.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ActivityEntry {
    /// The entry's id (also the paging cursor).
    pub id: i64,
    /// The device.
    pub device_id: DeviceId,
    /// Who acted: the account's email.
    pub actor: String,
    /// How: `dashboard` or `api`.
    pub via: String,
    /// What kind of action.
    pub kind: ActivityKind,
    /// What was asked.
    pub summary: String,
    /// What came of it when it was asked (a send's later progress is on the send or broadcast).
    pub result: String,
    /// The send (`test_send`) or broadcast (`broadcast`) it is about.
    pub ref_id: Option<i64>,
    /// When.
    pub created_at: Timestamp,
}

type ActivityRow = (
    i64,
    DeviceId,
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Timestamp,
);

impl From<ActivityRow> for ActivityEntry {
    fn from(r: ActivityRow) -> Self {
        ActivityEntry {
            id: r.0,
            device_id: r.1,
            actor: r.2,
            via: r.3,
            // Only the texts above are ever stored; anything else reads as a broadcast.
            kind: r.4.parse().unwrap_or(ActivityKind::Broadcast),
            summary: r.5,
            result: r.6,
            ref_id: r.7,
            created_at: r.8,
        }
    }
}

impl Db {
    /// Adds an entry to a device's log; [`crate::Error::NotFound`] if the device is not the user's.
    #[tracing::instrument(skip(self, entry), fields(user = %entry.user, device = %entry.device, kind = entry.kind.as_str()))]
    pub async fn record_activity(&self, entry: &NewActivity) -> Result<ActivityEntry> {
        let row: ActivityRow = on_db!(self, pool => sqlx::query_as(
            "INSERT INTO device_activity (user_id, device_id, actor, via, kind, summary, result, ref_id, created_at) \
             SELECT user_id, id, $3, $4, $5, $6, $7, $8, $9 FROM devices WHERE id = $2 AND user_id = $1 \
             RETURNING id, device_id, actor, via, kind, summary, result, ref_id, created_at")
            .bind(entry.user)
            .bind(entry.device)
            .bind(&entry.actor)
            .bind(entry.via)
            .bind(entry.kind.as_str())
            .bind(&entry.summary)
            .bind(&entry.result)
            .bind(entry.ref_id)
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await)?;
        Ok(row.into())
    }

    /// A page of a device's log, newest first: up to `limit` entries older than `before` (an
    /// entry id). [`crate::Error::NotFound`] if the device is not the user's.
    #[tracing::instrument(skip(self))]
    pub async fn activity_log(
        &self,
        user: UserId,
        device: DeviceId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ActivityEntry>> {
        self.device(user, device).await?;
        let rows: Vec<ActivityRow> = on_db!(self, pool => sqlx::query_as(
            "SELECT id, device_id, actor, via, kind, summary, result, ref_id, created_at FROM device_activity \
             WHERE device_id = $1 AND user_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4")
            .bind(device)
            .bind(user)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
