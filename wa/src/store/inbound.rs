//! Two short-lived buffers of messages: what this device sent (kept a few hours, so a recipient's
//! retry receipt can be answered with the same message), and the pending inbound buffer.
//!
//! The pending inbound buffer is what makes "acknowledged only once stored" hold for the real
//! client: a decrypted message is written here before the client's Signal state moves on, then
//! handed to wafleet's batch writer; only when that batch has committed does the client tell
//! WhatsApp and delete the row. A crash in between leaves the row: WhatsApp delivers the message
//! again, the client cannot decrypt it twice (its ratchet moved), and replays it from here, on
//! whichever worker holds the device then. Replaces are idempotent, so a message buffered twice is
//! one row.

use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::{PendingInboundKey, PendingInboundRow};

use super::{WaStore, db_error, on_db};

/// Seconds since the Unix epoch: the client's times in these tables are seconds.
fn unix_secs() -> i64 {
    wafleet_core::types::Timestamp::now().millis() / 1000
}

impl WaStore {
    /// Keeps a sent message's payload for retry receipts.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    pub(crate) async fn keep_sent_message(&self, chat: &str, id: &str, payload: &[u8]) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "INSERT INTO wa_sent_messages (device_id, chat_jid, message_id, payload, created_at) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, chat_jid, message_id) DO UPDATE \
                   SET payload = excluded.payload, created_at = excluded.created_at";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(chat).bind(id).bind(payload).bind(unix_secs())
            .execute(pool).await.map(drop))
        .map_err(db_error("keeping a sent message"))
    }

    /// Reads and forgets a kept message in one statement, so two retry receipts cannot both
    /// resend it.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    pub(crate) async fn take_kept_message(&self, chat: &str, id: &str) -> Result<Option<Vec<u8>>> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_sent_messages WHERE device_id = $1 AND chat_jid = $2 AND message_id = $3 \
                   RETURNING payload";
        on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(chat).bind(id)
            .fetch_optional(pool).await)
        .map_err(db_error("taking a kept message"))
    }

    /// Forgets kept messages older than `cutoff` (Unix seconds); returns how many.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    pub(crate) async fn delete_kept_messages_before(&self, cutoff: i64) -> Result<u32> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_sent_messages WHERE device_id = $1 AND created_at < $2";
        let deleted = on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(cutoff)
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(db_error("forgetting old kept messages"))?;
        Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
    }

    /// Buffers decrypted incoming messages until wafleet has stored them: one transaction, each
    /// row replacing any earlier copy of the same message.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, count = rows.len()))]
    pub(crate) async fn buffer_inbound(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "INSERT INTO wa_pending_inbound (device_id, chat_jid, sender_jid, message_id, message, inserted_at) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, chat_jid, sender_jid, message_id) \
                   DO UPDATE SET message = excluded.message, inserted_at = excluded.inserted_at";
        let now = unix_secs();
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning to buffer incoming messages"))?;
            for row in rows {
                sqlx::query(sql)
                    .bind(self.device).bind(row.chat).bind(row.sender).bind(row.id).bind(row.message).bind(now)
                    .execute(&mut *tx).await
                    .map_err(db_error("buffering an incoming message"))?;
            }
            tx.commit().await.map_err(db_error("committing buffered incoming messages"))
        })
    }

    /// A buffered incoming message.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    pub(crate) async fn buffered_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT message FROM wa_pending_inbound \
                   WHERE device_id = $1 AND chat_jid = $2 AND sender_jid = $3 AND message_id = $4";
        on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(chat).bind(sender).bind(id)
            .fetch_optional(pool).await)
        .map_err(db_error("reading a buffered incoming message"))
    }

    /// Forgets buffered messages wafleet has stored. Allowed after the session ended too: these
    /// rows are this session's own, and stored is stored.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, count = keys.len()))]
    pub(crate) async fn unbuffer_inbound(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        let sql = "DELETE FROM wa_pending_inbound \
                   WHERE device_id = $1 AND chat_jid = $2 AND sender_jid = $3 AND message_id = $4";
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning to forget buffered messages"))?;
            for key in keys {
                sqlx::query(sql)
                    .bind(self.device).bind(key.chat).bind(key.sender).bind(key.id)
                    .execute(&mut *tx).await
                    .map_err(db_error("forgetting a buffered message"))?;
            }
            tx.commit().await.map_err(db_error("committing forgotten buffered messages"))
        })
    }

    /// Forgets buffered messages older than `cutoff` (Unix seconds; the client sweeps a week):
    /// WhatsApp no longer redelivers them. Returns how many.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    pub(crate) async fn unbuffer_inbound_before(&self, cutoff: i64) -> Result<u32> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_pending_inbound WHERE device_id = $1 AND inserted_at < $2";
        let deleted = on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(cutoff)
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(db_error("forgetting old buffered messages"))?;
        Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
    }
}
