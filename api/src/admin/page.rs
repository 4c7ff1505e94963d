//! The Admin page: accounts (search, disable, enable, a temporary password, delete after typing
//! the email), the fleet (workers, unheld devices, the send backlog), dead letters to replay and
//! the log of what administrators did. Only the frame is rendered here; `admin.js` draws the rest
//! from the admin API with the page's CSRF token. Anyone else gets a 403 page.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;

use crate::AppState;
use crate::frame::{Frame, problem};
use crate::pages::{asset, page};
use crate::session::PageUser;

/// The page and its script and style.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(admin_page))
        .route(
            "/static/admin.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../../static/admin.js"))),
        )
        .route(
            "/static/admin.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../../static/admin.css"))),
        )
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    frame: Frame,
}

async fn admin_page(State(state): State<AppState>, PageUser(user): PageUser, jar: CookieJar) -> Response {
    if !user.is_admin {
        let detail =
            "Only administrators of this wafleet see the Admin page. Ask one if you need something done to an account.";
        return problem(&state, jar, &user, StatusCode::FORBIDDEN, "Administrators only", detail);
    }
    let (jar, frame) = Frame::new(&state, jar, &user, "admin");
    (jar, page(StatusCode::OK, &AdminPage { frame })).into_response()
}
