//! Fixed-window rate limits shared by every API replica: a key's hits are counted in the database
//! by one statement that increments and returns the count, so parallel callers each get a count of
//! their own and no more than the limit ever pass in one window.

use crate::types::Timestamp;
use crate::{Db, Result};

use super::on_db;

/// Where one hit stands in its key's current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateHit {
    /// Hits counted in the window so far, this one included.
    pub used: i64,
    /// When the window ends (and the count starts again).
    pub window_ends: Timestamp,
}

impl RateHit {
    /// If this hit is over `max`, the seconds until its window ends (at least 1).
    pub fn over(&self, max: u32) -> Option<i64> {
        (self.used > i64::from(max)).then(|| ((self.window_ends.millis() - Timestamp::now().millis()) / 1000).max(1))
    }
}

impl Db {
    /// Counts one hit on `key` in a fixed window of `window_secs` and returns where it stands.
    #[tracing::instrument(skip(self))]
    pub async fn hit_rate_window(&self, key: &str, window_secs: i64) -> Result<RateHit> {
        let now = Timestamp::now();
        // A window older than `window_secs` restarts at `now` with a count of one.
        let (used, start): (i64, Timestamp) = on_db!(self, pool => sqlx::query_as(
            "INSERT INTO rate_windows (key, window_start, used) VALUES ($1, $2, 1) \
             ON CONFLICT (key) DO UPDATE SET \
               used = CASE WHEN rate_windows.window_start <= $3 THEN 1 ELSE rate_windows.used + 1 END, \
               window_start = CASE WHEN rate_windows.window_start <= $3 THEN $2 ELSE rate_windows.window_start END \
             RETURNING used, window_start")
            .bind(key)
            .bind(now)
            .bind(now.plus_secs(-window_secs))
            .fetch_one(pool)
            .await)?;
        Ok(RateHit {
            used,
            window_ends: start.plus_secs(window_secs),
        })
    }

    /// Gives back a hit that did not happen after all (a send refused before it was recorded).
    #[tracing::instrument(skip(self))]
    pub async fn refund_rate_window(&self, key: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("UPDATE rate_windows SET used = used - 1 WHERE key = $1 AND used > 0")
            .bind(key)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}
