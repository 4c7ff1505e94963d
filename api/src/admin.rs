//! What administrators of the installation see: jobs the queues gave up on.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::DeadLetter;

use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::session::CurrentUser;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(dead_letters))
}

/// Query of the dead-letter list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct DeadLetterQuery {
    /// Only queues whose name starts with this (e.g. `sends`).
    queue: Option<String>,
    /// How many, newest first (1 to 500; default 100).
    limit: Option<i64>,
}

/// Jobs that failed for good (retries spent or a permanent error), newest first. Administrators only.
#[utoipa::path(get, path = "/api/admin/dead-letters", tag = "admin", params(DeadLetterQuery),
    responses((status = 200, body = Envelope<Vec<DeadLetter>>), (status = 403, description = "Not an administrator"),
              (status = 422, description = "Bad limit")))]
async fn dead_letters(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<DeadLetterQuery>,
) -> ApiResult<impl IntoResponse> {
    if !user.is_admin {
        return Err(ApiError::Forbidden(
            "only administrators see the queues' dead letters".into(),
        ));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Invalid("limit: give 1 to 500".into()));
    }
    let letters = state.db.dead_letters(query.queue.as_deref(), limit).await?;
    Ok(ok(format!("{} dead letters", letters.len()), letters))
}
