//! The Sequences page: the user's sequences, each with its report (every number opens the leads
//! behind it), a preview of when each step would go for a sample lead, leads to enrol by hand,
//! and pause, resume, archive; a form builds or changes one, step by step, from a template or
//! written out. It drives the JSON API from `sequences.js` with the page's CSRF token.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use wafleet_core::db::LeadStatus;
use wafleet_core::types::Timestamp;

use crate::AppState;
use crate::error::ApiResult;
use crate::frame::Frame;
use crate::pages::{asset, page};
use crate::session::PageUser;

/// The page and its script and style (compiled in, as every page's are).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sequences", get(sequences_page))
        .route(
            "/static/sequences.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../static/sequences.js"),
                )
            }),
        )
        .route(
            "/static/sequences.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../../static/sequences.css"))),
        )
}

#[derive(Template)]
#[template(path = "sequences.html")]
struct SequencesPage {
    frame: Frame,
    /// The user's devices: `(id, name)`.
    devices: Vec<(i64, String)>,
    /// The user's templates: `(id, name)`, by name.
    templates: Vec<(i64, String)>,
    /// The user's campaigns whose replies a rule may enrol: `(id, title and day)`, newest first.
    campaigns: Vec<(i64, String)>,
    /// Every lead status, for the rule and the exits.
    statuses: Vec<&'static str>,
    /// The days of the window: value, label, ticked for a new sequence.
    weekdays: &'static [(&'static str, &'static str, bool)],
}

/// Monday to Sunday; a new sequence goes on weekdays.
const WEEKDAYS: [(&str, &str, bool); 7] = [
    ("mon", "Mon", true),
    ("tue", "Tue", true),
    ("wed", "Wed", true),
    ("thu", "Thu", true),
    ("fri", "Fri", true),
    ("sat", "Sat", false),
    ("sun", "Sun", false),
];

/// The frame, the devices and templates to choose from; the sequences are the API's, drawn by
/// `sequences.js`.
async fn sequences_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    jar: CookieJar,
) -> ApiResult<Response> {
    let devices = state.db.list_devices(user.id).await?;
    let templates = state.db.list_templates(user.id).await?;
    let mut campaigns = state
        .db
        .list_campaigns(user.id, Timestamp(0), Timestamp(i64::MAX / 2))
        .await?;
    campaigns.sort_by_key(|c| std::cmp::Reverse(c.send_at));
    let (jar, frame) = Frame::new(&state, jar, &user, "sequences");
    let view = SequencesPage {
        frame,
        devices: devices.into_iter().map(|d| (d.id.0, d.name)).collect(),
        templates: templates.into_iter().map(|t| (t.id.0, t.name)).collect(),
        campaigns: campaigns
            .into_iter()
            .map(|c| {
                (
                    c.id.0,
                    format!("{} ({})", c.title, c.send_at.to_datetime().format("%Y-%m-%d")),
                )
            })
            .collect(),
        statuses: LeadStatus::ALL.iter().map(|s| s.as_str()).collect(),
        weekdays: &WEEKDAYS,
    };
    Ok((jar, page(StatusCode::OK, &view)).into_response())
}
