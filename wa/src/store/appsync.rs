//! WhatsApp app-state sync: sync keys, collection versions and mutation MACs.

use std::collections::HashMap;

use async_trait::async_trait;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::error::{Result, StoreError};
use whatsapp_rust::wacore::store::traits::{AppStateSyncKey, AppSyncStore};

use wafleet_core::keys::RowKey;

use super::sealed::APP_STATE_KEY;
use super::{WaStore, db_error, on_db, serde_error};

#[async_trait]
impl AppSyncStore for WaStore {
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        let sql = "SELECT key_data, fingerprint, timestamp FROM wa_app_state_keys \
                   WHERE device_id = $1 AND key_id = $2";
        let row: Option<(Vec<u8>, Vec<u8>, i64)> = on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device).bind(key_id)
            .fetch_optional(pool).await)
        .map_err(db_error("loading an app-state sync key"))?;
        row.map(|(key_data, fingerprint, timestamp)| {
            Ok(AppStateSyncKey {
                key_data: self.open(&APP_STATE_KEY, &[RowKey::Bytes(key_id)], &key_data)?,
                fingerprint,
                timestamp,
            })
        })
        .transpose()
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        let _writing = self.writable().await?;
        let key_data = self.seal(&APP_STATE_KEY, &[RowKey::Bytes(key_id)], &key.key_data);
        let sql = "INSERT INTO wa_app_state_keys (device_id, key_id, key_data, fingerprint, timestamp) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, key_id) DO UPDATE \
                   SET key_data = excluded.key_data, fingerprint = excluded.fingerprint, \
                       timestamp = excluded.timestamp";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(key_id).bind(key_data).bind(&key.fingerprint).bind(key.timestamp)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing an app-state sync key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, collection = name))]
    async fn get_version(&self, name: &str) -> Result<HashState> {
        let sql = "SELECT state FROM wa_app_state_versions WHERE device_id = $1 AND name = $2";
        let state: Option<Vec<u8>> = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(name)
            .fetch_optional(pool).await)
        .map_err(db_error("loading an app-state version"))?;
        match state {
            // A collection never synced starts from version 0, as the client expects.
            None => Ok(HashState::default()),
            Some(json) => serde_json::from_slice(&json).map_err(serde_error("decoding an app-state version")),
        }
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, collection = name))]
    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        let _writing = self.writable().await?;
        let json = serde_json::to_vec(&state).map_err(serde_error("encoding an app-state version"))?;
        let sql = "INSERT INTO wa_app_state_versions (device_id, name, state) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id, name) DO UPDATE SET state = excluded.state";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(name).bind(json)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing an app-state version"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, collection = name, version))]
    async fn put_mutation_macs(&self, name: &str, version: u64, mutations: &[AppStateMutationMAC]) -> Result<()> {
        let _writing = self.writable().await?;
        let version =
            i64::try_from(version).map_err(|_| StoreError::Validation(format!("version {version} too large")))?;
        let sql = "INSERT INTO wa_app_state_mutation_macs (device_id, name, index_mac, version, value_mac) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, name, index_mac) DO UPDATE \
                   SET version = excluded.version, value_mac = excluded.value_mac";
        // One transaction: a patch's MACs are all stored or none are.
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning to store mutation MACs"))?;
            for mutation in mutations {
                sqlx::query(sql)
                    .bind(self.device).bind(name).bind(&mutation.index_mac).bind(version).bind(&mutation.value_mac)
                    .execute(&mut *tx).await
                    .map_err(db_error("storing a mutation MAC"))?;
            }
            tx.commit().await.map_err(db_error("committing mutation MACs"))
        })
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, collection = name))]
    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT value_mac FROM wa_app_state_mutation_macs \
                   WHERE device_id = $1 AND name = $2 AND index_mac = $3";
        on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(name).bind(index_mac)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a mutation MAC"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, collection = name))]
    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_app_state_mutation_macs WHERE device_id = $1 AND name = $2 AND index_mac = $3";
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning to delete mutation MACs"))?;
            for index_mac in index_macs {
                sqlx::query(sql)
                    .bind(self.device).bind(name).bind(index_mac)
                    .execute(&mut *tx).await
                    .map_err(db_error("deleting a mutation MAC"))?;
            }
            tx.commit().await.map_err(db_error("committing mutation MAC deletions"))
        })
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, collection = name, count = index_macs.len()))]
    async fn get_mutation_macs(&self, name: &str, index_macs: &[[u8; 32]]) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        let mut found = HashMap::with_capacity(index_macs.len());
        for chunk in index_macs.chunks(200) {
            let rows: Vec<(Vec<u8>, Vec<u8>)> = on_db!(&self.db, pool => {
                let mut select = sqlx::QueryBuilder::new(
                    "SELECT index_mac, value_mac FROM wa_app_state_mutation_macs WHERE device_id = ");
                select.push_bind(self.device).push(" AND name = ").push_bind(name).push(" AND index_mac IN (");
                let mut list = select.separated(", ");
                for mac in chunk {
                    list.push_bind(mac.as_slice());
                }
                select.push(")");
                select.build_query_as().fetch_all(pool).await
            })
            .map_err(db_error("loading mutation MACs"))?;
            for (index_mac, value_mac) in rows {
                if let Ok(index_mac) = <[u8; 32]>::try_from(index_mac.as_slice()) {
                    found.insert(index_mac, value_mac);
                }
            }
        }
        Ok(found)
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, collection = name))]
    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_app_state_mutation_macs WHERE device_id = $1 AND name = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(name)
            .execute(pool).await.map(drop))
        .map_err(db_error("clearing a collection's mutation MACs"))
    }

    /// The newest sync key: the greatest key id, as WhatsApp Web orders them.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT key_id FROM wa_app_state_keys WHERE device_id = $1 ORDER BY key_id DESC LIMIT 1";
        on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device)
            .fetch_optional(pool).await)
        .map_err(db_error("finding the newest app-state sync key"))
    }
}
