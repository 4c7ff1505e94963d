//! The upstream REST API's device management (`/devices`, `/devices/{device_id}/…`) and its
//! `/app/status` and `/app/info`, with its field names and its envelope (which carries `status`).
//! A device is named in the path by its id or by its name; `POST /devices` with a `device_id`
//! makes a device of that name, so a client that picks its own ids keeps using them.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::cache::Topic;
use wafleet_core::db::{Device, DeviceStatus, User};
use wafleet_core::types::{PhoneNumber, Timestamp};

use crate::AppState;
use crate::compat::{Caller, TokenUser, UpstreamReply, named_device, upstream_ok, upstream_statuses};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path, Query};
use crate::sessions;
use crate::webhooks::{checked_url, choose_secret, stored_events};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, add_device))
        .routes(routes!(get_device, remove_device))
        .routes(routes!(login_device))
        .routes(routes!(login_device_with_code))
        .routes(routes!(logout_device))
        .routes(routes!(reconnect_device))
        .routes(routes!(device_status))
        .routes(routes!(app_status))
        .routes(routes!(app_info))
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// A device in the upstream API's words.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceInfo {
    /// Its id: wafleet's number, as a string.
    pub id: String,
    /// The linked number's digits (the number it was added with until it is linked; empty without).
    pub phone_number: String,
    /// Its name.
    pub display_name: String,
    /// `logged_in` (online), `connecting` (connecting or pairing) or `disconnected`.
    pub state: String,
    /// The linked account's JID; empty until linked.
    pub jid: String,
    /// When it was added.
    pub created_at: Timestamp,
}

impl DeviceInfo {
    fn of(device: Device) -> Self {
        let state = match device.status {
            DeviceStatus::Online => "logged_in",
            DeviceStatus::Connecting | DeviceStatus::Pairing => "connecting",
            _ => "disconnected",
        };
        let phone_number = device
            .jid
            .as_deref()
            .and_then(|jid| jid.split(['@', ':']).next())
            .map(str::to_owned)
            .or_else(|| {
                device
                    .phone
                    .as_ref()
                    .map(|p| p.as_str().trim_start_matches('+').to_owned())
            })
            .unwrap_or_default();
        DeviceInfo {
            id: device.id.to_string(),
            phone_number,
            display_name: device.name,
            state: state.into(),
            jid: device.jid.unwrap_or_default(),
            created_at: device.created_at,
        }
    }
}

/// The caller's device named by the path.
async fn path_device(state: &AppState, user: &User, raw: &str) -> ApiResult<Device> {
    let id = named_device(state, user, raw).await?;
    state.db.device(user.id, id).await.or_not_found("device")
}

/// List your devices with their connection state (upstream `listDevices`).
#[utoipa::path(get, path = "/devices", tag = "compatible",
    responses((status = 200, body = UpstreamReply<Vec<DeviceInfo>>)), security(("bearer" = [])))]
async fn list_devices(State(state): State<AppState>, TokenUser(user): TokenUser) -> ApiResult<Response> {
    let devices = state.db.list_devices(user.id).await?;
    Ok(upstream_ok(
        "List devices",
        devices.into_iter().map(DeviceInfo::of).collect::<Vec<_>>(),
    ))
}

/// The body of upstream `addDevice`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct AddDevice {
    /// The device's id of your choosing, kept as its name (not a number: wafleet numbers its
    /// devices); one is made up when left out.
    pub device_id: Option<String>,
    /// A webhook of the device's own (see `PATCH /devices/{device_id}/webhook`).
    pub webhook_url: Option<String>,
    /// Its secret; one is generated when left out.
    pub webhook_secret: Option<String>,
    /// Its events, comma-separated; empty for all.
    pub webhook_events: Option<String>,
    /// Only `false` is accepted: wafleet always verifies the receiver's TLS certificate.
    pub webhook_insecure_skip_verify: Option<bool>,
}

/// Add a device (upstream `addDevice`), optionally with a webhook of its own.
#[utoipa::path(post, path = "/devices", tag = "compatible", request_body = AddDevice,
    responses((status = 200, body = UpstreamReply<DeviceInfo>),
              (status = 400, description = "A numeric or too long device_id, one in use, a bad webhook, or asking to skip TLS verification")),
    security(("bearer" = [])))]
