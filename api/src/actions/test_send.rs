//! A test text or image to one number, logged in the device's activity.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wafleet_core::db::{ActivityKind, OutboundMessage};
use wafleet_core::types::DeviceId;

use super::{Action, clip, log_action};
use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::ApiResult;
use crate::extract::{Json, Path};
use crate::sends::{SendRequest, accept, decode_image, idempotency_key};
use crate::session::CurrentUser;

/// Send a test text or image from a device and log it in the device's activity. The same as
/// `POST /api/devices/{id}/send` (idempotency keys, image compression, the device's pacing);
/// follow the send with `GET /api/messages/{id}`.
#[utoipa::path(post, path = "/api/devices/{id}/actions/test-send", tag = "actions",
    params(("id" = i64, Path, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send (max 200 characters)")),
    request_body = SendRequest,
    responses((status = 202, body = Envelope<OutboundMessage>, description = "Queued"),
              (status = 200, body = Envelope<OutboundMessage>, description = "Already accepted under this key"),
              (status = 404, description = "No such device of yours"),
              (status = 409, description = "Device not linked, or the key was used for another send"),
              (status = 422, description = "Bad recipient, text or image")))]
pub(super) async fn test_send(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    headers: HeaderMap,
    Json(body): Json<SendRequest>,
) -> ApiResult<Response> {
    // The device is checked first, so another user's device is a 404 whatever the body holds.
    state
        .db
        .device(user.id, device)
        .await
        .map_err(|e| crate::ApiError::from_core(e, "device"))?;
    let image = decode_image(body.image_base64.as_deref())?;
    let has_image = image.is_some();
    let key = idempotency_key(&headers)?;
    let (message, created) = accept(
        &state,
        user.id,
        device,
        key,
        &body.to,
        crate::sends::Draft::new(body.text.clone(), image.map(crate::sends::Payload::Image)),
    )
    .await?;
    if !created {
        return Ok(ok("message already accepted under this key", message).into_response());
    }
    let what = if has_image { "test image" } else { "test text" };
    let text = body
        .text
        .as_deref()
        .map(|t| format!(": “{}”", clip(t, 60)))
        .unwrap_or_default();
    let to = message.to.0.split('@').next().unwrap_or_default();
    let action = Action {
        kind: ActivityKind::TestSend,
        summary: format!("{what} to +{to}{text}"),
        result: format!("queued as message {}", message.id),
        ref_id: Some(message.id),
    };
    log_action(&state, &user, device, &headers, action).await;
    let reply = ok(format!("test {} queued", message.kind), message);
    Ok((StatusCode::ACCEPTED, reply).into_response())
}
