//! Counting rows by the key that sealed them, from their headers alone (`wafleet keys status`).

use super::super::{Form, KeyId, SealedColumn};
use crate::Db;
use crate::db::on_db;

/// How many rows of `columns` each key seals, and how many are in plain text.
#[derive(Clone, Debug, Default)]
pub struct Census {
    /// Rows per key id.
    pub by_key: std::collections::BTreeMap<KeyId, u64>,
    /// Rows written before encryption, not sealed yet.
    pub plaintext: u64,
}

/// Counts the rows of `columns` by the key that sealed them (reads headers only; needs no key).
pub async fn census(db: &Db, columns: &[&SealedColumn]) -> crate::Result<Census> {
    let mut census = Census::default();
    for column in columns {
        let (table, col) = (column.table, column.column);
        let sql = match column.form {
            // Hex of the key id's bytes, so both dialects return text.
            Form::Binary => match db {
                Db::Sqlite(_) => format!(
                    "SELECT CASE WHEN substr({col}, 1, 5) = X'F057464B01' THEN hex(substr({col}, 6, 4)) END AS id, \
                     COUNT(*) FROM {table} WHERE {col} IS NOT NULL GROUP BY 1"
                ),
                Db::Postgres(_) => format!(
                    "SELECT CASE WHEN substr({col}, 1, 5) = '\\xF057464B01'::bytea THEN encode(substr({col}, 6, 4), 'hex') END AS id, \
                     COUNT(*) FROM {table} WHERE {col} IS NOT NULL GROUP BY 1"
                ),
            },
            Form::Text => format!(
                "SELECT CASE WHEN substr({col}, 1, 5) = 'wfk1:' THEN substr({col}, 6, 8) END AS id, \
                 COUNT(*) FROM {table} GROUP BY 1"
            ),
        };
        let rows: Vec<(Option<String>, i64)> =
            on_db!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await)?;
        for (id, count) in rows {
            let count = u64::try_from(count).unwrap_or_default();
            match id.and_then(|id| u32::from_str_radix(&id, 16).ok()) {
                Some(id) => *census.by_key.entry(KeyId(id)).or_default() += count,
                None => census.plaintext += count,
            }
        }
    }
    Ok(census)
}
