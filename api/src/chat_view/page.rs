//! The WhatsApp page of a device: its chats on the left, the open chat's messages on the right,
//! a green or red bar for the session, and no way to write. `whatsapp.js` reads the JSON API and
//! follows the device's event stream.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use wafleet_core::db::DeviceStatus;
use wafleet_core::types::{DeviceId, Timestamp};

use crate::AppState;
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::Path;
use crate::frame::{Frame, device_not_found};
use crate::pages::{asset, page};
use crate::session::PageUser;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/device/{id}/whatsapp-web", get(whatsapp_page))
        .route(
            "/static/whatsapp.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../static/whatsapp.js"),
                )
            }),
        )
        .route(
            "/static/whatsapp.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../../static/whatsapp.css"))),
        )
}

#[derive(Template)]
#[template(path = "whatsapp.html")]
struct WhatsAppPage {
    frame: Frame,
    device_id: DeviceId,
    device_name: String,
    /// The session state as stored, e.g. `logged_out`.
    status: &'static str,
    /// The same for people, e.g. `logged out`.
    status_label: String,
    online: bool,
    /// When the page was made (ms): the event stream sends what is stored after it.
    since: i64,
}

async fn whatsapp_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    jar: CookieJar,
    Path(id): Path<DeviceId>,
) -> ApiResult<Response> {
    let since = Timestamp::now().millis();
    let device = match state.db.device(user.id, id).await.or_not_found("device") {
        Ok(device) => device,
        Err(ApiError::NotFound(_)) => return Ok(device_not_found(&state, jar, &user)),
        Err(err) => return Err(err),
    };
    let (jar, frame) = Frame::new(&state, jar, &user, "devices");
    let frame = frame.on_device(&device, "whatsapp");
    let view = WhatsAppPage {
        frame,
        device_id: device.id,
        device_name: device.name,
        status: device.status.as_str(),
        status_label: device.status.as_str().replace('_', " "),
        online: device.status == DeviceStatus::Online,
        since,
    };
    Ok((jar, page(StatusCode::OK, &view)).into_response())
}
