//! Retention: how long a user's chat messages and the files of received ones are kept, and the
//! deletes that enforce it.
//!
//! A message is kept `keep_messages_days` whole UTC days after the day it reached wafleet
//! (`received_at`, which the index on `(device_id, received_at)` finds per device; a message
//! synced from the phone's history on link counts from the link). Older ones are deleted device
//! by device in batches of a bounded size, each its own short statement, so that ingest never
//! waits behind a long delete. Only `messages` shrink: sends, their receipts and the analytics roll-ups stay,
//! so analytics of every day are unchanged, and a chat keeps its place in the list (its preview
//! is cleared once its last message is gone).
//!
//! A received file is kept `keep_media_days` the same way (never longer than its message): the
//! file is removed from the media store and its message stays, saying the file expired.

use crate::types::{DeviceId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::analytics::day_start;
use super::on_db;

/// The longest retention that can be set: ten years. Longer is "keep everything".
pub const MAX_KEEP_DAYS: i64 = 3650;

/// The devices whose users keep messages or files for a limited time, each with the instants
/// before which its messages go, and its files (`$1` being today's midnight, UTC, ms: whole days
/// go at once). A file goes no later than its message.
const CUTOFFS_SQL: &str = "\
SELECT d.id, $1 - u.keep_messages_days * 86400000,
  $1 - (CASE WHEN u.keep_media_days IS NULL OR u.keep_media_days > u.keep_messages_days
        THEN u.keep_messages_days ELSE u.keep_media_days END) * 86400000
FROM users u JOIN devices d ON d.user_id = u.id
WHERE u.keep_messages_days IS NOT NULL OR u.keep_media_days IS NOT NULL ORDER BY d.id";

/// Deletes up to `$3` messages of device `$1` that reached wafleet before `$2`. One device and one
/// cutoff per statement, so that both are bounds of the index on `(device_id, received_at)`:
/// a device with nothing left to delete costs one index probe.
const PRUNE_SQL: &str = "\
DELETE FROM messages WHERE (device_id, id) IN (
    SELECT device_id, id FROM messages WHERE device_id = $1 AND received_at < $2 LIMIT $3)";

/// Clears the preview of device `$1`'s chats whose last message is before `$2`.
const CLEAR_PREVIEWS_SQL: &str = "\
UPDATE chats SET last_message_preview = NULL
WHERE device_id = $1 AND last_message_at < $2 AND last_message_preview IS NOT NULL";

/// How retention deletes: batch size, the pause between batches, and the most batches of a run.
#[derive(Clone, Copy, Debug)]
pub struct Batches {
    /// Messages per statement.
    pub size: i64,
    /// Pause after each full batch, so that other writers get the database in between.
    pub pause: std::time::Duration,
    /// Batches per run at most; the next run goes on from there.
    pub max: u32,
}

/// What a retention run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Messages deleted.
    pub messages: u64,
    /// Chats whose preview was cleared.
    pub previews: u64,
    /// Files of deleted messages removed from the media store.
    pub files: u64,
    /// Whether the run stopped at its batch limit with more to delete.
    pub more: bool,
    /// The devices whose messages or chats changed, in order: cached reads of them are stale.
    pub devices: Vec<DeviceId>,
}

/// How many days a user's data is kept; `None`: as long as the data itself is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionDays {
    /// Chat messages, counted from when they reached wafleet.
    pub messages: Option<i64>,
    /// Files of received messages (never longer than their messages).
    pub media: Option<i64>,
}

/// Today's midnight, UTC, in milliseconds.
fn midnight(now: Timestamp) -> i64 {
    day_start(now.to_datetime().date_naive())
}

