//! Bans, judged by the simulator's model ([`crate::ban`]): an account that sends too fast to
//! numbers that never wrote to it is banned as WhatsApp does it, with `<failure reason="402">`
//! (a temporary ban, with its code and duration) on its live connections and on every later
//! login.

use std::time::Instant;

use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;

use super::model::{ConnState, Model, Out};
use crate::ban::{self, BanLimits};

/// The ban code WhatsApp gives for messaging too many people (`SentToTooManyPeople`).
const TOO_MANY_PEOPLE: &str = "101";

/// How long WhatsApp says the ban lasts, in seconds; the front end never lifts it (nor does the
/// simulator), which for wafleet is all the same: a banned device is done.
const BAN_SECS: u64 = 24 * 3600;

/// A device of `from` sent a personal message to `to` (digits): judged, and banned if that was
/// too much. Returns whether the account is banned now.
pub(crate) fn record_send(model: &mut Model, limits: &BanLimits, from: &str, to: &str) -> bool {
    let account = model.account(from);
    if account.banned.is_some() {
        return true;
    }
    let Some(reason) = ban::record_send(&mut account.reputation, to, limits, Instant::now()) else {
        return false;
    };
    ban_account(model, from, &reason);
    true
}

/// The phone of `from` wrote to the account of `to` (digits): `from` is no stranger to it.
pub(crate) fn record_incoming(model: &mut Model, to: &str, from: &str) {
    ban::record_incoming(&mut model.account(to).reputation, from);
}

/// Bans the account of `phone` (digits): its connected devices are told at once and
/// disconnected, its devices are refused on every later login, and what waited for them is
/// dropped.
pub(crate) fn ban_account(model: &mut Model, phone: &str, reason: &str) {
    tracing::info!(account = phone, reason, "account banned");
    model.account(phone).banned = Some(reason.to_owned());
    model.pending.retain(|(p, _), _| p != phone);
    let notice = failure(reason);
    model.conns.retain(|_, conn| match &conn.state {
        ConnState::LoggedIn { phone: p, .. } if p == phone => {
            let _ = conn.tx.send(Out::Last(notice.clone()));
            false
        }
        _ => true,
    });
}

/// Why the account of `phone` is banned, if it is.
pub(crate) fn banned(model: &Model, phone: &str) -> Option<String> {
    model.accounts.get(phone)?.banned.clone()
}

/// `<failure reason="402" code=… expire=…>`: the account is temporarily banned.
pub(crate) fn failure(reason: &str) -> Node {
    NodeBuilder::new("failure")
        .attr("reason", "402")
        .attr("code", TOO_MANY_PEOPLE)
        .attr("expire", BAN_SECS.to_string())
        .attr("message", reason)
        .attr("location", "sim")
        .build()
}
