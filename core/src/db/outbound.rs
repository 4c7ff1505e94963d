//! Outbound sends: recorded before they are queued, moved along by the worker holding the device.
//!
//! A send is performed at most once per idempotency key: `record → fence → send → record`.
//! The holder moves the row from `queued` to `sending` in a fenced transaction (so a stale holder
//! cannot start it), sends, then records `sent` with WhatsApp's id. A worker that dies between
//! the two records leaves `sending` behind; the next holder cannot know whether WhatsApp got it,
//! so it marks it failed with that reason rather than risk sending it twice.

use crate::link::{IncomingMessage, Jid, MessageKind};
use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::chats::insert_messages;
use super::leases::fenced;
use super::{Fence, on_db};

/// Where a send stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutboundStatus {
    /// Waiting for the device's holder.
    Queued,
    /// Handed to WhatsApp; not yet confirmed.
    Sending,
    /// WhatsApp accepted it.
    Sent,
    /// Reached the recipient's phone.
    Delivered,
    /// The recipient opened it.
    Read,
    /// It was not sent, or whether it was is unknown; `reason` says which.
    Failed,
}

impl OutboundStatus {
    /// The status as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundStatus::Queued => "queued",
            OutboundStatus::Sending => "sending",
            OutboundStatus::Sent => "sent",
            OutboundStatus::Delivered => "delivered",
            OutboundStatus::Read => "read",
            OutboundStatus::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> OutboundStatus {
        match raw {
            "queued" => OutboundStatus::Queued,
            "sending" => OutboundStatus::Sending,
            "sent" => OutboundStatus::Sent,
            "delivered" => OutboundStatus::Delivered,
            "read" => OutboundStatus::Read,
            _ => OutboundStatus::Failed,
        }
    }
}

/// A send as its owner sees it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OutboundMessage {
    /// wafleet's id for the send.
    pub id: i64,
    /// The device it goes out from.
    pub device_id: DeviceId,
    /// The idempotency key it was recorded under.
    pub idempotency_key: String,
    /// The recipient.
    pub to: Jid,
    /// `text` or `image`.
    pub kind: String,
    /// Where it stands.
    pub status: OutboundStatus,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// Attempts to send it so far.
    pub attempts: i64,
    /// WhatsApp's message id once sent.
    pub wa_message_id: Option<String>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When WhatsApp accepted it.
    pub sent_at: Option<Timestamp>,
}

type OutboundRow = (
    i64,
    DeviceId,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    Timestamp,
    Option<Timestamp>,
);

/// A recorded send followed by its text, read when a key is used again.
type ReplayRow = (
    i64,
    DeviceId,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    Timestamp,
    Option<Timestamp>,
    Option<String>,
);

impl From<OutboundRow> for OutboundMessage {
    fn from(r: OutboundRow) -> Self {
        OutboundMessage {
            id: r.0,
            device_id: r.1,
            idempotency_key: r.2,
            to: Jid(r.3),
            kind: r.4,
            status: OutboundStatus::parse(&r.5),
            reason: r.6,
            attempts: r.7,
            wa_message_id: r.8,
            created_at: r.9,
            sent_at: r.10,
        }
    }
}

/// A send to record.
#[derive(Clone, Debug)]
pub struct NewSend {
    /// Whose it is.
    pub user: UserId,
    /// From which of their devices.
    pub device: DeviceId,
    /// Same key, same send.
    pub idempotency_key: String,
    /// To whom.
    pub to: Jid,
    /// Text, or the image's caption.
    pub body: Option<String>,
    /// A compressed JPEG, for an image send.
    pub image: Option<Vec<u8>>,
}

/// What the holder needs to perform a send it has begun.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SendWork {
    /// The send's id.
    pub id: i64,
    /// The recipient's JID.
    pub recipient: String,
    /// `text` or `image`.
    pub kind: String,
    /// Text or caption.
    pub body: Option<String>,
    /// The JPEG of an image send.
    pub image: Option<Vec<u8>>,
}

