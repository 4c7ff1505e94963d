//! Browser login sessions. The cookie holds a random secret; the table holds its SHA-256.

use crate::types::{Timestamp, UserId};
use crate::{Db, Result};

use super::{User, on_db};

impl Db {
    /// Stores a new session for `user`, valid until `expires_at`.
    #[tracing::instrument(skip(self, token_hash))]
    pub async fn create_session(&self, user: UserId, token_hash: &str, expires_at: Timestamp) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user)
            .bind(Timestamp::now())
            .bind(expires_at)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// The user of a live session, or `None` if it is unknown or expired.
    #[tracing::instrument(skip_all)]
    pub async fn session_user(&self, token_hash: &str) -> Result<Option<User>> {
        let sql = "SELECT u.id, u.email, u.password_hash, u.is_admin, u.must_change_password, u.disabled_at, u.created_at \
                   FROM sessions s JOIN users u ON u.id = s.user_id \
                   WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL";
        Ok(on_db!(self, pool => sqlx::query_as::<_, User>(sql)
            .bind(token_hash)
            .bind(Timestamp::now())
            .fetch_optional(pool)
            .await)?)
    }

    /// Ends a session (logout). Unknown sessions are ignored.
    #[tracing::instrument(skip_all)]
    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        on_db!(self, pool => sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Removes expired sessions; returns how many (scheduled housekeeping).
    #[tracing::instrument(skip(self))]
    pub async fn delete_expired_sessions(&self, now: Timestamp) -> Result<u64> {
        let done = on_db!(self, pool => sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done)
    }
}
