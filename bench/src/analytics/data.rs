//! The analytics data set: one user's sends over many days, with receipts and failures in fixed
//! shares and replies from a third of the contacts, and counts taken directly from those rows.

use std::time::Instant;

use anyhow::Context;

use chrono::NaiveDate;
use wafleet_core::Db;
use wafleet_core::db::NewUserRole;
use wafleet_core::types::{Email, Timestamp, UserId};

use super::Options;
use crate::{dataset, fleet};

/// Contacts each device writes to.
const CONTACTS: i64 = 1_000;
const DAY_MS: i64 = 86_400_000;

/// Writes the user, devices, sends and replies; returns the user.
pub async fn generate(db: &Db, o: &Options) -> anyhow::Result<UserId> {
    let started = Instant::now();
    let email = Email::parse("analytics-bench@example.com").map_err(anyhow::Error::msg)?;
    let user = db.create_user(&email, "unused", NewUserRole::FirstBecomesAdmin).await?;
    let mut ids = Vec::new();
    for n in 0..o.devices {
        ids.push(db.create_device(user.id, &format!("analytics {n}"), None).await?.id.0);
    }
    let pool = fleet::postgres(db);
    let now = Timestamp::now().millis();
    // Send n: device n % devices, contact (n / devices) % contacts, going back in time evenly over
    // the days; of every 20, 1 failed, 3 sent, 6 delivered, 10 read.
    let span = o.days as i64 * DAY_MS - 60_000;
    let insert = sqlx::query(
        "INSERT INTO outbound_messages (user_id, device_id, idempotency_key, recipient, kind, body, status, \
         attempts, created_at, updated_at, sent_at) \
         SELECT $1, ($2::BIGINT[])[1 + n % $3], 'bench:' || n, \
           '60190' || lpad(((n / $3) % $4)::TEXT, 7, '0') || '@s.whatsapp.net', 'text', 'Hello', \
           CASE WHEN n % 20 = 0 THEN 'failed' WHEN n % 20 < 4 THEN 'sent' WHEN n % 20 < 10 THEN 'delivered' ELSE 'read' END, \
           1, at, at, CASE WHEN n % 20 = 0 THEN NULL ELSE at END \
         FROM generate_series(0, $5 - 1) AS n, LATERAL (SELECT $6 - (n * $7 / $5) AS at) AS t",
    )
    .bind(user.id)
    .bind(ids.clone())
    .bind(o.devices as i64)
    .bind(CONTACTS)
    .bind(o.messages as i64)
    .bind(now - 60_000)
    .bind(span);
    dataset::fill(pool, "outbound_messages", o.messages > dataset::REBUILD_ABOVE, insert).await?;
    // A reply from every third contact of every device, at a time spread over the days.
    sqlx::query(
        "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, received_at) \
         SELECT d, 'R' || d || '-' || c, j, j, FALSE, 'text', 'Thanks', at, at \
         FROM unnest($1::BIGINT[]) AS d, generate_series(0, $2 - 1, 3) AS c, \
         LATERAL (SELECT '60190' || lpad(c::TEXT, 7, '0') || '@s.whatsapp.net' AS j, \
                  $3 - (c * $4 / $2) AS at) AS t",
    )
    .bind(&ids)
    .bind(CONTACTS)
    .bind(now - 60_000)
    .bind(span)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE messages").execute(pool).await?;
    eprintln!("[bench] analytics: data set written in {:.1?}", started.elapsed());
    Ok(user.id)
}

/// Migration 0013, whose backfill [`mark_replies`] runs and times.
const MIGRATION_0013: &str = include_str!("../../../migrations/postgres/0013_outbound_replied.sql");