async fn add_device(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    body: Option<Json<AddDevice>>,
) -> ApiResult<Response> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    if body.webhook_insecure_skip_verify == Some(true) {
        return Err(ApiError::BadRequest(
            "webhook_insecure_skip_verify: wafleet always verifies the receiver's TLS certificate".into(),
        ));
    }
    let name = match body.device_id.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) if name.parse::<i64>().is_ok() => {
            return Err(ApiError::BadRequest(format!(
                "device_id: `{name}` is a number, and wafleet numbers its devices itself; choose a name with a letter in it"
            )));
        }
        Some(name) if name.chars().count() > 100 => {
            return Err(ApiError::BadRequest("device_id: at most 100 characters".into()));
        }
        Some(name) => name.to_owned(),
        None => format!("device-{}", &wafleet_core::auth::random_secret()[..8].to_lowercase()),
    };
    // The webhook is checked before the device is made, so a refusal leaves nothing behind.
    let webhook = match body.webhook_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => {
            let url = checked_url(&state, url).await?;
            let events = stored_events(body.webhook_events.map(crate::webhooks::EventList::Csv))?;
            let given = body.webhook_secret.filter(|s| !s.is_empty());
            let (secret, _) = choose_secret(given, false, None)?;
            Some((url, secret, events))
        }
        None => None,
    };
    let device = state
        .db
        .create_device(user.id, &name, None)
        .await
        .map_err(|e| match e {
            wafleet_core::Error::Conflict(m) => ApiError::BadRequest(format!("device_id: {m}")),
            other => other.into(),
        })?;
    if let Some((url, secret, events)) = webhook {
        state
            .db
            .put_device_webhook(user.id, device.id, &url, &secret, &events)
            .await?;
    }
    tracing::info!(user = %user.id, device = %device.id, "device added");
    Ok(upstream_ok("Device added", DeviceInfo::of(device)))
}

/// One device (upstream `getDevice`).
#[utoipa::path(get, path = "/devices/{device_id}", tag = "compatible",
    params(("device_id" = String, Path, description = "Device id or name")),
    responses((status = 200, body = UpstreamReply<DeviceInfo>), (status = 404, description = "No such device of yours")),
    security(("bearer" = [])))]
async fn get_device(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let device = path_device(&state, &user, &raw).await?;
    Ok(upstream_ok("Device info", DeviceInfo::of(device)))
}

/// Remove a device and everything stored for it (upstream `removeDevice`). Its session closes;
/// log it out first (`POST /devices/{device_id}/logout`) to have WhatsApp forget the link too.
#[utoipa::path(delete, path = "/devices/{device_id}", tag = "compatible",
    params(("device_id" = String, Path, description = "Device id or name")),
    responses((status = 200, body = UpstreamReply<Option<String>>), (status = 404, description = "No such device of yours")),
    security(("bearer" = [])))]
async fn remove_device(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let id = named_device(&state, &user, &raw).await?;
    state.db.delete_device(user.id, id).await.or_not_found("device")?;
    state
        .invalidations
        .changed(&[Topic::Device(id), Topic::Analytics])
        .await;
    tracing::info!(user = %user.id, device = %id, "device removed");
    Ok(upstream_ok("Device removed", None::<String>))
}

/// `results` of upstream `loginDevice`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceLogin {
    /// The device's id.
    pub device_id: String,
    /// Where to fetch the QR code (PNG), with the same credentials.
    pub qr_link: String,
    /// Seconds until the QR code is replaced.
    pub qr_duration: i64,
}

/// Start pairing a device by QR code (upstream `loginDevice`; `GET /app/login` for the device in
/// the path).
#[utoipa::path(get, path = "/devices/{device_id}/login", tag = "compatible",
    params(("device_id" = String, Path, description = "Device id or name")),
    responses((status = 200, body = UpstreamReply<DeviceLogin>),
              (status = 400, description = "The device is already linked and online (code `ALREADY_LOGGED_IN`; its session is kept)"),
              (status = 404, description = "No such device of yours"), (status = 409, description = "Pairing failed"),
              (status = 503, description = "No worker produced a code in time")),
    security(("bearer" = [])))]
async fn login_device(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let device = named_device(&state, &user, &raw).await?;
    let (qr_duration, qr_link) = crate::compat::start_qr(&state, &user, device, &headers).await?;
    let results = DeviceLogin {
        device_id: device.to_string(),
        qr_link,
        qr_duration,
    };
    Ok(upstream_ok("Login success", results))
}

/// Query of upstream `loginDeviceWithCode`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct PhoneQuery {
    /// The number of the phone to link.
    phone: String,
}

/// `results` of upstream `loginDeviceWithCode`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceCode {
    /// The device's id.
    pub device_id: String,
    /// The code to type on the phone.
    pub pair_code: String,
}

/// Start pairing a device by phone code (upstream `loginDeviceWithCode`).
#[utoipa::path(post, path = "/devices/{device_id}/login/code", tag = "compatible",
    params(("device_id" = String, Path, description = "Device id or name"), PhoneQuery),
    responses((status = 200, body = UpstreamReply<DeviceCode>),
              (status = 400, description = "No or not a phone number, or the device is already linked and online (code `ALREADY_LOGGED_IN`)"),
              (status = 404, description = "No such device of yours"), (status = 409, description = "Pairing failed"),
              (status = 503, description = "No worker produced a code in time")),
    security(("bearer" = [])))]
