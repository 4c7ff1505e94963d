//! Failed-login counters for rate limiting, kept in the database so every API replica sees them.

use crate::types::Timestamp;
use crate::{Db, Result};

use super::on_db;

impl Db {
    /// Counts one failed login for `key` in a fixed window of `window_secs`.
    #[tracing::instrument(skip(self))]
    pub async fn record_login_failure(&self, key: &str, window_secs: i64) -> Result<()> {
        let now = Timestamp::now();
        // A window older than `window_secs` restarts at `now` with a count of one.
        on_db!(self, pool => sqlx::query(
            "INSERT INTO login_failures (key, window_start, failures) VALUES ($1, $2, 1) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_failures.window_start <= $3 THEN 1 ELSE login_failures.failures + 1 END, \
               window_start = CASE WHEN login_failures.window_start <= $3 THEN $2 ELSE login_failures.window_start END")
            .bind(key)
            .bind(now)
            .bind(now.plus_secs(-window_secs))
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// If `key` has `max` or more failures in the current window, the seconds until it ends.
    #[tracing::instrument(skip(self))]
    pub async fn login_blocked_for(&self, key: &str, max: u32, window_secs: i64) -> Result<Option<i64>> {
        let row: Option<(Timestamp, i64)> = on_db!(self, pool => sqlx::query_as(
            "SELECT window_start, failures FROM login_failures WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await)?;
        let now = Timestamp::now();
        Ok(row.and_then(|(start, failures)| {
            let ends = start.plus_secs(window_secs);
            (failures >= i64::from(max) && ends > now).then(|| ((ends.millis() - now.millis()) / 1000).max(1))
        }))
    }

    /// Forgets the failures of `key` (after a successful login).
    #[tracing::instrument(skip(self))]
    pub async fn clear_login_failures(&self, key: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("DELETE FROM login_failures WHERE key = $1").bind(key).execute(pool).await.map(drop))?;
        Ok(())
    }
}
