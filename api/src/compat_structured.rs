//! The upstream REST API's sends of messages with a structure of their own: `POST /send/contact`,
//! `/send/location`, `/send/link`, `/send/poll`. They are checked here, recorded with their
//! structure and a readable text (`core::link::Structured`), and go out through the same paced,
//! idempotent path as a text; `results` are those of `/send/message`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::link::Structured;

use crate::AppState;
use crate::compat::{TokenUser, target_device, upstream_statuses};
use crate::compat_send::{RequestParts, SendResults, query_phone};
use crate::envelope::{Envelope, Reply, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::sends::{Draft, Payload, accept, idempotency_key};

/// Most options a WhatsApp poll has.
const MAX_POLL_OPTIONS: usize = 12;
/// Longest name, question or option accepted, in characters.
const MAX_LABEL_CHARS: usize = 255;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send_contact))
        .routes(routes!(send_location))
        .routes(routes!(send_link))
        .routes(routes!(send_poll))
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// Records and queues `structured` for `phone` from the device the request names.
async fn send(
    state: &AppState,
    user: &wafleet_core::db::User,
    parts: &axum::http::request::Parts,
    headers: &HeaderMap,
    phone: Option<&str>,
    structured: Structured,
    forwarded: bool,
) -> ApiResult<Reply<SendResults>> {
    let device = target_device(parts, state, user, None).await?;
    let phone = phone
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::Invalid("phone: give the recipient's number".into()))?;
    let key = idempotency_key(headers)?;
    let noun = structured.kind();
    let draft = Draft {
        forwarded,
        ..Draft::new(None, Some(Payload::Structured(structured)))
    };
    let (message, _) = accept(state, user.id, device, key, phone, draft).await?;
    let wa_id = state.db.choose_wa_message_id(message.id).await?;
    Ok(ok(format!("Send {noun} queued"), SendResults::new(&message, wa_id)))
}

/// A label (a name, question or option) trimmed, or why not: blank, or too long.
fn label(raw: Option<&str>, field: &str) -> ApiResult<String> {
    let text = raw.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::Invalid(format!("{field}: must not be blank")));
    }
    if text.chars().count() > MAX_LABEL_CHARS {
        return Err(ApiError::Invalid(format!(
            "{field}: at most {MAX_LABEL_CHARS} characters"
        )));
    }
    Ok(text.to_owned())
}

/// Body of `POST /send/contact`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ContactBody {
    /// The recipient: number with country code, or JID.
    pub phone: Option<String>,
    /// The name on the card.
    pub contact_name: Option<String>,
    /// The number on the card, with its country code (`6289685024992`, `+62…` or a JID).
    pub contact_phone: Option<String>,
    /// Mark it "Forwarded".
    #[serde(default)]
    pub is_forwarded: bool,
}

/// Send a contact card (compatible route): a name and a number the recipient can save or
/// message, as WhatsApp's apps send them (a vCard). `duration` is not applied.
#[utoipa::path(post, path = "/send/contact", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body = ContactBody,
    responses((status = 200, body = Envelope<SendResults>), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, or a missing or bad field: phone, contact_name, contact_phone"),
              (status = 409, description = "Device not linked, or the key was used for another send")),
    security(("bearer" = [])))]
async fn send_contact(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Json(body): Json<ContactBody>,
) -> ApiResult<impl IntoResponse> {
    let name = label(body.contact_name.as_deref(), "contact_name")?;
    let raw = body
        .contact_phone
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| {
            ApiError::Invalid(
                "contact_phone: give the number on the card with its country code, e.g. 6289685024992".into(),
            )
        })?;
    let phone =
        query_phone(Some(raw), "put on the card", &state).map_err(|e| rename_field(e, "phone", "contact_phone"))?;
    let card = Structured::Contact {
        name,
        phone: phone.as_str().to_owned(),
    };
    send(
        &state,
        &user,
        &parts,
        &headers,
        body.phone.as_deref(),
        card,
        body.is_forwarded,
    )
    .await
}

/// A refusal about the field `from` said of the field `to` instead.
fn rename_field(err: ApiError, from: &str, to: &str) -> ApiError {
    match err {
        ApiError::Invalid(message) => ApiError::Invalid(match message.strip_prefix(&format!("{from}:")) {
            Some(rest) => format!("{to}:{rest}"),
            None => message,
        }),
        other => other,
    }
}

/// Body of `POST /send/location`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LocationBody {
    /// The recipient: number with country code, or JID.
    pub phone: Option<String>,
    /// Degrees north, -90 to 90, as a string (`"-7.797068"`) or a number.
    #[schema(value_type = Option<String>)]
    pub latitude: Option<serde_json::Value>,
    /// Degrees east, -180 to 180, as a string (`"110.370529"`) or a number.
    #[schema(value_type = Option<String>)]
    pub longitude: Option<serde_json::Value>,
    /// Mark it "Forwarded".
    #[serde(default)]
    pub is_forwarded: bool,
}

