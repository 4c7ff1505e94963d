//! Per-user API tokens for the REST API and MCP. Only a digest is stored; the token is shown
//! once. Each token carries scopes (read, send, manage) that bound what it may do, and may be
//! limited to some of its owner's devices.

use crate::types::{ApiTokenId, DeviceId, DeviceLimit, Scopes, Timestamp, UserId};
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
    /// What it may do.
    #[sqlx(try_from = "String")]
    pub scopes: Scopes,
    /// The devices it may act on (`null`: every device of its owner).
    #[sqlx(rename = "devices", try_from = "String")]
    #[schema(value_type = Option<Vec<i64>>)]
    pub device_ids: DeviceLimit,
}

/// Who is calling: the account, and the API token it called with (none for a browser session).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The account.
    pub user: User,
    /// The token, when the call came with one.
    pub token: Option<TokenGrant>,
}

/// The API token a call came with, and what it allows.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    /// The token's row id.
    pub id: ApiTokenId,
    /// Its owner's label for it.
    pub name: String,
    /// What it may do.
    pub scopes: Scopes,
    /// The devices it may act on.
    pub devices: DeviceLimit,
}

impl Caller {
    /// Whether the call may see or act on `device` (always, but for a token limited to others).
    pub fn reaches(&self, device: DeviceId) -> bool {
        self.token.as_ref().is_none_or(|token| token.devices.allows(device))
    }
}

/// `last_used_at` is written at most this often per token, to keep reads from turning into writes.
const TOUCH_EVERY_SECS: i64 = 60;

impl Db {
    /// Stores a new token for `user` with every scope.
    #[tracing::instrument(skip(self, token_hash))]
    pub async fn create_api_token(&self, user: UserId, name: &str, token_hash: &str, hint: &str) -> Result<ApiToken> {
        self.create_scoped_api_token(user, name, token_hash, hint, Scopes::all(), &DeviceLimit::default())
            .await
    }

    /// Stores a new token for `user` that may do what `scopes` allow on the devices `devices`
    /// names (the caller checks that they are the user's).
    #[tracing::instrument(skip(self, token_hash))]
    pub async fn create_scoped_api_token(
        &self,
        user: UserId,
        name: &str,
        token_hash: &str,
        hint: &str,
        scopes: Scopes,
        devices: &DeviceLimit,
    ) -> Result<ApiToken> {
        on_db!(self, pool => sqlx::query_as::<_, ApiToken>(
            "INSERT INTO api_tokens (user_id, name, token_hash, hint, created_at, scopes, devices) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, name, hint, created_at, last_used_at, scopes, devices")
            .bind(user)
            .bind(name)
            .bind(token_hash)
            .bind(hint)
            .bind(Timestamp::now())
            .bind(scopes.to_string())
            .bind(devices.to_string())
            .fetch_one(pool)
            .await)
        .map_err(|e| Error::on_unique_violation(e, "a token with this name already exists"))
    }

    /// The user's live (not revoked) tokens, newest first.
    #[tracing::instrument(skip(self))]
    pub async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiToken>> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, ApiToken>(
            "SELECT id, name, hint, created_at, last_used_at, scopes, devices FROM api_tokens \
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
        Ok(self.api_token_caller(token_hash).await?.map(|caller| caller.user))
    }

    /// The owner of a live token and what the token allows, recording its use.
    #[tracing::instrument(skip_all)]
    pub async fn api_token_caller(&self, token_hash: &str) -> Result<Option<Caller>> {
        let sql = "SELECT t.id AS token_id, t.name AS token_name, t.scopes, t.devices, \
                   u.id, u.email, u.password_hash, u.is_admin, u.must_change_password, u.disabled_at, u.created_at \
                   FROM api_tokens t JOIN users u ON u.id = t.user_id \
                   WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.disabled_at IS NULL";
        #[derive(sqlx::FromRow)]
        struct Row {
            token_id: ApiTokenId,
            token_name: String,
            #[sqlx(try_from = "String")]
            scopes: Scopes,
            #[sqlx(try_from = "String")]
            devices: DeviceLimit,
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
        Ok(Some(Caller {
            user: row.user,
            token: Some(TokenGrant {
                id: row.token_id,
                name: row.token_name,
                scopes: row.scopes,
                devices: row.devices,
            }),
        }))
    }
}
