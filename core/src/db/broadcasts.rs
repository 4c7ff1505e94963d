//! Broadcasts: one message from one device to a pasted list of numbers.
//!
//! Like campaign dispatch, every step is idempotent. The broadcast row is keyed by the request's
//! idempotency key, each recipient by `(broadcast, phone)`, and each send is recorded under
//! `broadcast:{id}:{phone}` through [`Db::record_send`], so a retried request (or one that died
//! half-way) finds what was recorded and sends nobody twice. The sends join the device's queue
//! like any other and are paced by its holder.

use crate::link::{Attachment, Jid};
use crate::types::{DeviceId, PhoneNumber, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::campaigns::StatusCounts;
use super::on_db;
use super::outbound::{NewSend, OutboundMessage};

/// A broadcast to record.
#[derive(Clone, Debug)]
pub struct NewBroadcast {
    /// Whose it is.
    pub user: UserId,
    /// The device it goes out from.
    pub device: DeviceId,
    /// The request's key: the same key finds the same broadcast.
    pub idempotency_key: String,
    /// Text, or the image's caption.
    pub message: Option<String>,
    /// A compressed JPEG, when it is an image broadcast.
    pub image: Option<Vec<u8>>,
    /// The recipients, already parsed and without repeats.
    pub recipients: Vec<PhoneNumber>,
    /// How many pasted lines repeated an earlier number and were dropped.
    pub duplicates: i64,
}

/// A broadcast and where its recipients stand.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Broadcast {
    /// The broadcast's id.
    pub id: i64,
    /// The device it goes out from.
    pub device_id: DeviceId,
    /// The request's idempotency key.
    pub idempotency_key: String,
    /// Text, or the image's caption.
    pub message: Option<String>,
    /// Whether an image goes with it.
    pub has_image: bool,
    /// Pasted lines dropped as repeats of an earlier number.
    pub duplicates: i64,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// Its recipients by status: queued (not yet accepted by WhatsApp), sent, delivered, read,
    /// replied (wrote back after it), failed.
    pub progress: StatusCounts,
}

type BroadcastRow = (i64, DeviceId, String, Option<String>, bool, i64, Timestamp);

/// The columns of a [`BroadcastRow`].
macro_rules! columns {
    () => {
        "id, device_id, idempotency_key, message, has_image, duplicates, created_at"
    };
}

/// The key a broadcast's send to `phone` is recorded under.
pub fn broadcast_send_key(broadcast: i64, phone: &PhoneNumber) -> String {
    format!("broadcast:{broadcast}:{phone}")
}

impl Db {
    /// Records a broadcast and a send for each recipient, or finds the broadcast already recorded
    /// under the same key (then `false`; a key reused for another message is a conflict). Returns
    /// the broadcast, whether it is new, and the sends recorded now (to be queued).
    #[tracing::instrument(skip(self, new), fields(user = %new.user, device = %new.device, key = %new.idempotency_key))]
    pub async fn record_broadcast(&self, new: &NewBroadcast) -> Result<(Broadcast, bool, Vec<OutboundMessage>)> {
        let has_image = new.image.is_some();
        let inserted: Option<BroadcastRow> = on_db!(self, pool => sqlx::query_as(concat!(
            "INSERT INTO broadcasts (user_id, device_id, idempotency_key, message, has_image, duplicates, created_at) \
             SELECT user_id, id, $3, $4, $5, $6, $7 FROM devices WHERE id = $2 AND user_id = $1 \
             ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING ", columns!()))
            .bind(new.user)
            .bind(new.device)
            .bind(&new.idempotency_key)
            .bind(new.message.as_deref())
            .bind(has_image)
            .bind(new.duplicates)
            .bind(Timestamp::now())
            .fetch_optional(pool)
            .await)?;
        let (row, created) = match inserted {
            Some(row) => (row, true),
            None => {
                let row: BroadcastRow = on_db!(self, pool => sqlx::query_as(concat!(
                    "SELECT ", columns!(), " FROM broadcasts WHERE user_id = $1 AND idempotency_key = $2"))
                    .bind(new.user)
                    .bind(&new.idempotency_key)
                    .fetch_optional(pool)
                    .await)?
                // Neither inserted nor found: the device is not the user's.
                .ok_or(Error::NotFound)?;
                if row.1 != new.device || row.3 != new.message || row.4 != has_image {
                    return Err(Error::Conflict(format!(
                        "Idempotency-Key `{}` was already used for a different broadcast ({}); use a new key",
                        new.idempotency_key, row.0
                    )));
                }
                (row, false)
            }
        };
        let id = row.0;
        let mut queued = Vec::new();
        for phone in &new.recipients {
            let send = NewSend {
                user: new.user,
                device: new.device,
                idempotency_key: broadcast_send_key(id, phone),
                to: Jid::for_phone(phone),
                body: new.message.clone(),
                media: new.image.clone().map(Attachment::jpeg),
                structured: None,
                forwarded: false,
            };
            let (outbound, fresh) = self.record_send(&send).await?;
            on_db!(self, pool => sqlx::query(
                "INSERT INTO broadcast_recipients (broadcast_id, phone, outbound_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (broadcast_id, phone) DO NOTHING")
                .bind(id)
                .bind(phone)
                .bind(outbound.id)
                .execute(pool)
                .await
                .map(drop))?;
            if fresh {
                queued.push(outbound);
            }
        }
        Ok((self.with_progress(row).await?, created, queued))
    }

