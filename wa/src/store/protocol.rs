//! WhatsApp Web protocol state: sender-key distribution, LID mappings, base keys, device lists,
//! forgotten sender keys and trusted-contact tokens.

use async_trait::async_trait;
use wa_rs::Jid;
use wa_rs_core::store::error::{Result, StoreError};
use wa_rs_core::store::traits::{DeviceInfo, DeviceListRecord, LidPnMappingEntry, ProtocolStore, TcTokenEntry};

use wafleet_core::keys::RowKey;

use super::sealed::{BASE_KEY, TC_TOKEN};
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
    async fn get_skdm_recipients(&self, group_jid: &str) -> Result<Vec<Jid>> {
        let sql = "SELECT device_jid FROM wa_skdm_recipients WHERE device_id = $1 AND group_jid = $2 \
                   ORDER BY device_jid";
        let jids: Vec<String> = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(group_jid)
            .fetch_all(pool).await)
        .map_err(db_error("loading sender-key recipients"))?;
        jids.iter()
            .map(|jid| {
                jid.parse::<Jid>()
                    .map_err(|e| StoreError::Serialization(format!("stored JID `{jid}`: {e}")))
            })
            .collect()
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn add_skdm_recipients(&self, group_jid: &str, device_jids: &[Jid]) -> Result<()> {
        let sql = "INSERT INTO wa_skdm_recipients (device_id, group_jid, device_jid) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id, group_jid, device_jid) DO NOTHING";
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning to add sender-key recipients"))?;
            for jid in device_jids {
                sqlx::query(sql)
                    .bind(self.device).bind(group_jid).bind(jid.to_string())
                    .execute(&mut *tx).await
                    .map_err(db_error("adding a sender-key recipient"))?;
            }
            tx.commit().await.map_err(db_error("committing sender-key recipients"))
        })
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn clear_skdm_recipients(&self, group_jid: &str) -> Result<()> {
        let sql = "DELETE FROM wa_skdm_recipients WHERE device_id = $1 AND group_jid = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(group_jid)
            .execute(pool).await.map(drop))
        .map_err(db_error("clearing sender-key recipients"))
    }

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
        .map_err(db_error("storing a LID mapping"))
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
        let sql = "DELETE FROM wa_base_keys WHERE device_id = $1 AND address = $2 AND message_id = $3";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address).bind(message_id)
            .execute(pool).await.map(drop))
        .map_err(db_error("deleting a base key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        let devices = serde_json::to_string(&record.devices).map_err(serde_error("encoding a device list"))?;
        let sql = "INSERT INTO wa_device_lists (device_id, user_jid, devices, timestamp, phash) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, user_jid) DO UPDATE \
                   SET devices = excluded.devices, timestamp = excluded.timestamp, phash = excluded.phash";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(&record.user).bind(devices).bind(record.timestamp).bind(&record.phash)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing a device list"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        let sql = "SELECT devices, timestamp, phash FROM wa_device_lists WHERE device_id = $1 AND user_jid = $2";
        let row: Option<(String, i64, Option<String>)> = on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device).bind(user)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a device list"))?;
        let Some((devices, timestamp, phash)) = row else {
            return Ok(None);
        };
        let devices: Vec<DeviceInfo> = serde_json::from_str(&devices).map_err(serde_error("decoding a device list"))?;
        Ok(Some(DeviceListRecord {
            user: user.to_owned(),
            devices,
            timestamp,
            phash,
        }))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn mark_forget_sender_key(&self, group_jid: &str, participant: &str) -> Result<()> {
        let sql = "INSERT INTO wa_sender_key_forget (device_id, group_jid, participant) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id, group_jid, participant) DO NOTHING";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(group_jid).bind(participant)
            .execute(pool).await.map(drop))
        .map_err(db_error("marking a sender key to forget"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn consume_forget_marks(&self, group_jid: &str) -> Result<Vec<String>> {
        // DELETE … RETURNING reads and consumes in one statement, so a mark added concurrently is
        // either returned now or kept for the next call, never lost.
        let sql = "DELETE FROM wa_sender_key_forget WHERE device_id = $1 AND group_jid = $2 RETURNING participant";
        let mut marks: Vec<String> = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(group_jid)
            .fetch_all(pool).await)
        .map_err(db_error("consuming forgotten sender keys"))?;
        marks.sort();
        Ok(marks)
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        let sql = "SELECT token, token_timestamp, sender_timestamp FROM wa_tc_tokens WHERE device_id = $1 AND jid = $2";
        let row: Option<(Vec<u8>, i64, Option<i64>)> = on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device).bind(jid)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a trusted-contact token"))?;
        row.map(|(token, token_timestamp, sender_timestamp)| {
            Ok(TcTokenEntry {
                token: self.open(&TC_TOKEN, &[RowKey::Text(jid)], &token)?,
                token_timestamp,
                sender_timestamp,
            })
        })
        .transpose()
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        let token = self.seal(&TC_TOKEN, &[RowKey::Text(jid)], &entry.token);
        let sql = "INSERT INTO wa_tc_tokens (device_id, jid, token, token_timestamp, sender_timestamp) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, jid) DO UPDATE \
                   SET token = excluded.token, token_timestamp = excluded.token_timestamp, \
                       sender_timestamp = excluded.sender_timestamp";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(jid).bind(token).bind(entry.token_timestamp).bind(entry.sender_timestamp)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing a trusted-contact token"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        let sql = "DELETE FROM wa_tc_tokens WHERE device_id = $1 AND jid = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(jid)
            .execute(pool).await.map(drop))
        .map_err(db_error("deleting a trusted-contact token"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        let sql = "SELECT jid FROM wa_tc_tokens WHERE device_id = $1 ORDER BY jid";
        on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device)
            .fetch_all(pool).await)
        .map_err(db_error("listing trusted-contact tokens"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_expired_tc_tokens(&self, cutoff_timestamp: i64) -> Result<u32> {
        let sql = "DELETE FROM wa_tc_tokens WHERE device_id = $1 AND token_timestamp < $2";
        let deleted = on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(cutoff_timestamp)
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(db_error("deleting expired trusted-contact tokens"))?;
        Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
    }
}
