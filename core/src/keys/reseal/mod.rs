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

use super::{Form, KeyRing, SealedColumn, registry};
use crate::Db;
use crate::db::on_db;
use crate::shutdown::Shutdown;
use crate::types::Timestamp;

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

mod census;
mod rows;
#[cfg(test)]
mod tests;

pub use census::{Census, census};
use rows::{Found, Statements, Value, fetch, reseal, write};

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
        last = Some(tail.position());
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
            tracing::info!(
                moved = report.moved,
                retired,
                "every sealed row is under the current key"
            );
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
                let key: Vec<super::RowKey<'_>> = found.key.iter().map(rows::KeyValue::as_row_key).collect();
                let cell = column.cell(found.device, &key);
                let plain = match &found.value {
                    Value::Bytes(b) => Value::Bytes(ring.open(&cell, b).map_err(|e| anyhow::anyhow!("{e}"))?),
                    Value::Text(t) => Value::Text(ring.open_text(&cell, t).map_err(|e| anyhow::anyhow!("{e}"))?),
                };
                updates.push((found, plain));
            }
            rewritten += write(db, &sql, &updates).await?;
            last = Some(tail.position());
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
    sqlx::query("VACUUM")
        .execute(pool)
        .await
        .context("compacting the database file")?;
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
            // Values shorter than a header (the empty one included: SQLite's `substr` of an
            // empty blob is NULL, which no comparison selects) are not sealed either.
            "SELECT 1 FROM {table} WHERE {col} IS NOT NULL \
             AND (length({col}) < {len} OR substr({col}, 1, {len}) <> $1) LIMIT 1",
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
pub async fn run(
    db: Db,
    ring: KeyRing,
    columns: Vec<&'static SealedColumn>,
    options: SweepOptions,
    shutdown: Shutdown,
) {
    loop {
        match sweep_once(&db, &ring, &columns, &options, &shutdown).await {
            Ok(Some(report)) if !report.complete && report.unreadable > 0 => tracing::error!(
                unreadable = report.unreadable,
                "some sealed rows cannot be opened with the configured keys (see the warnings above); \
                 `wafleet keys status` shows which keys hold rows"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(
                err = format!("{err:#}"),
                "the re-encryption sweep failed; trying again later"
            ),
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
