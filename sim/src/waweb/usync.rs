//! User sync (`usync`) queries: which numbers are on WhatsApp (`<contact>`), which devices an
//! account has (`<devices>`), which senders need before encrypting to each of them, and what its
//! profile shows (`<status>`, `<picture>`, `<business>`).

use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::{Node, NodeContent};

use super::model::Model;
use super::nodes::{attr, error, result};

/// Answers a usync query for every user in its list.
pub(crate) fn answer(model: &Model, request: &Node) -> Node {
    let Some(usync) = request.get_optional_child("usync") else {
        return error(request, 400, "bad-request");
    };
    let wants = |tag: &str| {
        usync
            .get_optional_child("query")
            .is_some_and(|q| q.get_optional_child(tag).is_some())
    };
    let (contact, devices, lid) = (wants("contact"), wants("devices"), wants("lid"));
    let (status, picture, business) = (wants("status"), wants("picture"), wants("business"));
    let users = usync
        .get_optional_child("list")
        .map(|list| list.get_children_by_tag("user").cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut answered = Vec::new();
    for user in &users {
        let Some(phone) = user_phone(model, user) else {
            continue;
        };
        let account = model.accounts.get(&phone);
        let mut children = Vec::new();
        if contact {
            let kind = if account.is_some() { "in" } else { "out" };
            children.push(NodeBuilder::new("contact").attr("type", kind).build());
        }
        if devices && account.is_some() {
            children.push(device_list(model, &phone));
        }
        // The account's linked identity: clients address its devices by it.
        if lid && let Some(account) = account {
            children.push(
                NodeBuilder::new("lid")
                    .attr("val", format!("{}@lid", account.lid))
                    .build(),
            );
        }
        if let Some(account) = account {
            let profile = &account.profile;
            if status {
                let mut node = NodeBuilder::new("status");
                // As bytes: a string that looks like a JID (an email address) would be packed as one.
                if let Some(about) = &profile.about {
                    node = node.bytes(about.as_bytes().to_vec());
                }
                children.push(node.build());
            }
            // No picture, or not a business: the element is left out, as WhatsApp's servers
            // answer an error for that protocol alone.
            if picture && let Some(id) = &profile.picture_id {
                children.push(NodeBuilder::new("picture").attr("id", id.clone()).build());
            }
            if business && let Some(name) = &profile.business_name {
                let verified = NodeBuilder::new("verified_name").attr("name", name.clone()).build();
                children.push(NodeBuilder::new("business").children([verified]).build());
            }
        }
        // A user asked about by LID is answered under that LID.
        let jid = attr(user, "jid")
            .filter(|jid| jid.ends_with("@lid"))
            .unwrap_or_else(|| format!("{phone}@s.whatsapp.net"));
        answered.push(NodeBuilder::new("user").attr("jid", jid).children(children).build());
    }
    let list = NodeBuilder::new("list").children(answered).build();
    let mut usync_out = NodeBuilder::new("usync").children([list]);
    if let Some(sid) = attr(usync, "sid") {
        usync_out = usync_out.attr("sid", sid);
    }
    result(request, vec![usync_out.build()])
}

/// The number a `<user>` asks about: its `jid` attribute (a number's or a LID), or its
/// `<contact>` text (`+6012…`).
fn user_phone(model: &Model, user: &Node) -> Option<String> {
    if let Some(jid) = attr(user, "jid") {
        return super::chat::resolve(model, &jid).map(|(phone, _)| phone);
    }
    let contact = user.get_optional_child("contact")?;
    let text = match &contact.content {
        Some(NodeContent::String(s)) => s.clone(),
        Some(NodeContent::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => return None,
    };
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// `<devices><device-list>`: the phone (device 0) and its linked companions.
fn device_list(model: &Model, phone: &str) -> Node {
    let mut ids = model.linked_devices(phone);
    ids.push(0);
    ids.sort_unstable();
    let devices = ids
        .into_iter()
        .map(|id| NodeBuilder::new("device").attr("id", id.to_string()).build());
    NodeBuilder::new("devices")
        .children([NodeBuilder::new("device-list").children(devices).build()])
        .build()
}
