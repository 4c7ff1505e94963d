//! One-to-one messages between linked devices and simulated phones, end-to-end encrypted with
//! Signal: prekey bundles, messages in both directions, server acks and receipts.

use std::sync::Arc;

use anyhow::Context;
use rand::Rng;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::{Node, NodeContent};
use wa_rs_libsignal::protocol::{DeviceId, ProtocolAddress};
use wa_rs_proto::whatsapp as wa;

use super::model::{Class, ConnState, Model, SentFile, SentMessage};
use super::nodes::{attr, now_secs, result};
use super::signal::bundle_node;
use super::{Network, bans};
use wafleet_core::link::Structured;

/// (number, device) of a JID in any of its forms (`601…@s.whatsapp.net`, `601…:2@…`, a LID).
pub(crate) fn resolve(model: &Model, jid: &str) -> Option<(String, u16)> {
    let (user, server) = jid.split_once('@')?;
    let (user, device) = user.split_once(':').unwrap_or((user, "0"));
    let user = user.split('.').next()?;
    let device = device.parse().ok()?;
    if server == "lid" {
        let phone = model.accounts.iter().find(|(_, a)| a.lid == user)?.0.clone();
        return Some((phone, device));
    }
    Some((user.to_owned(), device))
}

/// The signal address a phone uses for a peer device.
fn address(phone: &str, device: u16) -> ProtocolAddress {
    ProtocolAddress::new(phone.to_owned(), DeviceId::from(u32::from(device)))
}

/// Answers a prekey fetch (`<key><user jid=…/>…</key>`) with each device's bundle: a phone's from
/// its own keys, a linked device's from what it registered and uploaded.
pub(crate) async fn fetch_prekeys(net: &Arc<Network>, conn: u64, request: &Node) {
    let users: Vec<String> = request
        .get_optional_child("key")
        .map(|key| key.get_children_by_tag("user").filter_map(|u| attr(u, "jid")).collect())
        .unwrap_or_default();
    let mut answers = Vec::new();
    for jid in users {
        let (phone_signal, linked) = {
            let mut model = net.lock();
            match resolve(&model, &jid) {
                Some((phone, 0)) => (model.accounts.get(&phone).map(|a| Arc::clone(&a.signal)), None),
                Some(key) => (
                    None,
                    model.devices.get_mut(&key).map(|d| {
                        let r = &mut d.registration;
                        let prekey = r.prekeys.pop();
                        let (id, ref key, ref sig) = r.signed_prekey;
                        let prekey = prekey.as_ref().map(|(id, k)| (*id, k.as_slice()));
                        bundle_node(&jid, r.registration_id, &r.identity, prekey, (id, key, sig))
                    }),
                ),
                None => (None, None),
            }
        };
        let answer = match (phone_signal, linked) {
            (Some(signal), _) => signal.lock().await.bundle_node(&jid).ok(),
            (None, linked) => linked,
        };
        answers.push(answer.unwrap_or_else(|| {
            NodeBuilder::new("user")
                .attr("jid", jid)
                .children([NodeBuilder::new("error")
                    .attr("code", "404")
                    .attr("text", "item-not-found")
                    .build()])
                .build()
        }));
    }
    let list = NodeBuilder::new("list").children(answers).build();
    net.lock().send(conn, result(request, vec![list]));
}