impl Db {
    /// Records a send, or returns the one already recorded under the same key (then `false`).
    /// A key reused for a different send is a conflict.
    #[tracing::instrument(skip(self, new), fields(user = %new.user, device = %new.device, key = %new.idempotency_key))]
    pub async fn record_send(&self, new: &NewSend) -> Result<(OutboundMessage, bool)> {
        let now = Timestamp::now();
        let kind = if new.image.is_some() { "image" } else { "text" };
        let inserted: Option<OutboundRow> = on_db!(self, pool => sqlx::query_as(concat!(
            "INSERT INTO outbound_messages (user_id, device_id, idempotency_key, recipient, kind, body, image, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING ",
            "id, device_id, idempotency_key, recipient, kind, status, reason, attempts, wa_message_id, created_at, sent_at"))
            .bind(new.user)
            .bind(new.device)
            .bind(&new.idempotency_key)
            .bind(&new.to.0)
            .bind(kind)
            .bind(new.body.as_deref())
            .bind(new.image.as_deref())
            .bind(now)
            .fetch_optional(pool)
            .await)?;
        if let Some(row) = inserted {
            return Ok((row.into(), true));
        }
        let replay: ReplayRow = on_db!(self, pool => sqlx::query_as(
            "SELECT id, device_id, idempotency_key, recipient, kind, status, reason, attempts, wa_message_id, \
             created_at, sent_at, body FROM outbound_messages WHERE user_id = $1 AND idempotency_key = $2")
            .bind(new.user)
            .bind(&new.idempotency_key)
            .fetch_one(pool)
            .await)?;
        let r = replay;
        let (existing, body): (OutboundRow, _) = ((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10), r.11);
        let same = existing.1 == new.device && existing.3 == new.to.0 && existing.4 == kind && body == new.body;
        if !same {
            return Err(Error::Conflict(format!(
                "Idempotency-Key `{}` was already used for a different send (message {}); use a new key",
                new.idempotency_key, existing.0
            )));
        }
        Ok((existing.into(), false))
    }

    /// One of `user`'s sends.
    #[tracing::instrument(skip(self))]
    pub async fn outbound_message(&self, user: UserId, id: i64) -> Result<OutboundMessage> {
        let row: OutboundRow = on_db!(self, pool => sqlx::query_as(concat!("SELECT ",
            "id, device_id, idempotency_key, recipient, kind, status, reason, attempts, wa_message_id, created_at, sent_at",
            " FROM outbound_messages WHERE id = $1 AND user_id = $2"))
            .bind(id)
            .bind(user)
            .fetch_one(pool)
            .await)?;
        Ok(row.into())
    }

    /// Sends waiting to go out, across every device (the send backlog, for metrics).
    #[tracing::instrument(skip(self))]
    pub async fn queued_send_count(&self) -> Result<i64> {
        let (n,): (i64,) = on_db!(self, pool => sqlx::query_as(
            "SELECT COUNT(*) FROM outbound_messages WHERE status IN ('queued', 'sending')")
            .fetch_one(pool)
            .await)?;
        Ok(n)
    }

