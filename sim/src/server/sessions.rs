//! Session life cycle: hello, pairing (QR and code), reconnects, unlinking and drops.

use std::sync::Arc;
use std::time::Duration;

use crate::control::Provisioned;
use crate::protocol::{HelloMode, ServerFrame};

use super::world::{World, digits_of, jid_of, random_string};
use super::{ControlError, Sim};

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const QR_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A QR code payload shaped like WhatsApp's (`2@ref,key,id`).
fn qr_code() -> String {
    format!(
        "2@{},{},{}",
        random_string(QR_ALPHABET, 44),
        random_string(QR_ALPHABET, 44),
        random_string(QR_ALPHABET, 24)
    )
}

/// A pair code as the phone shows it: `XXXX-XXXX` over A-Z and 0-9.
fn pair_code() -> String {
    format!("{}-{}", random_string(ALNUM, 4), random_string(ALNUM, 4))
}

impl Sim {
    fn qr_period(&self) -> Duration {
        Duration::from_secs_f64(self.config.qr_refresh_secs.max(0.01))
    }

    /// The first frame of connection `conn`.
    pub(crate) fn hello(self: &Arc<Self>, conn: u64, mode: HelloMode) {
        let mut w = self.lock();
        match mode {
            HelloMode::Connect { token } => connect(&mut w, conn, token),
            HelloMode::PairQr => {
                let code = qr_code();
                let valid_for_ms = self.qr_period().as_millis() as u64;
                w.push(
                    conn,
                    &ServerFrame::Qr {
                        code: code.clone(),
                        valid_for_ms,
                    },
                );
                w.pairings.insert(conn, super::world::Pairing::Qr { code, shown: 1 });
                self.spawn_qr_refresh(conn);
            }
            HelloMode::PairCode { phone } => {
                let Some(digits) = digits_of(&phone) else {
                    w.push(
                        conn,
                        &ServerFrame::PairError {
                            reason: format!("not a phone number: {phone}"),
                        },
                    );
                    w.close(conn);
                    return;
                };
                let code = pair_code();
                w.push(conn, &ServerFrame::PairCode { code: code.clone() });
                w.pairings
                    .insert(conn, super::world::Pairing::Code { code, phone: digits });
                self.spawn_pair_code_expiry(conn);
            }
        }
    }

    /// Replaces the QR code every period until pairing ends or the codes run out.
    fn spawn_qr_refresh(self: &Arc<Self>, conn: u64) {
        let sim = Arc::clone(self);
        tokio::spawn(async move {
            let period = sim.qr_period();
            loop {
                tokio::time::sleep(period).await;
                let mut w = sim.lock();
                let Some(super::world::Pairing::Qr { code, shown }) = w.pairings.get_mut(&conn) else {
                    break;
                };
                if *shown >= sim.config.qr_max_codes {
                    w.pairings.remove(&conn);
                    w.push(
                        conn,
                        &ServerFrame::PairError {
                            reason: "QR code not scanned in time".into(),
                        },
                    );
                    w.close(conn);
                    break;
                }
                *shown += 1;
                *code = qr_code();
                let frame = ServerFrame::Qr {
                    code: code.clone(),
                    valid_for_ms: period.as_millis() as u64,
                };
                w.push(conn, &frame);
            }
        });
    }

