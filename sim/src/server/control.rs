//! The control API's routes (bodies in [`crate::control`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::SimConfig;
use crate::control::*;

use super::world::{Pairing, digits_of};
use super::{ControlError, Sim};

type Result<T> = std::result::Result<Json<T>, ControlError>;

/// Routes under `/control`.
pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/state", get(state))
        .route("/config", get(config))
        .route("/scan", post(scan))
        .route("/pair-code", post(pair_code))
        .route("/provision", post(provision))
        .route("/messages", post(inject))
        .route("/flood", post(flood).get(flood_report))
        .route("/numbers", post(set_number))
        .route("/accounts/{phone}/sent", get(sent))
        .route("/accounts/{phone}/read", get(read))
        .route("/accounts/{phone}/chat-states", get(chat_states))
        .route("/accounts/{phone}/presences", get(presences))
        .route("/accounts/{phone}/chat-settings", get(chat_settings))
        .route("/accounts/{phone}/calls", get(calls).post(place_call))
        .route("/accounts/{phone}/actions", get(actions))
        .route("/accounts/{phone}/disconnect", post(disconnect))
        .route("/accounts/{phone}/logout", post(logout))
        .route("/accounts/{phone}/ban", post(ban))
        .route("/accounts/{phone}/schedule", post(schedule))
        .route("/accounts/{phone}/lid-mappings/{contact}", post(reveal_number))
        .route("/accounts/{phone}/restrict", post(restrict))
        .route("/accounts/{phone}/contacts/{contact}", post(save_contact))
}

fn digits(phone: &str) -> std::result::Result<String, ControlError> {
    digits_of(phone).ok_or_else(|| ControlError::Invalid(format!("not a phone number: {phone}")))
}

async fn state(State(sim): State<Arc<Sim>>) -> Json<StateView> {
    Json(state_view(&sim))
}

/// A snapshot of the whole network.
pub(crate) fn state_view(sim: &Sim) -> StateView {
    let w = sim.lock();
    let mut accounts: Vec<AccountView> = w
        .accounts
        .values()
        .map(|a| {
            let devices: Vec<_> = a.devices.iter().filter_map(|t| w.devices.get(t)).collect();
            AccountView {
                phone: format!("+{}", a.digits),
                jid: a.jid(),
                banned: a.banned.is_some(),
                ban_reason: a.banned.clone(),
                linked_devices: devices.iter().filter(|d| !d.unlinked).count(),
                connected: devices.iter().filter(|d| d.conn.is_some()).count(),
                pending: devices.iter().map(|d| d.pending.len()).sum(),
                pending_receipts: devices.iter().map(|d| d.pending_receipts.len()).sum(),
                sent: a.sent.len(),
                received: a.received,
                stranger_messages: a.reputation.stranger_messages,
                unreplied: a.reputation.unreplied,
            }
        })
        .collect();
    accounts.sort_by(|a, b| a.phone.cmp(&b.phone));
    let pairings = w
        .pairings
        .values()
        .map(|p| match p {
            Pairing::Qr { code, .. } => PairingView {
                kind: "qr".into(),
                code: code.clone(),
                phone: None,
            },
            Pairing::Code { code, phone } => PairingView {
                kind: "code".into(),
                code: code.clone(),
                phone: Some(format!("+{phone}")),
            },
        })
        .collect();
    StateView {
        accounts,
        connections: w.conns.len(),
        connected_sessions: w.devices.values().filter(|d| d.conn.is_some()).count(),
        pairings,
        counters: w.counters.clone(),
    }
}

async fn config(State(sim): State<Arc<Sim>>) -> Json<SimConfig> {
    Json(sim.config.clone())
}

async fn scan(State(sim): State<Arc<Sim>>, Json(body): Json<ScanRequest>) -> Result<Paired> {
    Ok(Json(Paired {
        jid: sim.scan(&body.code, &body.phone)?,
    }))
}

async fn pair_code(State(sim): State<Arc<Sim>>, Json(body): Json<PairCodeRequest>) -> Result<Paired> {
    Ok(Json(Paired {
        jid: sim.confirm_pair_code(&body.code)?,
    }))
}

async fn provision(State(sim): State<Arc<Sim>>, Json(body): Json<ProvisionRequest>) -> Result<Vec<Provisioned>> {
    Ok(Json(sim.provision(&body.phones)?))
}

async fn inject(State(sim): State<Arc<Sim>>, Json(body): Json<InjectMessage>) -> Result<Injected> {
    Ok(Json(sim.inject(body)?))
}

async fn flood(State(sim): State<Arc<Sim>>, Json(body): Json<FloodRequest>) -> Result<Count> {
    Ok(Json(Count {
        count: sim.start_flood(body)?,
    }))
}

async fn flood_report(State(sim): State<Arc<Sim>>) -> Json<FloodReport> {
    Json(sim.flood_report())
}