    /// Queued sends of devices `worker` holds, oldest first: `(send, device)`.
    #[tracing::instrument(skip(self))]
    pub async fn queued_sends(&self, worker: &str, limit: i64) -> Result<Vec<(i64, DeviceId)>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "SELECT o.id, o.device_id FROM outbound_messages o JOIN device_leases l ON l.device_id = o.device_id \
             WHERE o.status = 'queued' AND l.holder = $1 ORDER BY o.id LIMIT $2")
            .bind(worker)
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }

    /// Sends a previous holder of `worker`'s devices began and never recorded: whether WhatsApp got
    /// them is unknown, so they fail visibly instead of being sent again. Returns how many.
    #[tracing::instrument(skip(self))]
    pub async fn fail_abandoned_sends(&self, worker: &str) -> Result<u64> {
        let now = Timestamp::now();
        Ok(on_db!(self, pool => sqlx::query(
            "UPDATE outbound_messages SET status = 'failed', updated_at = $2, \
               reason = 'outcome unknown: the worker sending it stopped before WhatsApp confirmed it; \
                         not sent again, to avoid a duplicate' \
             WHERE status = 'sending' AND send_token < \
               (SELECT l.token FROM device_leases l WHERE l.device_id = outbound_messages.device_id AND l.holder = $1)")
            .bind(worker)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?)
    }

    /// Sends `worker` itself began under its current lease, more than `begun_before` ago, that no
    /// attempt in this process is running any more (`running`): the attempt was cancelled (its
    /// job torn down mid-flight) after it may have reached WhatsApp, so, like an abandoned send,
    /// it fails visibly instead of waiting forever or going twice. Returns how many.
    #[tracing::instrument(skip(self, running))]
    pub async fn fail_dropped_sends(
        &self,
        worker: &str,
        running: &std::collections::HashSet<i64>,
        begun_before: Timestamp,
    ) -> Result<u64> {
        let candidates: Vec<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "SELECT o.id FROM outbound_messages o JOIN device_leases l ON l.device_id = o.device_id \
             WHERE o.status = 'sending' AND l.holder = $1 AND o.send_token = l.token AND o.updated_at < $2")
            .bind(worker)
            .bind(begun_before)
            .fetch_all(pool)
            .await)?;
        let now = Timestamp::now();
        let mut failed = 0;
        for (id,) in candidates.into_iter().filter(|(id,)| !running.contains(id)) {
            failed += on_db!(self, pool => sqlx::query(
                "UPDATE outbound_messages SET status = 'failed', updated_at = $2, \
                   reason = 'outcome unknown: its attempt was cancelled before WhatsApp confirmed it; \
                             not sent again, to avoid a duplicate' \
                 WHERE id = $1 AND status = 'sending' AND updated_at < $3")
                .bind(id)
                .bind(now)
                .bind(begun_before)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(failed)
    }

    /// Begins a send as the device's holder: `queued → sending` under the lease's token. `None`
    /// when it is not queued (already begun, done, or not this device's).
    #[tracing::instrument(skip(self))]
    pub async fn begin_send(&self, fence: Fence, id: i64) -> Result<Option<SendWork>> {
        let now = Timestamp::now();
        Ok(fenced!(self, fence, tx => {
            sqlx::query_as::<_, SendWork>(
                "UPDATE outbound_messages SET status = 'sending', attempts = attempts + 1, send_token = $3, \
                 updated_at = $4 WHERE id = $1 AND device_id = $2 AND status = 'queued' \
                 RETURNING id, recipient, kind, body, image")
                .bind(id)
                .bind(fence.device)
                .bind(fence.token)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
        }))
    }

    /// Records that WhatsApp accepted a send, and adds it to its chat. Not fenced: the send
    /// happened, whoever holds the device now.
    #[tracing::instrument(skip(self))]
    pub async fn finish_send(&self, id: i64, wa_message_id: &str) -> Result<()> {
        let now = Timestamp::now();
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<(DeviceId, String, String, Option<String>)> = sqlx::query_as(
                "UPDATE outbound_messages SET status = 'sent', wa_message_id = $2, sent_at = $3, updated_at = $3, \
                 reason = NULL WHERE id = $1 AND status = 'sending' RETURNING device_id, recipient, kind, body")
                .bind(id)
                .bind(wa_message_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some((device, recipient, kind, body)) = row {
                let (own,): (Option<String>,) = sqlx::query_as("SELECT jid FROM devices WHERE id = $1")
                    .bind(device)
                    .fetch_one(&mut *tx)
                    .await?;
                let message = IncomingMessage {
                    id: wa_message_id.to_owned(),
                    chat: Jid(recipient),
                    sender: Jid(own.unwrap_or_default()),
                    from_me: true,
                    push_name: None,
                    kind: if kind == "image" { MessageKind::Image } else { MessageKind::Text },
                    text: body,
                    sent_at: now,
                };
                insert_messages!(tx, &[(device, &message)], now);
            }
            tx.commit().await?;
            Ok::<_, Error>(())
        })
    }

    /// Puts a begun send back in the queue: the link failed before anything reached WhatsApp.
    #[tracing::instrument(skip(self))]
    pub async fn requeue_send(&self, id: i64, reason: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE outbound_messages SET status = 'queued', reason = $2, updated_at = $3 \
             WHERE id = $1 AND status = 'sending'")
            .bind(id)
            .bind(reason)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Marks a send failed with `reason` (from `queued` or `sending`).
    #[tracing::instrument(skip(self))]
    pub async fn fail_send(&self, id: i64, reason: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE outbound_messages SET status = 'failed', reason = $2, updated_at = $3 \
             WHERE id = $1 AND status IN ('queued', 'sending')")
            .bind(id)
            .bind(reason)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}
