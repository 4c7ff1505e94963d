//! The sweep that brings every sealed column under the current key: it seals rows written in
//! plain text before encryption, and after a rotation moves rows from the previous key to the
//! new one, while sessions keep running.
//!
//! It walks each column in primary-key order (keyset pagination), a batch of rows at a time, and
//! picks out the rows that do not start with the current key's header by a prefix comparison in
//! SQL. Each batch is rewritten in one short transaction, and each row only if its value is still
//! the one read (compare-and-set), so a session that wrote the row meanwhile (always with the
//! current key) wins. Interrupted at any point, the next sweep carries on from what is left:
//! nothing is recorded until every row is done. One process sweeps at a time (a PostgreSQL
//! advisory lock; the embedded mode runs one process).

use std::time::Duration;

use anyhow::Context;
use sqlx::Row;

use super::{Form, KeyId, KeyKind, KeyRing, RowKey, SealedColumn, registry};
use crate::Db;
use crate::db::on_db;
use crate::shutdown::Shutdown;
use crate::types::{DeviceId, Timestamp};

/// Pacing of the sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Rows read and rewritten per transaction.
    pub batch: u32,
    /// Pause between batches, so the sweep never crowds out sessions' own writes.
    pub pause: Duration,
    /// How often to look whether a sweep is needed (a key was added, or rows are in plain text).
    pub every: Duration,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            batch: 200,
            pause: Duration::from_millis(20),
            every: Duration::from_secs(60),
        }
    }
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Rows rewritten under the current key.
    pub moved: u64,
    /// Rows that no key of the ring opens (left as they are, and logged).
    pub unreadable: u64,
    /// Whether every row is now under the current key (then older keys were retired).
    pub complete: bool,
}

/// Owned form of a [`RowKey`].
#[derive(Clone, Debug)]
enum KeyValue {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

impl KeyValue {
    fn as_row_key(&self) -> RowKey<'_> {
        match self {
            KeyValue::Text(s) => RowKey::Text(s),
            KeyValue::Int(i) => RowKey::Int(*i),
            KeyValue::Bytes(b) => RowKey::Bytes(b),
        }
    }
}

/// A stored value, binary or text.
#[derive(Clone, Debug)]
enum Value {
    Bytes(Vec<u8>),
    Text(String),
}

/// One row to look at: where it is and what it holds.
struct Found {
    device: DeviceId,
    key: Vec<KeyValue>,
    value: Value,
}

/// The SQL of one column, built once from its static names.
struct Statements {
    first: String,
    next: String,
    update: String,
}

