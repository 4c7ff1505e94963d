//! The leads page of a device: a table with search and filters, add, edit, delete, CSV import
//! (showing every row error when a file is refused) and export. It drives the JSON API from
//! `leads.js` with the page's CSRF token, like the dashboard.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use wafleet_core::db::LeadStatus;
use wafleet_core::types::DeviceId;

use super::transfer::MAX_IMPORT_ROWS;
use crate::AppState;
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::Path;
use crate::frame::{Frame, device_not_found};
use crate::pages::{asset, page};
use crate::session::PageUser;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/device/{id}/leads", get(leads_page))
        .route(
            "/static/leads.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../../static/leads.js"))),
        )
        .route(
            "/static/leads.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../../static/leads.css"))),
        )
}

#[derive(Template)]
#[template(path = "leads.html")]
struct LeadsPage {
    frame: Frame,
    device_id: DeviceId,
    device_name: String,
    statuses: [&'static str; 6],
    max_rows: usize,
}

async fn leads_page(
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
    let (jar, frame) = Frame::new(&state, jar, &user, "devices");
    let frame = frame.on_device(&device, "leads");
    let view = LeadsPage {
        frame,
        device_id: device.id,
        device_name: device.name,
        statuses: LeadStatus::ALL.map(LeadStatus::as_str),
        max_rows: MAX_IMPORT_ROWS,
    };
    Ok((jar, page(StatusCode::OK, &view)).into_response())
}
