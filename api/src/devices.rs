//! Devices: the WhatsApp numbers of a user. Every handler goes through the owner's id, so another
//! user's device answers 404 exactly like a missing one.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::cache::Topic;
use wafleet_core::db::{Device, DeviceChanges};
use wafleet_core::types::{DeviceId, PhoneNumber};

use crate::AppState;
use crate::envelope::{Envelope, cache_key, cached_ok, created, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::session::CurrentUser;

/// Longest device name accepted.
const MAX_NAME_LEN: usize = 64;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device, update_device, delete_device))
}

/// A device to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewDevice {
    /// A label, unique among your devices.
    #[schema(example = "Sales 1")]
    pub name: String,
    /// The number you will link; national numbers use the instance's default country.
    #[schema(example = "+60123456789")]
    pub phone: Option<String>,
}

/// Changes to a device; omitted fields stay as they are, an empty `phone` clears it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeviceUpdate {
    /// New label.
    pub name: Option<String>,
    /// New number, or `""` to clear it.
    pub phone: Option<String>,
}

fn parse_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::Invalid(format!(
            "name: must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    Ok(name.to_owned())
}

fn parse_phone(state: &AppState, phone: &str) -> ApiResult<Option<PhoneNumber>> {
    if phone.trim().is_empty() {
        return Ok(None);
    }
    PhoneNumber::parse(phone, state.settings.default_country)
        .map(Some)
        .map_err(|e| ApiError::Invalid(format!("phone: {e}")))
}

/// List your devices.
#[utoipa::path(get, path = "/api/devices", tag = "devices", responses((status = 200, body = Envelope<Vec<Device>>)))]
async fn list_devices(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    Ok(ok("devices", state.db.list_devices(user.id).await?))
}

/// Add a device (status `offline` until it is linked).
#[utoipa::path(post, path = "/api/devices", tag = "devices", request_body = NewDevice,
    responses((status = 201, body = Envelope<Device>), (status = 409, description = "Name or phone already used"),
              (status = 422, description = "Invalid name or phone")))]
async fn create_device(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<NewDevice>,
) -> ApiResult<impl IntoResponse> {
    let name = parse_name(&body.name)?;
    let phone = parse_phone(&state, body.phone.as_deref().unwrap_or_default())?;
    let device = state.db.create_device(user.id, &name, phone.as_ref()).await?;
    tracing::info!(user = %user.id, device = %device.id, "device added");
    Ok(created("device added", device))
}

/// One of your devices.
#[utoipa::path(get, path = "/api/devices/{id}", tag = "devices", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, body = Envelope<Device>), (status = 404, description = "No such device of yours")))]
async fn get_device(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    let what = cache_key(&["device", &user.id.to_string()]);
    cached_ok(&state, Topic::Device(id), what, "device", async {
        state.db.device(user.id, id).await.or_not_found("device")
    })
    .await
}

/// Rename a device or change its number.
#[utoipa::path(put, path = "/api/devices/{id}", tag = "devices", params(("id" = i64, Path, description = "Device id")),
    request_body = DeviceUpdate,
    responses((status = 200, body = Envelope<Device>), (status = 404, description = "No such device of yours"),
              (status = 409, description = "Name or phone already used"), (status = 422, description = "Invalid name or phone")))]
async fn update_device(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
    Json(body): Json<DeviceUpdate>,
) -> ApiResult<impl IntoResponse> {
    let changes = DeviceChanges {
        name: body.name.as_deref().map(parse_name).transpose()?,
        phone: body.phone.as_deref().map(|p| parse_phone(&state, p)).transpose()?,
    };
    let device = state
        .db
        .update_device(user.id, id, &changes)
        .await
        .or_not_found("device")?;
    state.invalidations.device_changed(id).await;
    tracing::info!(user = %user.id, device = %device.id, "device updated");
    Ok(ok("device updated", device))
}

/// Delete a device and everything stored for it.
#[utoipa::path(delete, path = "/api/devices/{id}", tag = "devices", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, description = "Deleted"), (status = 404, description = "No such device of yours")))]
async fn delete_device(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    state.db.delete_device(user.id, id).await.or_not_found("device")?;
    state.invalidations.device_changed(id).await;
    tracing::info!(user = %user.id, device = %id, "device deleted");
    Ok(ok("device deleted", ()))
}
