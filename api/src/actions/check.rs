//! Which pasted numbers are on WhatsApp: one answer per line, bad lines answered as invalid with
//! the reason instead of refusing the whole paste (a check changes nothing).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use wafleet_core::db::ActivityKind;
use wafleet_core::link::Jid;
use wafleet_core::types::{DeviceId, PhoneNumber};

use super::{Action, lines, log_action};
use crate::AppState;
use crate::envelope::{Envelope, ok};
use crate::error::{ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::session::CurrentUser;
use crate::sessions::run_check;

/// Most lines one check takes.
pub(crate) const MAX_CHECK_LINES: usize = 100;

/// Numbers to check, pasted.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CheckLinesRequest {
    /// Up to 100 numbers, one per line, in any common format; national ones use the default
    /// country. Blank lines are skipped.
    #[schema(example = "+60123456789\n012-345 6789")]
    pub numbers: String,
}

/// The answer for one pasted line.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckedLine {
    /// The line number in the pasted text (1-based).
    pub line: usize,
    /// The line as pasted.
    pub input: String,
    /// The number it names (E.164), when it is one.
    pub phone: Option<PhoneNumber>,
    /// `on_whatsapp`, `not_on_whatsapp` or `invalid`.
    pub result: String,
    /// Why the line is invalid.
    pub reason: Option<String>,
    /// The WhatsApp account's JID, when there is one.
    pub jid: Option<Jid>,
}

/// Check which pasted numbers are on WhatsApp, through the device's live session. Each line gets
/// an answer: invalid (with the reason), on WhatsApp or not. Logged in the device's activity.
#[utoipa::path(post, path = "/api/devices/{id}/actions/check", tag = "actions",
    params(("id" = i64, Path, description = "Device id")),
    request_body = CheckLinesRequest,
    responses((status = 200, body = Envelope<Vec<CheckedLine>>),
              (status = 404, description = "No such device of yours"),
              (status = 409, description = "Device not online"),
              (status = 422, description = "No numbers, or more than 100 lines"),
              (status = 503, description = "The device's worker did not answer in time")))]
pub(super) async fn check_lines(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(device): Path<DeviceId>,
    headers: HeaderMap,
    Json(body): Json<CheckLinesRequest>,
) -> ApiResult<impl IntoResponse> {
    state.db.device(user.id, device).await.or_not_found("device")?;
    let pasted = lines::parse(&body.numbers, state.settings.default_country, MAX_CHECK_LINES)?;
    let (distinct, _) = lines::distinct(&pasted);
    let answers: HashMap<PhoneNumber, Option<Jid>> = if distinct.is_empty() {
        HashMap::new()
    } else {
        run_check(&state, user.id, device, &distinct)
            .await?
            .into_iter()
            .map(|c| (c.phone, c.jid))
            .collect()
    };
    let checked: Vec<CheckedLine> = pasted
        .into_iter()
        .map(|line| match line.parsed {
            Ok(phone) => {
                let jid = answers.get(&phone).cloned().flatten();
                CheckedLine {
                    line: line.line,
                    input: line.input,
                    result: if jid.is_some() {
                        "on_whatsapp"
                    } else {
                        "not_on_whatsapp"
                    }
                    .into(),
                    phone: Some(phone),
                    reason: None,
                    jid,
                }
            }
            Err(reason) => CheckedLine {
                line: line.line,
                input: line.input,
                phone: None,
                result: "invalid".into(),
                reason: Some(reason),
                jid: None,
            },
        })
        .collect();
    let count = |what: &str| checked.iter().filter(|c| c.result == what).count();
    let (on, off, invalid) = (count("on_whatsapp"), count("not_on_whatsapp"), count("invalid"));
    let action = Action {
        kind: ActivityKind::CheckNumbers,
        summary: format!("checked {} numbers", checked.len()),
        result: format!("{on} on WhatsApp, {off} not, {invalid} invalid"),
        ref_id: None,
    };
    log_action(&state, &user, device, &headers, action).await;
    Ok(ok(format!("{on} on WhatsApp, {off} not, {invalid} invalid"), checked))
}