/// A message a linked device sends: every copy addressed to a phone is decrypted by that phone,
/// the server acknowledges it, and the recipient's phone reports delivery and then reading.
pub(crate) async fn on_message(net: &Arc<Network>, conn: u64, node: &Node) {
    let (sender, copies) = {
        let model = net.lock();
        let Some(ConnState::LoggedIn { phone, device }) = model.conns.get(&conn).map(|c| &c.state) else {
            return;
        };
        let copies: Vec<_> = copies(node)
            .into_iter()
            .filter_map(|(jid, kind, bytes)| {
                let (to_phone, to_device) = resolve(&model, &jid)?;
                let signal = model.accounts.get(&to_phone).map(|a| Arc::clone(&a.signal))?;
                (to_device == 0).then_some((to_phone, signal, kind, bytes))
            })
            .collect();
        ((phone.clone(), *device), copies)
    };
    let id = attr(node, "id").unwrap_or_default();
    let to = attr(node, "to").unwrap_or_default();
    let refused = {
        let mut model = net.lock();
        match personal(&model, &to).filter(|r| *r != sender.0) {
            // No privacy token for a new chat.
            Some(phone) if model.refuses_463.contains(&phone) => Some("463"),
            Some(phone) => bans::refusal(&mut model, &net.config.ban, &sender.0, &phone),
            None => None,
        }
    };
    if let Some(code) = refused {
        // The network refuses the message: nobody gets it.
        tracing::info!(%id, %to, code, "message refused");
        let nack = NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id)
            .attr("from", to)
            .attr("t", now_secs().to_string())
            .attr("error", code)
            .build();
        return net.lock().send(conn, nack);
    }
    let from = address(&sender.0, sender.1);
    for (to_phone, signal, kind, bytes) in copies {
        let decrypted = signal.lock().await.decrypt(&from, &kind, &bytes).await;
        match decrypted {
            // The account's own phone gets a copy of everything its devices send.
            Ok(_) if to_phone == sender.0 => {}
            Ok(message) => {
                let (kind, text, target) = content(&message);
                net.lock().sent.push(SentMessage {
                    id: id.clone(),
                    from: sender.0.clone(),
                    to: to_phone.clone(),
                    kind,
                    text,
                    target,
                    media: sent_file(&message),
                    structured: structured_of(&message),
                    forwarded: forwarded(&message),
                });
                tokio::spawn(receipts(Arc::clone(net), sender.clone(), to_phone, id.clone()));
            }
            Err(err) => tracing::warn!(error = %format!("{err:#}"), %id, "a copy does not decrypt"),
        }
    }
    let ack = NodeBuilder::new("ack")
        .attr("class", "message")
        .attr("id", id)
        .attr("from", to.clone())
        .attr("t", now_secs().to_string())
        .build();
    let mut model = net.lock();
    model.send(conn, ack);
    // Judged once the network took it: the message that crosses the line still goes out.
    if let Some(recipient) = personal(&model, &to).filter(|r| *r != sender.0) {
        bans::record_send(&mut model, &net.config.ban, &sender.0, &recipient);
    }
}

/// The number of a personal chat's JID (a phone number's or a LID's); `None` for groups,
/// broadcasts, newsletters and the like.
fn personal(model: &Model, jid: &str) -> Option<String> {
    let server = jid.rsplit_once('@')?.1;
    matches!(server, "s.whatsapp.net" | "lid")
        .then(|| resolve(model, jid))
        .flatten()
        .map(|(phone, _)| phone)
}

/// The `(recipient jid, enc type, ciphertext)` of every copy in a message stanza.
fn copies(node: &Node) -> Vec<(String, String, Vec<u8>)> {
    let enc = |holder: &Node, jid: String| {
        let e = holder.get_optional_child("enc")?;
        match &e.content {
            Some(NodeContent::Bytes(b)) => Some((jid, attr(e, "type").unwrap_or_default(), b.clone())),
            _ => None,
        }
    };
    match node.get_optional_child("participants") {
        Some(participants) => participants
            .get_children_by_tag("to")
            .filter_map(|to| enc(to, attr(to, "jid")?))
            .collect(),
        None => enc(node, attr(node, "to").unwrap_or_default()).into_iter().collect(),
    }
}

/// Kind, text and the message acted on (for reactions, deletions for everyone and edits) of a
/// message's content; a disappearing-messages timer's text is its seconds.
fn content(message: &wa::Message) -> (String, Option<String>, Option<String>) {
    let target = |key: &Option<wa::MessageKey>| key.as_ref().and_then(|k| k.id.clone());
    if let Some(text) = &message.conversation {
        ("text".into(), Some(text.clone()), None)
    } else if let Some(extended) = &message.extended_text_message {
        ("text".into(), extended.text.clone(), None)
    } else if let Some(image) = &message.image_message {
        ("image".into(), image.caption.clone(), None)
    } else if let Some(video) = &message.video_message {
        ("video".into(), video.caption.clone(), None)
    } else if message.audio_message.is_some() {
        ("audio".into(), None, None)
    } else if let Some(document) = &message.document_message {
        ("document".into(), document.caption.clone(), None)
    } else if message.sticker_message.is_some() {
        ("sticker".into(), None, None)
    } else if let Some(card) = &message.contact_message {
        ("contact".into(), card.display_name.clone(), None)
    } else if message.location_message.is_some() {
        ("location".into(), None, None)
    } else if let Some(poll) = message
        .poll_creation_message
        .as_deref()
        .or(message.poll_creation_message_v3.as_deref())
    {
        ("poll".into(), poll.name.clone(), None)
    } else if let Some(reaction) = &message.reaction_message {
        ("reaction".into(), reaction.text.clone(), target(&reaction.key))
    } else if let Some(protocol) = message.protocol_message.as_deref().filter(|p| p.r#type == Some(0)) {
        // Type 0 is REVOKE: a deletion for everyone.
        ("revoke".into(), None, target(&protocol.key))
    } else if let Some(protocol) = message.protocol_message.as_deref().filter(|p| p.r#type == Some(3)) {
        // Type 3 is EPHEMERAL_SETTING: the chat's disappearing-messages timer, in seconds.
        let seconds = protocol.ephemeral_expiration.unwrap_or_default();
        ("disappearing".into(), Some(seconds.to_string()), None)
    } else if let Some(protocol) = message.protocol_message.as_deref().filter(|p| p.r#type == Some(14)) {
        // Type 14 is MESSAGE_EDIT: the new content replaces the message the key names.
        let text = protocol.edited_message.as_deref().and_then(|m| content(m).1);
        ("edit".into(), text, target(&protocol.key))
    } else {
        ("other".into(), None, None)
    }
}

