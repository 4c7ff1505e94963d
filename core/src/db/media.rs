//! Files of received messages: recorded with their messages at ingest, fetched by the holder of
//! the device's session ([`Db::due_media`] → [`Db::media_stored`] / [`Db::media_failed`]), read
//! by their owner ([`Db::message_media`]).

use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Result};

use super::on_db;

/// Attempts at fetching a file before it is given up as failed.
pub const MEDIA_ATTEMPTS: i32 = 5;

/// A file due to be fetched by the holder of its device.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DueMedia {
    /// The device that received it.
    pub device_id: DeviceId,
    /// WhatsApp's id of its message.
    pub message_id: String,
    /// MIME type.
    pub mime: String,
    /// Size the sender announced.
    pub size: i64,
    /// The file's name (documents).
    pub file_name: Option<String>,
    /// The link's description of where it is.
    pub locator: String,
    /// Attempts so far.
    pub attempts: i32,
}

impl DueMedia {
    /// The media as its link described it, to hand back to the link.
    pub fn as_incoming(&self) -> crate::link::IncomingMedia {
        crate::link::IncomingMedia {
            mime: self.mime.clone(),
            size: self.size.unsigned_abs(),
            file_name: self.file_name.clone(),
            locator: self.locator.clone(),
        }
    }
}

/// The file of a message as its owner sees it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MessageMedia {
    /// The device that received it.
    pub device_id: DeviceId,
    /// WhatsApp's id of its message.
    pub message_id: String,
    /// The message's kind (`image`, `video`, `audio`, `document`, `sticker`).
    pub kind: String,
    /// MIME type.
    pub mime: String,
    /// Size the sender announced.
    pub size: i64,
    /// The file's name (documents).
    pub file_name: Option<String>,
    /// `pending`, `stored`, `failed` or `expired`.
    pub state: String,
    /// Why it was not kept (`failed`).
    pub error: Option<String>,
    /// Where it is kept (`stored`).
    pub stored_key: Option<String>,
    /// When it was kept.
    pub stored_at: Option<Timestamp>,
}