async fn login_device_with_code(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    Path(raw): Path<String>,
    Query(query): Query<PhoneQuery>,
) -> ApiResult<Response> {
    let device = named_device(&state, &user, &raw).await?;
    let phone = PhoneNumber::parse(&query.phone, state.settings.default_country)
        .map_err(|e| ApiError::BadRequest(format!("phone: {e}")))?;
    crate::compat::refuse_if_logged_in(&state, &user, device).await?;
    let pair_code = sessions::begin_pair_code(&state, user.id, device, &phone).await?;
    let results = DeviceCode {
        device_id: device.to_string(),
        pair_code,
    };
    Ok(upstream_ok("Login with code started", results))
}

/// Log a device out of WhatsApp, keeping the device (upstream `logoutDevice`).
#[utoipa::path(post, path = "/devices/{device_id}/logout", tag = "compatible",
    params(("device_id" = String, Path, description = "Device id or name")),
    responses((status = 200, body = UpstreamReply<Option<String>>), (status = 404, description = "No such device of yours")),
    security(("bearer" = [])))]
async fn logout_device(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let device = named_device(&state, &user, &raw).await?;
    sessions::begin_logout(&state, user.id, device).await?;
    Ok(upstream_ok("Success logout", None::<String>))
}

/// Reconnect a device with its stored link (upstream `reconnectDevice`).
#[utoipa::path(post, path = "/devices/{device_id}/reconnect", tag = "compatible",
    params(("device_id" = String, Path, description = "Device id or name")),
    responses((status = 200, body = UpstreamReply<Option<String>>), (status = 404, description = "No such device of yours"),
              (status = 409, description = "Not linked yet, or logged out: log in first")),
    security(("bearer" = [])))]
async fn reconnect_device(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let device = named_device(&state, &user, &raw).await?;
    sessions::begin_reconnect(&state, user.id, device).await?;
    Ok(upstream_ok("Reconnect success", None::<String>))
}

/// A device's connection, in the upstream API's words.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceConnection {
    /// The device's id.
    pub device_id: String,
    /// Whether its session is connected to WhatsApp now.
    pub is_connected: bool,
    /// Whether it is linked to a WhatsApp account (it may be reconnecting).
    pub is_logged_in: bool,
    /// The linked account's JID; empty until linked.
    pub jid: String,
}

impl DeviceConnection {
    fn of(device: &Device) -> Self {
        let linked = device.jid.is_some()
            && !matches!(
                device.status,
                DeviceStatus::LoggedOut | DeviceStatus::Banned | DeviceStatus::Pairing
            );
        DeviceConnection {
            device_id: device.id.to_string(),
            is_connected: device.status == DeviceStatus::Online,
            is_logged_in: linked,
            jid: device.jid.clone().unwrap_or_default(),
        }
    }
}

/// A device's connection state (upstream `getDeviceStatus`).
#[utoipa::path(get, path = "/devices/{device_id}/status", tag = "compatible",
    params(("device_id" = String, Path, description = "Device id or name")),
    responses((status = 200, body = UpstreamReply<DeviceConnection>), (status = 404, description = "No such device of yours")),
    security(("bearer" = [])))]
async fn device_status(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let device = path_device(&state, &user, &raw).await?;
    Ok(upstream_ok("Device status", DeviceConnection::of(&device)))
}

/// The connection state of the device named by `X-Device-Id` (or the only one) (upstream
/// `appStatus`).
#[utoipa::path(get, path = "/app/status", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    responses((status = 200, body = UpstreamReply<DeviceConnection>),
              (status = 400, description = "Several devices and none named"),
              (status = 404, description = "No such device of yours, or no device at all")),
    security(("bearer" = [])))]
async fn app_status(State(state): State<AppState>, Caller(user, device): Caller) -> ApiResult<Response> {
    let device = state.db.device(user.id, device).await.or_not_found("device")?;
    Ok(upstream_ok(
        "Connection status retrieved",
        DeviceConnection::of(&device),
    ))
}

/// `results` of upstream `appInfo`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppInfo {
    /// wafleet's version.
    pub version: String,
    /// `wafleet`.
    pub os: String,
    /// The path prefix of the API: empty.
    pub base_path: String,
    /// The largest document accepted, in bytes (the media limit).
    pub max_file_size: u64,
    /// The largest video accepted, in bytes (the media limit).
    pub max_video_size: u64,
    /// The largest image accepted, in bytes (the media limit).
    pub max_image_size: u64,
    /// Always false: wafleet has no Chatwoot integration.
    pub chatwoot_enabled: bool,
}

/// What this server is and the sizes it accepts (upstream `appInfo`).
#[utoipa::path(get, path = "/app/info", tag = "compatible",
    responses((status = 200, body = UpstreamReply<AppInfo>)), security(("bearer" = [])))]
async fn app_info(State(state): State<AppState>, TokenUser(_user): TokenUser) -> ApiResult<Response> {
    let media = state.settings.max_media_bytes as u64;
    let info = AppInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        os: "wafleet".into(),
        base_path: String::new(),
        max_file_size: media,
        max_video_size: media,
        max_image_size: media,
        chatwoot_enabled: false,
    };
    Ok(upstream_ok("Fetch app info success", info))
}
