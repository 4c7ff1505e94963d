//! The MCP activity log over the REST API: every tool call agents made with your tokens.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::McpCall;

use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::ApiResult;
use crate::extract::Query;
use crate::session::CurrentUser;

/// Entries per page unless `limit` says otherwise.
const DEFAULT_LIMIT: i64 = 50;
/// Most entries per page.
const MAX_LIMIT: i64 = 200;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_calls))
}

/// Paging of the log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallsQuery {
    /// `next_cursor` of the previous page; absent for the newest calls.
    cursor: Option<i64>,
    /// Entries per page, 1 to 200 (default 50).
    limit: Option<i64>,
}

/// A page of the log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct McpCallPage {
    /// Calls, newest first.
    pub calls: Vec<McpCall>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// Every tool call made over MCP with your API tokens, newest first: which token, which tool,
/// the arguments (images elided), and whether it succeeded with what it answered.
#[utoipa::path(get, path = "/api/mcp/calls", tag = "mcp", params(CallsQuery),
    responses((status = 200, body = Envelope<McpCallPage>), (status = 422, description = "limit out of range")))]
async fn list_calls(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    query: Query<CallsQuery>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query;
    let limit = crate::extract::limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let mut calls = state.db.mcp_calls(user.id, query.cursor, limit + 1).await?;
    let next_cursor = crate::chat_view::split_page(&mut calls, limit, |c| c.id);
    Ok(ok(format!("{} calls", calls.len()), McpCallPage { calls, next_cursor }))
}
