//! A device's own webhook: its events go there, signed with its own secret, instead of to the
//! account's webhook. wafleet's routes (`/api/devices/{id}/webhook`) and the upstream REST API's
//! (`GET`/`PATCH /devices/{device_id}/webhook`, with its field names and envelope).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{DeviceWebhook, User};
use wafleet_core::types::DeviceId;

use crate::AppState;
use crate::compat::{TokenUser, UpstreamReply, named_device, upstream_ok, upstream_statuses};
use crate::envelope::{Envelope, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::session::CurrentUser;
use crate::webhooks::{EventList, WebhookView, checked_url, choose_secret, stored_events};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_device_webhook, put_device_webhook, delete_device_webhook))
}

/// The upstream API's routes, which answer 400 where wafleet's answer 422.
pub(crate) fn compat_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upstream_get, upstream_patch))
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// A device's webhook as shown to its owner: the secret only by its last characters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceWebhookView {
    /// The device.
    pub device_id: DeviceId,
    /// The webhook (always enabled while it is set).
    #[serde(flatten)]
    pub webhook: WebhookView,
}

impl DeviceWebhookView {
    fn of(hook: DeviceWebhook, shown: Option<String>) -> Self {
        let device_id = hook.device_id;
        DeviceWebhookView {
            device_id,
            webhook: WebhookView::of(&hook.into_webhook(), shown),
        }
    }
}

/// The webhook to set on a device.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutDeviceWebhook {
    /// An absolute `http://` or `https://` URL at a public address (as for the account's webhook).
    #[schema(example = "https://example.com/hooks/shop")]
    pub url: String,
    /// The secret that signs each body (16 to 256 characters). Left out: the current one is kept,
    /// or, the first time, one is generated and shown once in the answer.
    pub secret: Option<String>,
    /// Generate a new secret (shown once), replacing the current one.
    #[serde(default)]
    pub rotate_secret: bool,
    /// Events to send (as for the account's webhook). Left out or empty: all.
    pub events: Option<EventList>,
}

/// Checks and saves the webhook of `user`'s `device`: the URL, the events, and the secret
/// (`given`, a new one on `rotate` or the first time, else the current one). Returns it and the
/// secret to show once when one was generated.
async fn save(
    state: &AppState,
    user: &User,
    device: DeviceId,
    url: &str,
    given: Option<String>,
    rotate: bool,
    events: Option<EventList>,
) -> ApiResult<(DeviceWebhook, Option<String>)> {
    let current = state.db.device_webhook(user.id, device).await.or_not_found("device")?;
    let url = checked_url(state, url).await?;
    let events = stored_events(events)?;
    let (secret, shown) = choose_secret(given, rotate, current.map(|h| h.secret))?;
    let hook = state
        .db
        .put_device_webhook(user.id, device, &url, &secret, &events)
        .await
        .or_not_found("device")?;
    tracing::info!(user = %user.id, %device, "device webhook set");
    Ok((hook, shown))
}

/// The device's own webhook, or `null` when its events go to your account's webhook. The secret
/// is never shown here.
#[utoipa::path(get, path = "/api/devices/{id}/webhook", tag = "webhooks", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, body = Envelope<Option<DeviceWebhookView>>), (status = 404, description = "No such device of yours")))]
async fn get_device_webhook(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    let hook = state.db.device_webhook(user.id, device).await.or_not_found("device")?;
    let message = if hook.is_some() {
        "Device webhook"
    } else {
        "No device webhook: its events go to your account's webhook"
    };
    Ok(ok(message, hook.map(|h| DeviceWebhookView::of(h, None))))
}

/// Give a device a webhook of its own: its events (those chosen) go there, signed with its
/// secret, instead of to your account's webhook, whether that is set or enabled. A generated
/// secret is in this answer only.
#[utoipa::path(put, path = "/api/devices/{id}/webhook", tag = "webhooks", params(("id" = i64, Path, description = "Device id")),
    request_body = PutDeviceWebhook,
    responses((status = 200, body = Envelope<DeviceWebhookView>), (status = 404, description = "No such device of yours"),
              (status = 422, description = "Bad URL (or one leading to an internal address), secret or event name")))]
async fn put_device_webhook(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    Json(body): Json<PutDeviceWebhook>,
) -> ApiResult<impl IntoResponse> {
    let (hook, shown) = save(
        &state,
        &user,
        device,
        &body.url,
        body.secret,
        body.rotate_secret,
        body.events,
    )
    .await?;
    let message = if shown.is_some() {
        "Device webhook set: copy the secret now, it will not be shown again"
    } else {
        "Device webhook set"
    };
    Ok(ok(message, DeviceWebhookView::of(hook, shown)))
}

