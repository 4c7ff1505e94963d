//! The client's requests (IQs) and what the server answers.

use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;

use super::model::{Class, ConnState, Model};
use super::nodes::{attr, child_bytes, error, result};

/// Answers a node from connection `conn`.
pub(crate) fn handle(model: &mut Model, conn: u64, node: &Node) {
    match node.tag.as_str() {
        "iq" => handle_iq(model, conn, node),
        "receipt" => on_receipt(model, conn, node),
        "ack" => on_ack(model, conn, node),
        "chatstate" => on_chatstate(model, conn, node),
        "presence" => on_presence(model, conn, node),
        "call" => on_call(model, conn, node),
        // Unified-session pings: nothing to answer.
        _ => tracing::trace!(tag = %node.tag, "ignored"),
    }
}

/// The device on `conn`, when it is logged in.
pub(crate) fn logged_in(model: &Model, conn: u64) -> Option<(String, u16)> {
    match model.conns.get(&conn).map(|c| &c.state) {
        Some(ConnState::LoggedIn { phone, device }) => Some((phone.clone(), *device)),
        _ => None,
    }
}

/// A receipt a device sends for messages it got: recorded for the tests, and (unless it asks
/// for the message again) the device's acknowledgement of them.
fn on_receipt(model: &mut Model, conn: u64, node: &Node) {
    let Some(device) = logged_in(model, conn) else {
        return;
    };
    // A receipt of a call's offer says the call rings on the device: it is not about messages.
    if node.get_optional_child("offer").is_some() {
        return;
    }
    // A client that is not in the foreground reports delivery as `inactive`: to the sender it
    // is a delivery all the same.
    let kind = match attr(node, "type") {
        None => "delivery".to_owned(),
        Some(kind) if kind == "inactive" => "delivery".to_owned(),
        Some(kind) => kind,
    };
    let mut ids: Vec<String> = attr(node, "id").into_iter().collect();
    if let Some(list) = node.get_optional_child("list") {
        ids.extend(list.get_children_by_tag("item").filter_map(|i| attr(i, "id")));
    }
    // A retry receipt says the message did not decrypt: it is not delivered yet.
    let acknowledges = !kind.contains("retry");
    for id in ids {
        if acknowledges {
            model.acknowledged(&device, Class::Message, &id, None);
        }
        model.answers.insert(id.clone(), acknowledges);
        model.receipts.push((device.0.clone(), id, kind.clone()));
    }
    // The server acknowledges every receipt it takes.
    let mut ack = NodeBuilder::new("ack")
        .attr("class", "receipt")
        .attr("id", attr(node, "id").unwrap_or_default())
        .attr("from", attr(node, "to").unwrap_or_default());
    if let Some(kind) = attr(node, "type") {
        ack = ack.attr("type", kind);
    }
    model.send(conn, ack.build());
}

/// A device shows (`<composing/>`) or stops showing (`<paused/>`) that its account is typing in
/// the chat `to`: recorded for the tests. WhatsApp answers nothing.
fn on_chatstate(model: &mut Model, conn: u64, node: &Node) {
    let Some((phone, _)) = logged_in(model, conn) else {
        return;
    };
    let to = attr(node, "to").unwrap_or_default();
    let typing = node.get_optional_child("composing").is_some();
    model.chat_states.push((phone, to, typing));
}

/// A device announces its account's push name (`<presence name="…"/>`), or shows it online or
/// offline (`type="available"` / `"unavailable"`, with the name): recorded for the tests. Presence
/// subscriptions (`subscribe` with a `to`) are not the account's own and are left out.
fn on_presence(model: &mut Model, conn: u64, node: &Node) {
    let Some((phone, _)) = logged_in(model, conn) else {
        return;
    };
    let available = match attr(node, "type").as_deref() {
        None => None,
        Some("available") => Some(true),
        Some("unavailable") => Some(false),
        Some(_) => return,
    };
    model.presences.push((phone, attr(node, "name"), available));
}

/// A device's call signalling: a `<reject call-id=… call-creator=…>` declines a call that rang on
/// its account, recorded for the tests (the caller's phone is not simulated). WhatsApp answers
/// only with an ack.
fn on_call(model: &mut Model, conn: u64, node: &Node) {
    let Some((phone, _)) = logged_in(model, conn) else {
        return;
    };
    if let Some(reject) = node.get_optional_child("reject") {
        let caller = attr(node, "to").unwrap_or_default();
        if let Some(call_id) = attr(reject, "call-id") {
            model.rejected_calls.push((phone, call_id, caller));
        }
    }
    let ack = NodeBuilder::new("ack")
        .attr("class", "call")
        .attr("id", attr(node, "id").unwrap_or_default())
        .attr("from", attr(node, "to").unwrap_or_default())
        .build();
    model.send(conn, ack);
}

/// A device's `<ack>` of a stanza the server sent it (a receipt, a message, a notification).
fn on_ack(model: &mut Model, conn: u64, node: &Node) {
    let Some(device) = logged_in(model, conn) else {
        return;
    };
    let id = attr(node, "id").unwrap_or_default();
    match attr(node, "class").as_deref() {
        Some("receipt") => model.acknowledged(&device, Class::Receipt, &id, attr(node, "type").as_deref()),
        Some("message") => {
            // An ack takes a message as it is; for one that carries plaintext (a newsletter
            // post) that is all a device answers. A nack (`error`) refuses it.
            let plaintext = model.pending.get(&device).is_some_and(|list| {
                list.iter()
                    .any(|p| p.id == id && p.node.get_optional_child("plaintext").is_some())
            });
            if node.attrs.contains_key("error") {
                model.answers.insert(id.clone(), false);
            } else if plaintext {
                model.answers.insert(id.clone(), true);
            }
            model.acknowledged(&device, Class::Message, &id, None);
        }
        _ => {}
    }
}

