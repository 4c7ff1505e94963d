//! WhatsApp Web protocol state: which group devices hold our sender key, LID mappings, base keys,
//! device lists, trusted-contact tokens ([`super::tc_tokens`]), sent messages kept for retries and
//! the pending inbound buffer ([`super::inbound`]).

use async_trait::async_trait;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::{
    DeviceInfo, DeviceListRecord, LidPnMappingEntry, PendingInboundKey, PendingInboundRow, ProtocolStore, TcTokenEntry,
};

use wafleet_core::keys::RowKey;

use super::sealed::BASE_KEY;
use super::{WaStore, db_error, on_db, serde_error};

/// The columns of a LID mapping, in [`LidRow`] order.
macro_rules! lid_columns {
    () => {
        "lid, phone_number, created_at, updated_at, learning_source"
    };
}
type LidRow = (String, String, i64, i64, String);

fn lid_entry((lid, phone_number, created_at, updated_at, learning_source): LidRow) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid,
        phone_number,
        created_at,
        updated_at,
        learning_source,
    }
}

#[async_trait]
impl ProtocolStore for WaStore {
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        let sql = concat!(
            "SELECT ",
            lid_columns!(),
            " FROM wa_lid_mappings WHERE device_id = $1 AND lid = $2"
        );
        let row: Option<LidRow> = on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device).bind(lid)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a LID mapping"))?;
        Ok(row.map(lid_entry))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        // A number can have had several LIDs; the most recently confirmed one wins.
        let sql = concat!(
            "SELECT ",
            lid_columns!(),
            " FROM wa_lid_mappings WHERE device_id = $1 AND phone_number = $2 \
             ORDER BY updated_at DESC, lid DESC LIMIT 1"
        );
        let row: Option<LidRow> = on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device).bind(phone)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a LID mapping by phone"))?;
        Ok(row.map(lid_entry))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        let _writing = self.writable().await?;
        // `created_at` keeps the first time the mapping was learned.
        let sql = concat!(
            "INSERT INTO wa_lid_mappings (device_id, ",
            lid_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, lid) DO UPDATE \
             SET phone_number = excluded.phone_number, updated_at = excluded.updated_at, \
                 learning_source = excluded.learning_source"
        );
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(&entry.lid).bind(&entry.phone_number)
            .bind(entry.created_at).bind(entry.updated_at).bind(&entry.learning_source)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing a LID mapping"))?;
        // The account's own LID, learned at pairing, names no chat.
        if entry.learning_source != "pairing" {
            self.mapping_learned(&entry.lid, &entry.phone_number);
        }
        Ok(())
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        let sql = concat!(
            "SELECT ",
            lid_columns!(),
            " FROM wa_lid_mappings WHERE device_id = $1 ORDER BY lid"
        );
        let rows: Vec<LidRow> = on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device)
            .fetch_all(pool).await)
        .map_err(db_error("loading all LID mappings"))?;
        Ok(rows.into_iter().map(lid_entry).collect())
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        let _writing = self.writable().await?;
        let base_key = self.seal(&BASE_KEY, &[RowKey::Text(address), RowKey::Text(message_id)], base_key);
        let sql = "INSERT INTO wa_base_keys (device_id, address, message_id, base_key) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (device_id, address, message_id) DO UPDATE SET base_key = excluded.base_key";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address).bind(message_id).bind(base_key)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing a base key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn has_same_base_key(&self, address: &str, message_id: &str, current_base_key: &[u8]) -> Result<bool> {
        let sql = "SELECT base_key FROM wa_base_keys WHERE device_id = $1 AND address = $2 AND message_id = $3";
        let saved: Option<Vec<u8>> = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(address).bind(message_id)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a base key"))?;
        let saved = self.open_optional(&BASE_KEY, &[RowKey::Text(address), RowKey::Text(message_id)], saved)?;
        Ok(saved.is_some_and(|saved| saved == current_base_key))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_base_keys WHERE device_id = $1 AND address = $2 AND message_id = $3";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address).bind(message_id)
            .execute(pool).await.map(drop))
        .map_err(db_error("deleting a base key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        let _writing = self.writable().await?;
        let devices = serde_json::to_string(&record.devices).map_err(serde_error("encoding a device list"))?;
        let sql = "INSERT INTO wa_device_lists (device_id, user_jid, devices, timestamp, phash, raw_id) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, user_jid) DO UPDATE \
                   SET devices = excluded.devices, timestamp = excluded.timestamp, phash = excluded.phash, \
                       raw_id = excluded.raw_id";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(&record.user).bind(devices).bind(record.timestamp).bind(&record.phash)
            .bind(record.raw_id.map(i64::from))
            .execute(pool).await.map(drop))
        .map_err(db_error("storing a device list"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        let sql = "SELECT devices, timestamp, phash, raw_id FROM wa_device_lists \
                   WHERE device_id = $1 AND user_jid = $2";
        let row: Option<(String, i64, Option<String>, Option<i64>)> = on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device).bind(user)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a device list"))?;
        let Some((devices, timestamp, phash, raw_id)) = row else {
            return Ok(None);
        };
        let devices: Vec<DeviceInfo> = serde_json::from_str(&devices).map_err(serde_error("decoding a device list"))?;
        Ok(Some(DeviceListRecord {
            user: user.to_owned(),
            devices,
            timestamp,
            phash,
            raw_id: raw_id.map(|id| super::to_u32(id, "ADV raw id")).transpose()?,
        }))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_devices(&self, user: &str) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_device_lists WHERE device_id = $1 AND user_jid = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(user)
            .execute(pool).await.map(drop))
        .map_err(db_error("deleting a device list"))
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.tc_token(jid).await
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.update_tc_token(jid, |_| Some(entry.clone())).await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.update_tc_token(jid, |_| None).await
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        self.tc_token_jids().await
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        self.delete_stale_tc_tokens(token_cutoff, sender_cutoff).await
    }

    async fn touch_tc_token_sender_timestamp(&self, jid: &str, sender_timestamp: i64) -> Result<()> {
        self.update_tc_token(jid, |existing| {
            Some(match existing {
                Some(existing) => TcTokenEntry {
                    sender_timestamp: Some(
                        existing
                            .sender_timestamp
                            .map_or(sender_timestamp, |s| s.max(sender_timestamp)),
                    ),
                    ..existing
                },
                None => TcTokenEntry {
                    token: Vec::new(),
                    token_timestamp: sender_timestamp,
                    sender_timestamp: Some(sender_timestamp),
                },
            })
        })
        .await
    }

    async fn store_received_tc_token(&self, jid: &str, token: &[u8], token_timestamp: i64) -> Result<()> {
        self.update_tc_token(jid, |existing| match existing {
            // A fresher real token stays; a placeholder never blocks the first real one.
            Some(existing) if !existing.token.is_empty() && token_timestamp < existing.token_timestamp => {
                Some(existing)
            }
            existing => Some(TcTokenEntry {
                token: token.to_vec(),
                token_timestamp,
                sender_timestamp: existing.and_then(|e| e.sender_timestamp),
            }),
        })
        .await
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, group = group_jid))]
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let sql = "SELECT device_jid, has_key FROM wa_sender_key_devices WHERE device_id = $1 AND group_jid = $2 \
                   ORDER BY device_jid";
        on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device).bind(group_jid)
            .fetch_all(pool).await)
        .map_err(db_error("loading a group's sender-key devices"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, group = group_jid))]
    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "INSERT INTO wa_sender_key_devices (device_id, group_jid, device_jid, has_key) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, group_jid, device_jid) DO UPDATE \
                   SET has_key = excluded.has_key";
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning to store sender-key devices"))?;
            for (device_jid, has_key) in entries {
                sqlx::query(sql)
                    .bind(self.device).bind(group_jid).bind(*device_jid).bind(*has_key)
                    .execute(&mut *tx).await
                    .map_err(db_error("storing a sender-key device"))?;
            }
            tx.commit().await.map_err(db_error("committing sender-key devices"))
        })
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, group = group_jid))]
    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_sender_key_devices WHERE device_id = $1 AND group_jid = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(group_jid)
            .execute(pool).await.map(drop))
        .map_err(db_error("clearing a group's sender-key devices"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, count = device_jids.len()))]
    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_sender_key_devices WHERE device_id = $1 AND device_jid = $2";
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning to forget sender-key devices"))?;
            for device_jid in device_jids {
                sqlx::query(sql)
                    .bind(self.device).bind(*device_jid)
                    .execute(&mut *tx).await
                    .map_err(db_error("forgetting a sender-key device"))?;
            }
            tx.commit().await.map_err(db_error("committing forgotten sender-key devices"))
        })
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_sender_key_devices WHERE device_id = $1";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device)
            .execute(pool).await.map(drop))
        .map_err(db_error("clearing every sender-key device"))
    }

    async fn store_sent_message(&self, chat_jid: &str, message_id: &str, payload: &[u8]) -> Result<()> {
        self.keep_sent_message(chat_jid, message_id, payload).await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        self.take_kept_message(chat_jid, message_id).await
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.delete_kept_messages_before(cutoff_timestamp).await
    }

    async fn store_pending_inbound(&self, chat: &str, sender: &str, id: &str, message: &[u8]) -> Result<()> {
        let row = PendingInboundRow {
            chat,
            sender,
            id,
            message,
        };
        self.buffer_inbound(&[row]).await
    }

    async fn get_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<Option<Vec<u8>>> {
        self.buffered_inbound(chat, sender, id).await
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.unbuffer_inbound(&[PendingInboundKey { chat, sender, id }]).await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.unbuffer_inbound_before(cutoff_timestamp).await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        self.buffer_inbound(rows).await
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        self.unbuffer_inbound(keys).await
    }
}
