//! Campaigns: plan a message to the leads of one niche on chosen devices, follow what became of
//! each recipient, and set how fast each device may send. Every handler reaches a campaign through
//! its owner, so another user's campaign answers 404 exactly like a missing one.

pub(crate) mod fields;
mod pacing;
mod page;

use axum::extract::State;
use axum::response::IntoResponse;
use chrono::Datelike;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{CalendarDay, Campaign, CampaignRecipient, CampaignReport, RECIPIENTS_PAGE_MAX};
use wafleet_core::types::{CampaignId, DeviceId, Timestamp, UserId};

use crate::AppState;
use crate::envelope::{Envelope, created, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path, Query};
use crate::sends::image_content;
use crate::session::CurrentUser;

pub use fields::CampaignBody;
pub(crate) use page::router as page_router;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns, create_campaign))
        .routes(routes!(calendar))
        .routes(routes!(get_campaign, update_campaign, delete_campaign))
        .routes(routes!(report))
        .routes(routes!(recipients))
        .routes(routes!(retry_failed))
        .routes(routes!(pacing::get_pacing, pacing::put_pacing))
}

/// Which year.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct YearQuery {
    /// The year (default: this one, in UTC).
    pub year: Option<i32>,
}

impl YearQuery {
    pub(crate) fn year(&self) -> ApiResult<i32> {
        let year = self.year.unwrap_or_else(|| Timestamp::now().to_datetime().year());
        if !(2000..=2199).contains(&year) {
            return Err(ApiError::Invalid("year: must be 2000 to 2199".into()));
        }
        Ok(year)
    }
}

/// Your campaigns of a year, by send time.
#[utoipa::path(get, path = "/api/campaigns", tag = "campaigns", params(YearQuery),
    responses((status = 200, body = Envelope<Vec<Campaign>>), (status = 422, description = "Bad year")))]
async fn list_campaigns(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    query: Query<YearQuery>,
) -> ApiResult<impl IntoResponse> {
    let year = query.0.year()?;
    let edge = |y: i32| fields::send_at(&format!("{y}-01-01T00:00:00Z"), chrono_tz::Tz::UTC);
    let campaigns = state.db.list_campaigns(user.id, edge(year)?, edge(year + 1)?).await?;
    Ok(ok("campaigns", campaigns))
}

/// Plan a campaign. It is sent from each target device to that device's leads whose niche is the
/// campaign's (except leads marked lost), paced by each device's pacing policy.
#[utoipa::path(post, path = "/api/campaigns", tag = "campaigns", request_body = CampaignBody,
    responses((status = 201, body = Envelope<Campaign>), (status = 404, description = "A device or template is not yours"),
              (status = 422, description = "A field is invalid; the message says which and how to fix it")))]
async fn create_campaign(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(mut body): Json<CampaignBody>,
) -> ApiResult<impl IntoResponse> {
    let template_image = copy_template(&state, user.id, &mut body).await?;
    let (mut new, image) = body.into_new()?;
    // A template's image is stored compressed already.
    new.image = template_image.flatten();
    if image.is_some() {
        // Only a user who may plan this campaign gets an image decoded.
        ensure_owned(&state, user.id, &new.devices).await?;
        new.image = image_content(image).await?;
    }
    let campaign = state.db.create_campaign(user.id, &new).await.or_not_found("device")?;
    tracing::info!(user = %user.id, campaign = %campaign.id, "campaign planned");
    Ok(created("campaign planned", campaign))
}

/// Fills `body` from its template, if it names one of the user's (404 otherwise): the template's
/// text unless `message` is given. Answers the template's image (`Some(None)`: it has none) for
/// the caller to use unless `image_base64` is given, in which case it answers `None`.
async fn copy_template(state: &AppState, user: UserId, body: &mut CampaignBody) -> ApiResult<Option<Option<Vec<u8>>>> {
    let Some(template) = body.template_id else {
        return Ok(None);
    };
    let (message, image) = state
        .db
        .template_content(user, template)
        .await
        .or_not_found("template")?;
    body.message.get_or_insert(message);
    Ok(body.image_base64.is_none().then_some(image))
}

/// Refuses (404, as for any device not yours) unless every one of `devices` is the user's.
pub(crate) async fn ensure_owned(state: &AppState, user: UserId, devices: &[DeviceId]) -> ApiResult<()> {
    let owned: std::collections::HashSet<DeviceId> =
        state.db.list_devices(user).await?.into_iter().map(|d| d.id).collect();
    if devices.iter().all(|d| owned.contains(d)) {
        Ok(())
    } else {
        Err(ApiError::NotFound("device"))
    }
}

/// One of your campaigns.
#[utoipa::path(get, path = "/api/campaigns/{id}", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses((status = 200, body = Envelope<Campaign>), (status = 404, description = "No such campaign of yours")))]
async fn get_campaign(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<CampaignId>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(
        "campaign",
        state.db.campaign(user.id, id).await.or_not_found("campaign")?,
    ))
}

