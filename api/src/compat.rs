//! Routes kept from the REST API wafleet grew out of (`/app/*`), with its request and response
//! shapes. They change state on GET, so they accept API tokens only (`Bearer <token>`, or HTTP
//! Basic with the token as password, as existing clients send) and never a browser cookie: a
//! link on another site cannot trigger them. Refusals of invalid input answer 400 here, as the
//! upstream API documents for every bad request (wafleet's own routes answer 422).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{DeviceStatus, User};
use wafleet_core::types::{DeviceId, PhoneNumber};

use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult, ErrorMessage, OrNotFound};
use crate::extract::Query;
use crate::sessions;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(app_login))
        .routes(routes!(app_login_with_code))
        .routes(routes!(app_logout))
        .routes(routes!(app_reconnect))
        .routes(routes!(app_devices))
        .routes(routes!(app_qr))
        .routes(routes!(app_passkey))
        .routes(routes!(app_passkey_response))
        .routes(routes!(app_passkey_confirm))
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// Answers a refusal of invalid input (422 elsewhere in wafleet) with 400, the status the
/// upstream API documents for every bad request, keeping the message that names the field.
/// Layered on each compatible router only, so wafleet's own routes keep their statuses.
pub(crate) async fn upstream_statuses(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::UNPROCESSABLE_ENTITY {
        return response;
    }
    match response.extensions().get::<ErrorMessage>() {
        Some(ErrorMessage(message)) => ApiError::BadRequest(message.clone()).into_response(),
        None => response,
    }
}

/// The owner of the API token the request carries.
pub struct TokenUser(pub User);

impl FromRequestParts<AppState> for TokenUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(crate::session::presented_token);
        let token = token.ok_or_else(|| {
            ApiError::Unauthorized(
                "send an API token: `Authorization: Bearer <token>` (or Basic with the token as password)".into(),
            )
        })?;
        let caller = crate::session::token_caller(state, &token).await?;
        crate::scopes::allow(&caller, &parts.method, parts.uri.path())?;
        Ok(TokenUser(caller.user))
    }
}

#[derive(Deserialize)]
struct DeviceQuery {
    device_id: Option<String>,
}

/// The device a request is about: `X-Device-Id` header or `device_id` query (an id or a name, see
/// [`named_device`]); the only device when the user has exactly one.
/// `body_device` is a `device_id` field of the body, used when neither header nor query name one.
pub(crate) async fn target_device(
    parts: &Parts,
    state: &AppState,
    user: &User,
    body_device: Option<&str>,
) -> ApiResult<DeviceId> {
    let query: Option<DeviceQuery> = Query::from_uri(&parts.uri).ok().map(|Query(q)| q);
    let named = parts
        .headers
        .get("x-device-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.and_then(|q| q.device_id))
        .or_else(|| body_device.map(str::to_owned));
    if let Some(raw) = named {
        return named_device(state, user, &raw).await;
    }
    match state.db.list_devices(user.id).await?.as_slice() {
        [only] => Ok(only.id),
        [] => Err(ApiError::NotFound("device (add one first)")),
        _ => Err(ApiError::BadRequest(
            "you have several devices: name one with the X-Device-Id header".into(),
        )),
    }
}

/// The user's device that `raw` names: its id (a number, as `/app/devices` and `/devices` list
/// them), or its name (the `device_id` a device was added under with `POST /devices`).
pub(crate) async fn named_device(state: &AppState, user: &User, raw: &str) -> ApiResult<DeviceId> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(ApiError::BadRequest(
            "device_id: name a device by its id or name (see /devices)".into(),
        ));
    }
    if let Ok(id) = raw.parse::<i64>() {
        state
            .db
            .device(user.id, DeviceId(id))
            .await
            .map_err(|e| ApiError::from_core(e, "device"))?;
        return Ok(DeviceId(id));
    }
    state
        .db
        .list_devices(user.id)
        .await?
        .into_iter()
        .find(|d| d.name == raw)
        .map(|d| d.id)
        .ok_or(ApiError::NotFound("device"))
}

/// The upstream API's envelope where it also carries the HTTP status (its device routes, `/app/status`
/// and `/app/info`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpstreamReply<T> {
    /// The HTTP status, 200.
    pub status: u16,
    /// `SUCCESS`.
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// The payload.
    pub results: T,
}

/// 200 in the upstream envelope with `status`.
pub(crate) fn upstream_ok<T: Serialize>(message: &str, results: T) -> Response {
    let reply = UpstreamReply {
        status: 200,
        code: "SUCCESS".into(),
        message: message.into(),
        results,
    };
    (StatusCode::OK, axum::Json(reply)).into_response()
}

