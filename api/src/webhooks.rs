//! Webhook settings per user (URL, secret, events, enabled), a test event, and the deliveries:
//! listed by status, and replayed once they are dead.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::auth;
use wafleet_core::db::{Delivery, DeliveryStatus, Webhook};
use wafleet_core::egress;
use wafleet_core::types::Timestamp;
use wafleet_core::webhooks::{self as hooks, EventKind};

use crate::AppState;
use crate::envelope::{Envelope, accepted, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path, Query};
use crate::session::CurrentUser;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_webhook, put_webhook, delete_webhook))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(replay_delivery))
}

/// A webhook as shown to its owner: the secret only by its last characters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Where events are POSTed.
    #[schema(example = "https://example.com/hooks/wafleet")]
    pub url: String,
    /// The events sent; every event when it lists them all.
    pub events: Vec<EventKind>,
    /// Whether events are recorded and sent.
    pub enabled: bool,
    /// The secret's last four characters, to tell secrets apart.
    pub secret_hint: String,
    /// The secret itself: only in the answer that set it, when the server generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// When it was first set.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl WebhookView {
    pub(crate) fn of(hook: &Webhook, shown: Option<String>) -> Self {
        let events = EventKind::ALL
            .into_iter()
            .filter(|k| hooks::wants(&hook.events, *k))
            .collect();
        let hint: String = hook
            .secret
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        WebhookView {
            url: hook.url.clone(),
            events,
            enabled: hook.enabled,
            secret_hint: hint,
            secret: shown,
            created_at: hook.created_at,
            updated_at: hook.updated_at,
        }
    }
}

/// Event names, as a JSON list or (as the REST API wafleet grew out of takes them) one
/// comma-separated string.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventList {
    /// `["message", "message.ack"]`.
    List(Vec<String>),
    /// `"message,message.ack"`.
    Csv(String),
}

/// The webhook to set.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutWebhook {
    /// An absolute `http://` or `https://` URL at a public address: hosts that are or resolve to
    /// loopback, private, link-local, unique-local or other special-purpose addresses are
    /// refused unless the operator allows them (`WEBHOOK_ALLOWED_HOSTS`).
    #[schema(example = "https://example.com/hooks/wafleet")]
    pub url: String,
    /// The secret that signs each body (16 to 256 characters). Left out: the current one is kept,
    /// or, the first time, one is generated and shown once in the answer.
    pub secret: Option<String>,
    /// Generate a new secret (shown once), replacing the current one.
    #[serde(default)]
    pub rotate_secret: bool,
    /// Events to send: any of `message`, `message.ack`, `call.offer`, `device.connected`,
    /// `device.disconnected`, `campaign.finished`, `sequence.step_sent`, `sequence.completed`.
    /// Left out or empty: all.
    pub events: Option<EventList>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Your webhook, or `null` when none is set. The secret is never shown here.
#[utoipa::path(get, path = "/api/webhook", tag = "webhooks", responses((status = 200, body = Envelope<Option<WebhookView>>)))]
async fn get_webhook(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    let hook = state.db.webhook(user.id).await?;
    let message = if hook.is_some() { "Webhook" } else { "No webhook set" };
    Ok(ok(message, hook.map(|h| WebhookView::of(&h, None))))
}

/// Set your webhook. A generated secret is in this answer only: store it now.
#[utoipa::path(put, path = "/api/webhook", tag = "webhooks", request_body = PutWebhook,
    responses((status = 200, body = Envelope<WebhookView>),
              (status = 422, description = "Bad URL (or one leading to a loopback, private, link-local or other internal address), secret or event name")))]
async fn put_webhook(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<PutWebhook>,
) -> ApiResult<impl IntoResponse> {
    let url = checked_url(&state, &body.url).await?;
    let events = stored_events(body.events)?;
    let current = state.db.webhook(user.id).await?.map(|h| h.secret);
    let (secret, shown) = choose_secret(body.secret, body.rotate_secret, current)?;
    let hook = state
        .db
        .put_webhook(user.id, &url, &secret, &events, body.enabled.unwrap_or(true))
        .await?;
    tracing::info!(user = %user.id, enabled = hook.enabled, "webhook set");
    let message = if shown.is_some() {
        "Webhook set: copy the secret now, it will not be shown again"
    } else {
        "Webhook set"
    };
    Ok(ok(message, WebhookView::of(&hook, shown)))
}

/// A webhook URL as given, checked: absolute http(s), and not an internal address (see
/// [`PutWebhook::url`]).
pub(crate) async fn checked_url(state: &AppState, raw: &str) -> ApiResult<String> {
    let url = hooks::parse_url(raw).map_err(ApiError::Invalid)?;
    // Checked again at every delivery: the name may resolve elsewhere by then.
    egress::check_url(&url, &state.settings.webhook_allowed_hosts)
        .await
        .map_err(ApiError::Invalid)?;
    Ok(url)
}

