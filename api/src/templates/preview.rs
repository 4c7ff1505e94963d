//! Checking a message's variations and trying them out before anything is sent.

use axum::extract::State;
use axum::response::IntoResponse;
use wafleet_core::text::{Message, Variables};
use wafleet_core::types::{LeadId, Timestamp};

use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::Json;
use crate::session::CurrentUser;

/// Longest message WhatsApp carries.
pub(crate) const MAX_MESSAGE: usize = 65_536;
/// Most renders one preview asks for.
const MAX_RENDERS: usize = 20;
/// Renders a preview gives when not told.
const DEFAULT_RENDERS: usize = 3;
/// Variation counts are capped where JSON numbers stay exact in every client (2^53 - 1).
const MAX_VARIATIONS: u64 = (1 << 53) - 1;

/// The message of a campaign or template, trimmed: not empty, not too long, and its choices and
/// variables well formed (422 naming the mistake and its character position).
pub(crate) fn message(value: &str) -> ApiResult<(String, Message)> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::Invalid("message: must not be empty".into()));
    }
    if value.chars().count() > MAX_MESSAGE {
        return Err(ApiError::Invalid(format!("message: at most {MAX_MESSAGE} characters")));
    }
    let parsed = Message::parse(value).map_err(|e| ApiError::Invalid(format!("message: {e}")))?;
    Ok((value.to_owned(), parsed))
}

/// A message to try out.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct PreviewBody {
    /// The text, with choices (`{Hi|Hello}`) and variables (`{first_name}`).
    #[schema(example = "{Hi|Hello} {first_name}, {greeting}!")]
    pub message: String,
    /// One of your leads, whose name, number and niche fill the variables (default: an example
    /// lead, Alex Tan of the niche `bakery`).
    pub lead_id: Option<LeadId>,
    /// The IANA time zone whose current hour picks `{greeting}`, e.g. the campaign's (default UTC).
    pub time_zone: Option<String>,
    /// How many different renders, 1 to 20 (default 3).
    pub count: Option<usize>,
}

/// Renders of a message.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Preview {
    /// Different renders, as recipients would receive them (fewer than asked when the message
    /// has fewer variations).
    pub renders: Vec<String>,
    /// How many different texts the choices can make (variables not counted), at most 2^53 - 1.
    pub variations: u64,
}

/// Check a message and see several of its renders, as different recipients would get them.
/// A mistake (unbalanced braces, an empty option, an unknown variable) answers 422 naming it and
/// its character position, counted from 1.
#[utoipa::path(post, path = "/api/templates/preview", tag = "templates", request_body = PreviewBody,
    responses((status = 200, body = Envelope<Preview>), (status = 404, description = "No such lead of yours"),
              (status = 422, description = "The message, time zone or count is invalid; the message says where")))]
pub(super) async fn preview(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<PreviewBody>,
) -> ApiResult<impl IntoResponse> {
    let (_, message) = message(&body.message)?;
    let count = body.count.unwrap_or(DEFAULT_RENDERS);
    if !(1..=MAX_RENDERS).contains(&count) {
        return Err(ApiError::Invalid(format!("count: must be 1 to {MAX_RENDERS}")));
    }
    let time_zone = body.time_zone.as_deref().unwrap_or("UTC").trim();
    if time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ApiError::Invalid(format!(
            "time_zone: unknown time zone `{time_zone}`; use an IANA name such as Asia/Kuala_Lumpur or UTC"
        )));
    }
    let (name, phone, niche) = match body.lead_id {
        Some(id) => {
            let lead = state.db.lead(user.id, id).await.or_not_found("lead")?;
            (
                lead.name,
                lead.phone.as_str().to_owned(),
                lead.niche.unwrap_or_default(),
            )
        }
        None => ("Alex Tan".to_owned(), "+60123456789".to_owned(), "bakery".to_owned()),
    };
    let variables = Variables {
        name,
        phone,
        niche,
        local_hour: Variables::hour_in(Timestamp::now(), time_zone),
    };
    let preview = Preview {
        renders: message.samples(&variables, count),
        variations: message.variations().min(MAX_VARIATIONS),
    };
    Ok(ok("preview", preview))
}