/// A coordinate given as a string or a number, within `-limit..=limit`.
fn coordinate(raw: Option<&serde_json::Value>, field: &str, limit: f64) -> ApiResult<f64> {
    let bad = || {
        ApiError::Invalid(format!(
            "{field}: give degrees between -{limit} and {limit}, e.g. \"-7.797068\""
        ))
    };
    let degrees = match raw {
        Some(serde_json::Value::String(text)) => text.trim().parse::<f64>().map_err(|_| bad())?,
        Some(serde_json::Value::Number(number)) => number.as_f64().ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if !degrees.is_finite() || degrees.abs() > limit {
        return Err(bad());
    }
    Ok(degrees)
}

/// Send a location (compatible route): a pin on the map at `latitude`, `longitude`. `duration`
/// is not applied.
#[utoipa::path(post, path = "/send/location", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body = LocationBody,
    responses((status = 200, body = Envelope<SendResults>), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, or a missing or bad field: phone, latitude, longitude"),
              (status = 409, description = "Device not linked, or the key was used for another send")),
    security(("bearer" = [])))]
async fn send_location(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Json(body): Json<LocationBody>,
) -> ApiResult<impl IntoResponse> {
    let place = Structured::Location {
        latitude: coordinate(body.latitude.as_ref(), "latitude", 90.0)?,
        longitude: coordinate(body.longitude.as_ref(), "longitude", 180.0)?,
    };
    send(
        &state,
        &user,
        &parts,
        &headers,
        body.phone.as_deref(),
        place,
        body.is_forwarded,
    )
    .await
}

/// Body of `POST /send/link`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LinkBody {
    /// The recipient: number with country code, or JID.
    pub phone: Option<String>,
    /// The link, http or https.
    pub link: Option<String>,
    /// Text sent with it.
    pub caption: Option<String>,
    /// Mark it "Forwarded".
    #[serde(default)]
    pub is_forwarded: bool,
}

/// Send a link with an optional caption (compatible route): a text holding the caption and the
/// link, which WhatsApp shows as a link. No preview is attached: wafleet does not fetch the page.
/// `duration` is not applied.
#[utoipa::path(post, path = "/send/link", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body = LinkBody,
    responses((status = 200, body = Envelope<SendResults>), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, or a missing or bad field: phone, link (not an http(s) URL), caption"),
              (status = 409, description = "Device not linked, or the key was used for another send")),
    security(("bearer" = [])))]
async fn send_link(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Json(body): Json<LinkBody>,
) -> ApiResult<impl IntoResponse> {
    let raw = body.link.as_deref().map(str::trim).unwrap_or_default();
    let url = url::Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| ApiError::Invalid("link: give an http or https URL, e.g. https://example.com".into()))?;
    let caption = crate::sends::text_content(body.caption, true).map_err(|e| rename_field(e, "text", "caption"))?;
    let link = Structured::Link {
        url: url.to_string(),
        caption,
    };
    send(
        &state,
        &user,
        &parts,
        &headers,
        body.phone.as_deref(),
        link,
        body.is_forwarded,
    )
    .await
}

/// Body of `POST /send/poll`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PollBody {
    /// The recipient: number with country code, or JID.
    pub phone: Option<String>,
    /// The question.
    pub question: Option<String>,
    /// The options, 2 to 12, all different.
    pub options: Option<Vec<String>>,
    /// How many options a voter may pick, 1 to the number of options.
    pub max_answer: Option<i64>,
}

/// Send a poll (compatible route): a question and 2 to 12 different options, of which each voter
/// picks up to `max_answer`. Votes are not collected yet. `duration` is not applied.
#[utoipa::path(post, path = "/send/poll", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Same key, same send")),
    request_body = PollBody,
    responses((status = 200, body = Envelope<SendResults>), (status = 404, description = "No such device of yours, or no device at all"),
              (status = 400, description = "Several devices and none named, or a missing or bad field: phone, question, options (fewer than 2, more than 12, blank or repeated), max_answer (below 1 or above the options)"),
              (status = 409, description = "Device not linked, or the key was used for another send")),
    security(("bearer" = [])))]
async fn send_poll(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    RequestParts(parts): RequestParts,
    headers: HeaderMap,
    Json(body): Json<PollBody>,
) -> ApiResult<impl IntoResponse> {
    let question = label(body.question.as_deref(), "question")?;
    let raw = body.options.unwrap_or_default();
    if !(2..=MAX_POLL_OPTIONS).contains(&raw.len()) {
        return Err(ApiError::Invalid(format!(
            "options: give 2 to {MAX_POLL_OPTIONS} options, not {}",
            raw.len()
        )));
    }
    let mut options: Vec<String> = Vec::with_capacity(raw.len());
    for (index, option) in raw.iter().enumerate() {
        let option = label(Some(option), &format!("options[{index}]"))?;
        if options.contains(&option) {
            return Err(ApiError::Invalid(format!(
                "options[{index}]: `{option}` is given twice; each option must be different"
            )));
        }
        options.push(option);
    }
    let most = options.len();
    let selectable = body
        .max_answer
        .filter(|n| (1..=most as i64).contains(n))
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "max_answer: give how many options a voter may pick, 1 to {most}"
            ))
        })?;
    let poll = Structured::Poll {
        question,
        options,
        selectable: u32::try_from(selectable).unwrap_or(1),
    };
    send(&state, &user, &parts, &headers, body.phone.as_deref(), poll, false).await
}
