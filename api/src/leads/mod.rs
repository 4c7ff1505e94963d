//! Leads: the contacts kept for each device, with search, filters, CSV import and export, and
//! their page. Every handler reaches a lead through the caller's own devices, so another user's
//! lead or device answers 404 exactly like a missing one.

pub(crate) mod csv;
pub(crate) mod fields;
mod page;
pub(crate) mod transfer;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{Lead, LeadChanges, LeadFilter, LeadStatus, NewLead};
use wafleet_core::types::{Country, DeviceId, LeadId};

use crate::AppState;
use crate::envelope::{Envelope, created, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path, Query};
use crate::session::CurrentUser;

pub(crate) use page::router as page_router;

/// Leads per page when the caller does not say.
const DEFAULT_LIMIT: i64 = 50;
/// Most leads per page.
pub(crate) const MAX_LIMIT: i64 = 500;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_leads))
        .routes(routes!(create_lead))
        .routes(routes!(get_lead, update_lead, delete_lead))
        .routes(routes!(transfer::export_leads))
        .routes(routes!(transfer::import_leads))
}

/// Search and filters of a device's leads; every given one must match.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeadQuery {
    /// Text within the name or notes, or digits within the number.
    pub q: Option<String>,
    /// Exact niche.
    pub niche: Option<String>,
    /// Exact status: new, contacted, replied, interested, converted or lost.
    pub status: Option<String>,
    /// Exact journey.
    pub journey: Option<String>,
}

impl LeadQuery {
    /// The storage filter; empty parameters (as a blank form sends them) are ignored.
    pub(crate) fn filter(&self) -> ApiResult<LeadFilter> {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let status = given(&self.status)
            .map(|s| s.parse::<LeadStatus>())
            .transpose()
            .map_err(|e| ApiError::Invalid(format!("status: {e}")))?;
        Ok(LeadFilter {
            q: given(&self.q),
            niche: given(&self.niche),
            status,
            journey: given(&self.journey),
        })
    }
}

/// Where a page of leads starts and how long it is.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page; omit for the first page.
    pub cursor: Option<i64>,
    /// Leads per page, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

/// A page of leads, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeadPage {
    /// The leads.
    pub leads: Vec<Lead>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<i64>,
}

/// A lead to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewLeadBody {
    /// One of your devices.
    pub device_id: DeviceId,
    /// The person's name.
    #[schema(example = "Aminah")]
    pub name: String,
    /// Their number; national numbers use the instance's default country. Unique per device.
    #[schema(example = "+60123456789")]
    pub phone: String,
    /// Market label, e.g. `bakery`.
    pub niche: Option<String>,
    /// Follow-up label, e.g. `onboarding`.
    pub journey: Option<String>,
    /// new (default), contacted, replied, interested, converted or lost.
    pub status: Option<String>,
    /// Free notes.
    pub notes: Option<String>,
}

/// Changes to a lead; omitted fields stay as they are, an empty niche, journey or notes clears it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LeadUpdate {
    /// New name.
    pub name: Option<String>,
    /// New number.
    pub phone: Option<String>,
    /// New niche, or `""` to clear it.
    pub niche: Option<String>,
    /// New journey, or `""` to clear it.
    pub journey: Option<String>,
    /// New status.
    pub status: Option<String>,
    /// New notes, or `""` to clear them.
    pub notes: Option<String>,
}

impl NewLeadBody {
    /// The lead to store; 422 naming every invalid field.
    pub(crate) fn parse(&self, country: Country) -> ApiResult<NewLead> {
        let raw = fields::RawLead {
            name: &self.name,
            phone: &self.phone,
            niche: self.niche.as_deref().unwrap_or_default(),
            journey: self.journey.as_deref().unwrap_or_default(),
            status: self.status.as_deref().unwrap_or_default(),
            notes: self.notes.as_deref().unwrap_or_default(),
        };
        raw.parse(country).map_err(|errors| {
            let text: Vec<String> = errors.into_iter().map(|(f, m)| format!("{f}: {m}")).collect();
            ApiError::Invalid(text.join("; "))
        })
    }
}

