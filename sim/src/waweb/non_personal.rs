//! Messages in chats that are not personal, sent to linked devices as WhatsApp sends them: a
//! group's (`…@g.us`) and a status update (`status@broadcast`) encrypted once with the sending
//! phone's sender key (`skmsg`), beside a pairwise message to each device that shares the key;
//! a broadcast list's (`…@broadcast`) encrypted pairwise; a newsletter's (`…@newsletter`) in
//! plaintext, as channels are not end-to-end encrypted. The sending phone is the `participant`
//! of the first three. Personal messages addressed by LID, from a phone whose number the
//! recipient may not know, go out here too.

use std::sync::Arc;

use prost::Message as _;
use rand::Rng;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_proto::whatsapp as wa;

use super::Network;
use super::chat::{Stanza, devices_of, fan_out, message_id, phone_sends};
use super::model::Class;
use super::nodes::now_secs;
use crate::control::ChatKind;

/// The phone of `from` writes `text` in a chat of kind `chat` that the account of `to` is in,
/// and the network delivers it to every linked device of `to`; returns the message id.
pub(crate) async fn phone_writes_in(
    net: &Arc<Network>,
    chat: ChatKind,
    from: &str,
    to: &str,
    text: &str,
) -> anyhow::Result<String> {
    let content = wa::Message {
        conversation: Some(text.to_owned()),
        ..Default::default()
    };
    let jid = match chat {
        ChatKind::Personal => return phone_sends(net, from, to, content).await,
        ChatKind::Newsletter => return newsletter(net, from, to, &content),
        ChatKind::Group => format!("120363{from}@g.us"),
        ChatKind::Broadcast => format!(
            "{}@broadcast",
            rand::rng().random_range(1_000_000_000u64..10_000_000_000)
        ),
        ChatKind::Status => "status@broadcast".to_owned(),
        ChatKind::Lid | ChatKind::LidWithNumber => return from_lid(net, chat, from, to, &content).await,
    };
    let devices = devices_of(net, to)?;
    let mut stanza = Stanza {
        chat: jid,
        participant: Some(format!("{from}@s.whatsapp.net")),
        sender_pn: None,
        id: message_id(),
        kind: "text",
        shared: None,
    };
    // A broadcast list is a set of personal chats: each copy is encrypted pairwise.
    let pairwise = if chat == ChatKind::Broadcast {
        content
    } else {
        let signal = Arc::clone(&net.lock().account(from).signal);
        let mut phone = signal.lock().await;
        let distribution = phone.sender_keys.distribution(&stanza.chat).await?;
        stanza.shared = Some(phone.sender_keys.encrypt(&stanza.chat, &content).await?);
        distribution
    };
    fan_out(net, from, to, &devices, &stanza, &pairwise).await?;
    Ok(stanza.id)
}

/// The phone of `from` writes in its personal chat with `to` addressed by its LID, as WhatsApp
/// now addresses many contacts: the number hidden (`ChatKind::Lid`), or given beside it as the
/// sender's other address (`sender_pn`, `ChatKind::LidWithNumber`). The pairwise session is the
/// phone's one with each device: the client keeps it under the LID.
async fn from_lid(
    net: &Arc<Network>,
    chat: ChatKind,
    from: &str,
    to: &str,
    content: &wa::Message,
) -> anyhow::Result<String> {
    let devices = devices_of(net, to)?;
    let lid = {
        let mut model = net.lock();
        super::bans::record_incoming(&mut model, to, from);
        model.account(from).lid.clone()
    };
    let stanza = Stanza {
        chat: format!("{lid}@lid"),
        participant: None,
        sender_pn: (chat == ChatKind::LidWithNumber).then(|| format!("{from}@s.whatsapp.net")),
        id: message_id(),
        kind: "text",
        shared: None,
    };
    fan_out(net, from, to, &devices, &stanza, content).await?;
    Ok(stanza.id)
}

/// A post of the newsletter run by `from`, which the account of `to` follows.
fn newsletter(net: &Arc<Network>, from: &str, to: &str, content: &wa::Message) -> anyhow::Result<String> {
    let devices = devices_of(net, to)?;
    let id = message_id();
    let mut model = net.lock();
    model.next_id += 1;
    // Channel posts are numbered by the server (`server_id`, from 100).
    let server_id = 100 + model.next_id;
    let stanza = NodeBuilder::new("message")
        .attr("from", format!("120363{from}@newsletter"))
        .attr("id", id.clone())
        .attr("server_id", server_id.to_string())
        .attr("type", "text")
        .attr("t", now_secs().to_string())
        .children([NodeBuilder::new("plaintext").bytes(content.encode_to_vec()).build()])
        .build();
    for device in devices {
        model.deliver(&(to.to_owned(), device), Class::Message, stanza.clone());
    }
    Ok(id)
}