/// Records the files of newly stored messages (`$rows`, replays already left out) in the
/// batch's transaction, so a file is recorded exactly when its message is.
macro_rules! insert_media_in {
    ($tx:expr, $rows:expr, $now:expr) => {{
        let rows: Vec<(
            $crate::types::DeviceId,
            &$crate::link::IncomingMessage,
            &$crate::link::IncomingMedia,
        )> = $rows
            .iter()
            .filter_map(|(device, m)| m.media.as_ref().map(|media| (*device, *m, media)))
            .collect();
        for chunk in rows.chunks($crate::db::chats::ROWS_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO message_media (device_id, message_id, mime, size, file_name, locator, \
                 next_attempt_at, created_at) ",
            );
            insert.push_values(chunk, |mut row, (device, m, media)| {
                row.push_bind(*device)
                    .push_bind(&m.id)
                    .push_bind(&media.mime)
                    .push_bind(i64::try_from(media.size).unwrap_or(i64::MAX))
                    .push_bind(media.file_name.as_deref())
                    .push_bind(&media.locator)
                    .push_bind($now)
                    .push_bind($now);
            });
            insert.push(" ON CONFLICT (device_id, message_id) DO NOTHING");
            insert.build().execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use insert_media_in;

impl Db {
    /// Up to `limit` files due to be fetched (as of `now`) of devices whose lease `worker`
    /// holds, oldest due first.
    #[tracing::instrument(skip(self))]
    pub async fn due_media(&self, worker: &str, now: Timestamp, limit: i64) -> Result<Vec<DueMedia>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "SELECT mm.device_id, mm.message_id, mm.mime, mm.size, mm.file_name, mm.locator, mm.attempts \
             FROM message_media mm JOIN device_leases l ON l.device_id = mm.device_id \
             WHERE mm.state = 'pending' AND mm.next_attempt_at <= $1 AND l.holder = $2 \
             ORDER BY mm.next_attempt_at LIMIT $3")
            .bind(now)
            .bind(worker)
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }

    /// The file of message `message_id` of `device` is kept under `key`. `false` when nothing
    /// waited for it any more (the message was deleted meanwhile): the file is then nobody's.
    #[tracing::instrument(skip(self))]
    pub async fn media_stored(&self, device: DeviceId, message_id: &str, key: &str, now: Timestamp) -> Result<bool> {
        Ok(on_db!(self, pool => sqlx::query(
            "UPDATE message_media SET state = 'stored', stored_key = $3, stored_at = $4, error = NULL, \
             attempts = attempts + 1 WHERE device_id = $1 AND message_id = $2 AND state = 'pending'")
            .bind(device)
            .bind(message_id)
            .bind(key)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?
            == 1)
    }

    /// Fetching the file of message `message_id` of `device` failed with `error`: it is tried
    /// again at `retry_at`, or (`None`) given up.
    #[tracing::instrument(skip(self))]
    pub async fn media_failed(
        &self,
        device: DeviceId,
        message_id: &str,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<()> {
        let (state, at) = match retry_at {
            Some(at) => ("pending", at),
            None => ("failed", Timestamp::now()),
        };
        on_db!(self, pool => sqlx::query(
            "UPDATE message_media SET state = $3, error = $4, next_attempt_at = $5, attempts = attempts + 1 \
             WHERE device_id = $1 AND message_id = $2 AND state = 'pending'")
            .bind(device)
            .bind(message_id)
            .bind(state)
            .bind(error)
            .bind(at)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Removes from `store` up to `limit` kept files of messages of `device` that reached wafleet
    /// before `cutoff`, and marks them `expired`; returns how many. The files go first: a run cut
    /// short between the two leaves a row whose file is already gone (removed again, harmlessly,
    /// by the next run), never a file no row points at.
    #[tracing::instrument(skip(self, store))]
    pub async fn expire_media_before(
        &self,
        device: DeviceId,
        cutoff: Timestamp,
        limit: i64,
        store: &crate::media_store::MediaStore,
    ) -> Result<u64> {
        let kept: Vec<(String, String)> = on_db!(self, pool => sqlx::query_as(
            "SELECT mm.message_id, mm.stored_key FROM message_media mm \
             JOIN messages m ON m.device_id = mm.device_id AND m.id = mm.message_id \
             WHERE mm.device_id = $1 AND m.received_at < $2 AND mm.stored_key IS NOT NULL LIMIT $3")
            .bind(device)
            .bind(cutoff)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        for (_, key) in &kept {
            store.delete(key).await?;
        }
        if kept.is_empty() {
            return Ok(0);
        }
        on_db!(self, pool => {
            let mut expire = sqlx::QueryBuilder::new(
                "UPDATE message_media SET state = 'expired', stored_key = NULL WHERE device_id = ",
            );
            expire.push_bind(device).push(" AND message_id IN (");
            let mut ids = expire.separated(", ");
            for (id, _) in &kept {
                ids.push_bind(id);
            }
            expire.push(")");
            expire.build().execute(pool).await.map(drop)
        })?;
        Ok(kept.len() as u64)
    }

    /// The file of message `message_id` of `user`'s device `device`; [`crate::Error::NotFound`]
    /// when the message carries none, or is not theirs.
    #[tracing::instrument(skip(self))]
    pub async fn message_media(&self, user: UserId, device: DeviceId, message_id: &str) -> Result<MessageMedia> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "SELECT mm.device_id, mm.message_id, m.kind, mm.mime, mm.size, mm.file_name, mm.state, mm.error, \
             mm.stored_key, mm.stored_at \
             FROM message_media mm JOIN messages m ON m.device_id = mm.device_id AND m.id = mm.message_id \
             JOIN devices d ON d.id = mm.device_id \
             WHERE mm.device_id = $1 AND d.user_id = $2 AND mm.message_id = $3")
            .bind(device)
            .bind(user)
            .bind(message_id)
            .fetch_one(pool)
            .await)?)
    }
}