/// Whether a message is marked "Forwarded": its content's context says so.
fn forwarded(message: &wa::Message) -> bool {
    macro_rules! context {
        ($($field:ident),*) => {
            [$(message.$field.as_deref().and_then(|m| m.context_info.as_deref())),*]
        };
    }
    context!(
        extended_text_message,
        image_message,
        video_message,
        audio_message,
        document_message,
        sticker_message,
        contact_message,
        location_message
    )
    .into_iter()
    .flatten()
    .any(|context| context.is_forwarded == Some(true))
}

/// The contact card, location, link or poll a message is, if it is one.
fn structured_of(message: &wa::Message) -> Option<Structured> {
    if let Some(card) = &message.contact_message {
        return Some(Structured::Contact {
            name: card.display_name.clone()?,
            phone: Structured::vcard_phone(card.vcard.as_deref()?)?,
        });
    }
    if let Some(place) = &message.location_message {
        return Some(Structured::Location {
            latitude: place.degrees_latitude?,
            longitude: place.degrees_longitude?,
        });
    }
    if let Some(poll) = message
        .poll_creation_message
        .as_deref()
        .or(message.poll_creation_message_v3.as_deref())
    {
        return Some(Structured::Poll {
            question: poll.name.clone()?,
            options: poll.options.iter().filter_map(|o| o.option_name.clone()).collect(),
            selectable: poll.selectable_options_count?,
        });
    }
    let text = message.extended_text_message.as_deref()?;
    let url = text.matched_text.clone()?;
    let caption = text
        .text
        .as_deref()
        .and_then(|t| t.strip_suffix(url.as_str()))
        .map(|c| c.trim_end_matches('\n').to_owned())
        .filter(|c| !c.is_empty());
    Some(Structured::Link { url, caption })
}

/// The file a message points at, if it carries one.
fn sent_file(message: &wa::Message) -> Option<SentFile> {
    use wafleet_core::link::MessageKind;
    macro_rules! sent_file {
        ($kind:expr, $m:expr $(, $name:ident)?) => {
            $m.as_deref().map(|m| SentFile {
                kind: $kind,
                direct_path: m.direct_path.clone(),
                media_key: m.media_key.clone(),
                mime: m.mimetype.clone(),
                file_name: None $(.or(m.$name.clone()))?,
                file_length: m.file_length,
            })
        };
    }
    sent_file!(MessageKind::Image, message.image_message)
        .or_else(|| sent_file!(MessageKind::Video, message.video_message))
        .or_else(|| sent_file!(MessageKind::Audio, message.audio_message))
        .or_else(|| sent_file!(MessageKind::Document, message.document_message, file_name))
        .or_else(|| sent_file!(MessageKind::Sticker, message.sticker_message))
}

/// The recipient's phone reports delivery, then reading, of `id` to the sender's device.
async fn receipts(net: Arc<Network>, sender: (String, u16), recipient: String, id: String) {
    for (delay, kind) in [
        (net.config.delivered_after, None),
        (net.config.read_after, Some("read")),
    ] {
        tokio::time::sleep(delay).await;
        let mut receipt = NodeBuilder::new("receipt")
            .attr("from", format!("{recipient}@s.whatsapp.net"))
            .attr("id", id.clone())
            .attr("t", now_secs().to_string());
        if let Some(kind) = kind {
            receipt = receipt.attr("type", kind);
        }
        net.lock().deliver(&sender, Class::Receipt, receipt.build());
    }
}

