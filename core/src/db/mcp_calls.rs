//! The log of tool calls agents make over MCP: every call, by which token, with what arguments and
//! what came of it, newest first per user.

use crate::types::{ApiTokenId, Timestamp, UserId};
use crate::{Db, Result};

use super::on_db;

/// A tool call to log.
#[derive(Clone, Debug)]
pub struct NewMcpCall {
    /// Whose token called.
    pub user: UserId,
    /// The token.
    pub token: ApiTokenId,
    /// The token's name when it called.
    pub token_name: String,
    /// The tool.
    pub tool: String,
    /// The arguments as JSON (images elided).
    pub arguments: String,
    /// Whether the call succeeded.
    pub ok: bool,
    /// What was answered, clipped.
    pub result: String,
}

/// One logged tool call.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct McpCall {
    /// The entry's id (also the paging cursor).
    pub id: i64,
    /// The token that called.
    pub token_id: ApiTokenId,
    /// Its name when it called.
    pub token_name: String,
    /// The tool.
    pub tool: String,
    /// The arguments, as JSON text (images elided).
    pub arguments: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// What was answered (clipped), or the error.
    pub result: String,
    /// When.
    pub created_at: Timestamp,
}

impl Db {
    /// Adds a tool call to its user's log.
    #[tracing::instrument(skip(self, call), fields(user = %call.user, token = %call.token, tool = %call.tool))]
    pub async fn record_mcp_call(&self, call: &NewMcpCall) -> Result<()> {
        on_db!(self, pool => sqlx::query(
            "INSERT INTO mcp_calls (user_id, token_id, token_name, tool, arguments, ok, result, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(call.user)
            .bind(call.token)
            .bind(&call.token_name)
            .bind(&call.tool)
            .bind(&call.arguments)
            .bind(call.ok)
            .bind(&call.result)
            .bind(Timestamp::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// A page of the user's tool calls, newest first: up to `limit` older than `before` (an id).
    #[tracing::instrument(skip(self))]
    pub async fn mcp_calls(&self, user: UserId, before: Option<i64>, limit: i64) -> Result<Vec<McpCall>> {
        Ok(on_db!(self, pool => sqlx::query_as::<_, McpCall>(
            "SELECT id, token_id, token_name, tool, arguments, ok, result, created_at FROM mcp_calls \
             WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
            .bind(user)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }
}
