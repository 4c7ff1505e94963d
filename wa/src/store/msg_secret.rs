//! Per-message secrets: the key WhatsApp attaches to a message so that add-ons to it (poll votes,
//! reactions, edits) can be decrypted later. Sealed at rest like the other keys. wafleet tells the
//! client not to keep them for what it sends (nothing it stores needs them), so this table stays
//! small; the trait is the client's and every method works.

use async_trait::async_trait;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::{
    MsgSecretEntry, MsgSecretStore, merge_msg_secret_expiry, merge_msg_secret_message_ts,
};

use wafleet_core::keys::RowKey;

use super::sealed::MSG_SECRET;
use super::{WaStore, db_error, on_db};

#[async_trait]
impl MsgSecretStore for WaStore {
    /// Upserts secrets; on a repeat, the later deadline and the known parent time win (the merge
    /// rules are the client's own, applied here after reading the row).
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, count = entries.len()))]
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let _writing = self.writable().await?;
        let select = "SELECT expires_at, message_ts FROM wa_msg_secrets \
                      WHERE device_id = $1 AND chat_jid = $2 AND sender_jid = $3 AND message_id = $4";
        let upsert = "INSERT INTO wa_msg_secrets \
                      (device_id, chat_jid, sender_jid, message_id, secret, expires_at, message_ts) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7) \
                      ON CONFLICT (device_id, chat_jid, sender_jid, message_id) DO UPDATE \
                      SET secret = excluded.secret, expires_at = excluded.expires_at, message_ts = excluded.message_ts";
        let count = entries.len();
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning to store message secrets"))?;
            for e in &entries {
                let key = [RowKey::Text(&e.chat), RowKey::Text(&e.sender), RowKey::Text(&e.msg_id)];
                let existing: Option<(i64, i64)> = sqlx::query_as(select)
                    .bind(self.device).bind(&*e.chat).bind(&*e.sender).bind(&*e.msg_id)
                    .fetch_optional(&mut *tx).await
                    .map_err(db_error("reading a message secret"))?;
                let (expires_at, message_ts) = match existing {
                    Some((expires, ts)) => (
                        merge_msg_secret_expiry(expires, e.expires_at),
                        merge_msg_secret_message_ts(ts, e.message_ts),
                    ),
                    None => (e.expires_at, e.message_ts),
                };
                sqlx::query(upsert)
                    .bind(self.device).bind(&*e.chat).bind(&*e.sender).bind(&*e.msg_id)
                    .bind(self.seal(&MSG_SECRET, &key, &e.secret)).bind(expires_at).bind(message_ts)
                    .execute(&mut *tx).await
                    .map_err(db_error("storing a message secret"))?;
            }
            tx.commit().await.map_err(db_error("committing message secrets"))
        })?;
        Ok(count)
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_msg_secret(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_msg_secret_with_ts(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<(Vec<u8>, i64)>> {
        let sql = "SELECT secret, message_ts FROM wa_msg_secrets \
                   WHERE device_id = $1 AND chat_jid = $2 AND sender_jid = $3 AND message_id = $4";
        let row: Option<(Vec<u8>, i64)> = on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device).bind(chat).bind(sender).bind(msg_id)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a message secret"))?;
        let key = [RowKey::Text(chat), RowKey::Text(sender), RowKey::Text(msg_id)];
        row.map(|(secret, ts)| Ok((self.open(&MSG_SECRET, &key, &secret)?, ts)))
            .transpose()
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_msg_secrets WHERE device_id = $1 AND expires_at <> 0 AND expires_at <= $2";
        let deleted = on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(cutoff_timestamp)
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(db_error("deleting expired message secrets"))?;
        Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
    }
}
