//! Signal protocol state: identities, sessions, pre-keys, signed pre-keys and sender keys.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use whatsapp_rust::wacore::store::error::{Result, StoreError};
use whatsapp_rust::wacore::store::traits::SignalStore;

use wafleet_core::Db;
use wafleet_core::keys::RowKey;

use super::sealed::{IDENTITY, PREKEY, SENDER_KEY, SESSION, SIGNED_PREKEY};
use super::{WaStore, db_error, on_db, serde_error};

/// Rows per multi-row statement in batch writes (a few binds a row, far below either limit).
const BATCH_ROWS: usize = 200;

#[async_trait]
impl SignalStore for WaStore {
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        let _writing = self.writable().await?;
        let key = self.seal(&IDENTITY, &[RowKey::Text(address)], &key);
        let sql = "INSERT INTO wa_identities (device_id, address, key) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id, address) DO UPDATE SET key = excluded.key";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address).bind(key)
            .execute(pool).await.map(drop))
        .map_err(db_error("storing an identity key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        let sql = "SELECT key FROM wa_identities WHERE device_id = $1 AND address = $2";
        let stored = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(address)
            .fetch_optional(pool).await)
        .map_err(db_error("loading an identity key"))?;
        self.open_optional(&IDENTITY, &[RowKey::Text(address)], stored)?
            .map(|key| {
                <[u8; 32]>::try_from(key.as_slice())
                    .map_err(|_| StoreError::Validation(format!("stored identity key of {} bytes", key.len())))
            })
            .transpose()
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_identity(&self, address: &str) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_identities WHERE device_id = $1 AND address = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address)
            .execute(pool).await.map(drop))
        .map_err(db_error("deleting an identity key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        let sql = "SELECT record FROM wa_sessions WHERE device_id = $1 AND address = $2";
        let stored = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(address)
            .fetch_optional(pool).await)
        .map_err(db_error("loading a Signal session"))?;
        Ok(self
            .open_optional(&SESSION, &[RowKey::Text(address)], stored)?
            .map(Bytes::from))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        let owned = [(Arc::<str>::from(address), Bytes::copy_from_slice(session))];
        self.put_sessions_batch(&owned).await
    }

    /// The client flushes its cached sessions in batches: one transaction, many rows a statement.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, count = sessions.len()))]
    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        let _writing = self.writable().await?;
        let rows: Vec<(&str, Vec<u8>)> = sessions
            .iter()
            .map(|(address, record)| (&**address, self.seal(&SESSION, &[RowKey::Text(address)], record)))
            .collect();
        self.upsert_text_keyed(
            "INSERT INTO wa_sessions (device_id, address, record) ",
            " ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record",
            &rows,
            "storing Signal sessions",
        )
        .await
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn delete_session(&self, address: &str) -> Result<()> {
        let _writing = self.writable().await?;
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

    /// Whether any session or identity of `user` is known: addresses are `user[:device]@server`.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        let sql = "SELECT 1 FROM wa_sessions WHERE device_id = $1 \
                     AND (address LIKE $2 ESCAPE '\\' OR address LIKE $3 ESCAPE '\\') \
                   UNION ALL SELECT 1 FROM wa_identities WHERE device_id = $1 \
                     AND (address LIKE $2 ESCAPE '\\' OR address LIKE $3 ESCAPE '\\') \
                   LIMIT 1";
        let user = like_literal(user);
        let (devices, account) = (format!("{user}:%"), format!("{user}@%"));
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(&devices).bind(&account)
            .fetch_optional(pool).await.map(|row| row.is_some()))
        .map_err(db_error("checking for a user's Signal state"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.store_prekeys_batch(&[(id, Bytes::copy_from_slice(record))], uploaded)
            .await
    }

    /// Pre-keys come in batches of hundreds when the client tops up the server's supply.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, count = keys.len()))]
    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let _writing = self.writable().await?;
        let rows: Vec<(i64, Vec<u8>)> = keys
            .iter()
            .map(|(id, record)| {
                let id = i64::from(*id);
                (id, self.seal(&PREKEY, &[RowKey::Int(id)], record))
            })
            .collect();
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error("beginning to store pre-keys"))?;
            for chunk in rows.chunks(BATCH_ROWS) {
                let mut insert = sqlx::QueryBuilder::new("INSERT INTO wa_prekeys (device_id, key_id, record, uploaded) ");
                insert.push_values(chunk, |mut row, (id, record)| {
                    row.push_bind(self.device).push_bind(*id).push_bind(record.as_slice()).push_bind(uploaded);
                });
                insert.push(" ON CONFLICT (device_id, key_id) DO UPDATE SET record = excluded.record, \
                             uploaded = excluded.uploaded");
                insert.build().execute(&mut *tx).await.map_err(db_error("storing pre-keys"))?;
            }
            tx.commit().await.map_err(db_error("committing pre-keys"))
        })
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        let sql = "SELECT record FROM wa_prekeys WHERE device_id = $1 AND key_id = $2";
        let stored = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device).bind(i64::from(id))
            .fetch_optional(pool).await)
        .map_err(db_error("loading a pre-key"))?;
        Ok(self
            .open_optional(&PREKEY, &[RowKey::Int(i64::from(id))], stored)?
            .map(Bytes::from))
    }

    /// One statement however many ids: at each login the client checks its key bundle against
    /// the server's digest, which names every pre-key the server holds (hundreds).
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, count = ids.len()))]
    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        let ids: Vec<i64> = ids.iter().map(|id| i64::from(*id)).collect();
        let rows: Vec<(i64, Vec<u8>)> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as("SELECT key_id, record FROM wa_prekeys WHERE device_id = $1 AND key_id = ANY($2)")
                    .bind(self.device)
                    .bind(&ids)
                    .fetch_all(pool)
                    .await
            }
            Db::Sqlite(pool) => {
                let ids = serde_json::to_string(&ids).map_err(serde_error("listing pre-key ids"))?;
                sqlx::query_as(
                    "SELECT key_id, record FROM wa_prekeys WHERE device_id = $1 \
                     AND key_id IN (SELECT value FROM json_each($2))",
                )
                .bind(self.device)
                .bind(ids)
                .fetch_all(pool)
                .await
            }
        }
        .map_err(db_error("loading pre-keys"))?;
        rows.into_iter()
            .map(|(id, record)| {
                let record = self.open(&PREKEY, &[RowKey::Int(id)], &record)?;
                Ok((super::to_u32(id, "pre-key id")?, Bytes::from(record)))
            })
            .collect()
    }

    /// Marks pre-keys as uploaded; never creates one (a key the server has must be one we kept).
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device, count = ids.len()))]
    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let _writing = self.writable().await?;
        for chunk in ids.chunks(BATCH_ROWS) {
            on_db!(&self.db, pool => {
                let mut update = sqlx::QueryBuilder::new("UPDATE wa_prekeys SET uploaded = TRUE WHERE device_id = ");
                update.push_bind(self.device).push(" AND key_id IN (");
                let mut list = update.separated(", ");
                for id in chunk {
                    list.push_bind(i64::from(*id));
                }
                update.push(")");
                update.build().execute(pool).await.map(drop)
            })
            .map_err(db_error("marking pre-keys uploaded"))?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn remove_prekey(&self, id: u32) -> Result<()> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_prekeys WHERE device_id = $1 AND key_id = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(i64::from(id))
            .execute(pool).await.map(drop))
        .map_err(db_error("removing a pre-key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn get_max_prekey_id(&self) -> Result<u32> {
        let sql = "SELECT MAX(key_id) FROM wa_prekeys WHERE device_id = $1";
        let max: Option<i64> = on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device)
            .fetch_one(pool).await)
        .map_err(db_error("reading the highest pre-key id"))?;
        max.map_or(Ok(0), |id| super::to_u32(id, "pre-key id"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        let _writing = self.writable().await?;
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
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_signed_prekeys WHERE device_id = $1 AND key_id = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(i64::from(id))
            .execute(pool).await.map(drop))
        .map_err(db_error("removing a signed pre-key"))
    }

    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        let _writing = self.writable().await?;
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
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_sender_keys WHERE device_id = $1 AND address = $2";
        on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(address)
            .execute(pool).await.map(drop))
        .map_err(db_error("deleting a sender key"))
    }
}

impl WaStore {
    /// Upserts `(text key, sealed value)` rows of this device in one transaction, many rows a
    /// statement: `head` is the INSERT up to its column list, `tail` its conflict clause.
    async fn upsert_text_keyed(
        &self,
        head: &'static str,
        tail: &'static str,
        rows: &[(&str, Vec<u8>)],
        doing: &'static str,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await.map_err(db_error(doing))?;
            for chunk in rows.chunks(BATCH_ROWS) {
                let mut insert = sqlx::QueryBuilder::new(head);
                insert.push_values(chunk, |mut row, (key, value)| {
                    row.push_bind(self.device).push_bind(*key).push_bind(value.as_slice());
                });
                insert.push(tail);
                insert.build().execute(&mut *tx).await.map_err(db_error(doing))?;
            }
            tx.commit().await.map_err(db_error(doing))
        })
    }
}

/// `text` as a literal inside a LIKE pattern whose escape character is `\`.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
