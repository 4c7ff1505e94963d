//! The Campaigns page: a year calendar naming up to five campaigns a day with their niche; a day
//! opens a form to plan one, a campaign opens it for editing with its progress per device; the form
//! can start from one of the user's templates. It drives the JSON API from `campaigns.js` (and
//! `campaign_template.js` for the template picker) with the page's CSRF token.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use wafleet_core::db::MessageTemplate;

use crate::AppState;
use crate::error::ApiResult;
use crate::frame::Frame;
use crate::pages::{asset, page};
use crate::session::PageUser;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/campaigns", get(campaigns_page))
        .route(
            "/static/campaigns.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../static/campaigns.js"),
                )
            }),
        )
        .route(
            "/static/campaign_template.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../static/campaign_template.js"),
                )
            }),
        )
        .route(
            "/static/campaigns.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../../static/campaigns.css"))),
        )
}

#[derive(Template)]
#[template(path = "campaigns.html")]
struct CampaignsPage {
    frame: Frame,
    /// The user's devices: `(id, name)`.
    devices: Vec<(i64, String)>,
    /// The user's templates, by name, for "Start from a template".
    templates: Vec<MessageTemplate>,
}

async fn campaigns_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    jar: CookieJar,
) -> ApiResult<Response> {
    let devices = state.db.list_devices(user.id).await?;
    let templates = state.db.list_templates(user.id).await?;
    let (jar, frame) = Frame::new(&state, jar, &user, "campaigns");
    let view = CampaignsPage {
        frame,
        devices: devices.into_iter().map(|d| (d.id.0, d.name)).collect(),
        templates,
    };
    Ok((jar, page(StatusCode::OK, &view)).into_response())
}