/// Remove a device's own webhook: its events go to your account's webhook again. Deliveries
/// already recorded for it go there too.
#[utoipa::path(delete, path = "/api/devices/{id}/webhook", tag = "webhooks", params(("id" = i64, Path, description = "Device id")),
    responses((status = 200, description = "Removed"), (status = 404, description = "No such device of yours, or it has no webhook of its own")))]
async fn delete_device_webhook(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    if !state
        .db
        .delete_device_webhook(user.id, device)
        .await
        .or_not_found("device")?
    {
        return Err(ApiError::NotFound("device webhook"));
    }
    tracing::info!(user = %user.id, %device, "device webhook removed");
    Ok(ok(
        "Device webhook removed: its events go to your account's webhook",
        (),
    ))
}

/// A device webhook in the upstream API's words.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpstreamDeviceWebhook {
    /// The device id.
    pub device_id: String,
    /// The URL, empty when the device has none (its events go to the account's webhook).
    pub webhook_url: String,
    /// The secret that signs the device's events; empty when none is set.
    pub webhook_secret: String,
    /// Comma-separated event names; empty for all.
    pub webhook_events: String,
    /// Always false: wafleet always verifies the receiver's TLS certificate.
    pub webhook_insecure_skip_verify: bool,
}

impl UpstreamDeviceWebhook {
    fn of(device: DeviceId, hook: Option<DeviceWebhook>) -> Self {
        let (webhook_url, webhook_secret, webhook_events) =
            hook.map_or_else(Default::default, |h| (h.url, h.secret, h.events));
        UpstreamDeviceWebhook {
            device_id: device.to_string(),
            webhook_url,
            webhook_secret,
            webhook_events,
            webhook_insecure_skip_verify: false,
        }
    }
}

/// Get a device's webhook configuration, as the upstream API does (empty values when the device
/// has none). Shows the signing secret, so the token needs the `manage` scope.
#[utoipa::path(get, path = "/devices/{device_id}/webhook", tag = "compatible",
    params(("device_id" = String, Path, description = "Device id or name")),
    responses((status = 200, body = UpstreamReply<UpstreamDeviceWebhook>), (status = 400, description = "No device named"),
              (status = 404, description = "No such device of yours")))]
async fn upstream_get(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    Path(device): Path<String>,
) -> ApiResult<Response> {
    let device = named_device(&state, &user, &device).await?;
    let hook = state.db.device_webhook(user.id, device).await.or_not_found("device")?;
    Ok(upstream_ok(
        "Device webhook retrieved",
        UpstreamDeviceWebhook::of(device, hook),
    ))
}

/// The body of the upstream API's `PATCH /devices/{device_id}/webhook`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpstreamPatch {
    /// The device's webhook URL; empty clears it (its events go to the account's webhook).
    pub webhook_url: String,
    /// The secret that signs its events (16 to 256 characters); left out or empty: the current
    /// one is kept, or one is generated (read it back with `GET`).
    pub webhook_secret: Option<String>,
    /// Comma-separated event names; empty for all.
    pub webhook_events: Option<String>,
    /// Only `false` is accepted: wafleet always verifies the receiver's TLS certificate.
    pub webhook_insecure_skip_verify: Option<bool>,
}

/// Set (or, with an empty `webhook_url`, clear) a device's webhook, as the upstream API does.
#[utoipa::path(patch, path = "/devices/{device_id}/webhook", tag = "compatible",
    params(("device_id" = String, Path, description = "Device id or name")), request_body = UpstreamPatch,
    responses((status = 200, body = UpstreamReply<UpstreamDeviceWebhook>),
              (status = 400, description = "No device named; a bad URL, secret or event name; or asking to skip TLS verification"),
              (status = 404, description = "No such device of yours")))]
async fn upstream_patch(
    State(state): State<AppState>,
    TokenUser(user): TokenUser,
    Path(device): Path<String>,
    Json(body): Json<UpstreamPatch>,
) -> ApiResult<Response> {
    let device = named_device(&state, &user, &device).await?;
    if body.webhook_insecure_skip_verify == Some(true) {
        return Err(ApiError::BadRequest(
            "webhook_insecure_skip_verify: wafleet always verifies the receiver's TLS certificate; give a receiver with a valid one"
                .into(),
        ));
    }
    if body.webhook_url.trim().is_empty() {
        state
            .db
            .delete_device_webhook(user.id, device)
            .await
            .or_not_found("device")?;
        tracing::info!(user = %user.id, %device, "device webhook cleared");
        return Ok(upstream_ok(
            "Device webhook updated",
            UpstreamDeviceWebhook::of(device, None),
        ));
    }
    let given = body.webhook_secret.filter(|s| !s.is_empty());
    let events = body.webhook_events.map(EventList::Csv);
    let (hook, _) = save(&state, &user, device, &body.webhook_url, given, false, events).await?;
    Ok(upstream_ok(
        "Device webhook updated",
        UpstreamDeviceWebhook::of(device, Some(hook)),
    ))
}
