//! The device's activity log over the API: newest first, in pages.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use wafleet_core::db::ActivityEntry;
use wafleet_core::types::DeviceId;

use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::{ApiResult, OrNotFound};
use crate::extract::{Path, Query};
use crate::session::CurrentUser;

/// Entries per page unless `limit` says otherwise.
const DEFAULT_LIMIT: i64 = 20;
/// Most entries per page.
const MAX_LIMIT: i64 = 100;

/// Paging of the activity log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ActivityQuery {
    /// `next_cursor` of the previous page; absent for the newest entries.
    cursor: Option<i64>,
    /// Entries per page, 1 to 100 (default 20).
    limit: Option<i64>,
}

/// A page of the activity log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityPage {
    /// Entries, newest first.
    pub entries: Vec<ActivityEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// What was done from a device (test sends, number checks, broadcasts): who, when, what and the
/// result, newest first.
#[utoipa::path(get, path = "/api/devices/{id}/activity", tag = "actions",
    params(("id" = i64, Path, description = "Device id"), ActivityQuery),
    responses((status = 200, body = Envelope<ActivityPage>), (status = 404, description = "No such device of yours"),
              (status = 422, description = "limit out of range")))]
pub(super) async fn list_activity(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    query: Query<ActivityQuery>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query;
    let limit = crate::extract::limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    // One more than asked tells whether an older page exists.
    let mut entries = state
        .db
        .activity_log(user.id, device, query.cursor, limit + 1)
        .await
        .or_not_found("device")?;
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(ok(
        format!("{} entries", entries.len()),
        ActivityPage { entries, next_cursor },
    ))
}