impl Statements {
    fn new(column: &SealedColumn, header_len: usize, batch: u32) -> Statements {
        let (table, col) = (column.table, column.column);
        let keys: Vec<&str> = std::iter::once("device_id")
            .chain(column.key.iter().map(|k| k.name))
            .collect();
        let list = keys.join(", ");
        let placeholders: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 2)).collect();
        let select = format!(
            "SELECT {list}, {col} FROM {table} WHERE {col} IS NOT NULL AND substr({col}, 1, {header_len}) <> $1"
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

/// Binds a row key's values after whatever the query bound already.
macro_rules! bind_key {
    ($query:expr, $device:expr, $key:expr) => {{
        let mut query = $query.bind($device);
        for value in $key {
            query = match value {
                KeyValue::Text(s) => query.bind(s.clone()),
                KeyValue::Int(i) => query.bind(*i),
                KeyValue::Bytes(b) => query.bind(b.clone()),
            };
        }
        query
    }};
}

/// Binds a stored value.
macro_rules! bind_value {
    ($query:expr, $value:expr) => {
        match $value {
            Value::Bytes(b) => $query.bind(b.clone()),
            Value::Text(s) => $query.bind(s.clone()),
        }
    };
}

/// The next batch of `column`'s rows not under the current key, after `after`.
async fn fetch(
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
fn reseal(ring: &KeyRing, column: &SealedColumn, found: &Found) -> Result<Value, super::SealError> {
    let key: Vec<RowKey<'_>> = found.key.iter().map(KeyValue::as_row_key).collect();
    let cell = column.cell(found.device, &key);
    Ok(match &found.value {
        Value::Bytes(b) => Value::Bytes(ring.seal(&cell, &ring.open(&cell, b)?)),
        Value::Text(t) => Value::Text(ring.seal_text(&cell, &ring.open_text(&cell, t)?)),
    })
}

/// Rewrites `updates` in one transaction, each only if unchanged since read; returns how many.
async fn write(db: &Db, sql: &Statements, updates: &[(&Found, Value)]) -> crate::Result<u64> {
    on_db!(db, pool => {
        let mut tx = pool.begin().await?;
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

/// One pass over `column`; adds to `report`. Stops early (returning `false`) at shutdown.
async fn sweep_column(
    db: &Db,
    ring: &KeyRing,
    column: &SealedColumn,
    options: &SweepOptions,
    shutdown: &Shutdown,
    report: &mut SweepReport,
) -> crate::Result<bool> {
    let header = ring.current_header(column.form);
    let sql = Statements::new(column, header.len(), options.batch);
    let mut last: Option<Found> = None;
    loop {
        if shutdown.is_triggered() {
            return Ok(false);
        }
        let batch = fetch(db, column, &sql, &header, last.as_ref()).await?;
        let Some(tail) = batch.last() else { return Ok(true) };
        let mut updates = Vec::with_capacity(batch.len());
        for found in &batch {
            match reseal(ring, column, found) {
                Ok(value) => updates.push((found, value)),
                Err(err) => {
                    report.unreadable += 1;
                    tracing::warn!(table = column.table, column = column.column, device = %found.device, %err,
                        "a sealed value cannot be opened with the configured keys; left as it is");
                }
            }
        }
        report.moved += write(db, &sql, &updates).await?;
        last = Some(Found {
            device: tail.device,
            key: tail.key.clone(),
            value: tail.value.clone(),
        });
        tokio::time::sleep(options.pause).await;
    }
}

/// Moves every row of `columns` under the current key; see the module's documentation. When
/// nothing is left behind, plain text is refused from then on and older keys are retired.
#[tracing::instrument(skip_all, fields(key = %ring.current_id()))]
pub async fn sweep(
    db: &Db,
    ring: &KeyRing,
    columns: &[&SealedColumn],
    options: &SweepOptions,
    shutdown: &Shutdown,
) -> crate::Result<SweepReport> {
    let mut report = SweepReport::default();
    // Rows written behind the cursor by a process still on an older key are caught by another pass.
    for _pass in 0..3 {
        for column in columns {
            if !sweep_column(db, ring, column, options, shutdown, &mut report).await? {
                return Ok(report);
            }
        }
        if report.unreadable > 0 {
            break;
        }
        if !any_behind(db, ring, columns).await? {
            ring.set_plaintext_readable(false);
            registry::mark_plaintext_done(db).await?;
            let retired = registry::retire_all_but(db, ring.current_id()).await?;
            report.complete = true;
            tracing::info!(moved = report.moved, retired, "every sealed row is under the current key");
            break;
        }
    }
    on_db!(db, pool => sqlx::query(
        "UPDATE seal_progress SET sweep_finished_at = $1, sweep_key_id = $2, sweep_moved = $3, sweep_unreadable = $4 \
         WHERE id = 1")
        .bind(Timestamp::now().millis()).bind(i64::from(ring.current_id().0))
        .bind(i64::try_from(report.moved).unwrap_or(i64::MAX)).bind(i64::try_from(report.unreadable).unwrap_or(i64::MAX))
        .execute(pool).await.map(drop))?;
    Ok(report)
}

/// Rewrites every sealed value of `columns` in plain text, as releases before encryption stored
/// them: for tests of the migration from such a database. Returns how many rows it rewrote.
#[cfg(feature = "testing")]
pub async fn unseal_all(db: &Db, ring: &KeyRing, columns: &[&SealedColumn]) -> crate::Result<u64> {
    let mut rewritten = 0;
    for column in columns {
        // No sealed value starts with zeros, so this selects them all.
        let nothing = match column.form {
            Form::Binary => vec![0u8; super::envelope::HEADER_LEN],
            Form::Text => vec![b'0'; 14],
        };
        let sql = Statements::new(column, nothing.len(), 500);
        let mut last: Option<Found> = None;
        loop {
            let batch = fetch(db, column, &sql, &nothing, last.as_ref()).await?;
            let Some(tail) = batch.last() else { break };
            let mut updates = Vec::with_capacity(batch.len());
            for found in &batch {
                let key: Vec<RowKey<'_>> = found.key.iter().map(KeyValue::as_row_key).collect();
                let cell = column.cell(found.device, &key);
                let plain = match &found.value {
                    Value::Bytes(b) => Value::Bytes(ring.open(&cell, b).map_err(|e| anyhow::anyhow!("{e}"))?),
                    Value::Text(t) => Value::Text(ring.open_text(&cell, t).map_err(|e| anyhow::anyhow!("{e}"))?),
                };
                updates.push((found, plain));
            }
            rewritten += write(db, &sql, &updates).await?;
            last = Some(Found {
                device: tail.device,
                key: tail.key.clone(),
                value: tail.value.clone(),
            });
        }
    }
    Ok(rewritten)
}

/// The embedded default's upgrade from a database written before encryption: seals every row
/// before sessions start, then rebuilds the SQLite file (`VACUUM`) and empties its WAL, so no
/// plain-text copy stays behind in free pages. Nothing else writes yet, so neither blocks anyone;
/// the one-off cost is in proportion to the database. Does nothing when there is no plain text.
pub async fn seal_plaintext_before_start(db: &Db, ring: &KeyRing, columns: &[&SealedColumn]) -> anyhow::Result<()> {
    let Db::Sqlite(pool) = db else { return Ok(()) };
    if !ring.plaintext_readable() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let (_trigger, shutdown) = crate::shutdown::channel();
    let fast = SweepOptions {
        batch: 500,
        pause: Duration::ZERO,
        ..SweepOptions::default()
    };
    let report = sweep(db, ring, columns, &fast, &shutdown).await?;
    anyhow::ensure!(
        report.complete,
        "{} rows written before encryption cannot be read; see the warnings above",
        report.unreadable
    );
    sqlx::query("VACUUM").execute(pool).await.context("compacting the database file")?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await
        .context("emptying the write-ahead log")?;
    tracing::info!(
        rows = report.moved,
        took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "sealed the WhatsApp keys written before encryption and rebuilt the database file without them"
    );
    Ok(())
}

/// Whether any row of `columns` is not under the current key.
async fn any_behind(db: &Db, ring: &KeyRing, columns: &[&SealedColumn]) -> crate::Result<bool> {
    for column in columns {
        let header = ring.current_header(column.form);
        let sql = format!(
            "SELECT 1 FROM {table} WHERE {col} IS NOT NULL AND substr({col}, 1, {len}) <> $1 LIMIT 1",
            table = column.table,
            col = column.column,
            len = header.len()
        );
        let value = match column.form {
            Form::Binary => Value::Bytes(header),
            Form::Text => Value::Text(String::from_utf8(header).expect("ASCII")),
        };
        let found = on_db!(db, pool => bind_value!(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())), &value)
            .fetch_optional(pool).await.map(|row| row.is_some()))?;
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether any of `columns` holds a value at all.
pub(crate) async fn any_rows(db: &Db, columns: &[&SealedColumn]) -> crate::Result<bool> {
    for column in columns {
        let sql = format!(
            "SELECT 1 FROM {} WHERE {} IS NOT NULL LIMIT 1",
            column.table, column.column
        );
        let found = on_db!(db, pool => sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(pool).await.map(|row| row.is_some()))?;
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a sweep has work: plain text to seal, or a key other than the current one that may
/// still hold rows.
async fn needed(db: &Db, ring: &KeyRing) -> crate::Result<bool> {
    if ring.plaintext_readable() {
        return Ok(true);
    }
    Ok(registry::registered(db)
        .await?
        .iter()
        .any(|k| k.retired_at.is_none() && k.id != ring.current_id()))
}

/// Arbitrary constant naming the sweep's PostgreSQL advisory lock.
const SWEEP_LOCK: i64 = 0x7761_6b65_7973; // "wakeys"

/// Sweeps whenever needed until shutdown (run by the roles that hold sessions). Errors are
/// logged and retried later: they never stop the role.
pub async fn run(db: Db, ring: KeyRing, columns: Vec<&'static SealedColumn>, options: SweepOptions, shutdown: Shutdown) {
    loop {
        match sweep_once(&db, &ring, &columns, &options, &shutdown).await {
            Ok(Some(report)) if !report.complete && report.unreadable > 0 => tracing::error!(
                unreadable = report.unreadable,
                "some sealed rows cannot be opened with the configured keys (see the warnings above); \
                 `wafleet keys status` shows which keys hold rows"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(err = format!("{err:#}"), "the re-encryption sweep failed; trying again later"),
        }
        tokio::select! {
            () = shutdown.clone().wait() => return,
            () = tokio::time::sleep(options.every) => {}
        }
    }
}

/// One sweep if one is needed and no other process is sweeping.
async fn sweep_once(
    db: &Db,
    ring: &KeyRing,
    columns: &[&SealedColumn],
    options: &SweepOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<SweepReport>> {
    if !needed(db, ring).await.context("checking whether rows need sealing")? {
        return Ok(None);
    }
    let Db::Postgres(pool) = db else {
        return Ok(Some(sweep(db, ring, columns, options, shutdown).await?));
    };
    // A session-level lock on a connection of its own: released when unlocked, or when the
    // connection dies with its process.
    let mut conn = pool.acquire().await.context("a connection for the sweep's lock")?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(SWEEP_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        tracing::debug!("another process is sweeping");
        return Ok(None);
    }
    tracing::info!("sealing rows under the current key in the background");
    let result = sweep(db, ring, columns, options, shutdown).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SWEEP_LOCK)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // Never hand a connection that may still hold the lock back to the pool.
        conn.detach();
    }
    Ok(Some(result?))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{LINK_CREDENTIALS, NewUserRole};
    use crate::keys::KeyColumn;
    use crate::keys::source::random_secret;
    use crate::testing::{Backend, TestDb};
    use crate::types::Email;

    /// Link credentials (text envelopes) through a plain-text upgrade and a rotation, on `backend`.
    async fn credentials_follow_the_current_key(backend: Backend) {
        let test = TestDb::new(backend).await;
        let db = &test.db;
        let user = db
            .create_user(&Email::parse("k@example.com").unwrap(), "h", NewUserRole::FirstBecomesAdmin)
            .await
            .unwrap();
        let columns = [&LINK_CREDENTIALS];
        let (old, new) = (random_secret(), random_secret());
        let a = KeyRing::new(&old, None);
        let mut devices = Vec::new();
        for i in 0..5 {
            let device = db.create_device(user.id, &format!("d{i}"), None).await.unwrap().id;
            db.put_link_credentials(&a, device, "sim", &format!("{{\"token\":\"t{i}\"}}"))
                .await
                .unwrap();
            devices.push(device);
        }
        // As a release before encryption left them.
        assert_eq!(unseal_all(db, &a, &columns).await.unwrap(), 5);
        registry::startup(db, &a, &columns).await.unwrap();
        assert!(a.plaintext_readable());
        let (_trigger, shutdown) = crate::shutdown::channel();
        let small = SweepOptions {
            batch: 2,
            pause: Duration::ZERO,
            ..SweepOptions::default()
        };
        let report = sweep(db, &a, &columns, &small, &shutdown).await.unwrap();
        assert_eq!((report.moved, report.complete), (5, true));
        assert_eq!(census(db, &columns).await.unwrap().by_key.get(&a.current_id()), Some(&5));

        let rotating = KeyRing::new(&new, Some(&old));
        registry::startup(db, &rotating, &columns).await.unwrap();
        assert!(!rotating.plaintext_readable(), "the upgrade is recorded as done");
        let report = sweep(db, &rotating, &columns, &small, &shutdown).await.unwrap();
        assert_eq!((report.moved, report.unreadable, report.complete), (5, 0, true));
        let after = KeyRing::new(&new, None);
        registry::startup(db, &after, &columns).await.unwrap();
        for (i, device) in devices.iter().enumerate() {
            let data = db.link_credentials(&after, *device, "sim").await.unwrap();
            assert_eq!(data, Some(format!("{{\"token\":\"t{i}\"}}")));
        }
        let err = registry::startup(db, &KeyRing::new(&old, None), &columns).await.unwrap_err();
        assert!(err.to_string().contains("wrong WA_KEYS_SECRET"), "{err}");
    }

    #[tokio::test]
    async fn credentials_follow_the_current_key_on_sqlite() {
        credentials_follow_the_current_key(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn credentials_follow_the_current_key_on_postgres() {
        credentials_follow_the_current_key(Backend::Postgres).await;
    }

    #[test]
    fn statements_page_by_the_primary_key() {
        const COLUMN: SealedColumn = SealedColumn::binary(
            "wa_base_keys",
            "base_key",
            &[KeyColumn::text("address"), KeyColumn::text("message_id")],
        );
        let sql = Statements::new(&COLUMN, 9, 50);
        assert_eq!(
            sql.next,
            "SELECT device_id, address, message_id, base_key FROM wa_base_keys WHERE base_key IS NOT NULL \
             AND substr(base_key, 1, 9) <> $1 AND (device_id, address, message_id) > ($2, $3, $4) \
             ORDER BY device_id, address, message_id LIMIT 50"
        );
        assert_eq!(
            sql.update,
            "UPDATE wa_base_keys SET base_key = $1 WHERE device_id = $2 AND address = $3 AND message_id = $4 \
             AND base_key = $5"
        );
    }
}
