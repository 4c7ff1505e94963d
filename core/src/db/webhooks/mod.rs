//! Webhook settings per user, and the deliveries of their events.
//!
//! Events are recorded by the writers of what they report, inside the same transaction
//! ([`emit_in!`]): the ingest batch (messages, receipts), the device status changes and the
//! campaign dispatcher. For devices whose owner has no enabled webhook this is one indexed lookup
//! per transaction that finds nothing. Workers then put recorded deliveries on the `webhooks`
//! queue ([`Db::claim_unqueued_deliveries`]) and record each attempt.

use crate::queue::{WEBHOOKS_QUEUE, WebhookJob};
use crate::types::text_enum::text_enum;
use crate::types::{DeviceId, Timestamp, UserId};
use crate::webhooks as hooks;
use crate::{Db, Error, Result};

use super::on_db;

mod device;
mod emit;

pub use device::DeviceWebhook;

pub(crate) use emit::{
    Event, NewDelivery, account_deliveries_in, emit_in, insert_deliveries_in, status_before_in, status_changed_in,
};

/// A user's webhook, secret included (only the owner's own requests and the deliverer read it).
#[derive(Clone, sqlx::FromRow)]
pub struct Webhook {
    /// Where events are POSTed.
    pub url: String,
    /// Signs each body.
    pub secret: String,
    /// Event names, comma-separated; empty for all.
    pub events: String,
    /// Whether events are recorded and sent at all.
    pub enabled: bool,
    /// When it was first set.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"…")
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .finish()
    }
}

text_enum! {
    /// Where a delivery stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum DeliveryStatus ("delivery status") {
        /// Waiting for its first attempt or a retry.
        Pending = "pending",
        /// The receiver answered 2xx.
        Delivered = "delivered",
        /// Every attempt failed; can be replayed.
        Dead = "dead",
    }
}

/// One event on its way to a user's URL.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Its id: the `X-Webhook-Delivery` header, the same on every attempt and replay.
    pub id: i64,
    /// The event's name.
    pub event: String,
    /// The exact JSON body sent.
    pub body: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made since it was recorded or last replayed.
    pub attempts: i64,
    /// HTTP status of the last attempt, when the receiver answered.
    pub response_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event was recorded.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When the receiver accepted it.
    pub delivered_at: Option<Timestamp>,
    /// The device whose own webhook it goes to; `null` for the account's webhook.
    pub device_id: Option<DeviceId>,
}

/// What the deliverer needs for one attempt.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The delivery.
    pub delivery: Delivery,
    /// Where it goes: its device's own webhook when it was recorded for one that still has it,
    /// else its owner's, if they still have one.
    pub webhook: Option<Webhook>,
}

/// How an attempt ended.
#[derive(Clone, Debug)]
pub enum AttemptResult {
    /// 2xx, with this status.
    Delivered(u16),
    /// Anything else; `dead` when no attempt is left.
    Failed {
        /// The receiver's status, if it answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// Whether this was the last attempt.
        dead: bool,
    },
}

/// Columns of [`Delivery`].
const DELIVERY_COLUMNS: &str = "id, event, body, status, attempts, response_status, last_error, created_at, updated_at, \
     delivered_at, device_id";

