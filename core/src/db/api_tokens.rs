//! Per-user API tokens for the REST API. Only a digest is stored; the token is shown once.

use crate::types::{ApiTokenId, Timestamp, UserId};
use crate::{Db, Error, Result};

use super::{User, on_db};

/// An API token as listed to its owner (never the secret itself).
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    /// Row id, used to revoke it.
    pub id: ApiTokenId,
    /// The owner's label for it.
    pub name: String,
    /// The last four characters, to tell tokens apart.
    pub hint: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it last authenticated a request (updated at most once a minute).
    pub last_used_at: Option<Timestamp>,
}

/// `last_used_at` is written at most this often per token, to keep reads from turning into writes.
const TOUCH_EVERY_SECS: i64 = 60;

impl Db {
    /// Stores a new token for `user`.
    #[tracing::instrument(skip(self, token_hash))]
    pub async fn create_api_token(&self, user: UserId, name: &str, token_hash: &str, hint: &str) -> Result<ApiToken> {
        on_db!(self, pool => sqlx::query_as::<_, ApiToken>(
            "INSERT INTO api_tokens (user_id, name, token_hash, hint, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, name, hint, created_at, last_used_at")
            .bind(user)
            .bind(name)
            .bind(token_hash)
            .bind(hint)
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await)
        .map_err(|e| Error::on_unique_violation(e, "a token with this name already exists"))
    }

    /// The user's live (not revoked) tokens, newest first.
    #[tracing::instrument(skip(self))]
    pub async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiToken>> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, ApiToken>(
            "SELECT id, name, hint, created_at, last_used_at FROM api_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id DESC")
            .bind(user)
            .fetch_all(pool)
            .await)?)
    }

    /// Revokes one of the user's tokens; [`Error::NotFound`] if it is not theirs or already revoked.
    #[tracing::instrument(skip(self))]
    pub async fn revoke_api_token(&self, user: UserId, id: ApiTokenId) -> Result<()> {
        let done = on_db!(self, pool => sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
            .bind(id)
            .bind(user)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if done == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// The owner of a live token, recording its use.
    #[tracing::instrument(skip_all)]
    pub async fn api_token_user(&self, token_hash: &str) -> Result<Option<User>> {
        let sql = "SELECT t.id AS token_id, u.id, u.email, u.password_hash, u.is_admin, u.created_at \
                   FROM api_tokens t JOIN users u ON u.id = t.user_id \
                   WHERE t.token_hash = $1 AND t.revoked_at IS NULL";
        #[derive(sqlx::FromRow)]
        struct Row {
            token_id: ApiTokenId,
            #[sqlx(flatten)]
            user: User,
        }
        let Some(row) =
            on_db!(self, pool => sqlx::query_as::<_, Row>(sql).bind(token_hash).fetch_optional(pool).await)?
        else {
            return Ok(None);
        };
        let now = Timestamp::now();
        on_db!(self, pool => sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)")
            .bind(row.token_id)
            .bind(now)
            .bind(now.plus_secs(-TOUCH_EVERY_SECS))
            .execute(pool)
            .await
            .map(drop))?;
        Ok(Some(row.user))
    }
}
