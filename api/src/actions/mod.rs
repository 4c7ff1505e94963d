//! Device actions: from a device's actions page (or the same JSON API) send a test text or image,
//! check which pasted numbers are on WhatsApp, broadcast to a pasted list through the device's
//! paced queue, and read the device's activity log of all of these.
//!
//! Nothing here sends or checks by itself: test sends go through [`crate::sends::accept`],
//! broadcasts record ordinary sends under stable keys (see `wafleet_core::db::Db::record_broadcast`),
//! and checks ask the device's holder as `POST /api/devices/{id}/check` does.

mod activity;
mod broadcast;
pub(crate) mod check;
mod lines;
mod page;
mod test_send;

use axum::Router;
use axum::http::{HeaderMap, header};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{ActivityKind, NewActivity, User};
use wafleet_core::types::DeviceId;

use crate::AppState;
use crate::text::clip;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(test_send::test_send))
        .routes(routes!(check::check_lines))
        .routes(routes!(broadcast::create_broadcast, broadcast::list_broadcasts))
        .routes(routes!(broadcast::get_broadcast))
        .routes(routes!(activity::list_activity))
}

pub(crate) fn page_router() -> Router<AppState> {
    page::router()
}

/// What an entry of the activity log says.
struct Action {
    /// What kind of action.
    kind: ActivityKind,
    /// What was asked.
    summary: String,
    /// What came of it.
    result: String,
    /// The send or broadcast it is about.
    ref_id: Option<i64>,
}

/// Adds an action to the device's activity log and counts it. The action already happened, so a
/// failure to log it is logged and not answered as an error (which would invite a retry).
async fn log_action(state: &AppState, user: &User, device: DeviceId, headers: &HeaderMap, action: Action) {
    let Action {
        kind,
        summary,
        result,
        ref_id,
    } = action;
    metrics::counter!(wafleet_core::metrics::DEVICE_ACTIONS, "kind" => kind.as_str()).increment(1);
    let entry = NewActivity {
        user: user.id,
        device,
        actor: user.email.to_string(),
        // Only API tokens come in the Authorization header; browsers use the session cookie.
        via: if headers.contains_key(header::AUTHORIZATION) {
            "api"
        } else {
            "dashboard"
        },
        kind,
        summary,
        result,
        ref_id,
    };
    if let Err(err) = state.db.record_activity(&entry).await {
        tracing::warn!(error = ?err, %device, kind = kind.as_str(), "recording the activity log failed");
    }
}
