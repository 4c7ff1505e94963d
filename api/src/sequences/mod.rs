//! Sequences: drip follow-ups sent to each enrolled lead step by step, inside a send window of
//! the sequence's time zone, until the lead replies, takes a stopping status or has every step.
//! Every handler reaches a sequence through its owner, so another user's sequence answers 404
//! exactly like a missing one.

mod fields;
mod page;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::window::SendWindow;
use wafleet_core::db::{
    ENROLMENTS_PAGE_MAX, Enrolment, EnrolmentFilter, EnrolmentStatus, Sequence, SequenceReport, StepOutcome,
};
use wafleet_core::text::Variables;
use wafleet_core::types::{SequenceId, Timestamp, UserId};

use crate::AppState;
use crate::envelope::{Envelope, created, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path, Query};
use crate::sends::image_content;
use crate::session::{CurrentCaller, CurrentUser};

pub use fields::SequenceBody;
pub(crate) use page::router as page_router;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sequences, create_sequence))
        .routes(routes!(get_sequence, update_sequence, delete_sequence))
        .routes(routes!(list_enrolments, enrol))
        .routes(routes!(enrol_from_csv))
        .routes(routes!(unenrol))
        .routes(routes!(report))
        .routes(routes!(preview))
        .routes(routes!(retry_failed))
}

/// Your sequences, by name.
#[utoipa::path(get, path = "/api/sequences", tag = "sequences",
    responses((status = 200, body = Envelope<Vec<Sequence>>)))]
async fn list_sequences(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    Ok(ok("sequences", state.db.list_sequences(user.id).await?))
}

/// Checks a body's steps, copying templates' texts and images (and, when replacing sequence
/// `existing`, the images steps keep), and compresses new images.
async fn checked(
    state: &AppState,
    user: UserId,
    existing: Option<SequenceId>,
    mut body: SequenceBody,
) -> ApiResult<wafleet_core::db::NewSequence> {
    let steps = body.steps.take().unwrap_or_default();
    if steps.is_empty() || steps.len() > fields::MAX_STEPS {
        return Err(ApiError::Invalid(format!(
            "steps: give 1 to {} steps, each with a message",
            fields::MAX_STEPS
        )));
    }
    let mut parsed = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let (message, mut template_image) = match step.template_id {
            Some(template) => {
                let (text, image) = state
                    .db
                    .template_content(user, template)
                    .await
                    .or_not_found("template")?;
                (step.message.clone().unwrap_or(text), image)
            }
            None => (
                step.message
                    .clone()
                    .ok_or_else(|| ApiError::Invalid(format!("steps[{index}].message: required")))?,
                None,
            ),
        };
        if let (None, Some(position)) = (&template_image, step.keep_image_of) {
            let Some(existing) = existing else {
                return Err(ApiError::Invalid(format!(
                    "steps[{index}].keep_image_of: only a replacement keeps an image; send image_base64"
                )));
            };
            template_image = state.db.sequence_step_image(user, existing, position).await?;
        }
        parsed.push(step.parse(index, &message, template_image)?);
    }
    let (mut new, images) = body.into_new(parsed)?;
    // Only a user who may plan on these devices gets an image decoded.
    if images.iter().any(Option::is_some) {
        crate::campaigns::ensure_owned(state, user, &new.devices).await?;
    }
    for (step, image) in new.steps.iter_mut().zip(images) {
        if image.is_some() {
            step.image = image_content(image).await?;
        }
    }
    Ok(new)
}

/// Create a sequence: its steps go from each target device to that device's leads enrolled in
/// it (by its rule, by hand, CSV or the API), paced by each device's pacing policy.
#[utoipa::path(post, path = "/api/sequences", tag = "sequences", request_body = SequenceBody,
    responses((status = 201, body = Envelope<Sequence>), (status = 404, description = "A device, template or sequence is not yours"),
              (status = 409, description = "You already have a sequence of that name"),
              (status = 422, description = "A field is invalid; the message says which and how to fix it")))]
async fn create_sequence(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<SequenceBody>,
) -> ApiResult<impl IntoResponse> {
    let new = checked(&state, user.id, None, body).await?;
    let sequence = state
        .db
        .create_sequence(user.id, &new)
        .await
        .or_not_found("device or sequence")?;
    tracing::info!(user = %user.id, sequence = %sequence.id, "sequence created");
    Ok(created("sequence created", sequence))
}

/// One of your sequences.
#[utoipa::path(get, path = "/api/sequences/{id}", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id")),
    responses((status = 200, body = Envelope<Sequence>), (status = 404, description = "No such sequence of yours")))]
async fn get_sequence(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<SequenceId>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(
        "sequence",
        state.db.sequence(user.id, id).await.or_not_found("sequence")?,
    ))
}