/// Resolves the caller and the device named by the request.
async fn caller(parts: &mut Parts, state: &AppState) -> ApiResult<(User, DeviceId)> {
    let TokenUser(user) = TokenUser::from_request_parts(parts, state).await?;
    let device = target_device(parts, state, &user, None).await?;
    Ok((user, device))
}

/// Caller and device, as one extractor.
pub struct Caller(pub User, pub DeviceId);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        caller(parts, state).await.map(|(user, device)| Caller(user, device))
    }
}

/// `results` of `GET /app/login`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResults {
    /// Seconds until the QR code is replaced.
    pub qr_duration: i64,
    /// Where to fetch the QR code image (PNG), with the same credentials as this request.
    pub qr_link: String,
}

/// Refuses to pair a device that is linked and online (400, `ALREADY_LOGGED_IN`, as upstream):
/// pairing again would drop its working session.
pub(crate) async fn refuse_if_logged_in(state: &AppState, user: &User, device: DeviceId) -> ApiResult<()> {
    let current = state.db.device(user.id, device).await.or_not_found("device")?;
    match current.jid {
        Some(jid) if current.status == DeviceStatus::Online => Err(ApiError::AlreadyLoggedIn(format!(
            "device {device} is already logged in as {jid}: log out first (/app/logout) to link it again"
        ))),
        _ => Ok(()),
    }
}

/// Start pairing the device by QR code (compatible route).
#[utoipa::path(get, path = "/app/login", tag = "compatible", params(("X-Device-Id" = Option<String>, Header, description = "Device id")),
    responses((status = 200, body = Envelope<LoginResults>), (status = 400, description = "Several devices and none named, or the device is already linked and online (code `ALREADY_LOGGED_IN`; its session is kept)"), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "Pairing failed"), (status = 503, description = "No worker produced a code in time")),
    security(("bearer" = [])))]
async fn app_login(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    headers: axum::http::HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let (qr_duration, qr_link) = start_qr(&state, &user, device, &headers).await?;
    Ok(ok("Success", LoginResults { qr_duration, qr_link }))
}

/// Starts pairing `device` by QR code, unless it is linked and online; returns the seconds until
/// the code is replaced and where to fetch it as a PNG.
pub(crate) async fn start_qr(
    state: &AppState,
    user: &User,
    device: DeviceId,
    headers: &axum::http::HeaderMap,
) -> ApiResult<(i64, String)> {
    refuse_if_logged_in(state, user, device).await?;
    let view = sessions::begin_qr(state, user.id, device).await?;
    let now = wafleet_core::types::Timestamp::now().millis();
    let qr_duration = view.qr_expires_at.map_or(30, |t| ((t.millis() - now) / 1000).max(1));
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.settings.cookie_secure { "https" } else { "http" };
    // `/app/qr` takes the API token like this route; the dashboard's QR route takes a session.
    Ok((qr_duration, format!("{scheme}://{host}/app/qr?device_id={device}")))
}

/// Query of `GET /app/login-with-code`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct CodeQuery {
    /// The number of the phone to link.
    phone: String,
}

/// `results` of `GET /app/login-with-code`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CodeResults {
    /// The code to type on the phone.
    pub pair_code: String,
}

/// Start pairing the device by phone code (compatible route).
#[utoipa::path(get, path = "/app/login-with-code", tag = "compatible", params(CodeQuery),
    responses((status = 200, body = Envelope<CodeResults>), (status = 400, description = "Several devices and none named, no or not a phone number, or the device is already linked and online (code `ALREADY_LOGGED_IN`; its session is kept)"), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "Pairing failed"),
              (status = 503, description = "No worker produced a code in time")),
    security(("bearer" = [])))]
async fn app_login_with_code(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Query(query): Query<CodeQuery>,
) -> ApiResult<impl IntoResponse> {
    let phone = PhoneNumber::parse(&query.phone, state.settings.default_country)
        .map_err(|e| ApiError::Invalid(format!("phone: {e}")))?;
    refuse_if_logged_in(&state, &user, device).await?;
    let pair_code = sessions::begin_pair_code(&state, user.id, device, &phone).await?;
    Ok(ok("Success", CodeResults { pair_code }))
}

/// Log the device out of WhatsApp, keeping the device (compatible route).
#[utoipa::path(get, path = "/app/logout", tag = "compatible", responses((status = 200, description = "Logout requested"), (status = 400, description = "Several devices and none named"), (status = 404, description = "No such device of yours, or no device at all")),
    security(("bearer" = [])))]
async fn app_logout(State(state): State<AppState>, Caller(user, device): Caller) -> ApiResult<impl IntoResponse> {
    sessions::begin_logout(&state, user.id, device).await?;
    Ok(ok("Success logout", ()))
}

