//! Retention: how many days your chat messages and received files are kept (`GET`/`PUT
//! /api/account/retention`). The scheduler's retention job deletes older ones; sends and
//! analytics are kept whatever it says. The account page's form calls the same [`set`].

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::RetentionDays;
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
    /// Days the file of a received message (picture, video, voice note, document, sticker) is
    /// kept (1 to 3650); the message stays, saying its file expired. `null` (or absent) keeps
    /// each file as long as its message.
    #[serde(default)]
    #[schema(example = 30)]
    pub keep_media_days: Option<i64>,
}

impl From<RetentionDays> for Retention {
    fn from(days: RetentionDays) -> Self {
        Retention {
            keep_messages_days: days.messages,
            keep_media_days: days.media,
        }
    }
}

impl From<&Retention> for RetentionDays {
    fn from(retention: &Retention) -> Self {
        RetentionDays {
            messages: retention.keep_messages_days,
            media: retention.keep_media_days,
        }
    }
}

/// Your retention setting.
#[utoipa::path(get, path = "/api/account/retention", tag = "accounts",
    responses((status = 200, body = Envelope<Retention>), (status = 401, description = "Not logged in")))]
async fn get_retention(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    let days = state.db.retention_days(user.id).await?;
    Ok(ok("retention", Retention::from(days)))
}

/// Set how many days your chat messages and received files are kept (`null`: keep everything).
/// Shortening it deletes the older ones at the next retention run, within ten minutes; they
/// cannot be restored.
#[utoipa::path(put, path = "/api/account/retention", tag = "accounts", request_body = Retention,
    responses((status = 200, body = Envelope<Retention>), (status = 401, description = "Not logged in"),
              (status = 422, description = "`keep_messages_days` or `keep_media_days` is not 1 to 3650 or null")))]
async fn put_retention(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(retention): Json<Retention>,
) -> ApiResult<impl IntoResponse> {
    set(&state, user.id, RetentionDays::from(&retention)).await?;
    Ok(ok("retention saved", retention))
}

/// Saves the setting; a value out of range is refused with what to give instead.
pub(crate) async fn set(state: &AppState, user: UserId, days: RetentionDays) -> ApiResult<()> {
    state.db.set_retention_days(user, days).await?;
    tracing::info!(%user, ?days, "retention set");
    Ok(())
}