/// Event names as stored: comma-separated, or empty for all of them.
pub(crate) fn stored_events(given: Option<EventList>) -> ApiResult<String> {
    let names: Vec<String> = match given {
        None => Vec::new(),
        Some(EventList::List(names)) => names,
        Some(EventList::Csv(csv)) => csv
            .split(',')
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    };
    let events = hooks::parse_events(&names).map_err(ApiError::Invalid)?;
    // All events stored as "" so that events added later reach those who asked for all.
    Ok(if events.len() == EventKind::ALL.len() {
        String::new()
    } else {
        events.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",")
    })
}

/// The secret to store, and the one to show once when it was generated: the one `given`, a new
/// one when asked to `rotate` or when there is no `current` one, else the current one.
pub(crate) fn choose_secret(
    given: Option<String>,
    rotate: bool,
    current: Option<String>,
) -> ApiResult<(String, Option<String>)> {
    match (given, rotate, current) {
        (Some(_), true, _) => Err(ApiError::Invalid(
            "secret: give a secret or ask for rotate_secret, not both".into(),
        )),
        (Some(given), false, _) => Ok((hooks::parse_secret(&given).map_err(ApiError::Invalid)?, None)),
        (None, false, Some(current)) => Ok((current, None)),
        (None, _, _) => {
            let generated = format!("whs_{}", auth::random_secret());
            Ok((generated.clone(), Some(generated)))
        }
    }
}

/// Remove your webhook. Events stop being recorded; past deliveries stay listed.
#[utoipa::path(delete, path = "/api/webhook", tag = "webhooks",
    responses((status = 200, description = "Removed"), (status = 404, description = "No webhook set")))]
async fn delete_webhook(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    state.db.delete_webhook(user.id).await.or_not_found("webhook")?;
    tracing::info!(user = %user.id, "webhook removed");
    Ok(ok("Webhook removed", ()))
}

/// Send a `webhook.test` event to your webhook (whatever events it is set to), signed like the
/// others. Follow it in the deliveries.
#[utoipa::path(post, path = "/api/webhook/test", tag = "webhooks",
    responses((status = 202, body = Envelope<Delivery>), (status = 404, description = "No webhook set"),
              (status = 409, description = "The webhook is disabled")))]
async fn send_test(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    let hook = state.db.webhook(user.id).await?.ok_or(ApiError::NotFound("webhook"))?;
    if !hook.enabled {
        return Err(ApiError::Conflict(
            "the webhook is disabled: enable it to send events".into(),
        ));
    }
    let id = state.db.record_test_delivery(user.id).await?;
    Ok(accepted("Test event queued", state.db.delivery(user.id, id).await?))
}

/// Query of the delivery list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct DeliveryQuery {
    /// Only deliveries in this status: `pending`, `delivered` or `dead`.
    status: Option<String>,
    /// How many, newest first (1 to 500; default 100).
    limit: Option<i64>,
}

/// Your webhook deliveries, newest first.
#[utoipa::path(get, path = "/api/webhook/deliveries", tag = "webhooks", params(DeliveryQuery),
    responses((status = 200, body = Envelope<Vec<Delivery>>), (status = 422, description = "Bad status or limit")))]
async fn list_deliveries(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<DeliveryQuery>,
) -> ApiResult<impl IntoResponse> {
    let status: Option<DeliveryStatus> = match query.status.as_deref() {
        None | Some("") => None,
        // Exactly as listed (the core's parser also takes other cases and spaces).
        Some(s) => Some(
            DeliveryStatus::ALL
                .into_iter()
                .find(|d| d.as_str() == s)
                .ok_or_else(|| {
                    let known = DeliveryStatus::ALL.map(DeliveryStatus::as_str).join(", ");
                    ApiError::Invalid(format!("status: `{s}` is not one of {known}"))
                })?,
        ),
    };
    let limit = crate::extract::limit(query.limit, 100, 500)?;
    let list = state.db.deliveries(user.id, status, limit).await?;
    Ok(ok(format!("{} deliveries", list.len()), list))
}

/// One of your deliveries.
#[utoipa::path(get, path = "/api/webhook/deliveries/{id}", tag = "webhooks", params(("id" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = Envelope<Delivery>), (status = 404, description = "No such delivery of yours")))]
async fn get_delivery(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(
        "Delivery",
        state.db.delivery(user.id, id).await.or_not_found("delivery")?,
    ))
}

/// Deliver a dead delivery again, under the same id (receivers de-duplicate on
/// `X-Webhook-Delivery`), with a fresh set of attempts.
#[utoipa::path(post, path = "/api/webhook/deliveries/{id}/replay", tag = "webhooks", params(("id" = i64, Path, description = "Delivery id")),
    responses((status = 202, body = Envelope<Delivery>), (status = 404, description = "No such delivery of yours"),
              (status = 409, description = "Not dead")))]
async fn replay_delivery(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    let delivery = state.db.replay_delivery(user.id, id).await.or_not_found("delivery")?;
    tracing::info!(user = %user.id, delivery = id, "webhook delivery replayed");
    Ok(accepted("Delivery queued again", delivery))
}
