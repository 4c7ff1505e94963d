//! Devices: the WhatsApp numbers of a user. Every handler goes through the owner's id, so another
//! user's device answers 404 exactly like a missing one.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::cache::Topic;
use wafleet_core::db::{Device, DeviceChanges};
use wafleet_core::link::Restrictions;
use wafleet_core::types::{DeviceId, PhoneNumber, Timestamp};

use crate::AppState;
use crate::envelope::{Envelope, cache_key, cached_ok, created, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::session::{CurrentCaller, CurrentUser};

/// Longest device name accepted.
const MAX_NAME_LEN: usize = 64;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device, update_device, delete_device))
        .routes(routes!(device_restrictions))
}

/// What WhatsApp lets a device's number do with new chats, as its worker last read it.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RestrictionsView {
    /// What WhatsApp said: a reach-out timelock's end, the monthly new-chat cap.
    #[serde(flatten)]
    pub state: Restrictions,
    /// Until when sends to new chats wait now (`null`: they go).
    pub new_chats_wait_until: Option<Timestamp>,
    /// Why, in words.
    pub reason: Option<String>,
    /// Whether WhatsApp has been asked yet (it is, each time the device connects).
    pub checked: bool,
}

impl RestrictionsView {
    /// The view of `state` (`None`: never read) at `now`.
    pub fn new(state: Option<Restrictions>, now: Timestamp) -> Self {
        let checked = state.is_some();
        let state = state.unwrap_or_default();
        let blocked = state.new_chats_blocked(now);
        RestrictionsView {
            new_chats_wait_until: blocked.as_ref().map(|b| b.0),
            reason: blocked.map(|b| b.1),
            state,
            checked,
        }
    }

    /// In words, for a page: why sends to new contacts wait, or how much of the new-chat cap is
    /// used; `None` when there is nothing to say.
    pub fn summary(&self) -> Option<String> {
        if let Some(reason) = &self.reason {
            return Some(format!(
                "New chats paused: {reason}. Sends to new contacts wait and go out by themselves once it lifts."
            ));
        }
        let cap = self.state.new_chat_cap.as_ref()?;
        Some(format!(
            "Messages to new chats this month: {} of {}.",
            cap.used, cap.total
        ))
    }
}

/// What WhatsApp lets the device's number do with new chats (people who have not written to
/// it): a reach-out timelock, the monthly new-chat cap. While either blocks, sends to new chats
/// wait with the reason on each and sends to existing chats go on.
#[utoipa::path(get, path = "/api/devices/{id}/restrictions", tag = "devices",
    params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, body = Envelope<RestrictionsView>), (status = 404, description = "No such device of yours")))]
async fn device_restrictions(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    state.db.device(user.id, id).await.or_not_found("device")?;
    let stored = state.db.device_restrictions(id).await?;
    Ok(ok("restrictions", RestrictionsView::new(stored, Timestamp::now())))
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
async fn list_devices(
    State(state): State<AppState>,
    CurrentCaller(caller): CurrentCaller,
) -> ApiResult<impl IntoResponse> {
    let mut devices = state.db.list_devices(caller.user.id).await?;
    devices.retain(|device| caller.reaches(device.id));
    Ok(ok("devices", devices))
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
    // Its sends left the user's analytics too.
    state
        .invalidations
        .changed(&[Topic::Device(id), Topic::Analytics])
        .await;
    tracing::info!(user = %user.id, device = %id, "device deleted");
    Ok(ok("device deleted", ()))
}
