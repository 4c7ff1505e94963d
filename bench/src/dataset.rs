//! Large data sets written straight into PostgreSQL: one `INSERT … SELECT generate_series`
//! statement per table, with the table's secondary indexes dropped first and built after, which
//! is faster than maintaining them row by row once they outgrow `shared_buffers`.

use std::time::Instant;

use anyhow::Context;
// Names and definitions come from the catalogue and from this program's own table names.
use sqlx::AssertSqlSafe;

/// Rows above which dropping and rebuilding the indexes pays.
pub const REBUILD_ABOVE: u64 = 1_000_000;

/// Runs `insert` (one statement) into `table`; with `rebuild`, drops the table's indexes other
/// than its primary key first, and builds them again after, then analyses the table.
pub async fn fill(
    pool: &sqlx::PgPool,
    table: &str,
    rebuild: bool,
    insert: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    // Index builds sort in memory up to this much; the default (64 MB) spills 10M-row builds to disk.
    sqlx::query("SET maintenance_work_mem = '512MB'")
        .execute(&mut *conn)
        .await?;
    let mut rebuilt = Vec::new();
    if rebuild {
        // Unique constraints are kept: their index is what the application relies on for
        // idempotency, and dropping it would change what the data set means.
        rebuilt = sqlx::query_as::<_, (String, String)>(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1 \
             AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass)",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        for (name, _) in &rebuilt {
            sqlx::query(AssertSqlSafe(format!("DROP INDEX {name}")))
                .execute(&mut *conn)
                .await?;
        }
    }
    insert
        .execute(&mut *conn)
        .await
        .with_context(|| format!("filling {table}"))?;
    let inserted = started.elapsed();
    for (_, definition) in &rebuilt {
        sqlx::query(AssertSqlSafe(definition.as_str()))
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(AssertSqlSafe(format!("ANALYZE {table}")))
        .execute(&mut *conn)
        .await?;
    eprintln!(
        "[bench] {table}: rows in {inserted:.1?}, {} indexes rebuilt and analysed in {:.1?}",
        rebuilt.len(),
        started.elapsed() - inserted
    );
    Ok(())
}