/// Marks the sends the data set's replies answer, as ingest and the roll-ups would have over its
/// days, with the statement migration 0013 runs on a database that already holds them (taken from
/// the migration itself, so the figure stays that statement's). Returns the sends marked and the
/// time it took.
pub async fn mark_replies(db: &Db) -> anyhow::Result<(u64, f64)> {
    let backfill = MIGRATION_0013
        .find("UPDATE outbound_messages")
        .and_then(|start| {
            let rest = &MIGRATION_0013[start..];
            rest.find(';').map(|end| &rest[..end])
        })
        .context("migration 0013 no longer has its UPDATE of outbound_messages")?;
    let started = Instant::now();
    let marked = sqlx::query(sqlx::AssertSqlSafe(backfill))
        .execute(fleet::postgres(db))
        .await?
        .rows_affected();
    sqlx::query("ANALYZE outbound_messages")
        .execute(fleet::postgres(db))
        .await?;
    Ok((marked, started.elapsed().as_secs_f64()))
}

/// One minute of new activity: as many new sends as the data set has per minute (at least 100),
/// now, and a reply to some of them. Returns the sends written.
pub async fn one_minute(db: &Db, o: &Options, user: UserId) -> anyhow::Result<u64> {
    let pool = fleet::postgres(db);
    let count = (o.messages / (o.days * 1440)).max(100) as i64;
    let now = Timestamp::now().millis();
    sqlx::query(
        "INSERT INTO outbound_messages (user_id, device_id, idempotency_key, recipient, kind, body, status, \
         attempts, created_at, updated_at, sent_at) \
         SELECT $1, d.id, 'minute:' || n, '60190' || lpad((n % $3)::TEXT, 7, '0') || '@s.whatsapp.net', 'text', \
           'Hello', 'delivered', 1, $4, $4, $4 \
         FROM generate_series(0, $2 - 1) AS n \
         JOIN LATERAL (SELECT id FROM devices WHERE user_id = $1 ORDER BY id OFFSET n % (SELECT COUNT(*) FROM devices WHERE user_id = $1) LIMIT 1) AS d ON TRUE",
    )
    .bind(user)
    .bind(count)
    .bind(CONTACTS)
    .bind(now)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, received_at) \
         SELECT device_id, 'M' || id, recipient, recipient, FALSE, 'text', 'Yes', $2 + 1, $2 + 1 \
         FROM outbound_messages WHERE user_id = $1 AND idempotency_key LIKE 'minute:%' AND id % 4 = 0",
    )
    .bind(user)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(count as u64)
}

/// The user's (sent, delivered, read, replied, failed) from `first` to `last` (UTC days, both
/// included), counted from the sends themselves by the analytics' counting rule.
pub async fn direct_counts(db: &Db, user: UserId, first: NaiveDate, last: NaiveDate) -> anyhow::Result<[i64; 5]> {
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis();
    let (from, until) = (day(first), day(last) + DAY_MS);
    let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE o.status IN ('sent', 'delivered', 'read')), \
           COUNT(*) FILTER (WHERE o.status IN ('delivered', 'read')), \
           COUNT(*) FILTER (WHERE o.status = 'read'), \
           COUNT(*) FILTER (WHERE o.status IN ('sent', 'delivered', 'read') AND EXISTS ( \
             SELECT 1 FROM messages m WHERE m.device_id = o.device_id AND m.chat_jid = o.recipient \
             AND m.from_me = FALSE AND m.sent_at >= o.sent_at)), \
           COUNT(*) FILTER (WHERE o.status = 'failed') \
         FROM outbound_messages o WHERE o.user_id = $1 \
           AND COALESCE(o.sent_at, o.created_at) >= $2 AND COALESCE(o.sent_at, o.created_at) < $3",
    )
    .bind(user)
    .bind(from)
    .bind(until)
    .fetch_one(fleet::postgres(db))
    .await?;
    Ok([row.0, row.1, row.2, row.3, row.4])
}

/// Seconds to count all of the user's sends directly, as [`direct_counts`] does.
pub async fn count_time(db: &Db, user: UserId) -> anyhow::Result<f64> {
    let started = Instant::now();
    let far = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
    let until = Timestamp::now().to_datetime().date_naive();
    direct_counts(db, user, far, until).await?;
    Ok(started.elapsed().as_secs_f64())
}