impl Db {
    /// `user`'s webhook, if set.
    #[tracing::instrument(skip(self))]
    pub async fn webhook(&self, user: UserId) -> Result<Option<Webhook>> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, Webhook>(
            "SELECT url, secret, events, enabled, created_at, updated_at FROM webhooks WHERE user_id = $1")
            .bind(user)
            .fetch_optional(pool)
            .await)?)
    }

    /// Sets `user`'s webhook (all of it; the caller keeps the old secret by passing it back).
    #[tracing::instrument(skip(self, secret))]
    pub async fn put_webhook(
        &self,
        user: UserId,
        url: &str,
        secret: &str,
        events: &str,
        enabled: bool,
    ) -> Result<Webhook> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, Webhook>(
            "INSERT INTO webhooks (user_id, url, secret, events, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (user_id) DO UPDATE SET url = excluded.url, \
             secret = excluded.secret, events = excluded.events, enabled = excluded.enabled, \
             updated_at = excluded.updated_at \
             RETURNING url, secret, events, enabled, created_at, updated_at")
            .bind(user)
            .bind(url)
            .bind(secret)
            .bind(events)
            .bind(enabled)
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await)?)
    }

    /// Removes `user`'s webhook; their recorded deliveries stay listed. [`Error::NotFound`] if none.
    #[tracing::instrument(skip(self))]
    pub async fn delete_webhook(&self, user: UserId) -> Result<()> {
        let removed = on_db!(self, pool => sqlx::query("DELETE FROM webhooks WHERE user_id = $1")
            .bind(user)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if removed == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Records a `webhook.test` delivery for `user`; returns its id.
    #[tracing::instrument(skip(self))]
    pub async fn record_test_delivery(&self, user: UserId) -> Result<i64> {
        let now = Timestamp::now();
        let (id,): (i64,) = on_db!(self, pool => sqlx::query_as(
            "INSERT INTO webhook_deliveries (user_id, event, body, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING id")
            .bind(user)
            .bind(hooks::TEST_EVENT)
            .bind(hooks::test_body(now))
            .bind(now)
            .fetch_one(pool)
            .await)?;
        Ok(id)
    }

    /// `user`'s deliveries, newest first, of one status when given.
    #[tracing::instrument(skip(self))]
    pub async fn deliveries(&self, user: UserId, status: Option<DeliveryStatus>, limit: i64) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE user_id = $1 AND ($2 IS NULL OR status = $2) \
             ORDER BY id DESC LIMIT $3"
        );
        Ok(
            on_db!(self, pool => sqlx::query_as::<_, Delivery>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user)
            .bind(status.map(DeliveryStatus::as_str))
            .bind(limit)
            .fetch_all(pool)
            .await)?,
        )
    }

    /// One of `user`'s deliveries.
    #[tracing::instrument(skip(self))]
    pub async fn delivery(&self, user: UserId, id: i64) -> Result<Delivery> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND user_id = $2");
        Ok(
            on_db!(self, pool => sqlx::query_as::<_, Delivery>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(id)
            .bind(user)
            .fetch_one(pool)
            .await)?,
        )
    }

    /// Sends one of `user`'s dead deliveries again, under the same id, from its first attempt.
    /// [`Error::NotFound`] for someone else's; [`Error::Conflict`] when it is not dead.
    #[tracing::instrument(skip(self))]
    pub async fn replay_delivery(&self, user: UserId, id: i64) -> Result<Delivery> {
        let current = self.delivery(user, id).await?;
        if current.status != DeliveryStatus::Dead {
            return Err(Error::Conflict(format!(
                "only dead deliveries can be replayed; this one is {}",
                current.status.as_str()
            )));
        }
        let changed = on_db!(self, pool => sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, queued_at = NULL, updated_at = $3 \
             WHERE id = $1 AND user_id = $2 AND status = 'dead'")
            .bind(id)
            .bind(user)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if changed == 0 {
            return Err(Error::Conflict("the delivery was replayed already".into()));
        }
        // The queue filed the job as a dead letter too; it is replayed with the delivery.
        let job = serde_json::to_string(&WebhookJob { delivery: id }).map_err(anyhow::Error::from)?;
        on_db!(self, pool => sqlx::query(
            "UPDATE dead_letters SET replayed_at = $3 WHERE queue = $1 AND job = $2 AND replayed_at IS NULL")
            .bind(WEBHOOKS_QUEUE)
            .bind(&job)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        self.delivery(user, id).await
    }

    /// Takes up to `limit` recorded deliveries no worker has queued yet, marking them queued;
    /// each id is returned to exactly one caller. Reads only when there is nothing to take.
    #[tracing::instrument(skip(self))]
    pub async fn claim_unqueued_deliveries(&self, limit: i64) -> Result<Vec<i64>> {
        let waiting: Vec<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "SELECT id FROM webhook_deliveries WHERE queued_at IS NULL ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let now = Timestamp::now();
        Ok(on_db!(self, pool => {
            let mut claim = sqlx::QueryBuilder::new("UPDATE webhook_deliveries SET queued_at = ");
            claim.push_bind(now).push(" WHERE queued_at IS NULL AND id IN (");
            let mut list = claim.separated(", ");
            for (id,) in &waiting {
                list.push_bind(*id);
            }
            claim.push(") RETURNING id");
            claim
                .build_query_as::<(i64,)>()
                .fetch_all(pool)
                .await
                .map(|rows| rows.into_iter().map(|(id,)| id).collect::<Vec<_>>())
        })?)
    }

    /// A delivery and the webhook it goes to, for an attempt; `None` once the delivery is gone.
    #[tracing::instrument(skip(self))]
    pub async fn delivery_attempt(&self, id: i64) -> Result<Option<Attempt>> {
        let row: Option<(UserId,)> = on_db!(self, pool => sqlx::query_as(
            "SELECT user_id FROM webhook_deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        let Some((user,)) = row else { return Ok(None) };
        let delivery = self.delivery(user, id).await?;
        let own = match delivery.device_id {
            Some(device) => self.device_webhook_of(device).await?.map(DeviceWebhook::into_webhook),
            None => None,
        };
        let webhook = match own {
            Some(hook) => Some(hook),
            None => self.webhook(user).await?,
        };
        Ok(Some(Attempt { delivery, webhook }))
    }

    /// Records how an attempt ended.
    #[tracing::instrument(skip(self))]
    pub async fn record_attempt(&self, id: i64, result: &AttemptResult) -> Result<()> {
        let now = Timestamp::now();
        let (status, code, error, delivered_at) = match result {
            AttemptResult::Delivered(code) => ("delivered", Some(i64::from(*code)), None, Some(now)),
            AttemptResult::Failed { status, error, dead } => (
                if *dead { "dead" } else { "pending" },
                status.map(i64::from),
                Some(error.as_str()),
                None,
            ),
        };
        on_db!(self, pool => sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, response_status = $3, \
             last_error = $4, delivered_at = $5, updated_at = $6 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(code)
            .bind(error)
            .bind(delivered_at)
            .bind(now)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Housekeeping: removes deliveries recorded before `before`, and hands back to the queue
    /// the pending ones nothing has touched since `stale` (their job was lost: a worker died
    /// between claiming and queueing them, or the queue lost it). Returns (removed, requeued).
    #[tracing::instrument(skip(self))]
    pub async fn tidy_deliveries(&self, before: Timestamp, stale: Timestamp) -> Result<(u64, u64)> {
        let removed = on_db!(self, pool => sqlx::query("DELETE FROM webhook_deliveries WHERE created_at < $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        let requeued = on_db!(self, pool => sqlx::query(
            "UPDATE webhook_deliveries SET queued_at = NULL WHERE status = 'pending' AND queued_at IS NOT NULL \
             AND updated_at < $1")
            .bind(stale)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok((removed, requeued))
    }
}
