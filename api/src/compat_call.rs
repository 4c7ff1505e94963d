//! The upstream REST API's `POST /call/reject`: declines a call ringing on the account of the
//! device named by `X-Device-Id` (or the only one), through its live session. The call's id and
//! caller come from the `call.offer` webhook.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::compat::{Caller, upstream_statuses};
use crate::compat_message::chat_jid;
use crate::envelope::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::sessions::ask_session;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reject_call))
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// Body of `POST /call/reject`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RejectCall {
    /// Who is calling: `payload.from` of the `call.offer` webhook.
    pub caller_jid: Option<String>,
    /// The call: `payload.call_id` of the `call.offer` webhook.
    pub call_id: Option<String>,
}

/// Longest call id accepted (WhatsApp's are 32 hexadecimal digits).
const MAX_CALL_ID_CHARS: usize = 128;

/// Decline a call that is ringing on the account (upstream `rejectCall`), as the phone's
/// "Decline" does, through the device's live session. WhatsApp does not answer a rejection, so
/// one of a call that has already ended changes nothing and is answered all the same.
#[utoipa::path(post, path = "/call/reject", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    request_body = RejectCall,
    responses((status = 200, description = "The rejection went out"),
              (status = 400, description = "Several devices and none named, no call_id, or no or a bad caller_jid"),
              (status = 404, description = "No such device of yours, or no device at all"),
              (status = 409, description = "The device is not online"),
              (status = 503, description = "The device's worker did not answer in time, or WhatsApp refused")),
    security(("bearer" = [])))]
async fn reject_call(
    State(state): State<AppState>,
    Caller(user, device): Caller,
    Json(body): Json<RejectCall>,
) -> ApiResult<Response> {
    let call_id = body.call_id.as_deref().map(str::trim).unwrap_or_default();
    if call_id.is_empty() || call_id.chars().count() > MAX_CALL_ID_CHARS {
        return Err(ApiError::Invalid(
            "call_id: give the call's id, `payload.call_id` of the call.offer webhook".into(),
        ));
    }
    let caller = body.caller_jid.as_deref().map(str::trim).unwrap_or_default();
    if caller.is_empty() {
        return Err(ApiError::Invalid(
            "caller_jid: give the caller, `payload.from` of the call.offer webhook".into(),
        ));
    }
    // The caller as the webhook named them: a number's JID (perhaps with its device), or a LID.
    let caller = if caller.contains(':') {
        chat_jid(caller, "caller_jid", &state)?;
        caller.to_owned()
    } else {
        chat_jid(caller, "caller_jid", &state)?.0
    };
    let question = serde_json::json!({ "caller": caller, "call_id": call_id });
    ask_session(&state, user.id, device, "reject_call", question, "declining the call").await?;
    Ok(ok("Success reject call", ()).into_response())
}
