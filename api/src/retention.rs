//! Retention: how many days your chat messages are kept (`GET`/`PUT /api/account/retention`). The
//! scheduler's retention job deletes older ones; sends and analytics are kept whatever it says.
//! The account page's form calls the same [`set`].

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::types::UserId;

use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::ApiResult;
use crate::extract::Json;
use crate::session::CurrentUser;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_retention, put_retention))
}

/// How long your data is kept.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Days a chat message is kept after it reached wafleet (whole UTC days, 1 to 3650); `null`
    /// keeps every message. Older messages are deleted within ten minutes of midnight UTC
    /// passing their day. Sends, receipts and analytics are kept either way.
    #[schema(example = 90)]
    pub keep_messages_days: Option<i64>,
}

/// Your retention setting.
#[utoipa::path(get, path = "/api/account/retention", tag = "accounts",
    responses((status = 200, body = Envelope<Retention>), (status = 401, description = "Not logged in")))]
async fn get_retention(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    let keep_messages_days = state.db.keep_messages_days(user.id).await?;
    Ok(ok("retention", Retention { keep_messages_days }))
}

/// Set how many days your chat messages are kept (`null`: keep everything). Shortening it deletes
/// the older messages at the next retention run, within ten minutes; they cannot be restored.
#[utoipa::path(put, path = "/api/account/retention", tag = "accounts", request_body = Retention,
    responses((status = 200, body = Envelope<Retention>), (status = 401, description = "Not logged in"),
              (status = 422, description = "`keep_messages_days` is not 1 to 3650 or null")))]
async fn put_retention(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(retention): Json<Retention>,
) -> ApiResult<impl IntoResponse> {
    set(&state, user.id, retention.keep_messages_days).await?;
    Ok(ok("retention saved", retention))
}

/// Saves the setting; a value out of range is refused with what to give instead.
pub(crate) async fn set(state: &AppState, user: UserId, days: Option<i64>) -> ApiResult<()> {
    state.db.set_keep_messages_days(user, days).await?;
    tracing::info!(%user, ?days, "retention set");
    Ok(())
}