/// Pause (`{"status": "paused"}`), resume (`active`) or archive (`archived`, for good: its leads
/// exit) a sequence; or replace its definition (every field, as on creation). Leads keep their
/// place in it, and their next step is planned again.
#[utoipa::path(put, path = "/api/sequences/{id}", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id")), request_body = SequenceBody,
    responses((status = 200, body = Envelope<Sequence>), (status = 404, description = "No such sequence, device or template of yours"),
              (status = 409, description = "It is archived, or the name is taken"),
              (status = 422, description = "A field is invalid")))]
async fn update_sequence(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<SequenceId>,
    Json(body): Json<SequenceBody>,
) -> ApiResult<impl IntoResponse> {
    let sequence = if let (true, Some(status)) = (body.only_status(), body.status) {
        state.db.set_sequence_status(user.id, id, status).await
    } else {
        state.db.sequence(user.id, id).await.or_not_found("sequence")?;
        let new = checked(&state, user.id, Some(id), body).await?;
        state.db.update_sequence(user.id, id, &new).await
    }
    .or_not_found("sequence")?;
    Ok(ok(format!("sequence {}", sequence.status.as_str()), sequence))
}

/// Delete a sequence and its report; sends already recorded still go.
#[utoipa::path(delete, path = "/api/sequences/{id}", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id")),
    responses((status = 200, body = Envelope<Option<String>>), (status = 404, description = "No such sequence of yours")))]
async fn delete_sequence(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<SequenceId>,
) -> ApiResult<impl IntoResponse> {
    state.db.delete_sequence(user.id, id).await.or_not_found("sequence")?;
    Ok(ok("sequence deleted", None::<String>))
}

/// Leads to enrol.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    /// Ids of leads of the sequence's devices (up to 10,000); others, and leads already
    /// enrolled, are skipped.
    pub lead_ids: Vec<i64>,
}

/// Enrol leads by hand. Answers how many were enrolled (leads enrolled before are not enrolled
/// twice, and not counted).
#[utoipa::path(post, path = "/api/sequences/{id}/enrolments", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id")), request_body = EnrolBody,
    responses((status = 200, body = Envelope<u64>), (status = 404, description = "No such sequence of yours"),
              (status = 409, description = "It is archived"), (status = 422, description = "No leads, or too many")))]
async fn enrol(
    State(state): State<AppState>,
    CurrentCaller(caller): CurrentCaller,
    Path(id): Path<SequenceId>,
    Json(body): Json<EnrolBody>,
) -> ApiResult<impl IntoResponse> {
    if body.lead_ids.is_empty() || body.lead_ids.len() > 10_000 {
        return Err(ApiError::Invalid("lead_ids: give 1 to 10000 lead ids".into()));
    }
    // A token's enrolments are the API's; a signed-in person's (the dashboard) are by hand.
    let source = if caller.token.is_some() { "api" } else { "hand" };
    let enrolled = state
        .db
        .enrol_leads(caller.user.id, id, &body.lead_ids, source)
        .await
        .or_not_found("sequence")?;
    Ok(ok(format!("{enrolled} leads enrolled"), enrolled))
}

/// Most numbers one enrolment file may hold.
const MAX_CSV_NUMBERS: usize = 50_000;
/// Most numbers that are not leads listed in an answer (the count says how many there are).
const MAX_LISTED_UNKNOWN: usize = 500;

/// What enrolling a file did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CsvEnrolment {
    /// Leads enrolled now.
    pub enrolled: u64,
    /// Leads with a number of the file that were in the sequence already (left as they are).
    pub already_enrolled: u64,
    /// Numbers of the file that are no lead of the sequence's devices (none was enrolled).
    pub not_leads_count: usize,
    /// Those numbers with their lines (the first 500).
    pub not_leads: Vec<NotALead>,
}

/// A number of the file that is no lead of the sequence's devices.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NotALead {
    /// Line of the file (the header is line 1).
    pub row: u64,
    /// The number, E.164.
    pub phone: String,
}

/// Enrol the leads whose numbers a CSV file lists: `multipart/form-data` with a `file` field, or
/// the file itself as a `text/csv` body, with a `phone` column (others, such as a leads export's,
/// are left out). Each number enrols the leads of the sequence's devices that have it; numbers
/// that are no lead are listed back. A number that cannot be read refuses the file (422, every
/// such row listed), and nothing is enrolled.
#[utoipa::path(post, path = "/api/sequences/{id}/enrolments/import", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id")),
    request_body(content((String = "text/csv"), (crate::leads::transfer::ImportUpload = "multipart/form-data"))),
    responses((status = 200, body = Envelope<CsvEnrolment>), (status = 404, description = "No such sequence of yours"),
              (status = 409, description = "It is archived"),
              (status = 413, description = "The file is larger than MAX_BODY_BYTES"),
              (status = 415, description = "Neither a multipart upload nor a CSV body"),
              (status = 422, description = "Rows whose numbers cannot be read, each listed in `results`; or no `phone` column, or too many rows")))]