impl LeadUpdate {
    /// The changes to store; 422 naming the first invalid field.
    pub(crate) fn changes(&self, country: Country) -> ApiResult<LeadChanges> {
        Ok(LeadChanges {
            name: self
                .name
                .as_deref()
                .map(|v| field("name", fields::name(v)))
                .transpose()?,
            phone: self
                .phone
                .as_deref()
                .map(|v| field("phone", fields::phone(v, country)))
                .transpose()?,
            niche: self
                .niche
                .as_deref()
                .map(|v| field("niche", fields::label(v)))
                .transpose()?,
            journey: self
                .journey
                .as_deref()
                .map(|v| field("journey", fields::label(v)))
                .transpose()?,
            status: self
                .status
                .as_deref()
                .map(|v| field("status", fields::status(v)))
                .transpose()?,
            notes: self
                .notes
                .as_deref()
                .map(|v| field("notes", fields::notes(v)))
                .transpose()?,
        })
    }
}

/// Prefixes a field's parse error with the field's name (422).
fn field<T>(name: &str, result: Result<T, String>) -> ApiResult<T> {
    result.map_err(|message| ApiError::Invalid(format!("{name}: {message}")))
}

/// List a device's leads, newest first, with search and filters.
#[utoipa::path(get, path = "/api/devices/{id}/leads", tag = "leads",
    params(("id" = i64, Path, description = "Device id"), LeadQuery, PageQuery),
    responses((status = 200, body = Envelope<LeadPage>), (status = 404, description = "No such device of yours"),
              (status = 422, description = "Unknown status or bad limit")))]
async fn list_leads(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    filter: Query<LeadQuery>,
    page: Query<PageQuery>,
) -> ApiResult<impl IntoResponse> {
    let (Query(filter), Query(page)) = (filter, page);
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Invalid(format!("limit: must be 1 to {MAX_LIMIT}")));
    }
    let mut leads = state
        .db
        .list_leads(user.id, device, &filter.filter()?, page.cursor.map(LeadId), limit + 1)
        .await
        .or_not_found("device")?;
    // One lead more than asked for tells whether another page follows.
    let next_cursor = if leads.len() as i64 > limit {
        leads.truncate(limit as usize);
        leads.last().map(|lead| lead.id.0)
    } else {
        None
    };
    Ok(ok("leads", LeadPage { leads, next_cursor }))
}

/// Add a lead to one of your devices.
#[utoipa::path(post, path = "/api/leads", tag = "leads", request_body = NewLeadBody,
    responses((status = 201, body = Envelope<Lead>), (status = 404, description = "No such device of yours"),
              (status = 409, description = "The device already has a lead with this number"),
              (status = 422, description = "A field is invalid; the message says which and how to fix it")))]
async fn create_lead(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<NewLeadBody>,
) -> ApiResult<impl IntoResponse> {
    let lead = body.parse(state.settings.default_country)?;
    let lead = state
        .db
        .create_lead(user.id, body.device_id, &lead)
        .await
        .or_not_found("device")?;
    tracing::info!(user = %user.id, device = %lead.device_id, lead = %lead.id, "lead added");
    Ok(created("lead added", lead))
}

/// One of your leads.
#[utoipa::path(get, path = "/api/leads/{id}", tag = "leads", params(("id" = i64, Path, description = "Lead id")),
    responses((status = 200, body = Envelope<Lead>), (status = 404, description = "No such lead of yours")))]
async fn get_lead(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<LeadId>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok("lead", state.db.lead(user.id, id).await.or_not_found("lead")?))
}

/// Change a lead.
#[utoipa::path(put, path = "/api/leads/{id}", tag = "leads", params(("id" = i64, Path, description = "Lead id")),
    request_body = LeadUpdate,
    responses((status = 200, body = Envelope<Lead>), (status = 404, description = "No such lead of yours"),
              (status = 409, description = "The device already has a lead with this number"),
              (status = 422, description = "A field is invalid")))]
async fn update_lead(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<LeadId>,
    Json(body): Json<LeadUpdate>,
) -> ApiResult<impl IntoResponse> {
    let changes = body.changes(state.settings.default_country)?;
    let lead = state.db.update_lead(user.id, id, &changes).await.or_not_found("lead")?;
    tracing::info!(user = %user.id, lead = %lead.id, "lead updated");
    Ok(ok("lead updated", lead))
}

/// Delete a lead.
#[utoipa::path(delete, path = "/api/leads/{id}", tag = "leads", params(("id" = i64, Path, description = "Lead id")),
    responses((status = 200, description = "Deleted"), (status = 404, description = "No such lead of yours")))]
async fn delete_lead(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<LeadId>,
) -> ApiResult<impl IntoResponse> {
    state.db.delete_lead(user.id, id).await.or_not_found("lead")?;
    tracing::info!(user = %user.id, lead = %id, "lead deleted");
    Ok(ok("lead deleted", ()))
}
