//! Retention: how long a user's chat messages are kept, and the deletes that enforce it.
//!
//! A message is kept `keep_messages_days` whole UTC days after the day it reached wafleet
//! (`received_at`, which the index on `(device_id, received_at)` finds per device; a message
//! synced from the phone's history on link counts from the link). Older ones are deleted in
//! batches of a bounded size, each its own short transaction, so that ingest never waits behind
//! a long delete. Only `messages` shrink: sends, their receipts and the analytics roll-ups stay,
//! so analytics of every day are unchanged, and a chat keeps its place in the list (its preview
//! is cleared once its last message is gone).

use crate::types::{Timestamp, UserId};
use crate::{Db, Error, Result};

use super::on_db;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
/// The longest retention that can be set: ten years. Longer is "keep everything".
pub const MAX_KEEP_DAYS: i64 = 3650;

/// Deletes up to `$2` messages older than their user's retention, `$1` being today's midnight
/// (UTC, ms): whole days go at once, whatever the time of the run.
const PRUNE_SQL: &str = "\
DELETE FROM messages WHERE (device_id, id) IN (
    SELECT m.device_id, m.id FROM users u
        JOIN devices d ON d.user_id = u.id
        JOIN messages m ON m.device_id = d.id AND m.received_at < $1 - u.keep_messages_days * 86400000
    WHERE u.keep_messages_days IS NOT NULL
    LIMIT $2)";

/// Clears the preview of chats whose last message is older than their user's retention.
const CLEAR_PREVIEWS_SQL: &str = "\
UPDATE chats SET last_message_preview = NULL
WHERE last_message_preview IS NOT NULL AND device_id IN (
    SELECT d.id FROM users u JOIN devices d ON d.user_id = u.id WHERE u.keep_messages_days IS NOT NULL)
  AND last_message_at < $1 - (
    SELECT u.keep_messages_days * 86400000 FROM users u JOIN devices d ON d.user_id = u.id
    WHERE d.id = chats.device_id)";

/// Today's midnight, UTC, in milliseconds.
fn midnight(now: Timestamp) -> i64 {
    now.millis() - now.millis().rem_euclid(DAY_MS)
}

impl Db {
    /// How many days the user's messages are kept; `None` keeps them all.
    #[tracing::instrument(skip(self))]
    pub async fn keep_messages_days(&self, user: UserId) -> Result<Option<i64>> {
        let days: Option<Option<i64>> = on_db!(self, pool => sqlx::query_scalar(
            "SELECT keep_messages_days FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(pool)
            .await)?;
        days.ok_or(Error::NotFound)
    }

    /// Sets how many days the user's messages are kept (1 to [`MAX_KEEP_DAYS`]); `None` keeps
    /// them all. The next retention run deletes what falls outside.
    #[tracing::instrument(skip(self))]
    pub async fn set_keep_messages_days(&self, user: UserId, days: Option<i64>) -> Result<()> {
        if let Some(days) = days
            && !(1..=MAX_KEEP_DAYS).contains(&days)
        {
            return Err(Error::Invalid(format!(
                "keep_messages_days: {days} is out of range; give 1 to {MAX_KEEP_DAYS} days, or null to keep everything"
            )));
        }
        let done = on_db!(self, pool => sqlx::query("UPDATE users SET keep_messages_days = $2 WHERE id = $1")
            .bind(user)
            .bind(days)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Deletes one batch of up to `batch` messages that every user's retention lets go, as of
    /// `now`; returns how many. Run it until it returns less than `batch`.
    #[tracing::instrument(skip(self))]
    pub async fn prune_messages(&self, now: Timestamp, batch: i64) -> Result<u64> {
        let removed = on_db!(self, pool => sqlx::query(PRUNE_SQL)
            .bind(midnight(now))
            .bind(batch)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(removed)
    }

    /// Clears the preview of every chat whose last message retention let go; returns how many.
    #[tracing::instrument(skip(self))]
    pub async fn clear_expired_previews(&self, now: Timestamp) -> Result<u64> {
        let cleared = on_db!(self, pool => sqlx::query(CLEAR_PREVIEWS_SQL)
            .bind(midnight(now))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(cleared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midnight_is_the_start_of_the_utc_day() {
        let noon = Timestamp(20_000 * DAY_MS + DAY_MS / 2);
        assert_eq!(midnight(noon), 20_000 * DAY_MS);
        assert_eq!(midnight(Timestamp(20_000 * DAY_MS)), 20_000 * DAY_MS);
    }
}