/// The phone of `from` sends `message` to every linked device of `to`; returns its id.
pub(crate) async fn phone_sends(
    net: &Arc<Network>,
    from: &str,
    to: &str,
    message: wa::Message,
) -> anyhow::Result<String> {
    bans::record_incoming(&mut net.lock(), to, from);
    let devices = devices_of(net, to)?;
    phone_sends_to(net, from, to, &devices, message).await
}

/// The linked devices of `phone`; an error when it has none.
pub(crate) fn devices_of(net: &Arc<Network>, phone: &str) -> anyhow::Result<Vec<u16>> {
    let devices = net.lock().linked_devices(phone);
    (!devices.is_empty())
        .then_some(devices)
        .with_context(|| format!("{phone} has no linked device"))
}

/// The phone of `from` sends `message` to the linked devices `devices` of `to`; returns its id.
pub(crate) async fn phone_sends_to(
    net: &Arc<Network>,
    from: &str,
    to: &str,
    devices: &[u16],
    message: wa::Message,
) -> anyhow::Result<String> {
    let kind = if message.image_message.is_some()
        || message.video_message.is_some()
        || message.audio_message.is_some()
        || message.document_message.is_some()
        || message.sticker_message.is_some()
    {
        "media"
    } else {
        "text"
    };
    let stanza = Stanza {
        chat: format!("{from}@s.whatsapp.net"),
        participant: None,
        sender_pn: None,
        id: message_id(),
        kind,
        shared: None,
    };
    fan_out(net, from, to, devices, &stanza, &message).await?;
    Ok(stanza.id)
}

/// A fresh message id, as phones choose them.
pub(crate) fn message_id() -> String {
    let bytes: [u8; 8] = rand::rng().random();
    format!("3EB0{}", bytes.iter().map(|b| format!("{b:02X}")).collect::<String>())
}

/// How a phone's message is addressed to each device, besides its pairwise part.
pub(crate) struct Stanza {
    /// `from`: the chat (the phone's own JID in a personal chat).
    pub chat: String,
    /// `participant`: the phone, in a chat that is not its own (groups, broadcasts).
    pub participant: Option<String>,
    /// `sender_pn`: the phone's number beside a `chat` that is its LID, when WhatsApp gives it.
    pub sender_pn: Option<String>,
    /// The message id.
    pub id: String,
    /// `text` or `media`.
    pub kind: &'static str,
    /// An `<enc>` every device gets after its pairwise one (a sender-key `skmsg`).
    pub shared: Option<Node>,
}

/// The phone of `from` sends `stanza` to the linked devices `devices` of `to`, with `pairwise`
/// encrypted for each device in its own Signal session.
pub(crate) async fn fan_out(
    net: &Arc<Network>,
    from: &str,
    to: &str,
    devices: &[u16],
    stanza: &Stanza,
    pairwise: &wa::Message,
) -> anyhow::Result<()> {
    let signal = {
        let mut model = net.lock();
        Arc::clone(&model.account(from).signal)
    };
    for &device in devices {
        let mut phone = signal.lock().await;
        let mut registration = {
            let model = net.lock();
            model
                .devices
                .get(&(to.to_owned(), device))
                .context("the device went away")?
                .registration
                .clone()
        };
        let enc = phone.encrypt(&address(to, device), &mut registration, pairwise).await?;
        drop(phone);
        let mut node = NodeBuilder::new("message")
            .attr("from", stanza.chat.clone())
            .attr("id", stanza.id.clone())
            .attr("type", stanza.kind)
            .attr("t", now_secs().to_string())
            .attr("notify", format!("Sim {from}"));
        if let Some(participant) = &stanza.participant {
            node = node.attr("participant", participant.clone());
        }
        if let Some(number) = &stanza.sender_pn {
            node = node.attr("sender_pn", number.clone());
        }
        let node = node.children([enc].into_iter().chain(stanza.shared.clone())).build();
        let mut model = net.lock();
        // A one-time prekey used for the session is gone from the server.
        if let Some(linked) = model.devices.get_mut(&(to.to_owned(), device)) {
            linked.registration.prekeys = registration.prekeys;
        }
        model.deliver(&(to.to_owned(), device), Class::Message, node);
    }
    Ok(())
}
