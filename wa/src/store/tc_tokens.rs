//! Trusted-contact (privacy) tokens: the token a contact gave this account (sent along with
//! messages to them, or WhatsApp refuses new chats with 463), and when this account last gave its
//! own. Two writers touch one row (the notification that brings a token, and the send path that
//! issues ours), so every change is a read-modify-write under the row's lock.

use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::TcTokenEntry;

use wafleet_core::keys::RowKey;

use super::sealed::TC_TOKEN;
use super::{WaStore, db_error, on_db};

impl WaStore {
    /// The token entry for `jid`.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    pub(crate) async fn tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
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

    /// Replaces `jid`'s entry with what `change` makes of the current one (`None` deletes it), in
    /// one transaction that holds the row: the token is sealed, so the database cannot compare
    /// it, and two writers must not lose each other's field.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    pub(crate) async fn update_tc_token(
        &self,
        jid: &str,
        change: impl FnOnce(Option<TcTokenEntry>) -> Option<TcTokenEntry> + Send,
    ) -> Result<()> {
        let _writing = self.writable().await?;
        const SELECT: &str =
            "SELECT token, token_timestamp, sender_timestamp FROM wa_tc_tokens WHERE device_id = $1 AND jid = $2";
        const UPSERT: &str = "INSERT INTO wa_tc_tokens (device_id, jid, token, token_timestamp, sender_timestamp) \
                              VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id, jid) DO UPDATE \
                              SET token = excluded.token, token_timestamp = excluded.token_timestamp, \
                                  sender_timestamp = excluded.sender_timestamp";
        const DELETE: &str = "DELETE FROM wa_tc_tokens WHERE device_id = $1 AND jid = $2";
        let key = [RowKey::Text(jid)];
        // SQLite takes its one write lock up front. PostgreSQL locks the row; a row not there yet
        // is made first (an empty placeholder, never seen outside this transaction), so that a
        // second writer waits on it and then reads what the first wrote.
        let (mut tx, select, created) = match &self.db {
            wafleet_core::Db::Sqlite(pool) => (
                Tx::Sqlite(
                    pool.begin_with("BEGIN IMMEDIATE")
                        .await
                        .map_err(db_error("locking a token"))?,
                ),
                SELECT.to_owned(),
                false,
            ),
            wafleet_core::Db::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(db_error("locking a token"))?;
                let created = sqlx::query(
                    "INSERT INTO wa_tc_tokens (device_id, jid, token, token_timestamp, sender_timestamp) \
                     VALUES ($1, $2, $3, 0, NULL) ON CONFLICT (device_id, jid) DO NOTHING",
                )
                .bind(self.device)
                .bind(jid)
                .bind(self.seal(&TC_TOKEN, &key, &[]))
                .execute(&mut *tx)
                .await
                .map_err(db_error("locking a token"))?
                .rows_affected()
                    == 1;
                (Tx::Postgres(tx), format!("{SELECT} FOR UPDATE"), created)
            }
        };
        let row: Option<(Vec<u8>, i64, Option<i64>)> = match &mut tx {
            Tx::Sqlite(tx) => {
                sqlx::query_as(sqlx::AssertSqlSafe(select))
                    .bind(self.device)
                    .bind(jid)
                    .fetch_optional(&mut **tx)
                    .await
            }
            Tx::Postgres(tx) => {
                sqlx::query_as(sqlx::AssertSqlSafe(select))
                    .bind(self.device)
                    .bind(jid)
                    .fetch_optional(&mut **tx)
                    .await
            }
        }
        .map_err(db_error("reading a token to change"))?;
        // The placeholder this transaction made stands for "no entry".
        let row = row.filter(|_| !created);
        let current = row
            .map(|(token, token_timestamp, sender_timestamp)| {
                Ok::<_, whatsapp_rust::wacore::store::error::StoreError>(TcTokenEntry {
                    token: self.open(&TC_TOKEN, &key, &token)?,
                    token_timestamp,
                    sender_timestamp,
                })
            })
            .transpose()?;
        let written = match change(current) {
            Some(entry) => {
                let token = self.seal(&TC_TOKEN, &key, &entry.token);
                match &mut tx {
                    Tx::Sqlite(tx) => sqlx::query(UPSERT)
                        .bind(self.device)
                        .bind(jid)
                        .bind(token)
                        .bind(entry.token_timestamp)
                        .bind(entry.sender_timestamp)
                        .execute(&mut **tx)
                        .await
                        .map(drop),
                    Tx::Postgres(tx) => sqlx::query(UPSERT)
                        .bind(self.device)
                        .bind(jid)
                        .bind(token)
                        .bind(entry.token_timestamp)
                        .bind(entry.sender_timestamp)
                        .execute(&mut **tx)
                        .await
                        .map(drop),
                }
            }
            None => match &mut tx {
                Tx::Sqlite(tx) => sqlx::query(DELETE)
                    .bind(self.device)
                    .bind(jid)
                    .execute(&mut **tx)
                    .await
                    .map(drop),
                Tx::Postgres(tx) => sqlx::query(DELETE)
                    .bind(self.device)
                    .bind(jid)
                    .execute(&mut **tx)
                    .await
                    .map(drop),
            },
        };
        written.map_err(db_error("writing a trusted-contact token"))?;
        match tx {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
        .map_err(db_error("committing a trusted-contact token"))
    }

    /// Every JID with a token entry.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    pub(crate) async fn tc_token_jids(&self) -> Result<Vec<String>> {
        let sql = "SELECT jid FROM wa_tc_tokens WHERE device_id = $1 ORDER BY jid";
        on_db!(&self.db, pool => sqlx::query_scalar(sql)
            .bind(self.device)
            .fetch_all(pool).await)
        .map_err(db_error("listing trusted-contact tokens"))
    }

    /// Deletes entries with nothing live left: the received token older than `token_cutoff`
    /// (a placeholder counts as expired, and is as old as its timestamp) and the issued one older
    /// than `sender_cutoff` or never issued. Returns how many.
    #[tracing::instrument(level = "trace", skip_all, fields(device = %self.device))]
    pub(crate) async fn delete_stale_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let _writing = self.writable().await?;
        let sql = "DELETE FROM wa_tc_tokens WHERE device_id = $1 AND token_timestamp < $2 \
                   AND (sender_timestamp IS NULL OR sender_timestamp < $3)";
        let deleted = on_db!(&self.db, pool => sqlx::query(sql)
            .bind(self.device).bind(token_cutoff).bind(sender_cutoff)
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(db_error("deleting expired trusted-contact tokens"))?;
        Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
    }
}

/// A transaction on either backend.
enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}
