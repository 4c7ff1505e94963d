//! Reading and rewriting the rows of any sealed column: its SQL, built from the column's static
//! names, keyset pagination in primary-key order, and compare-and-set writes.

use sqlx::Row;

use super::super::{Form, KeyKind, KeyRing, RowKey, SealedColumn};
use crate::Db;
use crate::db::BeginWrite;
use crate::db::on_db;
use crate::types::DeviceId;

/// Owned form of a [`RowKey`].
#[derive(Clone, Debug)]
pub(super) enum KeyValue {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

impl KeyValue {
    pub(super) fn as_row_key(&self) -> RowKey<'_> {
        match self {
            KeyValue::Text(s) => RowKey::Text(s),
            KeyValue::Int(i) => RowKey::Int(*i),
            KeyValue::Bytes(b) => RowKey::Bytes(b),
        }
    }
}

/// A stored value, binary or text.
#[derive(Clone, Debug)]
pub(super) enum Value {
    Bytes(Vec<u8>),
    Text(String),
}

/// One row to look at: where it is and what it holds.
pub(super) struct Found {
    pub(super) device: DeviceId,
    pub(super) key: Vec<KeyValue>,
    pub(super) value: Value,
}

/// The SQL of one column, built once from its static names.
pub(super) struct Statements {
    /// The first batch.
    pub(super) first: String,
    /// The batch after a row's key.
    pub(super) next: String,
    /// Compare-and-set of one row's value.
    pub(super) update: String,
}

impl Statements {
    pub(super) fn new(column: &SealedColumn, header_len: usize, batch: u32) -> Statements {
        let (table, col) = (column.table, column.column);
        let keys: Vec<&str> = std::iter::once("device_id")
            .chain(column.key.iter().map(|k| k.name))
            .collect();
        let list = keys.join(", ");
        let placeholders: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 2)).collect();
        // Values shorter than a header are not sealed: an empty one in particular, whose SQLite
        // `substr` is NULL and so never unequal to anything.
        let select = format!(
            "SELECT {list}, {col} FROM {table} WHERE {col} IS NOT NULL \
             AND (length({col}) < {header_len} OR substr({col}, 1, {header_len}) <> $1)"
        );
        let order = format!("ORDER BY {list} LIMIT {batch}");
        let matches: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ${}", i + 2))
            .collect();
        Statements {
            first: format!("{select} {order}"),
            next: format!("{select} AND ({list}) > ({}) {order}", placeholders.join(", ")),
            update: format!(
                "UPDATE {table} SET {col} = $1 WHERE {} AND {col} = ${}",
                matches.join(" AND "),
                keys.len() + 2
            ),
        }
    }
}

/// The next batch of `column`'s rows not under the current key, after `after`.
pub(super) async fn fetch(
    db: &Db,
    column: &SealedColumn,
    sql: &Statements,
    header: &[u8],
    after: Option<&Found>,
) -> crate::Result<Vec<Found>> {
    let header_value = match column.form {
        Form::Binary => Value::Bytes(header.to_vec()),
        Form::Text => Value::Text(String::from_utf8(header.to_vec()).expect("text headers are ASCII")),
    };
    on_db!(db, pool => {
        let rows = match after {
            None => bind_value!(sqlx::query(sqlx::AssertSqlSafe(sql.first.as_str())), &header_value)
                .fetch_all(pool).await?,
            Some(last) => bind_key!(
                bind_value!(sqlx::query(sqlx::AssertSqlSafe(sql.next.as_str())), &header_value),
                last.device, &last.key)
                .fetch_all(pool).await?,
        };
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let device = DeviceId(row.try_get::<i64, _>(0)?);
            let mut key = Vec::with_capacity(column.key.len());
            for (i, k) in column.key.iter().enumerate() {
                key.push(match k.kind {
                    KeyKind::Text => KeyValue::Text(row.try_get(i + 1)?),
                    KeyKind::Int => KeyValue::Int(row.try_get(i + 1)?),
                    KeyKind::Bytes => KeyValue::Bytes(row.try_get(i + 1)?),
                });
            }
            let at = column.key.len() + 1;
            let value = match column.form {
                Form::Binary => Value::Bytes(row.try_get(at)?),
                Form::Text => Value::Text(row.try_get(at)?),
            };
            found.push(Found { device, key, value });
        }
        Ok(found)
    })
}

/// `found`'s value under the current key, or why it cannot be opened.
pub(super) fn reseal(ring: &KeyRing, column: &SealedColumn, found: &Found) -> Result<Value, super::super::SealError> {
    let key: Vec<RowKey<'_>> = found.key.iter().map(KeyValue::as_row_key).collect();
    let cell = column.cell(found.device, &key);
    Ok(match &found.value {
        Value::Bytes(b) => Value::Bytes(ring.seal(&cell, &ring.open(&cell, b)?)),
        Value::Text(t) => Value::Text(ring.seal_text(&cell, &ring.open_text(&cell, t)?)),
    })
}

/// Rewrites `updates` in one transaction, each only if unchanged since read; returns how many.
pub(super) async fn write(db: &Db, sql: &Statements, updates: &[(&Found, Value)]) -> crate::Result<u64> {
    on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let mut written = 0;
        for (found, value) in updates {
            let query = bind_value!(sqlx::query(sqlx::AssertSqlSafe(sql.update.as_str())), value);
            let query = bind_value!(bind_key!(query, found.device, &found.key), &found.value);
            written += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    })
}

impl Found {
    /// Where this row is, to carry on after it.
    pub(super) fn position(&self) -> Found {
        Found {
            device: self.device,
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}
