//! Bans and restrictions, judged by the simulator's model ([`crate::ban`]): an account that
//! sends too fast to numbers that never wrote to it is first put under a reach-out timelock (its
//! messages to new chats refused with 463) and then banned as WhatsApp does it, with
//! `<failure reason="402">` (a temporary ban, with its code and duration) on its live
//! connections and on every later login. A used-up new-chat cap refuses with 475.

use std::time::Instant;

use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;

use super::model::{ConnState, Model, Out};
use crate::ban::{self, BanLimits, Refusal, Verdict};

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
    match ban::record_send(&mut account.reputation, to, limits, Instant::now()) {
        Verdict::Fine => false,
        Verdict::Timelocked(reason) => {
            tracing::info!(
                account = from,
                reason,
                "account timelocked: new chats refused for a while"
            );
            false
        }
        Verdict::Banned(reason) => {
            ban_account(model, from, &reason);
            true
        }
    }
}

/// The error code the network refuses a message from `from` to `to` (digits) with before it
/// is sent, if it does: 463 under a reach-out timelock, 475 once the new-chat cap is used up.
pub(crate) fn refusal(model: &mut Model, limits: &BanLimits, from: &str, to: &str) -> Option<&'static str> {
    ban::refusal(&model.account(from).reputation, to, limits, Instant::now()).map(Refusal::code)
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

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use wa_rs_proto::whatsapp as wa;

    use super::*;
    use crate::waweb::login::login;
    use crate::waweb::login::tests::link;

    /// The `reason` and `code` of a `<failure>` a connection was ended with.
    fn ended_with(out: Option<Out>) -> (String, String) {
        let Some(Out::Last(node)) = out else {
            panic!("the connection was not ended: {out:?}");
        };
        assert_eq!(node.tag, "failure");
        let attr = |key: &str| node.attrs.get(key).map(|v| v.to_string_value()).unwrap_or_default();
        (attr("reason"), attr("code"))
    }

    /// The send past the limit bans the account: its live device is told with a 402 and
    /// disconnected, and the same device is refused with a 402 when it logs in again.
    #[test]
    fn fast_sends_to_strangers_ban_the_live_device_and_every_later_login() {
        let (phone, key) = ("60123000001", [7; 32]);
        let mut model = Model::default();
        link(&mut model, phone, key);
        let payload = wa::ClientPayload {
            device: Some(1),
            ..Default::default()
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        login(&mut model, 1, phone, &payload, key, tx);
        assert!(matches!(rx.try_recv(), Ok(Out::Node(n)) if n.tag == "success"));

        let limits = BanLimits {
            timelock: std::time::Duration::ZERO,
            ..BanLimits::default()
        };
        record_incoming(&mut model, phone, "60190000000");
        for _ in 0..20 {
            assert!(!record_send(&mut model, &limits, phone, "60190000000"), "a contact");
        }
        for n in 0..limits.strangers_per_minute {
            assert!(!record_send(&mut model, &limits, phone, &format!("6019100000{n}")));
        }
        assert!(
            record_send(&mut model, &limits, phone, "60191999999"),
            "one stranger too many"
        );
        assert_eq!(ended_with(rx.try_recv().ok()), ("402".into(), TOO_MANY_PEOPLE.into()));
        assert_eq!(model.stats().logged_in, 0);

        let (tx, mut rx) = mpsc::unbounded_channel();
        login(&mut model, 2, phone, &payload, key, tx);
        assert_eq!(ended_with(rx.try_recv().ok()), ("402".into(), TOO_MANY_PEOPLE.into()));
        assert_eq!(model.stats().logged_in, 0);
    }
}
