//! History sync, as the phone does it: right after a companion links, the phone pushes it the
//! account's recent chats ([`crate::history::recent`]) and the phone-number/LID mappings of their
//! contacts; later it may push a chunk with mappings alone (non-blocking data). Each chunk is a
//! zlib-compressed `HistorySync`, encrypted and uploaded to the media host, and announced in a
//! `HISTORY_SYNC_NOTIFICATION` the phone sends its companion; the companion downloads it and
//! answers with a `hist_sync` receipt.

use std::io::Write as _;
use std::sync::Arc;

use prost::Message as _;
use wa_rs_proto::whatsapp as wa;
use wa_rs_proto::whatsapp::history_sync::HistorySyncType;
use wafleet_core::link::IncomingMessage;

use super::Network;
use super::chat::phone_sends_to;

/// Pushes the account's recent chats to `device` of `phone`, just linked; nothing when the front
/// end keeps no history ([`super::WaWebConfig::history_chats`]).
pub(crate) async fn on_link(net: &Arc<Network>, phone: &str, device: u16) {
    let chats = net.config.history_chats;
    if chats == 0 {
        return;
    }
    let mappings = {
        let mut model = net.lock();
        (0..chats)
            .map(|i| {
                let contact = crate::history::contact(i);
                mapping(&contact, &model.account(&contact).lid)
            })
            .collect()
    };
    let sync = wa::HistorySync {
        sync_type: HistorySyncType::InitialBootstrap as i32,
        conversations: conversations(&crate::history::recent(phone, chats)),
        phone_number_to_lid_mappings: mappings,
        chunk_order: Some(1),
        progress: Some(100),
        ..Default::default()
    };
    if let Err(err) = push(net, phone, &[device], &sync).await {
        tracing::warn!(error = %format!("{err:#}"), %phone, device, "pushing history failed");
    }
}

/// The phone of `phone` tells its linked devices that the LID of `contact` (digits) is that
/// number, in a chunk of non-blocking data carrying only the mapping.
pub(crate) async fn reveal(net: &Arc<Network>, phone: &str, contact: &str) -> anyhow::Result<()> {
    let devices = super::chat::devices_of(net, phone)?;
    let mapping = mapping(contact, &net.lock().account(contact).lid);
    let sync = wa::HistorySync {
        sync_type: HistorySyncType::NonBlockingData as i32,
        phone_number_to_lid_mappings: vec![mapping],
        ..Default::default()
    };
    push(net, phone, &devices, &sync).await
}

fn mapping(contact: &str, lid: &str) -> wa::PhoneNumberToLidMapping {
    wa::PhoneNumberToLidMapping {
        pn_jid: Some(format!("{contact}@s.whatsapp.net")),
        lid_jid: Some(format!("{lid}@lid")),
    }
}

/// `lines` as the conversations of a history chunk, in the order their chats first appear.
fn conversations(lines: &[IncomingMessage]) -> Vec<wa::Conversation> {
    let mut conversations: Vec<wa::Conversation> = Vec::new();
    for line in lines {
        let message = wa::WebMessageInfo {
            key: wa::MessageKey {
                remote_jid: Some(line.chat.0.clone()),
                from_me: Some(line.from_me),
                id: Some(line.id.clone()),
                // In a group, who wrote it.
                participant: (!line.chat.is_personal()).then(|| line.sender.0.clone()),
            },
            message: Some(wa::Message {
                conversation: line.text.clone(),
                ..Default::default()
            }),
            message_timestamp: u64::try_from(line.sent_at.millis() / 1000).ok(),
            push_name: line.push_name.clone(),
            ..Default::default()
        };
        let entry = wa::HistorySyncMsg {
            message: Some(message),
            msg_order_id: None,
        };
        match conversations.iter_mut().find(|c| c.id == line.chat.0) {
            Some(conversation) => conversation.messages.push(entry),
            None => conversations.push(wa::Conversation {
                id: line.chat.0.clone(),
                messages: vec![entry],
                ..Default::default()
            }),
        }
    }
    conversations
}

/// Compresses, encrypts and uploads `sync`, and announces it to `devices` of `phone`.
async fn push(net: &Arc<Network>, phone: &str, devices: &[u16], sync: &wa::HistorySync) -> anyhow::Result<()> {
    use wa::message::protocol_message::Type;
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&sync.encode_to_vec())?;
    let compressed = zlib.finish()?;
    let encrypted = wa_rs_core::upload::encrypt_media(&compressed, wa_rs_core::download::MediaType::History)?;
    let notification = wa::message::HistorySyncNotification {
        file_sha256: Some(encrypted.file_sha256.to_vec()),
        file_length: Some(compressed.len() as u64),
        media_key: Some(encrypted.media_key.to_vec()),
        file_enc_sha256: Some(encrypted.file_enc_sha256.to_vec()),
        direct_path: Some(net.media.put(encrypted.data_to_upload)),
        sync_type: Some(sync.sync_type),
        chunk_order: sync.chunk_order,
        progress: sync.progress,
        ..Default::default()
    };
    let message = wa::Message {
        protocol_message: Some(Box::new(wa::message::ProtocolMessage {
            r#type: Some(Type::HistorySyncNotification as i32),
            history_sync_notification: Some(notification),
            ..Default::default()
        })),
        ..Default::default()
    };
    phone_sends_to(net, phone, phone, devices, message).await?;
    Ok(())
}
