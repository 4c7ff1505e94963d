//! Demo mode: the dashboard acts as the simulated phone (scan the QR code, confirm the pair code).
//! Every route answers 404 unless wafleet runs with `serve --demo`.
//!
//! Every user of a demo shares one simulated network, where anyone could otherwise "be" any
//! number: link a device as another user's number and receive the replies meant for them. So a
//! number belongs to the first user who links or starts linking it: later scans or pair codes
//! for it by anyone else are refused (409). Demo mode is one process (`serve --demo`), so the
//! numbers being linked are held in memory beside the database's linked devices.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use serde::Deserialize;
use tokio::sync::Mutex;
use wafleet_core::link::SimulatedPhones;
use wafleet_core::types::{DeviceId, PhoneNumber, UserId};

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

/// Demo mode's simulated phones, and which user each number belongs to.
#[derive(Clone)]
pub struct Demo {
    /// The simulated phones.
    phones: Arc<dyn SimulatedPhones>,
    /// The numbers scanned or confirmed through this process, and by whom.
    claims: Arc<Mutex<HashMap<PhoneNumber, UserId>>>,
}

impl Demo {
    /// Demo mode over `phones`, with no number claimed yet.
    pub fn new(phones: Arc<dyn SimulatedPhones>) -> Self {
        Demo {
            phones,
            claims: Arc::default(),
        }
    }

    /// Makes `phone` `user`'s, or refuses (409) when it is another user's: linked by one of
    /// their devices, or being linked by them. Held under one lock, so two users scanning one
    /// number at once cannot both pass.
    async fn claim(&self, state: &AppState, user: UserId, phone: &PhoneNumber) -> ApiResult<()> {
        let mut claims = self.claims.lock().await;
        let taken = match claims.get(phone) {
            Some(owner) => *owner != user,
            None => state.db.linked_by_another_user(user, phone).await?,
        };
        if taken {
            return Err(ApiError::Conflict(format!(
                "phone: {phone} is linked by another account of this demo; use another number"
            )));
        }
        claims.insert(phone.clone(), user);
        Ok(())
    }
}

fn demo(state: &AppState) -> ApiResult<&Demo> {
    state.demo.as_ref().ok_or(ApiError::NotFound("API route"))
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
    let demo = demo(&state)?;
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
    demo.claim(&state, user.id, &phone).await?;
    demo.phones
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
    let demo = demo(&state)?;
    let code = state
        .db
        .pairing_view(user.id, id)
        .await?
        .pair_code
        .ok_or_else(|| ApiError::Conflict("the device shows no pair code: press “Use phone code” first".into()))?;
    // The code links the number it was asked for, so that number must be this user's to take.
    let phone = state
        .db
        .pair_phone(user.id, id)
        .await?
        .and_then(|p| PhoneNumber::parse(&p, state.settings.default_country).ok())
        .ok_or_else(|| ApiError::Conflict("the device is not pairing by code: press “Use phone code” first".into()))?;
    demo.claim(&state, user.id, &phone).await?;
    demo.phones
        .confirm_pair_code(&code)
        .await
        .map_err(|e| ApiError::Conflict(format!("the simulated phone could not confirm: {e}")))?;
    Ok(ok("confirmed on the simulated phone", ()))
}
