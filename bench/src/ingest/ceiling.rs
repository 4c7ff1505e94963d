//! The ingest ceiling: the same kind of rows written straight into the same tables with `COPY`,
//! two connections in parallel (what PostgreSQL on this machine takes at best), and the chats
//! brought up to date with one upsert, as a batch of the worker would.

use std::fmt::Write;
use std::time::Instant;

use sqlx::postgres::PgPoolCopyExt;
use wafleet_core::Db;
use wafleet_core::types::Timestamp;

use crate::fleet::{self, Device};

/// Rows per `COPY` statement (each its own transaction, like a worker's batch but larger).
const ROWS_PER_COPY: usize = 50_000;
/// Connections writing at once.
const CONNECTIONS: usize = 2;

/// Copies `rows` new messages for `devices` from `contacts` senders each; returns rows a second.
pub async fn copy_rows(db: &Db, devices: &[Device], contacts: usize, rows: u64) -> anyhow::Result<f64> {
    let pool = fleet::postgres(db).clone();
    let started = Instant::now();
    let per_connection = rows.div_ceil(CONNECTIONS as u64);
    let writers: Vec<_> = (0..CONNECTIONS as u64)
        .map(|c| {
            let (pool, devices) = (pool.clone(), devices.to_vec());
            let range = c * per_connection..((c + 1) * per_connection).min(rows);
            tokio::spawn(async move {
                let mut n = range.start;
                while n < range.end {
                    let end = (n + ROWS_PER_COPY as u64).min(range.end);
                    let data = csv(&devices, contacts, n..end);
                    let mut copy = pool
                        .copy_in_raw(
                            "COPY messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, status, \
                             received_at) FROM STDIN (FORMAT csv)",
                        )
                        .await?;
                    copy.send(data.into_bytes()).await?;
                    copy.finish().await?;
                    n = end;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    // The chats: one row per (device, sender), as the worker's upsert does per batch.
    let now = Timestamp::now();
    let (ids, jids): (Vec<i64>, Vec<String>) = devices
        .iter()
        .flat_map(|d| (0..contacts).map(move |c| (d.id.0, jid(c as u64))))
        .unzip();
    let per_chat = (rows / (devices.len() * contacts).max(1) as u64) as i64;
    sqlx::query(
        "INSERT INTO chats (device_id, jid, last_message_at, last_message_preview, unread_count) \
         SELECT d, j, $3, 'Copied message', $4 FROM UNNEST($1::BIGINT[], $2::TEXT[]) AS t (d, j) \
         ON CONFLICT (device_id, jid) DO UPDATE SET last_message_at = excluded.last_message_at, \
         last_message_preview = excluded.last_message_preview, \
         unread_count = chats.unread_count + excluded.unread_count",
    )
    .bind(&ids)
    .bind(&jids)
    .bind(now)
    .bind(per_chat)
    .execute(&pool)
    .await?;
    let took = started.elapsed().as_secs_f64();
    eprintln!("[bench] ceiling: {rows} rows copied in {took:.1} s");
    Ok(rows as f64 / took)
}

fn jid(contact: u64) -> String {
    format!("60190{contact:07}@s.whatsapp.net")
}

/// Rows `range` as CSV, shaped like the flood's messages.
fn csv(devices: &[Device], contacts: usize, range: std::ops::Range<u64>) -> String {
    let now = Timestamp::now().0;
    let mut out = String::with_capacity((range.end - range.start) as usize * 120);
    for n in range {
        let device = devices[(n % devices.len() as u64) as usize].id.0;
        let sender = jid(n / devices.len() as u64 % contacts as u64);
        let _ = writeln!(
            out,
            "{device},COPY{n:016X},{sender},{sender},false,text,Load message {n},{now},,{now}"
        );
    }
    out
}
