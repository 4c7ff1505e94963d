//! Signal protocol state: identities, sessions, pre-keys, signed pre-keys and sender keys.

use async_trait::async_trait;
use wa_rs_core::store::error::Result;
use wa_rs_core::store::traits::SignalStore;

use wafleet_core::keys::RowKey;

use super::sealed::{IDENTITY, PREKEY, SENDER_KEY, SESSION, SIGNED_PREKEY};
use super::{WaStore, db_error, on_db};

#[async_trait]
impl SignalStore for WaStore {
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        let key = self.seal(&IDENTITY, &[RowKey::Text(address)], &key);
        let sql = "INSERT INTO wa_identities (device_id, address, key) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id, address) DO UPDATE SET key = excluded.key";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address).bind(key)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing an identity key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn load_identity(&self, address: &str) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT key FROM wa_identities WHERE device_id = $1 AND address = $2";
        let stored = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(address)
            .fetch_optional(pool).await)
        .map_err(db_error("loading an identity key"))?;
        self.open_optional(&IDENTITY, &[RowKey::Text(address)], stored)
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_identity(&self, address: &str) -> Result<()> {
        let sql = "DELETE FROM wa_identities WHERE device_id = $1 AND address = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address)
            .execute(pool).await.map(drop))
        .map_err(db_error("deleting an identity key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_session(&self, address: &str) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT record FROM wa_sessions WHERE device_id = $1 AND address = $2";
        let stored = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(address)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a Signal session"))?;
        self.open_optional(&SESSION, &[RowKey::Text(address)], stored)
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        let session = self.seal(&SESSION, &[RowKey::Text(address)], session);
        let sql = "INSERT INTO wa_sessions (device_id, address, record) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address).bind(session)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing a Signal session"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_session(&self, address: &str) -> Result<()> {
        let sql = "DELETE FROM wa_sessions WHERE device_id = $1 AND address = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address)
            .execute(pool).await.map(drop))
        .map_err(db_error("deleting a Signal session"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn has_session(&self, address: &str) -> Result<bool> {
        // Cheaper than the default, which loads the whole record.
        let sql = "SELECT 1 FROM wa_sessions WHERE device_id = $1 AND address = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address)
            .fetch_optional(pool).await.map(|row| row.is_some()))
        .map_err(db_error("checking for a Signal session"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        let record = self.seal(&PREKEY, &[RowKey::Int(i64::from(id))], record);
        let sql = "INSERT INTO wa_prekeys (device_id, key_id, record, uploaded) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (device_id, key_id) DO UPDATE \
                   SET record = excluded.record, uploaded = excluded.uploaded";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(i64::from(id)).bind(record).bind(uploaded)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing a pre-key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn load_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT record FROM wa_prekeys WHERE device_id = $1 AND key_id = $2";
        let stored = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(i64::from(id))
            .fetch_optional(pool).await)
        .map_err(db_error("loading a pre-key"))?;
        self.open_optional(&PREKEY, &[RowKey::Int(i64::from(id))], stored)
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn remove_prekey(&self, id: u32) -> Result<()> {
        let sql = "DELETE FROM wa_prekeys WHERE device_id = $1 AND key_id = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(i64::from(id))
            .execute(pool).await.map(drop))
        .map_err(db_error("removing a pre-key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        let record = self.seal(&SIGNED_PREKEY, &[RowKey::Int(i64::from(id))], record);
        let sql = "INSERT INTO wa_signed_prekeys (device_id, key_id, record) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id, key_id) DO UPDATE SET record = excluded.record";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(i64::from(id)).bind(record)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing a signed pre-key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT record FROM wa_signed_prekeys WHERE device_id = $1 AND key_id = $2";
        let stored = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(i64::from(id))
            .fetch_optional(pool).await)
        .map_err(db_error("loading a signed pre-key"))?;
        self.open_optional(&SIGNED_PREKEY, &[RowKey::Int(i64::from(id))], stored)
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let sql = "SELECT key_id, record FROM wa_signed_prekeys WHERE device_id = $1 ORDER BY key_id";
        let rows: Vec<(i64, Vec<u8>)> = on_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(self.device)
            .fetch_all(pool).await)
        .map_err(db_error("loading the signed pre-keys"))?;
        rows.into_iter()
            .map(|(id, record)| {
                let record = self.open(&SIGNED_PREKEY, &[RowKey::Int(id)], &record)?;
                Ok((super::to_u32(id, "signed pre-key id")?, record))
            })
            .collect()
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        let sql = "DELETE FROM wa_signed_prekeys WHERE device_id = $1 AND key_id = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(i64::from(id))
            .execute(pool).await.map(drop))
        .map_err(db_error("removing a signed pre-key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        let record = self.seal(&SENDER_KEY, &[RowKey::Text(address)], record);
        let sql = "INSERT INTO wa_sender_keys (device_id, address, record) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address).bind(record)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing a sender key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT record FROM wa_sender_keys WHERE device_id = $1 AND address = $2";
        let stored = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(address)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a sender key"))?;
        self.open_optional(&SENDER_KEY, &[RowKey::Text(address)], stored)
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        let sql = "DELETE FROM wa_sender_keys WHERE device_id = $1 AND address = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address)
            .execute(pool).await.map(drop))
        .map_err(db_error("deleting a sender key"))
    }
}