async fn enrol_from_csv(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<SequenceId>,
    request: axum::extract::Request,
) -> ApiResult<axum::response::Response> {
    // The sequence is checked before the body is read: another user's is a 404 whatever is sent.
    let sequence = state.db.sequence(user.id, id).await.or_not_found("sequence")?;
    if sequence.status == wafleet_core::db::SequenceStatus::Archived {
        return Err(ApiError::Conflict("the sequence is archived; it enrols nobody".into()));
    }
    let bytes = crate::leads::transfer::csv_body(request, &state).await?;
    let rows = match crate::leads::csv::read_phones(&bytes, state.settings.default_country, MAX_CSV_NUMBERS) {
        Ok(rows) => rows,
        Err(crate::leads::csv::Refusal::Rows(errors)) => {
            return Ok(crate::leads::transfer::refused(errors, "enrolled", "send"));
        }
        Err(crate::leads::csv::Refusal::TooManyRows(max)) => {
            return Err(ApiError::Invalid(format!(
                "the file has more than {max} numbers: split it into files of at most {max} rows"
            )));
        }
    };
    let phones: Vec<&str> = rows.iter().map(|(_, phone)| phone.as_str()).collect();
    let leads = state
        .db
        .sequence_leads_with_phones(user.id, id, &phones)
        .await
        .or_not_found("sequence")?;
    let known: std::collections::HashSet<&str> = leads.iter().map(|(_, phone)| phone.as_str()).collect();
    let not_leads: Vec<NotALead> = rows
        .iter()
        .filter(|(_, phone)| !known.contains(phone.as_str()))
        .map(|(row, phone)| NotALead {
            row: *row,
            phone: phone.as_str().to_owned(),
        })
        .collect();
    let ids: Vec<i64> = leads.iter().map(|(lead, _)| *lead).collect();
    let enrolled = state
        .db
        .enrol_leads(user.id, id, &ids, "csv")
        .await
        .or_not_found("sequence")?;
    let report = CsvEnrolment {
        enrolled,
        already_enrolled: ids.len() as u64 - enrolled,
        not_leads_count: not_leads.len(),
        not_leads: not_leads.into_iter().take(MAX_LISTED_UNKNOWN).collect(),
    };
    tracing::info!(user = %user.id, sequence = %id, enrolled, "leads enrolled from a file");
    let message = format!(
        "{enrolled} leads enrolled; {} in it already; {} numbers are no lead of its devices",
        report.already_enrolled, report.not_leads_count
    );
    Ok(ok(message, report).into_response())
}

/// A page of a sequence's enrolments, to drill into a report's cell.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnrolmentsQuery {
    /// Only those in this status: `active`, `completed`, `exited` or `failed`.
    pub status: Option<EnrolmentStatus>,
    /// Only those waiting for this step.
    pub step: Option<i64>,
    /// Only those that left for this reason, as the report names it (`replied`,
    /// `status:converted`, `by_hand`, `archived`).
    pub exit_reason: Option<String>,
    /// With `outcome`: only those whose send of this step came to it (a report's step cell).
    pub outcome_step: Option<i64>,
    /// What the send of `outcome_step` came to: `queued`, `sent`, `delivered`, `read`,
    /// `replied` or `failed`.
    pub outcome: Option<StepOutcome>,
    /// The `id` of the last enrolment of the previous page (default: from the first).
    pub after: Option<i64>,
    /// How many, 1 to 500 (default 100).
    pub limit: Option<i64>,
}

/// A sequence's enrolments in the order they were enrolled, with their leads' names; the
/// filters pick the leads behind one of the report's numbers.
#[utoipa::path(get, path = "/api/sequences/{id}/enrolments", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id"), EnrolmentsQuery),
    responses((status = 200, body = Envelope<Vec<Enrolment>>), (status = 404, description = "No such sequence of yours"),
              (status = 422, description = "Bad limit, status or outcome")))]
async fn list_enrolments(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<SequenceId>,
    Query(query): Query<EnrolmentsQuery>,
) -> ApiResult<impl IntoResponse> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=ENROLMENTS_PAGE_MAX).contains(&limit) {
        return Err(ApiError::Invalid(format!("limit: must be 1 to {ENROLMENTS_PAGE_MAX}")));
    }
    let step_outcome = match (query.outcome_step, query.outcome) {
        (Some(step), Some(outcome)) => Some((step, outcome)),
        (None, None) => None,
        _ => {
            return Err(ApiError::Invalid(
                "outcome: give outcome_step and outcome together, e.g. outcome_step=2&outcome=read".into(),
            ));
        }
    };
    let filter = EnrolmentFilter {
        status: query.status,
        waiting_for: query.step,
        exit_reason: query.exit_reason.filter(|r| !r.trim().is_empty()),
        step_outcome,
    };
    let page = state
        .db
        .sequence_enrolments(user.id, id, &filter, query.after.unwrap_or(0), limit)
        .await
        .or_not_found("sequence")?;
    Ok(ok("enrolments", page))
}

