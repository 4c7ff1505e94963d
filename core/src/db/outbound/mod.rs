//! Outbound sends: recorded before anything else, moved along by the worker holding the device.
//!
//! A send is performed at most once per idempotency key: `record → fence → send → record`. The
//! database is the only list of what is waiting: the holder takes the oldest queued send of a
//! device that is due ([`holder`]), moves it from `queued` to `sending` under its lease's fencing
//! token together with the WhatsApp message id it will go out under, sends, then records `sent`.
//! A worker that dies between the two records leaves `sending` behind with that id, so WhatsApp's
//! receipts for it still resolve it; one with no trace after a bounded wait fails with that reason
//! rather than being sent twice.

pub(crate) mod holder;
mod waiting;

use crate::link::{Attachment, Jid, Structured};
use crate::types::text_enum::text_enum;
use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::on_db;

pub use holder::{NextSend, SendWork, Settled};
pub use waiting::Waiting;

text_enum! {
    /// Where a send stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum OutboundStatus ("send status") {
        /// Waiting for the device's holder.
        Queued = "queued",
        /// Handed to WhatsApp; not yet confirmed.
        Sending = "sending",
        /// WhatsApp accepted it.
        Sent = "sent",
        /// Reached the recipient's phone.
        Delivered = "delivered",
        /// The recipient opened it.
        Read = "read",
        /// It was not sent, or whether it was is unknown; `reason` says which.
        Failed = "failed",
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
    /// `text`, or the kind of file it carries: `image`, `video`, `audio`, `document`, `sticker`.
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
    /// Why a queued send has not gone yet (its device's pace, daily cap, warm-up, a pause, a
    /// retry after a dropped connection); `None` once it goes, or while nothing holds it back.
    pub waiting_reason: Option<String>,
    /// When a waiting send is expected to move.
    pub next_attempt_at: Option<Timestamp>,
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
    Option<String>,
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
            // Only the texts above are ever stored; anything else reads as failed.
            status: r.5.parse().unwrap_or(OutboundStatus::Failed),
            reason: r.6,
            attempts: r.7,
            wa_message_id: r.8,
            created_at: r.9,
            sent_at: r.10,
            waiting_reason: r.11,
            next_attempt_at: r.12,
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
    /// Text, or the file's caption.
    pub body: Option<String>,
    /// The file it carries, if any.
    pub media: Option<Attachment>,
    /// Or the contact card, location, link or poll it is (`body` then holds its summary).
    pub structured: Option<Structured>,
    /// Goes out marked "Forwarded".
    pub forwarded: bool,
}

impl Db {
    /// Records a send, or returns the one already recorded under the same key (then `false`).
    /// A key reused for a different send is a conflict.
    #[tracing::instrument(skip(self, new), fields(user = %new.user, device = %new.device, key = %new.idempotency_key))]
    pub async fn record_send(&self, new: &NewSend) -> Result<(OutboundMessage, bool)> {
        let now = Timestamp::now();
        let kind = match (&new.media, &new.structured) {
            (Some(media), _) => media.kind.as_str(),
            (None, Some(structured)) => structured.kind(),
            (None, None) => "text",
        };
        let media = new.media.as_ref();
        let payload = new
            .structured
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("a structured message serialises"));
        let inserted: Option<OutboundRow> = on_db!(self, pool => sqlx::query_as(concat!(
            "INSERT INTO outbound_messages (user_id, device_id, idempotency_key, recipient, kind, body, image, \
             media_mime, file_name, payload, forwarded, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $10, $11, $12, $8, $8) \
             ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING ",
            "id, device_id, idempotency_key, recipient, kind, status, reason, attempts, wa_message_id, created_at, sent_at, \
             waiting_reason, next_attempt_at"))
            .bind(new.user)
            .bind(new.device)
            .bind(&new.idempotency_key)
            .bind(&new.to.0)
            .bind(kind)
            .bind(new.body.as_deref())
            .bind(media.map(|m| m.bytes.as_slice()))
            .bind(now)
            .bind(media.map(|m| m.mime.as_str()))
            .bind(media.and_then(|m| m.file_name.as_deref()))
            .bind(payload.as_deref())
            .bind(new.forwarded)
            .fetch_optional(pool)
            .await)?;
        if let Some(row) = inserted {
            return Ok((row.into(), true));
        }
        let replay: ReplayRow = on_db!(self, pool => sqlx::query_as(
            "SELECT id, device_id, idempotency_key, recipient, kind, status, reason, attempts, wa_message_id, \
             created_at, sent_at, waiting_reason, next_attempt_at, body FROM outbound_messages \
             WHERE user_id = $1 AND idempotency_key = $2")
            .bind(new.user)
            .bind(&new.idempotency_key)
            .fetch_one(pool)
            .await)?;
        let r = replay;
        let (existing, body): (OutboundRow, _) = (
            (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12),
            r.13,
        );
        let same = existing.1 == new.device && existing.3 == new.to.0 && existing.4 == kind && body == new.body;
        if !same {
            return Err(Error::Conflict(format!(
                "Idempotency-Key `{}` was already used for a different send (message {}); use a new key",
                new.idempotency_key, existing.0
            )));
        }
        Ok((existing.into(), false))
    }

    /// Records a send that dispatch planned (a campaign's recipient, a sequence's step) under its
    /// key, or adopts the one already there when it goes from the same device to the same number
    /// (a round that recorded it and died before noting it; its text may have been rendered
    /// differently). Answers its id, or `Err(reason)` when the key holds a different send (a
    /// user's own key clashing), for the caller to fail its row visibly rather than skip it.
    pub async fn record_or_adopt(&self, new: &NewSend) -> Result<std::result::Result<i64, String>> {
        match self.record_send(new).await {
            Ok((outbound, _)) => Ok(Ok(outbound.id)),
            Err(Error::Conflict(reason)) => Ok(match self.send_under_key(new.user, &new.idempotency_key).await? {
                Some((id, on, to)) if on == new.device && to == new.to.0 => Ok(id),
                _ => Err(reason),
            }),
            Err(err) => Err(err),
        }
    }

    /// The send `user` recorded under `key`, if any: its id, device and recipient.
    #[tracing::instrument(skip(self))]
    pub async fn send_under_key(&self, user: UserId, key: &str) -> Result<Option<(i64, DeviceId, String)>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "SELECT id, device_id, recipient FROM outbound_messages WHERE user_id = $1 AND idempotency_key = $2")
            .bind(user)
            .bind(key)
            .fetch_optional(pool)
            .await)?)
    }

    /// Whether `user` has recorded a send under `key` (a retry, when so).
    #[tracing::instrument(skip(self))]
    pub async fn send_key_used(&self, user: UserId, key: &str) -> Result<bool> {
        let found: Option<(i64,)> = on_db!(self, pool => sqlx::query_as(
            "SELECT id FROM outbound_messages WHERE user_id = $1 AND idempotency_key = $2")
            .bind(user)
            .bind(key)
            .fetch_optional(pool)
            .await)?;
        Ok(found.is_some())
    }

    /// One of `user`'s sends.
    #[tracing::instrument(skip(self))]
    pub async fn outbound_message(&self, user: UserId, id: i64) -> Result<OutboundMessage> {
        let row: OutboundRow = on_db!(self, pool => sqlx::query_as(concat!("SELECT ",
            "id, device_id, idempotency_key, recipient, kind, status, reason, attempts, wa_message_id, created_at, sent_at, \
             waiting_reason, next_attempt_at",
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
}