/// The device on `conn` leaves passive mode: what it has not acknowledged is delivered (marked
/// `offline`), then `<ib><offline count=…/>` says the backlog is over.
fn activate(model: &mut Model, conn: u64, device: &(String, u16)) {
    if let Some(c) = model.conns.get_mut(&conn) {
        c.active = true;
    }
    let mut backlog = Vec::new();
    for pending in model.pending.get_mut(device).into_iter().flatten() {
        if pending.sent_on != Some(conn) {
            pending.sent_on = Some(conn);
            let mut stanza = pending.node.clone();
            stanza.attrs.insert("offline".into(), "1");
            backlog.push(stanza);
        }
    }
    let count = backlog.len();
    for stanza in backlog {
        model.send(conn, stanza);
    }
    let end = NodeBuilder::new("ib")
        .children([NodeBuilder::new("offline").attr("count", count.to_string()).build()])
        .build();
    model.send(conn, end);
}

fn handle_iq(model: &mut Model, conn: u64, node: &Node) {
    let kind = attr(node, "type").unwrap_or_default();
    if kind == "result" || kind == "error" {
        // Answers to the server's own IQs; pair-device acknowledgements have nobody waiting.
        if let Some(waiter) = attr(node, "id").and_then(|id| model.waiters.remove(&id)) {
            let _ = waiter.send(node.clone());
        }
        return;
    }
    let xmlns = attr(node, "xmlns").unwrap_or_default();
    let logged_in = logged_in(model, conn);
    let first = node
        .children()
        .and_then(|c| c.first())
        .map(|c| c.tag.clone())
        .unwrap_or_default();
    let answer = match (xmlns.as_str(), kind.as_str(), first.as_str(), &logged_in) {
        ("w:p", _, _, _) => {
            if let Some(c) = model.conns.get_mut(&conn) {
                c.pings += 1;
            }
            result(node, Vec::new())
        }
        ("usync", "get", _, Some(_)) => super::usync::answer(model, node),
        ("w:biz", "get", "business_profile", Some(_)) => super::business::answer(model, node),
        ("passive", "set", "active", Some(device)) => {
            let device = device.clone();
            model.send(conn, result(node, Vec::new()));
            return activate(model, conn, &device);
        }
        ("passive", "set", _, Some(_)) => {
            if let Some(c) = model.conns.get_mut(&conn) {
                c.active = false;
            }
            result(node, Vec::new())
        }
        ("encrypt", "get", "count", Some(device)) => {
            let count = model.devices.get(device).map_or(0, |d| d.registration.prekeys.len());
            result(
                node,
                vec![NodeBuilder::new("count").attr("value", count.to_string()).build()],
            )
        }
        ("encrypt", "set", _, Some(device)) => upload_prekeys(model, device, node),
        ("w:sync:app:state", "set", "sync", Some((phone, _))) => {
            let phone = phone.clone();
            super::appstate::answer_sync(model, &phone, node)
        }
        ("encrypt", "get", "digest", Some(device)) => super::startup::key_digest(model, device, node),
        ("abt", "get", "props", Some(_)) => super::startup::props(node),
        ("privacy", "get", "privacy", Some((phone, _))) => super::startup::privacy(model, phone, node),
        ("privacy", "set", "tokens", Some(_)) => super::startup::issue_tokens(node),
        ("blocklist", "get", _, Some(_)) => super::startup::blocklist(node),
        ("md", "set", "remove-companion-device", Some(device)) => {
            // The device unlinks itself (its own logout): it is forgotten, and answered.
            model.devices.remove(device);
            tracing::info!(phone = %device.0, device = device.1, "device unlinked itself");
            result(node, Vec::new())
        }
        _ => {
            tracing::debug!(%xmlns, %kind, %first, "IQ not modelled");
            error(node, 501, "feature-not-implemented")
        }
    };
    model.send(conn, answer);
}

/// Stores the one-time prekeys (and the signed prekey) a device uploads.
fn upload_prekeys(model: &mut Model, device: &(String, u16), node: &Node) -> Node {
    let Some(linked) = model.devices.get_mut(device) else {
        return error(node, 404, "item-not-found");
    };
    let be = |bytes: &[u8]| bytes.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b));
    if let Some(list) = node.get_optional_child("list") {
        for key in list.get_children_by_tag("key") {
            if let (Some(id), Some(value)) = (child_bytes(key, "id"), child_bytes(key, "value")) {
                linked.registration.prekeys.push((be(&id), value));
            }
        }
    }
    if let Some(skey) = node.get_optional_child("skey")
        && let (Some(id), Some(value), Some(signature)) = (
            child_bytes(skey, "id"),
            child_bytes(skey, "value"),
            child_bytes(skey, "signature"),
        )
    {
        linked.registration.signed_prekey = (be(&id), value, signature);
    }
    result(node, Vec::new())
}