/// Reconnect the device (compatible route).
#[utoipa::path(get, path = "/app/reconnect", tag = "compatible", responses((status = 200, description = "Reconnect requested"), (status = 400, description = "Several devices and none named"), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "Not linked yet, or logged out: log in first")),
    security(("bearer" = [])))]
async fn app_reconnect(State(state): State<AppState>, Caller(user, device): Caller) -> ApiResult<impl IntoResponse> {
    sessions::begin_reconnect(&state, user.id, device).await?;
    Ok(ok("Reconnect success", ()))
}

/// The device's current QR code as a PNG image (compatible route; `/app/login` starts pairing and
/// links here).
#[utoipa::path(get, path = "/app/qr", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("device_id" = Option<String>, Query, description = "Device id, instead of the header")),
    responses((status = 200, description = "PNG image", content_type = "image/png"), (status = 404, description = "No such device of yours, or no QR code now"),
              (status = 400, description = "Several devices and none named")),
    security(("bearer" = [])))]
async fn app_qr(State(state): State<AppState>, Caller(user, device): Caller) -> ApiResult<impl IntoResponse> {
    let view = state.db.pairing_view(user.id, device).await?;
    let png = sessions::qr_png(
        view.qr_code
            .as_deref()
            .ok_or(ApiError::NotFound("QR code (start pairing with /app/login)"))?,
    )
    .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("QR payload does not fit a QR code")))?;
    Ok((
        [(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")],
        png,
    ))
}

/// One entry of `GET /app/devices`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppDevice {
    /// The device's name.
    pub name: String,
    /// Its id, for `X-Device-Id`.
    pub device: String,
    /// The linked account's JID (empty until linked).
    pub jid: String,
}

/// List your devices (compatible route).
#[utoipa::path(get, path = "/app/devices", tag = "compatible", responses((status = 200, body = Envelope<Vec<AppDevice>>)),
    security(("bearer" = [])))]
async fn app_devices(State(state): State<AppState>, TokenUser(user): TokenUser) -> ApiResult<impl IntoResponse> {
    let devices = state.db.list_devices(user.id).await?;
    let list: Vec<AppDevice> = devices
        .into_iter()
        .map(|d| AppDevice {
            name: d.name,
            device: d.id.to_string(),
            jid: d.jid.unwrap_or_default(),
        })
        .collect();
    Ok(ok("Fetch device success", list))
}

/// `results` of `GET /app/passkey`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyStatus {
    /// The device asked about.
    pub device_id: String,
    /// Always `none`: see [`app_passkey`].
    pub status: String,
    /// The pending WebAuthn challenge: never one.
    pub challenge: Option<serde_json::Value>,
}

/// Why no passkey request is ever pending.
const NO_PASSKEY: &str = "no passkey request is pending for this device: wafleet links devices by QR code or pairing code, \
     and neither of its links carries WhatsApp's passkey requests";

/// The device's pending passkey pairing (upstream `appPasskeyStatus`): always `none`, since
/// neither link receives WhatsApp's passkey requests; devices link by QR code or pairing code.
#[utoipa::path(get, path = "/app/passkey", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    responses((status = 200, body = Envelope<PasskeyStatus>), (status = 400, description = "Several devices and none named"),
              (status = 404, description = "No such device of yours, or no device at all")),
    security(("bearer" = [])))]
async fn app_passkey(Caller(_user, device): Caller) -> ApiResult<impl IntoResponse> {
    let status = PasskeyStatus {
        device_id: device.to_string(),
        status: "none".into(),
        challenge: None,
    };
    Ok(ok("Passkey pairing status", status))
}

/// Submit a WebAuthn assertion (upstream `appPasskeyResponse`): refused, as no passkey request
/// is ever pending (see `GET /app/passkey`).
#[utoipa::path(post, path = "/app/passkey/response", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    responses((status = 400, description = "No passkey request is pending (never one), or several devices and none named"),
              (status = 404, description = "No such device of yours, or no device at all")),
    security(("bearer" = [])))]
async fn app_passkey_response(_caller: Caller) -> ApiResult<Response> {
    Err(ApiError::BadRequest(NO_PASSKEY.into()))
}

/// Confirm a passkey pairing code (upstream `appPasskeyConfirm`): refused, as no passkey request
/// is ever pending (see `GET /app/passkey`).
#[utoipa::path(post, path = "/app/passkey/confirm", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    responses((status = 400, description = "No passkey request is pending (never one), or several devices and none named"),
              (status = 404, description = "No such device of yours, or no device at all")),
    security(("bearer" = [])))]
async fn app_passkey_confirm(_caller: Caller) -> ApiResult<Response> {
    Err(ApiError::BadRequest(NO_PASSKEY.into()))
}