/// Change a campaign: its content while it is a draft or scheduled (`template_id` copies a
/// template's text and image, as on creation); its status (`paused`, `running`
/// to resume, `cancelled`, `draft` ⇄ `scheduled`) at any time before it ends.
#[utoipa::path(put, path = "/api/campaigns/{id}", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")), request_body = CampaignBody,
    responses((status = 200, body = Envelope<Campaign>), (status = 404, description = "No such campaign, device or template of yours"),
              (status = 409, description = "Not possible in the campaign's status"),
              (status = 422, description = "A field is invalid")))]
async fn update_campaign(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<CampaignId>,
    Json(mut body): Json<CampaignBody>,
) -> ApiResult<impl IntoResponse> {
    let current = state.db.campaign(user.id, id).await.or_not_found("campaign")?;
    let template_image = copy_template(&state, user.id, &mut body).await?;
    let (mut changes, image) = body.into_changes(&current.time_zone)?;
    if let Some(devices) = &changes.devices {
        ensure_owned(&state, user.id, devices).await?;
    }
    if image.is_some() {
        changes.image = Some(image_content(image).await?);
    } else if let Some(template_image) = template_image {
        // Stored compressed already; a template without one takes the campaign's away, so the
        // campaign is what the template is.
        changes.image = Some(template_image);
    }
    let campaign = state
        .db
        .update_campaign(user.id, id, &changes)
        .await
        .or_not_found("campaign")?;
    Ok(ok(format!("campaign {}", campaign.status.as_str()), campaign))
}

/// Delete a campaign and its report (not while it is running: pause or cancel it first).
#[utoipa::path(delete, path = "/api/campaigns/{id}", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses((status = 200, body = Envelope<Option<String>>), (status = 404, description = "No such campaign of yours"),
              (status = 409, description = "It is running")))]
async fn delete_campaign(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<CampaignId>,
) -> ApiResult<impl IntoResponse> {
    state.db.delete_campaign(user.id, id).await.or_not_found("campaign")?;
    Ok(ok("campaign deleted", None::<String>))
}

/// The days of a year with campaigns, each naming up to five of them with their niche, for a
/// year calendar. Days are in each campaign's own time zone.
#[utoipa::path(get, path = "/api/campaigns/summary", tag = "campaigns", params(YearQuery),
    responses((status = 200, body = Envelope<Vec<CalendarDay>>), (status = 422, description = "Bad year")))]
async fn calendar(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    query: Query<YearQuery>,
) -> ApiResult<impl IntoResponse> {
    let year = query.0.year()?;
    Ok(ok("calendar", state.db.campaign_calendar(user.id, year).await?))
}

/// How many recipients are queued, sent, delivered, read, replied or failed, with percentages,
/// in all and per device.
#[utoipa::path(get, path = "/api/campaigns/{id}/report", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses((status = 200, body = Envelope<CampaignReport>), (status = 404, description = "No such campaign of yours")))]
async fn report(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<CampaignId>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(
        "report",
        state.db.campaign_report(user.id, id).await.or_not_found("campaign")?,
    ))
}

/// A page of a campaign's recipients.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecipientsQuery {
    /// The `id` of the last recipient of the previous page (default: from the first).
    pub after: Option<i64>,
    /// How many, 1 to 500 (default 100).
    pub limit: Option<i64>,
}

/// A campaign's recipients in the order they are sent, each with its status and the text it was
/// sent (choices and variables filled in for it; `null` until its send is recorded).
#[utoipa::path(get, path = "/api/campaigns/{id}/recipients", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id"), RecipientsQuery),
    responses((status = 200, body = Envelope<Vec<CampaignRecipient>>), (status = 404, description = "No such campaign of yours"),
              (status = 422, description = "Bad limit")))]
async fn recipients(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<CampaignId>,
    Query(query): Query<RecipientsQuery>,
) -> ApiResult<impl IntoResponse> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=RECIPIENTS_PAGE_MAX).contains(&limit) {
        return Err(ApiError::Invalid(format!("limit: must be 1 to {RECIPIENTS_PAGE_MAX}")));
    }
    let page = state
        .db
        .campaign_recipients(user.id, id, query.after.unwrap_or(0), limit)
        .await
        .or_not_found("campaign")?;
    Ok(ok("recipients", page))
}

/// Send again to the recipients whose send failed (each as a new send); a finished campaign runs
/// again. Answers how many were retried.
#[utoipa::path(post, path = "/api/campaigns/{id}/retry", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses((status = 200, body = Envelope<u64>), (status = 404, description = "No such campaign of yours"),
              (status = 409, description = "It is cancelled")))]
async fn retry_failed(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<CampaignId>,
) -> ApiResult<impl IntoResponse> {
    let retried = state
        .db
        .retry_failed_recipients(user.id, id)
        .await
        .or_not_found("campaign")?;
    Ok(ok(format!("{retried} recipients to send again"), retried))
}
