//! Linking devices to WhatsApp: pairing by QR or phone code, logout, reconnect and number checks
//! (the chat list and messages are in `chat_view`). Handlers only record what the owner wants; the worker holding the device does it
//! and writes progress back, which these handlers (and the event stream) read.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{Desired, DeviceStatus, PairingView, RequestOutcome};
use wafleet_core::link::NumberCheck;
use wafleet_core::types::{DeviceId, PhoneNumber, UserId};

use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path, Query};
use crate::session::CurrentUser;

/// Most numbers checked in one request.
const MAX_CHECK: usize = 50;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_qr, current_qr))
        .routes(routes!(pair_code))
        .routes(routes!(logout))
        .routes(routes!(reconnect))
        .routes(routes!(check_numbers))
}

/// Polls `probe` until it yields a value or `WORKER_WAIT_SECS` pass.
pub(crate) async fn wait_for<T, F, Fut>(state: &AppState, mut probe: F) -> ApiResult<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ApiResult<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(state.settings.worker_wait_secs);
    loop {
        if let Some(value) = probe().await? {
            return Ok(Some(value));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the worker pairing `device` to show what `pick` takes from the pairing progress (a QR
/// code, a pair code); a failure the worker records ends the wait with 409, silence with 503.
async fn await_pairing<T>(
    state: &AppState,
    user: UserId,
    device: DeviceId,
    what: &str,
    pick: impl Fn(PairingView) -> Option<T>,
) -> ApiResult<T> {
    let found = wait_for(state, || async {
        let view = state.db.pairing_view(user, device).await?;
        if let Some(error) = &view.last_error {
            return Err(ApiError::Conflict(format!("pairing failed: {error}")));
        }
        Ok(pick(view))
    })
    .await?;
    found.ok_or_else(|| ApiError::Unavailable(format!("no worker produced a {what} in time; try again shortly")))
}

/// Starts pairing `device` by QR code and waits for the first code.
pub(crate) async fn begin_qr(state: &AppState, user: UserId, device: DeviceId) -> ApiResult<PairingView> {
    request(state, user, device, Desired::PairQr, None).await?;
    await_pairing(state, user, device, "QR code", |view| {
        view.qr_code.is_some().then_some(view)
    })
    .await
}

/// Starts pairing `device` by phone code and waits for the code.
pub(crate) async fn begin_pair_code(
    state: &AppState,
    user: UserId,
    device: DeviceId,
    phone: &PhoneNumber,
) -> ApiResult<String> {
    request(state, user, device, Desired::PairCode, Some(phone)).await?;
    await_pairing(state, user, device, "pair code", |view| view.pair_code).await
}

/// Asks the device's session to reconnect with its stored credentials.
pub(crate) async fn begin_reconnect(state: &AppState, user: UserId, device: DeviceId) -> ApiResult<()> {
    let current = state.db.device(user, device).await.or_not_found("device")?;
    if current.jid.is_none() {
        return Err(ApiError::Conflict(
            "the device is not linked yet: pair it by QR code or phone code first".into(),
        ));
    }
    // A logged-out device keeps its JID, but its credentials are gone: asking it to connect
    // would look like success and never connect.
    let logged_out = current.status == DeviceStatus::LoggedOut
        || state.db.desired_session(user, device).await? == Some(Desired::Unlinked);
    if logged_out || current.status == DeviceStatus::Banned {
        let what = if current.status == DeviceStatus::Banned {
            "banned"
        } else {
            "logged out"
        };
        return Err(ApiError::Conflict(format!(
            "the device is {what}: log in first (pair it again by QR code or phone code), then it stays connected"
        )));
    }
    request(state, user, device, Desired::Connected, None).await
}

/// Logs the device out of WhatsApp (keeps the device).
pub(crate) async fn begin_logout(state: &AppState, user: UserId, device: DeviceId) -> ApiResult<()> {
    request(state, user, device, Desired::Unlinked, None).await
}

/// Records what the owner wants of the device's session (which sets its status), and lets the
/// device's cached reads go.
async fn request(
    state: &AppState,
    user: UserId,
    device: DeviceId,
    desired: Desired,
    pair_phone: Option<&PhoneNumber>,
) -> ApiResult<()> {
    state
        .db
        .request_session(user, device, desired, pair_phone)
        .await
        .or_not_found("device")?;
    state.invalidations.device_changed(device).await;
    Ok(())
}

/// Which of `phones` are on WhatsApp, asked of the device's live session.
pub(crate) async fn run_check(
    state: &AppState,
    user: UserId,
    device: DeviceId,
    phones: &[PhoneNumber],
) -> ApiResult<Vec<NumberCheck>> {
    let question = serde_json::json!({ "phones": phones });
    ask_session_for(state, user, device, "check_numbers", question, "checking numbers").await
}

/// [`ask_session`], with the answer read as a `T`.
pub(crate) async fn ask_session_for<T: serde::de::DeserializeOwned>(
    state: &AppState,
    user: UserId,
    device: DeviceId,
    kind: &str,
    question: serde_json::Value,
    doing: &str,
) -> ApiResult<T> {
    let answer = ask_session(state, user, device, kind, question, doing).await?;
    serde_json::from_str(&answer).map_err(|e| ApiError::Internal(e.into()))
}

/// Asks the worker holding `user`'s `device` to do `kind` with `question` through its live
/// session, and waits for the answer (JSON). The device must be online (409 otherwise, naming
/// `doing`); a failure is 503 with the link's reason, as is no answer within `WORKER_WAIT_SECS`.
pub(crate) async fn ask_session(
    state: &AppState,
    user: UserId,
    device: DeviceId,
    kind: &str,
    question: serde_json::Value,
    doing: &str,
) -> ApiResult<String> {
    let current = state.db.device(user, device).await.or_not_found("device")?;
    if current.status != DeviceStatus::Online {
        return Err(ApiError::Conflict(format!(
            "the device is {}: {doing} works only while it is online",
            current.status.as_str().replace('_', " ")
        )));
    }
    let id = state
        .db
        .create_device_request(user, device, kind, &question.to_string())
        .await
        .or_not_found("device")?;
    let outcome = wait_for(state, || async {
        Ok(match state.db.device_request_outcome(id).await? {
            RequestOutcome::Pending => None,
            done => Some(done),
        })
    })
    .await?;
    match outcome {
        Some(RequestOutcome::Done(json)) => Ok(json),
        Some(RequestOutcome::Failed(reason)) => Err(ApiError::Unavailable(format!("{doing} failed: {reason}"))),
        _ => Err(ApiError::Unavailable(
            "the device's worker did not answer in time; try again shortly".into(),
        )),
    }
}

/// The current QR code of a device being paired.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QrCode {
    /// The payload to render (scan it with WhatsApp → Linked devices).
    pub qr_code: String,
    /// When it is replaced by the next one.
    pub expires_at: Option<wafleet_core::types::Timestamp>,
    /// The code as an SVG image.
    pub qr_svg: String,
}

/// `code` drawn as an SVG QR code.
pub(crate) fn qr_svg(code: &str) -> Option<String> {
    let qr = qrcode::QrCode::new(code.as_bytes()).ok()?;
    Some(
        qr.render::<qrcode::render::svg::Color>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
    )
}

/// `code` drawn as a PNG QR code: what the compatible API's `qr_link` serves, as its clients
/// expect an image they can show or save as is.
pub(crate) fn qr_png(code: &str) -> Option<Vec<u8>> {
    let qr = qrcode::QrCode::new(code.as_bytes()).ok()?;
    let image = qr
        .render::<image::Luma<u8>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .ok()?;
    Some(png)
}

fn qr_view(view: PairingView) -> Option<QrCode> {
    let code = view.qr_code?;
    let qr_svg = qr_svg(&code)?;
    Some(QrCode {
        qr_code: code,
        expires_at: view.qr_expires_at,
        qr_svg,
    })
}

/// Start linking a device by QR code; answers with the first code.
#[utoipa::path(post, path = "/api/devices/{id}/qr", tag = "sessions", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, body = Envelope<QrCode>), (status = 404, description = "No such device of yours"),
              (status = 409, description = "Pairing failed"), (status = 503, description = "No worker produced a code in time")))]
