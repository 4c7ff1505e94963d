//! Failed-login counters for rate limiting, kept in the database so every API replica sees them.
//!
//! An attempt is counted *before* its password is checked, in one statement that increments and
//! returns the count: parallel attempts each get a count of their own, so no more than the limit
//! are ever checked in one window. A successful login clears or refunds its count.

use crate::types::Timestamp;
use crate::{Db, Result};

use super::on_db;

/// One counted attempt: where it stands in its key's current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginAttempt {
    /// Attempts counted in the window so far, this one included.
    pub count: i64,
    /// When the window ends (and the count starts again).
    pub window_ends: Timestamp,
}

impl LoginAttempt {
    /// If this attempt is over `max`, the seconds until its window ends (at least 1).
    pub fn blocked_for(&self, max: u32) -> Option<i64> {
        let now = Timestamp::now();
        (self.count > i64::from(max)).then(|| ((self.window_ends.millis() - now.millis()) / 1000).max(1))
    }
}

impl Db {
    /// Counts one login attempt for `key` in a fixed window of `window_secs` and returns the
    /// count so far. Atomic: the increment and the read are one statement.
    #[tracing::instrument(skip(self))]
    pub async fn reserve_login_attempt(&self, key: &str, window_secs: i64) -> Result<LoginAttempt> {
        let now = Timestamp::now();
        // A window older than `window_secs` restarts at `now` with a count of one.
        let (count, start): (i64, Timestamp) = on_db!(self, pool => sqlx::query_as(
            "INSERT INTO login_failures (key, window_start, failures) VALUES ($1, $2, 1) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_failures.window_start <= $3 THEN 1 ELSE login_failures.failures + 1 END, \
               window_start = CASE WHEN login_failures.window_start <= $3 THEN $2 ELSE login_failures.window_start END \
             RETURNING failures, window_start")
            .bind(key)
            .bind(now)
            .bind(now.plus_secs(-window_secs))
            .fetch_one(pool)
            .await)?;
        Ok(LoginAttempt {
            count,
            window_ends: start.plus_secs(window_secs),
        })
    }

    /// Gives back an attempt counted by [`Db::reserve_login_attempt`] that turned out not to be a
    /// failure (a successful login, or one refused before its password was checked).
    #[tracing::instrument(skip(self))]
    pub async fn refund_login_attempt(&self, key: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "UPDATE login_failures SET failures = failures - 1 WHERE key = $1 AND failures > 0")
            .bind(key)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Forgets the failures of `key` (after a successful login).
    #[tracing::instrument(skip(self))]
    pub async fn clear_login_failures(&self, key: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("DELETE FROM login_failures WHERE key = $1").bind(key).execute(pool).await.map(drop))?;
        Ok(())
    }
}
