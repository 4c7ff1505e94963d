//! Messages already stored before the ingest run: a year of them, so that the run measures ingest
//! into tables whose indexes have outgrown memory, as an installation's do after months.
//!
//! Ids are random hex, as WhatsApp's are, so the primary key's inserts land anywhere in it, not
//! at its end. The rows are written in key order with the secondary indexes dropped and rebuilt
//! after (see [`crate::dataset::fill`]), then vacuumed and checkpointed, so that the measured run
//! pays for none of the loading: no autovacuum of the new rows, no dirty pages left to write.

use std::time::Instant;

use wafleet_core::types::Timestamp;

use crate::dataset;
use crate::fleet::{self, Device};

/// The span the preloaded messages are spread over, ms: a year before now.
const SPAN_MS: i64 = 365 * 86_400_000;

/// Contacts each device has talked to over that year; the flood's senders are the first of them
/// (same numbers as [`super::ceiling`]'s), so its chats already exist with a year of history.
pub const CONTACTS: i64 = 2_000;

/// Stores `rows` messages spread over `devices` and the year before now, with their chats.
pub async fn messages(db: &wafleet_core::Db, devices: &[Device], rows: u64) -> anyhow::Result<()> {
    if rows == 0 {
        return Ok(());
    }
    let pool = fleet::postgres(db);
    let started = Instant::now();
    let now = Timestamp::now().0;
    let ids: Vec<i64> = devices.iter().map(|d| d.id.0).collect();
    // Message n: device n % devices, contact (n / devices) % CONTACTS, sent at an even step
    // through the year. The id is 20 hex digits of a hash of n, like WhatsApp's `3EB0…` ids.
    let insert = sqlx::query(
        "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, status, \
         received_at) SELECT d, i, c, c, false, 'text', 'Preloaded message ' || n, t, NULL, t \
         FROM generate_series(0, $4 - 1) AS n, \
         LATERAL (SELECT ($1::BIGINT[])[1 + n % $5] AS d, \
                         '3EB0' || upper(substr(md5(n::TEXT), 1, 16)) AS i, \
                         '60190' || lpad(((n / $5) % $2)::TEXT, 7, '0') || '@s.whatsapp.net' AS c, \
                         $3 - $6 + n * ($6 / $4) AS t) AS m \
         ORDER BY d, i",
    )
    .bind(ids.clone())
    .bind(CONTACTS)
    .bind(now)
    .bind(rows as i64)
    .bind(ids.len() as i64)
    .bind(SPAN_MS);
    dataset::fill(pool, "messages", rows > dataset::REBUILD_ABOVE, insert).await?;
    sqlx::query(
        "INSERT INTO chats (device_id, jid, last_message_at, last_message_preview, unread_count) \
         SELECT d, '60190' || lpad(c::TEXT, 7, '0') || '@s.whatsapp.net', $2 - c * 1000, 'Preloaded message', 0 \
         FROM unnest($1::BIGINT[]) AS d, generate_series(0, $3 - 1) AS c ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(now)
    .bind(CONTACTS)
    .execute(pool)
    .await?;
    sqlx::query("VACUUM (ANALYZE) messages").execute(pool).await?;
    sqlx::query("VACUUM (ANALYZE) chats").execute(pool).await?;
    // Needs a superuser (or `pg_checkpoint`); without it the run may pay for some of the writes.
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        eprintln!("[bench] preload: no checkpoint ({e}); the run may write some of the preload's pages");
    }
    eprintln!(
        "[bench] preload: {rows} messages over a year on {} devices in {:.1?}",
        devices.len(),
        started.elapsed()
    );
    Ok(())
}