    /// One of the user's broadcasts from `device`, with its progress.
    #[tracing::instrument(skip(self))]
    pub async fn broadcast(&self, user: UserId, device: DeviceId, id: i64) -> Result<Broadcast> {
        let row: BroadcastRow = on_db!(self, pool => sqlx::query_as(concat!(
            "SELECT ", columns!(), " FROM broadcasts WHERE id = $1 AND device_id = $2 AND user_id = $3"))
            .bind(id)
            .bind(device)
            .bind(user)
            .fetch_one(pool)
            .await)?;
        self.with_progress(row).await
    }

    /// The device's latest `limit` broadcasts, newest first, with their progress.
    /// [`Error::NotFound`] if the device is not the user's.
    #[tracing::instrument(skip(self))]
    pub async fn broadcasts(&self, user: UserId, device: DeviceId, limit: i64) -> Result<Vec<Broadcast>> {
        self.device(user, device).await?;
        let rows: Vec<BroadcastRow> = on_db!(self, pool => sqlx::query_as(concat!(
            "SELECT ", columns!(), " FROM broadcasts WHERE device_id = $1 AND user_id = $2 ORDER BY id DESC LIMIT $3"))
            .bind(device)
            .bind(user)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.with_progress(row).await?);
        }
        Ok(out)
    }

    /// Counts a broadcast's recipients by the status of their sends (as campaign reports do).
    async fn with_progress(&self, row: BroadcastRow) -> Result<Broadcast> {
        let counts: Vec<(String, i64)> = on_db!(self, pool => sqlx::query_as(
            "SELECT s.st, COUNT(*) FROM (SELECT CASE \
               WHEN o.status IN ('queued', 'sending') THEN 'queued' \
               WHEN o.status = 'failed' THEN 'failed' \
               WHEN EXISTS (SELECT 1 FROM messages m WHERE m.device_id = o.device_id AND m.chat_jid = o.recipient \
                            AND m.from_me = FALSE AND m.history = FALSE AND m.sent_at + 1000 > o.sent_at) THEN 'replied' \
               ELSE o.status END AS st \
             FROM broadcast_recipients r JOIN outbound_messages o ON o.id = r.outbound_id \
             WHERE r.broadcast_id = $1) s GROUP BY s.st")
            .bind(row.0)
            .fetch_all(pool)
            .await)?;
        let mut progress = StatusCounts::default();
        for (status, n) in counts {
            progress.add(&status, n);
        }
        let waiting = if progress.queued > 0 {
            self.device_waiting(row.1, Timestamp::now()).await?
        } else {
            None
        };
        Ok(Broadcast {
            id: row.0,
            device_id: row.1,
            idempotency_key: row.2,
            message: row.3,
            has_image: row.4,
            duplicates: row.5,
            created_at: row.6,
            progress: progress.finish().waiting(waiting),
        })
    }
}
