//! The Templates page: the user's saved messages, each with its renders a click away, and a form
//! to write or change one whose mistakes are shown under the field with their position. It
//! drives the JSON API from `templates.js` with the page's CSRF token; the list is drawn by the
//! script so a save or delete shows without a reload.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;

use crate::AppState;
use crate::frame::Frame;
use crate::pages::{asset, page};
use crate::session::PageUser;

/// The page and its script and style (compiled in, as every page's are).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/templates", get(templates_page))
        .route(
            "/static/templates.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../static/templates.js"),
                )
            }),
        )
        .route(
            "/static/templates.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../../static/templates.css"))),
        )
}

#[derive(Template)]
#[template(path = "templates.html")]
struct TemplatesPage {
    frame: Frame,
}

/// Only the frame is rendered here: the list is the API's, drawn by `templates.js`.
async fn templates_page(State(state): State<AppState>, PageUser(user): PageUser, jar: CookieJar) -> Response {
    let (jar, frame) = Frame::new(&state, jar, &user, "templates");
    (jar, page(StatusCode::OK, &TemplatesPage { frame })).into_response()
}
