//! A device's pacing policy: how fast it may send, across all its campaigns and single sends.

use axum::extract::State;
use axum::response::IntoResponse;
use wafleet_core::db::{DevicePacing, Pacing};
use wafleet_core::types::DeviceId;

use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::session::CurrentUser;

/// A device's pacing policy (the defaults until one is set) and any automatic pause in force.
#[utoipa::path(get, path = "/api/devices/{id}/pacing", tag = "campaigns",
    params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, body = Envelope<DevicePacing>), (status = 404, description = "No such device of yours")))]
pub(super) async fn get_pacing(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(
        "pacing",
        state.db.pacing_of(user.id, device).await.or_not_found("device")?,
    ))
}

/// Set a device's pacing policy; this also lifts an automatic pause.
#[utoipa::path(put, path = "/api/devices/{id}/pacing", tag = "campaigns",
    params(("id" = i64, Path, description = "Device id")), request_body = Pacing,
    responses((status = 200, body = Envelope<DevicePacing>), (status = 404, description = "No such device of yours"),
              (status = 422, description = "A number is out of range")))]
pub(super) async fn put_pacing(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    Json(policy): Json<Pacing>,
) -> ApiResult<impl IntoResponse> {
    policy.check().map_err(ApiError::Invalid)?;
    let pacing = state
        .db
        .set_pacing(user.id, device, &policy)
        .await
        .or_not_found("device")?;
    Ok(ok("pacing set", pacing))
}