impl Db {
    /// How many days the user's messages and received files are kept.
    #[tracing::instrument(skip(self))]
    pub async fn retention_days(&self, user: UserId) -> Result<RetentionDays> {
        let days: Option<(Option<i64>, Option<i64>)> = on_db!(self, pool => sqlx::query_as(
            "SELECT keep_messages_days, keep_media_days FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(pool)
            .await)?;
        let (messages, media) = days.ok_or(Error::NotFound)?;
        Ok(RetentionDays { messages, media })
    }

    /// Sets how many days the user's messages and received files are kept (each 1 to
    /// [`MAX_KEEP_DAYS`], or `None`). The next retention run deletes what falls outside.
    #[tracing::instrument(skip(self))]
    pub async fn set_retention_days(&self, user: UserId, days: RetentionDays) -> Result<()> {
        for (field, value) in [("keep_messages_days", days.messages), ("keep_media_days", days.media)] {
            if let Some(value) = value
                && !(1..=MAX_KEEP_DAYS).contains(&value)
            {
                return Err(Error::Invalid(format!(
                    "{field}: {value} is out of range; give 1 to {MAX_KEEP_DAYS} days, or null to keep everything"
                )));
            }
        }
        let done = on_db!(self, pool => sqlx::query(
            "UPDATE users SET keep_messages_days = $2, keep_media_days = $3 WHERE id = $1")
            .bind(user)
            .bind(days.messages)
            .bind(days.media)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// Deletes what every user's retention lets go as of `now`, device by device, in batches
    /// (see [`Batches`]), then clears the preview of chats whose last message went. Idempotent:
    /// a run cut short is continued by the next.
    #[tracing::instrument(skip(self))]
    pub async fn enforce_retention(
        &self,
        now: Timestamp,
        batches: Batches,
        media: &crate::media_store::MediaStore,
    ) -> Result<Pruned> {
        let cutoffs: Vec<(DeviceId, Option<Timestamp>, Option<Timestamp>)> = on_db!(self, pool => sqlx::query_as(CUTOFFS_SQL)
                .bind(midnight(now))
                .fetch_all(pool)
                .await)?;
        let mut pruned = Pruned::default();
        let mut left = batches.max;
        for (device, messages_before, files_before) in cutoffs {
            let (mut files, mut messages, mut previews, mut done) = (0, 0, 0, true);
            // Files first: a message's file goes no later than the message (the row that points
            // at it goes with the message).
            if let Some(cutoff) = files_before {
                (files, done) = self
                    .in_batches(&mut left, batches, device, Prune::Files(cutoff, media))
                    .await?;
            }
            if done && let Some(cutoff) = messages_before {
                (messages, done) = self
                    .in_batches(&mut left, batches, device, Prune::Messages(cutoff))
                    .await?;
                if done {
                    previews = on_db!(self, pool => sqlx::query(CLEAR_PREVIEWS_SQL)
                        .bind(device)
                        .bind(cutoff)
                        .execute(pool)
                        .await
                        .map(|r| r.rows_affected()))?;
                }
            }
            pruned.files += files;
            pruned.messages += messages;
            pruned.previews += previews;
            if files + messages + previews > 0 {
                pruned.devices.push(device);
            }
            if !done {
                pruned.more = true;
                return Ok(pruned);
            }
        }
        Ok(pruned)
    }
}

/// What a batch of retention removes, of one device.
#[derive(Clone, Copy)]
enum Prune<'a> {
    /// Files of messages that reached wafleet before the instant, from the store.
    Files(Timestamp, &'a crate::media_store::MediaStore),
    /// Messages that reached wafleet before the instant.
    Messages(Timestamp),
}

impl Db {
    /// Removes `what` of `device` a batch at a time until a batch comes back short or the run's
    /// budget `left` is spent, pausing between full ones; returns the rows removed and whether
    /// it finished.
    async fn in_batches(
        &self,
        left: &mut u32,
        batches: Batches,
        device: DeviceId,
        what: Prune<'_>,
    ) -> Result<(u64, bool)> {
        let mut removed = 0;
        loop {
            if *left == 0 {
                return Ok((removed, false));
            }
            *left -= 1;
            let rows = match what {
                Prune::Files(cutoff, media) => self.expire_media_before(device, cutoff, batches.size, media).await?,
                Prune::Messages(cutoff) => on_db!(self, pool => sqlx::query(PRUNE_SQL)
                    .bind(device)
                    .bind(cutoff)
                    .bind(batches.size)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))?,
            };
            removed += rows;
            if rows < batches.size.unsigned_abs() {
                return Ok((removed, true));
            }
            tokio::time::sleep(batches.pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::analytics::DAY_MS;

    #[test]
    fn midnight_is_the_start_of_the_utc_day() {
        let noon = Timestamp(20_000 * DAY_MS + DAY_MS / 2);
        assert_eq!(midnight(noon), 20_000 * DAY_MS);
        assert_eq!(midnight(Timestamp(20_000 * DAY_MS)), 20_000 * DAY_MS);
    }
}