async fn set_number(State(sim): State<Arc<Sim>>, Json(body): Json<NumberRule>) -> Result<NumberRule> {
    let key = digits(&body.phone)?;
    let mut w = sim.lock();
    let rule = w.numbers.entry(key).or_insert_with(|| NumberRule {
        phone: body.phone.clone(),
        ..NumberRule::default()
    });
    rule.on_whatsapp = body.on_whatsapp.or(rule.on_whatsapp);
    rule.refuse_463 = body.refuse_463.or(rule.refuse_463);
    rule.read_probability = body.read_probability.or(rule.read_probability);
    rule.reply_probability = body.reply_probability.or(rule.reply_probability);
    rule.profile = rule.profile.updated(body.profile);
    Ok(Json(rule.clone()))
}

async fn sent(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Vec<SentRecord>> {
    Ok(Json(of_account(&sim, &phone, |a| a.sent.clone())?))
}

async fn read(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Vec<ReadRecord>> {
    Ok(Json(of_account(&sim, &phone, |a| a.read.clone())?))
}

async fn presences(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Vec<PresenceRecord>> {
    Ok(Json(of_account(&sim, &phone, |a| a.presences.clone())?))
}

async fn calls(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Vec<CallRecord>> {
    Ok(Json(of_account(&sim, &phone, |a| a.calls.clone())?))
}

/// Someone calls the account: it rings on its connected devices.
async fn place_call(
    State(sim): State<Arc<Sim>>,
    Path(phone): Path<String>,
    Json(body): Json<PlaceCall>,
) -> Result<Placed> {
    let (key, caller) = (digits(&phone)?, digits(&body.from)?);
    Ok(Json(Placed {
        call_id: sim.ring(&key, &caller, body.video),
    }))
}

async fn chat_settings(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Vec<ChatSettingRecord>> {
    Ok(Json(of_account(&sim, &phone, |a| a.chat_settings.clone())?))
}

async fn chat_states(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Vec<ChatStateRecord>> {
    Ok(Json(of_account(&sim, &phone, |a| a.chat_states.clone())?))
}

async fn actions(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Vec<ActionRecord>> {
    Ok(Json(of_account(&sim, &phone, |a| a.actions.clone())?))
}

/// What `pick` takes from the account of `phone`; 404 when there is none.
fn of_account<T>(
    sim: &Sim,
    phone: &str,
    pick: impl FnOnce(&super::world::Account) -> T,
) -> std::result::Result<T, ControlError> {
    let key = digits(phone)?;
    let w = sim.lock();
    let account = w
        .accounts
        .get(&key)
        .ok_or_else(|| ControlError::NotFound(format!("no account {phone}")))?;
    Ok(pick(account))
}

async fn disconnect(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Count> {
    Ok(Json(Count {
        count: sim.drop_account_conns(&digits(&phone)?),
    }))
}

async fn logout(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Count> {
    let key = digits(&phone)?;
    let mut w = sim.lock();
    let count = sim.unlink_account(&mut w, &key, "unlinked from the phone", false);
    Ok(Json(Count { count }))
}

async fn ban(State(sim): State<Arc<Sim>>, Path(phone): Path<String>) -> Result<Count> {
    let key = digits(&phone)?;
    let mut w = sim.lock();
    w.account_mut(&key);
    let count = sim.unlink_account(&mut w, &key, "banned by the control API", true);
    Ok(Json(Count { count }))
}

/// WhatsApp tells `phone`'s devices the number behind `contact`'s LID.
async fn reveal_number(State(sim): State<Arc<Sim>>, Path((phone, contact)): Path<(String, String)>) -> Result<Count> {
    let (key, contact) = (digits(&phone)?, digits(&contact)?);
    let mut w = sim.lock();
    if !w.accounts.contains_key(&key) {
        return Err(ControlError::NotFound(format!("no account {phone}")));
    }
    w.push_lid_mapping(&key, &contact);
    Ok(Json(Count {
        count: w.account_conns(&key).len(),
    }))
}

/// The account's phone saves `contact` in its address book under a name (empty: removes it).
async fn save_contact(
    State(sim): State<Arc<Sim>>,
    Path((phone, contact)): Path<(String, String)>,
    Json(body): Json<SaveContact>,
) -> Result<Count> {
    let (key, contact) = (digits(&phone)?, digits(&contact)?);
    let mut w = sim.lock();
    w.save_contact(&key, &contact, body.name.trim());
    Ok(Json(Count {
        count: w.account_conns(&key).len(),
    }))
}

/// Restricts the account's new chats (a timelock from now, a cap of its own).
async fn restrict(State(sim): State<Arc<Sim>>, Path(phone): Path<String>, Json(body): Json<Restrict>) -> Result<Count> {
    let key = digits(&phone)?;
    let mut w = sim.lock();
    let reputation = &mut w.account_mut(&key).reputation;
    if let Some(secs) = body.timelock_secs {
        reputation.timelock(std::time::Instant::now(), std::time::Duration::from_secs(secs));
    }
    if let Some(cap) = body.new_chat_cap {
        reputation.cap_override = Some(cap);
    }
    Ok(Json(Count { count: 1 }))
}

async fn schedule(State(sim): State<Arc<Sim>>, Path(phone): Path<String>, Json(body): Json<Schedule>) -> Result<Count> {
    sim.schedule(&digits(&phone)?, body.per_minute, body.from)?;
    Ok(Json(Count { count: 1 }))
}
