//! The client's requests (IQs) and what the server answers.

use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;

use super::model::{ConnState, Model};
use super::nodes::{attr, child_bytes, error, result};

/// Answers a node from connection `conn`.
pub(crate) fn handle(model: &mut Model, conn: u64, node: &Node) {
    match node.tag.as_str() {
        "iq" => handle_iq(model, conn, node),
        "receipt" => {
            let Some(ConnState::LoggedIn { phone, .. }) = model.conns.get(&conn).map(|c| &c.state) else {
                return;
            };
            let kind = attr(node, "type").unwrap_or_else(|| "delivery".into());
            let mut ids: Vec<String> = attr(node, "id").into_iter().collect();
            if let Some(list) = node.get_optional_child("list") {
                ids.extend(list.get_children_by_tag("item").filter_map(|i| attr(i, "id")));
            }
            let phone = phone.clone();
            for id in ids {
                model.receipts.push((phone.clone(), id, kind.clone()));
            }
        }
        // Presence, acks of what the server sent, unified-session pings: nothing to answer.
        _ => tracing::trace!(tag = %node.tag, "ignored"),
    }
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
    let logged_in = match model.conns.get(&conn).map(|c| &c.state) {
        Some(ConnState::LoggedIn { phone, device }) => Some((phone.clone(), *device)),
        _ => None,
    };
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
        ("passive", _, _, Some(device)) => {
            model.send(conn, result(node, Vec::new()));
            // Leaving passive mode starts delivery of what was queued while offline.
            let queued = model.offline.remove(device).unwrap_or_default();
            let count = queued.len();
            for mut stanza in queued {
                stanza.attrs.insert("offline".into(), "1");
                model.send(conn, stanza);
            }
            NodeBuilder::new("ib")
                .children([NodeBuilder::new("offline").attr("count", count.to_string()).build()])
                .build()
        }
        ("encrypt", "get", "count", Some(device)) => {
            let count = model.devices.get(device).map_or(0, |d| d.registration.prekeys.len());
            result(
                node,
                vec![NodeBuilder::new("count").attr("value", count.to_string()).build()],
            )
        }
        ("encrypt", "set", _, Some(device)) => upload_prekeys(model, device, node),
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
