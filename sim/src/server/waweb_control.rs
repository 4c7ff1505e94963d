//! `/control/waweb/…`: the phones of the WhatsApp Web front end that `wafleet sim --waweb-port`
//! runs beside the simulator, so that another process (a benchmark, a worker under test) can
//! link wa-rs devices to it by QR code or pair code.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::control::{PairCodeRequest, Paired, ScanRequest, WaWebStats};
use crate::waweb::WaWebHandle;
use wafleet_core::link::Jid;

use super::world::digits_of;
use super::{ControlError, Sim};

type Result<T> = std::result::Result<Json<T>, ControlError>;

/// Routes under `/control/waweb`.
pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/scan", post(scan))
        .route("/pair-code", post(pair_code))
        .route("/logged-in", get(logged_in))
        .route("/stats", get(stats))
        .route("/root-key", get(root_key))
}

/// The front end, or a 404 that says how to start it.
fn front_end(sim: &Sim) -> std::result::Result<Arc<WaWebHandle>, ControlError> {
    sim.waweb.get().cloned().ok_or_else(|| {
        ControlError::NotFound(
            "the WhatsApp Web front end is not running: start the simulator with --waweb-port".into(),
        )
    })
}

fn digits(phone: &str) -> std::result::Result<String, ControlError> {
    digits_of(phone).ok_or_else(|| ControlError::Invalid(format!("not a phone number: {phone}")))
}

/// The account JID of a linked device's JID.
fn account(device_jid: &str) -> Jid {
    let user = device_jid.split(['@', ':']).next().unwrap_or_default();
    Jid(format!("{user}@s.whatsapp.net"))
}

async fn scan(State(sim): State<Arc<Sim>>, Json(body): Json<ScanRequest>) -> Result<Paired> {
    let jid = front_end(&sim)?
        .scan(&body.code, &digits(&body.phone)?)
        .map_err(|e| ControlError::NotFound(format!("{e:#}")))?;
    Ok(Json(Paired { jid: account(&jid) }))
}

async fn pair_code(State(sim): State<Arc<Sim>>, Json(body): Json<PairCodeRequest>) -> Result<Paired> {
    let phone = body
        .phone
        .as_deref()
        .ok_or_else(|| ControlError::Invalid("give `phone`, the number the code was asked for".into()))?;
    let jid = front_end(&sim)?
        .enter_code(&digits(phone)?, &body.code)
        .await
        .map_err(|e| ControlError::Invalid(format!("{e:#}")))?;
    Ok(Json(Paired { jid: account(&jid) }))
}

async fn logged_in(State(sim): State<Arc<Sim>>) -> Result<Vec<String>> {
    Ok(Json(front_end(&sim)?.logged_in()))
}

async fn stats(State(sim): State<Arc<Sim>>) -> Result<WaWebStats> {
    Ok(Json(front_end(&sim)?.stats()))
}

/// The key that signs the front end's certificates, in hex: what a client that checks the chain
/// against WhatsApp's root (Baileys) is told to trust instead.
async fn root_key(State(sim): State<Arc<Sim>>) -> Result<String> {
    let key = front_end(&sim)?.root_key();
    Ok(Json(key.iter().map(|b| format!("{b:02x}")).collect()))
}
