//! Demo mode: the dashboard acts as the simulated phone (scan the QR code, confirm the pair code).
//! Every route answers 404 unless wafleet runs with `serve --demo`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use serde::Deserialize;
use wafleet_core::link::SimulatedPhones;
use wafleet_core::types::{DeviceId, PhoneNumber};

use crate::AppState;
use crate::envelope::ok;
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::session::CurrentUser;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/demo/devices/{id}/scan", post(scan))
        .route("/api/demo/devices/{id}/confirm-code", post(confirm_code))
}

fn phones(state: &AppState) -> ApiResult<Arc<dyn SimulatedPhones>> {
    state.demo.clone().ok_or(ApiError::NotFound("API route"))
}

/// Which simulated phone scans.
#[derive(Debug, Deserialize)]
struct ScanRequest {
    /// Its number; the device's number when empty.
    #[serde(default)]
    phone: String,
}

/// The simulated phone scans the device's current QR code.
async fn scan(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
    Json(body): Json<ScanRequest>,
) -> ApiResult<impl IntoResponse> {
    let phones = phones(&state)?;
    let device = state.db.device(user.id, id).await.or_not_found("device")?;
    let phone = if body.phone.trim().is_empty() {
        device
            .phone
            .ok_or_else(|| ApiError::Invalid("phone: give the simulated phone's number".into()))?
    } else {
        PhoneNumber::parse(&body.phone, state.settings.default_country)
            .map_err(|e| ApiError::Invalid(format!("phone: {e}")))?
    };
    let qr = state
        .db
        .pairing_view(user.id, id)
        .await?
        .qr_code
        .ok_or_else(|| ApiError::Conflict("the device shows no QR code: press “Scan QR code” first".into()))?;
    phones
        .scan_qr(&qr, &phone)
        .await
        .map_err(|e| ApiError::Conflict(format!("the simulated phone could not scan: {e}")))?;
    Ok(ok("scanned by the simulated phone", ()))
}

/// The simulated phone confirms the device's current pair code.
async fn confirm_code(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<DeviceId>,
) -> ApiResult<impl IntoResponse> {
    let phones = phones(&state)?;
    let code = state
        .db
        .pairing_view(user.id, id)
        .await?
        .pair_code
        .ok_or_else(|| ApiError::Conflict("the device shows no pair code: press “Use phone code” first".into()))?;
    phones
        .confirm_pair_code(&code)
        .await
        .map_err(|e| ApiError::Conflict(format!("the simulated phone could not confirm: {e}")))?;
    Ok(ok("confirmed on the simulated phone", ()))
}
