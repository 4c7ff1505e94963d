//! CSV export and import of a device's leads. Import is all-or-report: every row is checked
//! first, and a single bad row refuses the whole file with the list of what to fix.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use wafleet_core::db::NewLead;
use wafleet_core::types::{DeviceId, Timestamp};

use super::LeadQuery;
use super::csv::{self, Refusal};
use crate::AppState;
use crate::envelope::{Envelope, created};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Path, Query};
use crate::session::CurrentUser;

use super::csv::RowError;

/// Most leads one file may hold.
pub(crate) const MAX_IMPORT_ROWS: usize = 50_000;
/// Most row errors listed in a refusal (the count says how many there are in all).
const MAX_REPORTED_ERRORS: usize = 500;

/// What an import stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Leads added.
    pub imported: u64,
    /// Header names that are not lead columns and were left out.
    pub ignored_columns: Vec<String>,
}

/// Why an import was refused (nothing was stored).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportRefused {
    /// How many errors the file has.
    pub error_count: usize,
    /// The errors, in file order (the first 500).
    pub errors: Vec<RowError>,
}

/// The upload form of an import, described for the OpenAPI document only.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // never built: handlers read the multipart stream directly
pub(crate) struct ImportUpload {
    /// The CSV file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Download a device's leads (optionally filtered) as CSV; the file imports back unchanged.
#[utoipa::path(get, path = "/api/devices/{id}/leads/export", tag = "leads",
    params(("id" = i64, Path, description = "Device id"), LeadQuery),
    responses((status = 200, description = "The leads as CSV: name, phone, niche, journey, status, notes",
               content_type = "text/csv", body = String),
              (status = 404, description = "No such device of yours"), (status = 422, description = "Unknown status")))]
pub(super) async fn export_leads(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    filter: Query<LeadQuery>,
) -> ApiResult<Response> {
    let Query(filter) = filter;
    let leads = state
        .db
        .export_leads(user.id, device, &filter.filter()?)
        .await
        .or_not_found("device")?;
    let body = csv::write(&leads).map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("writing CSV")))?;
    let day = Timestamp::now().to_datetime().format("%Y-%m-%d");
    let disposition = format!("attachment; filename=\"leads-device-{device}-{day}.csv\"");
    tracing::info!(user = %user.id, %device, count = leads.len(), "leads exported");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// Import leads into a device from a CSV file: `multipart/form-data` with a `file` field, or the
/// file itself as a `text/csv` body. Columns: name and phone (required), niche, journey, status,
/// notes; header names in any case. If any row is wrong nothing is stored and the answer (422)
/// lists every error by row and column.
#[utoipa::path(post, path = "/api/devices/{id}/leads/import", tag = "leads",
    params(("id" = i64, Path, description = "Device id")),
    request_body(content((String = "text/csv"), (ImportUpload = "multipart/form-data"))),
    responses((status = 201, body = Envelope<ImportReport>), (status = 404, description = "No such device of yours"),
              (status = 409, description = "A lead with one of the numbers was added meanwhile; nothing was stored"),
              (status = 413, description = "The file is larger than MAX_BODY_BYTES"),
              (status = 415, description = "Neither a multipart upload nor a CSV body"),
              (status = 422, body = Envelope<Option<ImportRefused>>,
               description = "Rows with errors, each listed in `results` (nothing was stored); or, with `results` null, more rows than allowed or a NUL character")))]
pub(super) async fn import_leads(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    request: Request,
) -> ApiResult<Response> {
    // The device is checked before the body is read, so another user's device is a 404 whatever is sent.
    let existing: HashSet<_> = state
        .db
        .lead_phones(user.id, device)
        .await
        .or_not_found("device")?
        .into_iter()
        .collect();
    let bytes = csv_body(request, &state).await?;
    let parsed = match csv::read(&bytes, state.settings.default_country, MAX_IMPORT_ROWS) {
        Ok(parsed) => parsed,
        Err(Refusal::Rows(errors)) => return Ok(refused(errors, "imported", "import")),
        Err(Refusal::TooManyRows(max)) => {
            return Err(ApiError::Invalid(format!(
                "the file has more than {max} leads: split it into files of at most {max} rows"
            )));
        }
    };
    let clashes: Vec<RowError> = parsed
        .rows
        .iter()
        .filter(|r| existing.contains(&r.lead.phone))
        .map(|r| RowError {
            row: r.row,
            column: Some("phone".into()),
            message: format!(
                "this device already has a lead with the number {}: remove the row or edit that lead",
                r.lead.phone
            ),
        })
        .collect();
    if !clashes.is_empty() {
        return Ok(refused(clashes, "imported", "import"));
    }
    let leads: Vec<NewLead> = parsed.rows.into_iter().map(|r| r.lead).collect();
    let imported = state
        .db
        .import_leads(user.id, device, &leads)
        .await
        .or_not_found("device")?;
    tracing::info!(user = %user.id, %device, imported, "leads imported");
    let report = ImportReport {
        imported,
        ignored_columns: parsed.ignored_columns,
    };
    Ok(created(format!("{imported} leads imported"), report).into_response())
}

/// The 422 answer listing `errors`: nothing was `done` (imported, enrolled); the file is to be
/// sent again (`redo`: import, send) once fixed.
pub(crate) fn refused(mut errors: Vec<RowError>, done: &str, redo: &str) -> Response {
    let error_count = errors.len();
    errors.truncate(MAX_REPORTED_ERRORS);
    let noun = if error_count == 1 { "error" } else { "errors" };
    let body = Envelope {
        code: "UNPROCESSABLE_ENTITY".into(),
        message: format!(
            "nothing was {done}: the file has {error_count} {noun}; fix them and {redo} the whole file again"
        ),
        results: ImportRefused { error_count, errors },
    };
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

/// The uploaded file: the `file` field of a multipart form (or its first file), or a CSV body.
pub(crate) async fn csv_body(request: Request, state: &AppState) -> ApiResult<Bytes> {
    let limit = state.settings.max_body_bytes;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default();
    let too_large = |status: StatusCode, text: String| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadRequest(format!("cannot read the upload: {text}"))
        }
    };
    match content_type.as_str() {
        "multipart/form-data" => {
            let mut form = Multipart::from_request(request, state)
                .await
                .map_err(|r| too_large(r.status(), r.body_text()))?;
            while let Some(field) = form.next_field().await.map_err(|e| too_large(e.status(), e.body_text()))? {
                if field.name() == Some("file") || field.file_name().is_some() {
                    return field.bytes().await.map_err(|e| too_large(e.status(), e.body_text()));
                }
            }
            Err(ApiError::Invalid("the form has no file: attach the CSV file as the `file` field".into()))
        }
        "text/csv" | "application/csv" | "text/plain" => Bytes::from_request(request, state)
            .await
            .map_err(|r| too_large(r.status(), r.body_text())),
        _ => Err(ApiError::UnsupportedMediaType(
            "send the CSV file as multipart/form-data with a `file` field, or as the body with `Content-Type: text/csv`"
                .into(),
        )),
    }
}
