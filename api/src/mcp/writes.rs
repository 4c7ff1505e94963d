//! What the sending and managing tools do, through the REST API's own paths: a send is
//! [`crate::sends::accept`] (validated, recorded under the caller's idempotency key, queued for the
//! device's holder, paced by the device), a lead is parsed as `POST /api/leads` parses it, and a
//! campaign is always created as a draft.

use serde::Serialize;
use wafleet_core::db::{Caller, Campaign, Lead, OutboundMessage};
use wafleet_core::types::{DeviceId, LeadId};

use super::args::{CreateCampaignDraft, CreateLead, UpdateLead};
use super::calls::grant;
use crate::AppState;
use crate::campaigns::CampaignBody;
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::leads::{LeadUpdate, NewLeadBody};

/// Longest idempotency key accepted (as on the REST API).
const MAX_KEY_LEN: usize = 200;
/// The window of the per-token send limit.
const SEND_WINDOW_SECS: i64 = 60;

/// A send asked for by a tool.
pub(super) struct Send {
    /// The device to send from.
    pub device_id: i64,
    /// The recipient.
    pub to: String,
    /// The text, or the image's caption.
    pub text: Option<String>,
    /// The image, base64-encoded.
    pub image_base64: Option<String>,
    /// The caller's key for the send.
    pub idempotency_key: String,
}

/// What a send tool answers.
#[derive(Debug, Serialize)]
pub(super) struct Sent {
    /// The send (follow it with send_status and its `id`).
    #[serde(flatten)]
    message: OutboundMessage,
    /// True when the key had already been used for this send: nothing new was sent.
    replayed: bool,
}

/// Records and queues a send within the token's rate limit. A retry under the same key answers
/// the recorded send and does not count against the limit.
pub(super) async fn send(state: &AppState, caller: &Caller, send: Send) -> ApiResult<Sent> {
    let key = send.idempotency_key.trim();
    if key.is_empty() || key.chars().count() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "idempotency_key: required, 1 to {MAX_KEY_LEN} characters; reuse it when you retry this send"
        )));
    }
    // Checked first so that nobody else's device ever costs or learns anything.
    state
        .db
        .device(caller.user.id, DeviceId(send.device_id))
        .await
        .or_not_found("device")?;
    let image = crate::sends::decode_image(send.image_base64.as_deref())?;
    // A retry answers the recorded send and does not count against the limit.
    let retry = state.db.send_key_used(caller.user.id, key).await?;
    let limit_key = format!("mcp-send:{}", grant(caller).id);
    if !retry {
        let max = state.settings.mcp_sends_per_minute;
        let hit = state.db.hit_rate_window(&limit_key, SEND_WINDOW_SECS).await?;
        if let Some(wait) = hit.over(max) {
            // Refused hits do not count, so a burst does not extend its own wait.
            refund(state, &limit_key).await;
            return Err(ApiError::Conflict(format!(
                "rate limit: this API token may send {max} messages a minute over MCP; \
                 try again in {wait} seconds with the same idempotency_key"
            )));
        }
    }
    let accepted = crate::sends::accept(
        state,
        caller.user.id,
        DeviceId(send.device_id),
        key.to_owned(),
        &send.to,
        crate::sends::Draft::new(send.text, image.map(crate::sends::Payload::Image)),
    )
    .await;
    // A hit is given back when nothing new was recorded (refused, or a concurrent retry).
    let counted = !retry && !matches!(accepted, Ok((_, true)));
    if counted {
        refund(state, &limit_key).await;
    }
    let (message, created) = accepted?;
    tracing::info!(user = %caller.user.id, device = send.device_id, message = message.id, created, "MCP send");
    Ok(Sent {
        message,
        replayed: !created,
    })
}

async fn refund(state: &AppState, key: &str) {
    if let Err(err) = state.db.refund_rate_window(key).await {
        tracing::warn!(error = ?err, "refunding a send limit hit failed");
    }
}

/// Adds a lead to one of the caller's devices.
pub(super) async fn create_lead(state: &AppState, caller: &Caller, args: CreateLead) -> ApiResult<Lead> {
    let body = NewLeadBody {
        device_id: DeviceId(args.device_id),
        name: args.name,
        phone: args.phone,
        niche: args.niche,
        journey: args.journey,
        status: args.status,
        notes: args.notes,
    };
    // The device first: another user's device is "not found" whatever the fields hold.
    state
        .db
        .device(caller.user.id, body.device_id)
        .await
        .or_not_found("device")?;
    let lead = body.parse(state.settings.default_country)?;
    state
        .db
        .create_lead(caller.user.id, body.device_id, &lead)
        .await
        .or_not_found("device")
}

/// Changes one of the caller's leads.
pub(super) async fn update_lead(state: &AppState, caller: &Caller, args: UpdateLead) -> ApiResult<Lead> {
    let id = LeadId(args.lead_id);
    state.db.lead(caller.user.id, id).await.or_not_found("lead")?;
    let changes = LeadUpdate {
        name: args.name,
        phone: args.phone,
        niche: args.niche,
        journey: args.journey,
        status: args.status,
        notes: args.notes,
    }
    .changes(state.settings.default_country)?;
    state
        .db
        .update_lead(caller.user.id, id, &changes)
        .await
        .or_not_found("lead")
}

/// Plans a campaign as a draft: it is sent only once a person schedules it on the dashboard.
pub(super) async fn create_campaign_draft(
    state: &AppState,
    caller: &Caller,
    args: CreateCampaignDraft,
) -> ApiResult<Campaign> {
    let devices: Vec<DeviceId> = args.device_ids.into_iter().map(DeviceId).collect();
    let body = CampaignBody {
        title: Some(args.title),
        niche: Some(args.niche),
        message: Some(args.message),
        template_id: None,
        image_base64: None,
        send_at: Some(args.send_at),
        time_zone: args.time_zone,
        device_ids: Some(devices.clone()),
        distribution: args.distribution,
        per_device_cap: args.per_device_cap,
        status: Some("draft".into()),
    };
    crate::campaigns::ensure_owned(state, caller.user.id, &devices).await?;
    let (new, _) = body.into_new()?;
    state
        .db
        .create_campaign(caller.user.id, &new)
        .await
        .or_not_found("device")
}
