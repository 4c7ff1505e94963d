//! Keeping the queues' storage from growing without end: finished jobs are deleted once they are
//! old enough, and the send queues of workers that are gone are removed. Removing a gone worker's
//! queue loses nothing: every send lives in the database, where the device's new holder finds it
//! on its sweep.

use std::time::Duration;

use anyhow::Context;
use apalis_redis::ConnectionManager;

use super::{Queues, Store};
use crate::types::Timestamp;

/// What one round of tidying removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tidied {
    /// Finished jobs deleted.
    pub finished_jobs: u64,
    /// Send queues of gone workers removed.
    pub queues_removed: u64,
}

/// Where apalis-redis lists every queue it has seen (one entry per queue, `{queue}:workers`).
const APALIS_QUEUE_LIST: &str = "core:apalis:queues:list";
/// Keys deleted per command.
const DELETE_CHUNK: usize = 500;

impl Queues {
    /// Deletes jobs finished more than `keep_finished` ago, and removes the send queues of
    /// workers not in `known_workers` (the workers that have sent a heartbeat recently).
    pub async fn tidy(&self, known_workers: &[String], keep_finished: Duration) -> crate::Result<Tidied> {
        let prefix = self.full_name(super::jobs::SENDS_PREFIX);
        match &self.store {
            Store::Redis(conn) => tidy_redis(conn, &prefix, known_workers, keep_finished)
                .await
                .map_err(crate::Error::from),
            Store::Sqlite(pool) => {
                let cutoff = Timestamp::now().0 / 1000 - i64::try_from(keep_finished.as_secs()).unwrap_or(i64::MAX);
                // apalis-sqlite's own vacuum compares an integer with a date string (so it deletes
                // every finished job whatever its age) and then VACUUMs the whole file, which
                // would rewrite wafleet's database: this is the delete it means.
                let finished =
                    sqlx::query("DELETE FROM Jobs WHERE status IN ('Done', 'Killed', 'Failed') AND done_at <= $1")
                        .bind(cutoff)
                        .execute(pool)
                        .await?
                        .rows_affected();
                let queues: Vec<(String,)> =
                    sqlx::query_as("SELECT DISTINCT job_type FROM Jobs WHERE substr(job_type, 1, length($1)) = $1")
                        .bind(&prefix)
                        .fetch_all(pool)
                        .await?;
                let mut removed = 0;
                for (queue,) in queues {
                    if gone(&queue[prefix.len()..], known_workers) {
                        sqlx::query("DELETE FROM Jobs WHERE job_type = $1")
                            .bind(&queue)
                            .execute(pool)
                            .await?;
                        removed += 1;
                    }
                }
                Ok(Tidied {
                    finished_jobs: finished,
                    queues_removed: removed,
                })
            }
        }
    }
}

/// Whether the queue of `worker` belongs to no known worker. A worker name that some known
/// worker's name extends past a `:` is kept too, since Redis keys cannot tell them apart.
fn gone(worker: &str, known_workers: &[String]) -> bool {
    !known_workers
        .iter()
        .any(|known| known == worker || known.strip_prefix(worker).is_some_and(|rest| rest.starts_with(':')))
}

async fn tidy_redis(
    conn: &ConnectionManager,
    prefix: &str,
    known_workers: &[String],
    keep_finished: Duration,
) -> anyhow::Result<Tidied> {
    let mut conn = conn.clone();
    // Every send queue with keys: `{prefix}{worker}:{key}`.
    let keys = scan(&mut conn, &format!("{}*", glob_escape(prefix))).await?;
    let mut workers: Vec<&str> = keys
        .iter()
        .filter_map(|key| key[prefix.len()..].split(':').next())
        .collect();
    workers.sort_unstable();
    workers.dedup();
    let mut tidied = Tidied::default();
    for worker in workers {
        let queue = format!("{prefix}{worker}");
        if gone(worker, known_workers) {
            let keys = scan(&mut conn, &format!("{}:*", glob_escape(&queue))).await?;
            for chunk in keys.chunks(DELETE_CHUNK) {
                redis::cmd("UNLINK")
                    .arg(chunk)
                    .query_async::<()>(&mut conn)
                    .await
                    .context("removing a gone worker's queue")?;
            }
            redis::cmd("ZREM")
                .arg(APALIS_QUEUE_LIST)
                .arg(format!("{queue}:workers"))
                .query_async::<()>(&mut conn)
                .await?;
            tidied.queues_removed += 1;
        } else {
            tidied.finished_jobs += delete_finished(&mut conn, &queue, keep_finished).await?;
        }
    }
    Ok(tidied)
}

/// Deletes the jobs of `queue` that finished more than `keep` ago; returns how many.
async fn delete_finished(conn: &mut ConnectionManager, queue: &str, keep: Duration) -> anyhow::Result<u64> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(include_str!("tidy_finished.lua")));
    let config = apalis_redis::Config::default().queue(queue);
    let cutoff = Timestamp::now().0 / 1000 - i64::try_from(keep.as_secs()).unwrap_or(i64::MAX);
    let mut deleted = 0u64;
    for set in [config.done_jobs_set(), config.dead_jobs_set()] {
        let mut cursor = "0".to_owned();
        loop {
            let (next, count): (String, u64) = SCRIPT
                .key(&set)
                .key(config.job_data_hash())
                .key(config.job_meta_hash())
                .arg(cutoff)
                .arg(&cursor)
                .arg(DELETE_CHUNK)
                .invoke_async(conn)
                .await
                .with_context(|| format!("deleting finished jobs of {queue}"))?;
            deleted += count;
            if next == "0" {
                break;
            }
            cursor = next;
        }
    }
    Ok(deleted)
}

/// Every key matching `pattern`, by SCAN (never KEYS, which blocks Redis).
async fn scan(conn: &mut ConnectionManager, pattern: &str) -> anyhow::Result<Vec<String>> {
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .context("listing queue keys in Redis")?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// `text` as a literal in a SCAN pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_gone_only_when_no_known_worker_could_own_it() {
        let known = vec!["w1".to_owned(), "pod:a".to_owned()];
        assert!(!gone("w1", &known));
        assert!(gone("w2", &known));
        assert!(gone("w", &known), "a plain prefix is another worker");
        assert!(!gone("pod", &known), "`pod:a`'s keys look like `pod`'s");
    }

    #[test]
    fn patterns_match_names_literally() {
        assert_eq!(glob_escape("ns*:sends.[a]?"), r"ns\*:sends.\[a\]\?");
    }
}