    /// Fails a pair code that is not confirmed within the QR codes' total life.
    fn spawn_pair_code_expiry(self: &Arc<Self>, conn: u64) {
        let sim = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(sim.qr_period() * sim.config.qr_max_codes.max(1)).await;
            let mut w = sim.lock();
            if matches!(w.pairings.get(&conn), Some(super::world::Pairing::Code { .. })) {
                w.pairings.remove(&conn);
                w.push(
                    conn,
                    &ServerFrame::PairError {
                        reason: "pair code not confirmed in time".into(),
                    },
                );
                w.close(conn);
            }
        });
    }

    /// The phone of `phone` scans QR code `code`.
    pub(crate) fn scan(&self, code: &str, phone: &str) -> Result<wafleet_core::link::Jid, ControlError> {
        let digits = digits_of(phone).ok_or_else(|| ControlError::Invalid(format!("not a phone number: {phone}")))?;
        let mut w = self.lock();
        let conn = w
            .pairings
            .iter()
            .find_map(|(conn, p)| matches!(p, super::world::Pairing::Qr { code: c, .. } if c == code).then_some(*conn))
            .ok_or_else(|| ControlError::NotFound("no device shows this QR code (expired?)".into()))?;
        complete_pairing(&mut w, conn, &digits)
    }

    /// The phone confirms pair code `code`.
    pub(crate) fn confirm_pair_code(&self, code: &str) -> Result<wafleet_core::link::Jid, ControlError> {
        let mut w = self.lock();
        let (conn, digits) = w
            .pairings
            .iter()
            .find_map(|(conn, p)| match p {
                super::world::Pairing::Code { code: c, phone } if c.eq_ignore_ascii_case(code) => {
                    Some((*conn, phone.clone()))
                }
                _ => None,
            })
            .ok_or_else(|| ControlError::NotFound("no device shows this pair code".into()))?;
        complete_pairing(&mut w, conn, &digits)
    }

    /// Links one device per number, without a connection.
    pub(crate) fn provision(&self, phones: &[String]) -> Result<Vec<Provisioned>, ControlError> {
        let mut w = self.lock();
        phones
            .iter()
            .map(|phone| {
                let digits =
                    digits_of(phone).ok_or_else(|| ControlError::Invalid(format!("not a phone number: {phone}")))?;
                if let Some(reason) = w.accounts.get(&digits).and_then(|a| a.banned.clone()) {
                    return Err(ControlError::Conflict(format!("{phone} is banned: {reason}")));
                }
                let token = w.link_device(&digits);
                Ok(Provisioned {
                    phone: phone.clone(),
                    jid: jid_of(&digits),
                    token,
                })
            })
            .collect()
    }

    /// Unlinks every device of an account (from the phone, or by a ban); returns how many.
    pub(crate) fn unlink_account(&self, w: &mut World, digits: &str, reason: &str, banned: bool) -> usize {
        let Some(account) = w.accounts.get_mut(digits) else {
            return 0;
        };
        if banned && account.banned.is_none() {
            account.banned = Some(reason.to_owned());
            account.schedule_generation += 1;
            w.counters.bans += 1;
            tracing::info!(account = digits, reason, "account banned");
        }
        let tokens = w.accounts.get(digits).map(|a| a.devices.clone()).unwrap_or_default();
        let mut count = 0;
        for token in tokens {
            let Some(device) = w.devices.get_mut(&token) else {
                continue;
            };
            if !device.unlinked {
                count += 1;
            }
            device.unlinked = true;
            device.pending.clear();
            device.pending_receipts.clear();
            if let Some(conn) = device.conn.take() {
                w.push(
                    conn,
                    &ServerFrame::LoggedOut {
                        reason: reason.to_owned(),
                        banned,
                    },
                );
                w.close(conn);
            }
        }
        count
    }

    /// Drops the sockets of an account's devices, as a network failure would.
    pub(crate) fn drop_account_conns(&self, digits: &str) -> usize {
        let mut w = self.lock();
        let conns = w.account_conns(digits);
        for conn in &conns {
            w.close(*conn);
        }
        w.counters.drops += conns.len() as u64;
        conns.len()
    }

    /// The device of `conn` unlinks itself.
    pub(crate) fn logout(&self, conn: u64, req: u64) {
        let mut w = self.lock();
        if let Some(token) = w.conns.get(&conn).and_then(|c| c.token.clone())
            && let Some(device) = w.devices.get_mut(&token)
        {
            device.unlinked = true;
            device.pending.clear();
            device.pending_receipts.clear();
            device.conn = None;
        }
        w.push(conn, &ServerFrame::LogoutDone { req });
        w.close(conn);
    }
}

/// Resumes a linked device on `conn`, replaying its unacknowledged messages.
fn connect(w: &mut World, conn: u64, token: String) {
    let refusal = match w.devices.get(&token) {
        None => Some(("unknown device".to_owned(), false)),
        Some(device) => match w.accounts.get(&device.account).and_then(|a| a.banned.clone()) {
            Some(reason) => Some((reason, true)),
            None if device.unlinked => Some(("device was unlinked".to_owned(), false)),
            None => None,
        },
    };
    if let Some((reason, banned)) = refusal {
        w.push(conn, &ServerFrame::Refused { reason, banned });
        w.close(conn);
        return;
    }
    let Some(device) = w.devices.get_mut(&token) else {
        return;
    };
    let previous = device.conn.replace(conn);
    let (jid, pending, receipts) = (
        jid_of(&device.account),
        device.pending.clone(),
        device.pending_receipts.clone(),
    );
    if let Some(c) = w.conns.get_mut(&conn) {
        c.token = Some(token);
    }
    if let Some(old) = previous.filter(|old| *old != conn) {
        w.counters.replaced += 1;
        w.push(old, &ServerFrame::Replaced);
        w.close(old);
    }
    w.push(conn, &ServerFrame::Connected { jid });
    w.counters.replays += pending.len() as u64;
    for message in pending {
        w.push(conn, &ServerFrame::Message { message });
    }
    for receipt in receipts {
        w.push(conn, &receipt);
    }
}

/// Links a new device of `digits` on the pairing connection `conn`.
fn complete_pairing(w: &mut World, conn: u64, digits: &str) -> Result<wafleet_core::link::Jid, ControlError> {
    if let Some(reason) = w.accounts.get(digits).and_then(|a| a.banned.clone()) {
        return Err(ControlError::Conflict(format!("the account is banned: {reason}")));
    }
    w.pairings.remove(&conn);
    let token = w.link_device(digits);
    let jid = jid_of(digits);
    if let Some(device) = w.devices.get_mut(&token) {
        device.conn = Some(conn);
    }
    if let Some(c) = w.conns.get_mut(&conn) {
        c.token = Some(token.clone());
    }
    w.push(
        conn,
        &ServerFrame::Paired {
            jid: jid.clone(),
            token: token.clone(),
        },
    );
    w.push(conn, &ServerFrame::Connected { jid: jid.clone() });
    w.sync_history(&token);
    tracing::info!(account = digits, conn, "device paired");
    Ok(jid)
}
