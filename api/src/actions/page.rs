//! The actions page of a device: test send with its status as it moves, number checks, broadcasts
//! with their progress, and the activity log. It drives the JSON API from `actions.js` with the
//! page's CSRF token, like the leads page.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use wafleet_core::types::{DeviceId, Timestamp};

use super::broadcast::MAX_BROADCAST_LINES;
use super::check::MAX_CHECK_LINES;
use crate::AppState;
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::Path;
use crate::frame::{Frame, device_not_found};
use crate::pages::{asset, page};
use crate::session::PageUser;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/device/{id}/actions", get(actions_page))
        .route(
            "/static/actions.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../static/actions.js"),
                )
            }),
        )
        .route(
            "/static/actions.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../../static/actions.css"))),
        )
}

#[derive(Template)]
#[template(path = "actions.html")]
struct ActionsPage {
    frame: Frame,
    device_id: DeviceId,
    device_name: String,
    device_status: String,
    max_check: usize,
    max_broadcast: usize,
    max_body_bytes: usize,
    /// What WhatsApp's restrictions on new chats mean for this device's sends, if anything.
    restriction: Option<String>,
}

async fn actions_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    jar: CookieJar,
    Path(id): Path<DeviceId>,
) -> ApiResult<Response> {
    let device = match state.db.device(user.id, id).await.or_not_found("device") {
        Ok(device) => device,
        Err(ApiError::NotFound(_)) => return Ok(device_not_found(&state, jar, &user)),
        Err(err) => return Err(err),
    };
    let restrictions = state.db.device_restrictions(device.id).await?;
    let restriction = crate::devices::RestrictionsView::new(restrictions, Timestamp::now()).summary();
    let (jar, frame) = Frame::new(&state, jar, &user, "devices");
    let frame = frame.on_device(&device, "actions");
    let view = ActionsPage {
        frame,
        device_id: device.id,
        device_name: device.name,
        device_status: device.status.as_str().replace('_', " "),
        max_check: MAX_CHECK_LINES,
        max_broadcast: MAX_BROADCAST_LINES,
        max_body_bytes: state.settings.max_body_bytes,
        restriction,
    };
    Ok((jar, page(StatusCode::OK, &view)).into_response())
}
