//! Broadcasts to a pasted list of numbers. All-or-report, like the leads CSV import: every bad
//! line is reported with its line number and nothing is queued if any line is bad. Repeated
//! numbers are dropped with a note. Each recipient becomes an ordinary send under the key
//! `broadcast:{id}:{phone}`, queued for the device's holder, which paces it with everything else
//! the device sends (campaigns and single sends alike).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use wafleet_core::db::{ActivityKind, Broadcast, NewBroadcast};
use wafleet_core::types::DeviceId;

use super::lines::{self, Duplicate, LineError};
use super::{Action, clip, log_action};
use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::sends::{decode_image, enqueue, ensure_linked, idempotency_key, image_content, text_content};
use crate::session::CurrentUser;

/// Most recipients (pasted lines) of one broadcast.
pub(crate) const MAX_BROADCAST_LINES: usize = 1_000;
/// Broadcasts listed per device.
const LISTED: i64 = 20;

/// A broadcast to send.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BroadcastRequest {
    /// Up to 1,000 numbers, one per line, in any common format; national ones use the default
    /// country. Blank lines are skipped, repeated numbers dropped.
    #[schema(example = "+60123456789\n012-345 6789")]
    pub numbers: String,
    /// The text, or the image's caption.
    pub text: Option<String>,
    /// An image (JPEG, PNG, WebP or GIF), base64-encoded; sent as a JPEG of at most 1200 px.
    pub image_base64: Option<String>,
}

/// An accepted broadcast.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BroadcastAccepted {
    /// The broadcast and its progress.
    pub broadcast: Broadcast,
    /// Lines dropped because an earlier line has the same number.
    pub duplicates: Vec<Duplicate>,
}

/// Why a broadcast was refused (nothing was queued).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BroadcastRefused {
    /// How many lines are bad.
    pub error_count: usize,
    /// Every bad line, in order.
    pub errors: Vec<LineError>,
}

/// The path of one broadcast.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct BroadcastPath {
    /// Device id.
    id: DeviceId,
    /// Broadcast id.
    broadcast: i64,
}

/// Send one message to a pasted list of numbers from a device. Every line is checked first: if
/// any is not a number, nothing is queued and the answer (422) lists each bad line. Repeated
/// numbers are sent to once (the answer lists the lines dropped). Each recipient is recorded as a
/// send under `broadcast:{id}:{phone}` and paced by the device like all its sends; repeating the
/// request with the same `Idempotency-Key` finds the same broadcast and sends nobody twice.
#[utoipa::path(post, path = "/api/devices/{id}/broadcasts", tag = "actions",
    params(("id" = i64, Path, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same broadcast (max 200 characters)")),
    request_body = BroadcastRequest,
    responses((status = 202, body = Envelope<BroadcastAccepted>, description = "Queued"),
              (status = 200, body = Envelope<BroadcastAccepted>, description = "Already accepted under this key"),
              (status = 404, description = "No such device of yours"),
              (status = 409, description = "Device not linked, or the key was used for another broadcast"),
              (status = 422, body = Envelope<Option<BroadcastRefused>>,
               description = "Bad lines, each listed in `results` (nothing was queued); or, with `results` null, no numbers, too many, or bad text or image")))]
pub(super) async fn create_broadcast(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    headers: HeaderMap,
    Json(body): Json<BroadcastRequest>,
) -> ApiResult<Response> {
    let current = state.db.device(user.id, device).await.or_not_found("device")?;
    let key = idempotency_key(&headers)?;
    let pasted = lines::parse(&body.numbers, state.settings.default_country, MAX_BROADCAST_LINES)?;
    let errors = lines::errors(&pasted);
    if !errors.is_empty() {
        return Ok(refused(errors));
    }
    let image = decode_image(body.image_base64.as_deref())?;
    let text = text_content(body.text, image.is_some())?;
    // Every cheap check passes before the image is decoded.
    ensure_linked(&current)?;
    let image = image_content(image).await?;
    let (recipients, duplicates) = lines::distinct(&pasted);
    let new = NewBroadcast {
        user: user.id,
        device,
        idempotency_key: key,
        message: text,
        image,
        recipients,
        duplicates: duplicates.len() as i64,
    };
    let (broadcast, created, queued) = state
        .db
        .record_broadcast(&new)
        .await
        .map_err(|e| ApiError::from_core(e, "device"))?;
    for message in &queued {
        enqueue(&state, message).await;
    }
    let count = new.recipients.len();
    let noted = match duplicates.len() {
        0 => String::new(),
        1 => "; 1 repeated number dropped".into(),
        n => format!("; {n} repeated numbers dropped"),
    };
    let message = format!("broadcast {} to {count} numbers queued{noted}", broadcast.id);
    if created {
        metrics::counter!(wafleet_core::metrics::BROADCAST_RECIPIENTS).increment(count as u64);
        let what = if new.image.is_some() { "image" } else { "text" };
        let text = new
            .message
            .as_deref()
            .map(|t| format!(": “{}”", clip(t, 60)))
            .unwrap_or_default();
        let action = Action {
            kind: ActivityKind::Broadcast,
            summary: format!("broadcast {} ({what}) to {count} numbers{text}", broadcast.id),
            result: format!("{count} sends queued{noted}"),
            ref_id: Some(broadcast.id),
        };
        log_action(&state, &user, device, &headers, action).await;
    }
    let status = if created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let reply = ok(message, BroadcastAccepted { broadcast, duplicates });
    Ok((status, reply).into_response())
}

/// The 422 answer listing every bad line.
fn refused(errors: Vec<LineError>) -> Response {
    let error_count = errors.len();
    let noun = if error_count == 1 { "line is" } else { "lines are" };
    let body = Envelope {
        code: "UNPROCESSABLE_ENTITY".into(),
        message: format!(
            "nothing was queued: {error_count} {noun} not a phone number; fix or remove them and send the whole list again"
        ),
        results: BroadcastRefused { error_count, errors },
    };
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

/// A device's latest 20 broadcasts, newest first, each with its progress.
#[utoipa::path(get, path = "/api/devices/{id}/broadcasts", tag = "actions",
    params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, body = Envelope<Vec<Broadcast>>), (status = 404, description = "No such device of yours")))]
pub(super) async fn list_broadcasts(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    let list = state
        .db
        .broadcasts(user.id, device, LISTED)
        .await
        .or_not_found("device")?;
    Ok(ok(format!("{} broadcasts", list.len()), list))
}

/// One broadcast and where its recipients stand: queued, sent, delivered, read, replied, failed.
#[utoipa::path(get, path = "/api/devices/{id}/broadcasts/{broadcast}", tag = "actions", params(BroadcastPath),
    responses((status = 200, body = Envelope<Broadcast>), (status = 404, description = "No such broadcast of yours")))]
pub(super) async fn get_broadcast(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(path): Path<BroadcastPath>,
) -> ApiResult<impl IntoResponse> {
    let broadcast = state
        .db
        .broadcast(user.id, path.id, path.broadcast)
        .await
        .or_not_found("broadcast")?;
    Ok(ok("broadcast progress", broadcast))
}