/// Take a lead out of a sequence (`by_hand`); a step recorded for it but not yet sent still goes.
#[utoipa::path(delete, path = "/api/sequences/{id}/enrolments/{lead_id}", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id"), ("lead_id" = i64, Path, description = "Lead id")),
    responses((status = 200, body = Envelope<Option<String>>), (status = 404, description = "No such sequence of yours, or the lead is not in it")))]
async fn unenrol(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, lead)): Path<(SequenceId, i64)>,
) -> ApiResult<impl IntoResponse> {
    state
        .db
        .exit_enrolment(user.id, id, lead)
        .await
        .or_not_found("enrolment")?;
    Ok(ok("lead taken out of the sequence", None::<String>))
}

/// Leads by where they stand (enrolled, active, waiting, completed, failed, exited by reason)
/// and each step's sends (queued, sent, delivered, read, replied, failed).
#[utoipa::path(get, path = "/api/sequences/{id}/report", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id")),
    responses((status = 200, body = Envelope<SequenceReport>), (status = 404, description = "No such sequence of yours")))]
async fn report(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<SequenceId>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(
        "report",
        state.db.sequence_report(user.id, id).await.or_not_found("sequence")?,
    ))
}

/// When a sample lead enrolled at `start` would get each step.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The enrolment time, RFC 3339 (default: now).
    pub start: Option<Timestamp>,
    /// The sample lead's name (default `Alex Sample`).
    pub name: Option<String>,
}

/// One step of a preview.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PreviewStep {
    /// 1 for the first step.
    pub position: i64,
    /// When it would go (UTC), if each earlier step goes out as soon as it is due.
    pub at: Timestamp,
    /// The same time on the sequence's clock, e.g. `Mon 2027-03-15 09:00`.
    pub local: String,
    /// Three renders of its message for the sample lead.
    pub renders: Vec<String>,
}

/// See when each step would go for a lead enrolled at `start`, and how its message reads.
#[utoipa::path(get, path = "/api/sequences/{id}/preview", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id"), PreviewQuery),
    responses((status = 200, body = Envelope<Vec<PreviewStep>>), (status = 404, description = "No such sequence of yours")))]
async fn preview(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<SequenceId>,
    Query(query): Query<PreviewQuery>,
) -> ApiResult<impl IntoResponse> {
    let sequence = state.db.sequence(user.id, id).await.or_not_found("sequence")?;
    let send_window: SendWindow = sequence
        .send_window()
        .ok_or_else(|| ApiError::Conflict("the sequence's window cannot be read; save it again".into()))?;
    let start = query.start.unwrap_or_else(Timestamp::now);
    let name = query.name.unwrap_or_else(|| "Alex Sample".into());
    let (mut last, mut steps) = (start, Vec::with_capacity(sequence.steps.len()));
    for step in &sequence.steps {
        let as_u32 = |v: i64| u32::try_from(v).unwrap_or_default();
        let delay = (as_u32(step.delay_days), as_u32(step.delay_hours));
        let at = send_window.step_due(step.position, step.delay_from, delay, start, Some(last));
        let message = wafleet_core::text::Message::parse(&step.message)
            .unwrap_or_else(|_| wafleet_core::text::Message::literal(&step.message));
        let variables = Variables {
            name: name.clone(),
            phone: "+15550100".into(),
            niche: sequence
                .enrol_rule
                .as_ref()
                .and_then(|r| r.niche.clone())
                .unwrap_or_default(),
            local_hour: Variables::hour_in(at, &sequence.time_zone),
        };
        steps.push(PreviewStep {
            position: step.position,
            at,
            local: at
                .to_datetime()
                .with_timezone(&send_window.tz)
                .format("%a %Y-%m-%d %H:%M")
                .to_string(),
            renders: (0..3).map(|i| message.render(&variables, i)).collect(),
        });
        last = at;
    }
    Ok(ok("preview", steps))
}

/// Send the failed steps again (each as a new send). Answers how many leads go on.
#[utoipa::path(post, path = "/api/sequences/{id}/retry", tag = "sequences",
    params(("id" = i64, Path, description = "Sequence id")),
    responses((status = 200, body = Envelope<u64>), (status = 404, description = "No such sequence of yours"),
              (status = 409, description = "It is archived")))]
async fn retry_failed(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<SequenceId>,
) -> ApiResult<impl IntoResponse> {
    let retried = state
        .db
        .retry_failed_enrolments(user.id, id)
        .await
        .or_not_found("sequence")?;
    Ok(ok(format!("{retried} leads to send again"), retried))
}