async fn start_qr(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    let view = begin_qr(&state, user.id, id).await?;
    Ok(ok("scan the QR code with WhatsApp → Linked devices", qr_view(view)))
}

/// Query of `GET /api/devices/{id}/qr`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct QrQuery {
    /// `svg` for the image alone.
    format: Option<String>,
}

/// The current QR code of a device being paired (JSON, or `?format=svg` for the image).
#[utoipa::path(get, path = "/api/devices/{id}/qr", tag = "sessions", params(("id" = i64, Path, description = "Device id"), QrQuery),
    responses((status = 200, body = Envelope<QrCode>), (status = 404, description = "No such device, or no QR code now")))]
async fn current_qr(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
    Query(query): Query<QrQuery>,
) -> ApiResult<Response> {
    state.db.device(user.id, id).await.or_not_found("device")?;
    let qr = qr_view(state.db.pairing_view(user.id, id).await?).ok_or(ApiError::NotFound("QR code"))?;
    Ok(match query.format.as_deref() {
        Some("svg") => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            qr.qr_svg,
        )
            .into_response(),
        _ => ok("current QR code", qr).into_response(),
    })
}

/// Body of a pair-code request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct PairCodeRequest {
    /// The number of the phone to link; defaults to the device's number.
    #[schema(example = "+60123456789")]
    pub phone: Option<String>,
}

/// A pair code to type on the phone.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PairCode {
    /// E.g. `6ZPJ-KFNJ`: on the phone, WhatsApp → Linked devices → Link with phone number.
    pub pair_code: String,
}

/// Start linking a device by phone pair code; answers with the code.
#[utoipa::path(post, path = "/api/devices/{id}/pair-code", tag = "sessions", params(("id" = i64, Path, description = "Device id")),
    request_body = PairCodeRequest,
    responses((status = 200, body = Envelope<PairCode>), (status = 404, description = "No such device of yours"),
              (status = 409, description = "Pairing failed"), (status = 422, description = "No or invalid phone number"),
              (status = 503, description = "No worker produced a code in time")))]
async fn pair_code(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
    body: Option<Json<PairCodeRequest>>,
) -> ApiResult<impl IntoResponse> {
    let device = state.db.device(user.id, id).await.or_not_found("device")?;
    let phone = match body.and_then(|Json(b)| b.phone).filter(|p| !p.trim().is_empty()) {
        Some(raw) => PhoneNumber::parse(&raw, state.settings.default_country)
            .map_err(|e| ApiError::Invalid(format!("phone: {e}")))?,
        None => device
            .phone
            .ok_or_else(|| ApiError::Invalid("phone: give the number of the phone to link".into()))?,
    };
    let code = begin_pair_code(&state, user.id, id, &phone).await?;
    Ok(ok(
        "type this code on the phone: WhatsApp → Linked devices → Link with phone number",
        PairCode { pair_code: code },
    ))
}

/// Log a device out of WhatsApp; the device stays and can be paired again.
#[utoipa::path(post, path = "/api/devices/{id}/logout", tag = "sessions", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, description = "Logout requested"), (status = 404, description = "No such device of yours")))]
async fn logout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    begin_logout(&state, user.id, id).await?;
    Ok(ok("logout requested", ()))
}

/// Reconnect a linked device with its stored credentials.
#[utoipa::path(post, path = "/api/devices/{id}/reconnect", tag = "sessions", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, description = "Reconnect requested"), (status = 404, description = "No such device of yours"),
              (status = 409, description = "Not linked yet")))]
async fn reconnect(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    begin_reconnect(&state, user.id, id).await?;
    Ok(ok("reconnect requested", ()))
}

/// Numbers to check.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CheckRequest {
    /// Up to 50 numbers; national ones use the default country.
    pub phones: Vec<String>,
}

/// Which numbers are on WhatsApp (asked through the device's live session).
#[utoipa::path(post, path = "/api/devices/{id}/check", tag = "sessions", params(("id" = i64, Path, description = "Device id")),
    request_body = CheckRequest,
    responses((status = 200, body = Envelope<Vec<NumberCheck>>), (status = 404, description = "No such device of yours"),
              (status = 409, description = "Device not online"), (status = 422, description = "Invalid numbers"),
              (status = 503, description = "The device's worker did not answer in time")))]
async fn check_numbers(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
    Json(body): Json<CheckRequest>,
) -> ApiResult<impl IntoResponse> {
    if body.phones.is_empty() || body.phones.len() > MAX_CHECK {
        return Err(ApiError::Invalid(format!("phones: give 1 to {MAX_CHECK} numbers")));
    }
    let phones = body
        .phones
        .iter()
        .map(|p| {
            PhoneNumber::parse(p, state.settings.default_country).map_err(|e| ApiError::Invalid(format!("phones: {e}")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok("numbers checked", run_check(&state, user.id, id, &phones).await?))
}
