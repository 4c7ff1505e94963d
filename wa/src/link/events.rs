//! The client's events → [`LinkEvent`]s, in order, personal chats only.

use std::sync::Arc;

use tokio::sync::mpsc;
use wafleet_core::link::{Ack, IncomingCall, IncomingMessage, Jid, LinkEvent, MessageKind, ReceiptKind};
use wafleet_core::types::{DeviceId, Timestamp};
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::wacore::types::call::CallAction;
use whatsapp_rust::wacore::types::events::{ConnectFailureReason, Event, EventHandler, Receipt};
use whatsapp_rust::wacore::types::message::MessageInfo;
use whatsapp_rust::wacore::types::presence::ReceiptType;
use whatsapp_rust::waproto::whatsapp as wa;

use super::acks::SendAcks;

/// What a client event means for wafleet; `None` for events wafleet does not act on (presence,
/// app-state updates other than saved contacts, history sync (see [`map_history`]), …) and for
/// anything outside personal chats: groups, broadcast lists, status updates and newsletters
/// never become events. Incoming messages reach
/// wafleet through the durability hook ([`super::hook`]), not through here: those the hook did
/// not see (newsletters, recovered placeholders) are not personal messages wafleet stores. So do
/// receipts ([`map_receipt`]).
pub fn map_event(event: &Event) -> Option<LinkEvent> {
    Some(match event {
        Event::PairingQrCode(qr) => LinkEvent::QrCode {
            code: qr.code.clone(),
            valid_for: qr.timeout,
        },
        Event::PairingCode(code) => LinkEvent::PairCode {
            code: dashed(&code.code),
        },
        // The account's JID, as the other link reports it: without this companion's device id.
        Event::PairSuccess(success) => LinkEvent::PairSuccess {
            jid: Jid(success.id.to_non_ad().to_string()),
        },
        Event::PairError(error) => LinkEvent::PairError {
            reason: error.error.clone(),
        },
        Event::PairingCodeError(error) => LinkEvent::PairError {
            reason: format!("WhatsApp refused the pair code: {}", error.error),
        },
        Event::PairingQrCodesExhausted(_) => LinkEvent::PairError {
            reason: "no QR code was scanned in time".into(),
        },
        Event::QrScannedWithoutMultidevice(_) => LinkEvent::PairError {
            reason: "the phone scanned the code but has multi-device disabled".into(),
        },
        Event::Connected(_) => LinkEvent::Connected,
        Event::Disconnected(disconnected) => LinkEvent::Disconnected {
            reason: format!("the connection to WhatsApp closed: {}", disconnected.reason),
        },
        Event::StreamReplaced(_) => LinkEvent::Disconnected {
            reason: "another connection of this device replaced this one".into(),
        },
        Event::StreamError(error) => LinkEvent::Disconnected {
            reason: format!("stream error {}", error.code),
        },
        Event::ClientOutdated(_) => LinkEvent::Disconnected {
            reason: "WhatsApp rejected the client version as outdated".into(),
        },
        Event::ConnectFailure(failure) => LinkEvent::Disconnected {
            reason: format!(
                "connect failure {} ({:?}): {}",
                failure.reason.code(),
                failure.reason,
                failure.message.as_deref().unwrap_or("no message")
            ),
        },
        Event::LoggedOut(logged_out) => LinkEvent::LoggedOut {
            reason: logout_reason(&logged_out.reason),
            banned: logged_out.reason == ConnectFailureReason::TempBanned,
        },
        // The client stops reconnecting after a ban: for wafleet the device is banned.
        Event::TemporaryBan(ban) => LinkEvent::LoggedOut {
            reason: format!(
                "banned by WhatsApp ({} {:?}), for {} s{}",
                ban.code.code(),
                ban.code,
                ban.expire.num_seconds(),
                ban.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
            banned: true,
        },
        // A contact saved in the phone's address book (app state): chats show that name. The
        // entry may name the person by LID with the number beside it: chats live under the
        // number when it is known.
        Event::ContactUpdate(update) => {
            let action = &update.action;
            let jid = match action.pn_jid.as_deref() {
                Some(pn) if update.jid.is_lid() && pn.ends_with("@s.whatsapp.net") => Jid(pn.to_owned()),
                _ => Jid(update.jid.to_non_ad().to_string()),
            };
            if !jid.is_personal() {
                return None;
            }
            LinkEvent::ContactName {
                jid,
                name: action
                    .full_name
                    .clone()
                    .or_else(|| action.first_name.clone())
                    .unwrap_or_default(),
                ack: Ack::none(),
            }
        }
        // A personal call ringing (not one replayed from the offline queue, which the client
        // reports as missed, and not a group call).
        Event::IncomingCall(call) => {
            let CallAction::Offer {
                call_id,
                is_video,
                group_jid: None,
                ..
            } = &call.action
            else {
                return None;
            };
            let from = Jid(call.from.to_string());
            if call.group.is_some() || !from.is_personal() {
                return None;
            }
            LinkEvent::Call {
                call: IncomingCall {
                    id: call_id.clone(),
                    from,
                    name: call.notify.clone(),
                    platform: call.platform.clone(),
                    version: call.version.clone(),
                    video: *is_video,
                    at: Timestamp(call.timestamp.timestamp_millis()),
                },
            }
        }
        _ => return None,
    })
}

/// A receipt from a personal chat as wafleet sees it, acknowledged to WhatsApp through `ack`;
/// `None` for receipts that say nothing about a recipient (other chats, our own devices' read
/// receipts, retries). Receipts reach wafleet through the durability hook ([`super::hook`]),
/// which holds their ack until they are stored.
pub fn map_receipt(receipt: &Receipt, ack: Ack) -> Option<LinkEvent> {
    let kind = match &receipt.r#type {
        ReceiptType::Delivered => ReceiptKind::Delivered,
        ReceiptType::Read | ReceiptType::Played => ReceiptKind::Read,
        _ => return None,
    };
    let chat = Jid(receipt.source.chat.to_non_ad().to_string());
    // Receipts from our own other devices (read-self) are not about the recipient.
    if receipt.source.is_from_me || !chat.is_personal() {
        return None;
    }
    Some(LinkEvent::Receipt {
        kind,
        chat,
        message_ids: receipt.message_ids.iter().map(ToString::to_string).collect(),
        at: Timestamp(receipt.timestamp.timestamp_millis()),
        ack,
    })
}

fn logout_reason(reason: &ConnectFailureReason) -> String {
    match reason {
        ConnectFailureReason::LoggedOut => "the device was unlinked (401)".into(),
        ConnectFailureReason::AccountLocked => "the account is locked by WhatsApp (403)".into(),
        other => format!("logged out ({}: {other:?})", other.code()),
    }
}

/// A personal-chat message as wafleet sees it, or `None` for other chats and for messages that
/// carry no content (protocol messages such as key shares or revocations).
pub fn map_message(message: &wa::Message, info: &MessageInfo) -> Option<IncomingMessage> {
    let chat = Jid(info.source.chat.to_non_ad().to_string());
    if info.source.is_group || !chat.is_personal() {
        return None;
    }
    let base = message.get_base_message();
    if base.protocol_message.is_set() || (base.sender_key_distribution_message.is_set() && !has_content(base)) {
        return None;
    }
    let (kind, text) = content(base);
    Some(IncomingMessage {
        id: info.id.to_string(),
        chat,
        sender: Jid(info.source.sender.to_non_ad().to_string()),
        sender_alt: info
            .source
            .sender_alt
            .as_ref()
            .map(|alt| Jid(alt.to_non_ad().to_string())),
        from_me: info.source.is_from_me,
        push_name: Some(info.push_name.clone()).filter(|name| !name.is_empty()),
        kind,
        text,
        sent_at: Timestamp(info.timestamp.timestamp_millis()),
        // History reaches wafleet through `map_history`.
        history: false,
        media: super::received::locate(base),
    })
}

/// The personal messages of a history sync chunk (the recent chats the phone pushes to a newly
/// linked device), marked as history; groups, broadcasts and content-less protocol messages are
/// left out. `account` is the linked account's own JID, the sender of what it wrote; a chat kept
/// under a LID whose number the phone knows names it as the contact's other address.
pub fn map_history(sync: &wa::HistorySync, account: Option<&Jid>) -> Vec<IncomingMessage> {
    let mut messages = Vec::new();
    for conversation in &sync.conversations {
        let chat = Jid(conversation.id.clone());
        if !chat.is_personal() {
            continue;
        }
        let number = conversation
            .pn_jid
            .as_deref()
            .filter(|pn| chat.is_lid() && pn.ends_with("@s.whatsapp.net"))
            .map(|pn| Jid(pn.to_owned()));
        for entry in &conversation.messages {
            let Some(info) = entry.message.as_option() else {
                continue;
            };
            let (Some(message), Some(key), Some(secs)) =
                (info.message.as_option(), info.key.as_option(), info.message_timestamp)
            else {
                continue;
            };
            let Some(id) = key.id.clone() else {
                continue;
            };
            let base = message.get_base_message();
            if base.protocol_message.is_set() || !has_content(base) {
                continue;
            }
            let from_me = key.from_me.unwrap_or(false);
            let (kind, text) = content(base);
            messages.push(IncomingMessage {
                id,
                sender: match account {
                    Some(account) if from_me => account.clone(),
                    _ => chat.clone(),
                },
                sender_alt: number.clone().filter(|_| !from_me),
                chat: chat.clone(),
                from_me,
                push_name: info.push_name.clone().filter(|name| !name.is_empty() && !from_me),
                kind,
                text,
                sent_at: Timestamp(i64::try_from(secs).unwrap_or_default().saturating_mul(1000)),
                history: true,
                media: super::received::locate(base),
            });
        }
    }
    messages
}

fn has_content(message: &wa::Message) -> bool {
    content(message).0 != MessageKind::Other
}

/// Kind and text (or caption) of a message's content.
fn content(m: &wa::Message) -> (MessageKind, Option<String>) {
    if let Some(text) = &m.conversation {
        (MessageKind::Text, Some(text.clone()))
    } else if let Some(extended) = m.extended_text_message.as_option() {
        (MessageKind::Text, extended.text.clone())
    } else if let Some(image) = m.image_message.as_option() {
        (MessageKind::Image, image.caption.clone())
    } else if let Some(video) = m.video_message.as_option() {
        (MessageKind::Video, video.caption.clone())
    } else if m.audio_message.is_set() {
        (MessageKind::Audio, None)
    } else if let Some(document) = m.document_message.as_option() {
        (MessageKind::Document, document.caption.clone())
    } else if m.sticker_message.is_set() {
        (MessageKind::Sticker, None)
    } else {
        (MessageKind::Other, None)
    }
}

/// Receives the client's events synchronously, in dispatch order (`with_event_handler` handlers
/// run inline on the dispatch path), and queues the mapped ones without blocking the client's
/// reader. Server acks of sent messages go to the sends waiting for them.
pub(crate) struct Forwarder {
    /// The device, for logs.
    pub device: DeviceId,
    /// Unbounded so that dispatch never blocks; [`pump`] applies the session's bound.
    pub queue: mpsc::UnboundedSender<LinkEvent>,
    /// Sends waiting for WhatsApp's answer.
    pub acks: SendAcks,
    /// The linked account's JID: stored for a device that resumes, learned when one links.
    pub account: Arc<std::sync::Mutex<Option<Jid>>>,
}

impl EventHandler for Forwarder {
    fn handle_event(&self, event: Arc<Event>) {
        match &*event {
            Event::ServerAck(ack) => {
                if ack.class.as_deref().is_none_or(|class| class == "message") {
                    self.acks.answer(&ack.id, ack.error.clone());
                }
                return;
            }
            Event::HistorySync(_) => return self.history(event),
            Event::PairSuccess(success) => {
                *wafleet_core::sync::lock(&self.account) = Some(Jid(success.id.to_non_ad().to_string()));
            }
            _ => {}
        }
        if let Some(mapped) = map_event(&event) {
            tracing::debug!(device = %self.device, event = ?std::mem::discriminant(&mapped), "link event");
            // The session is gone when the receiver is dropped; nothing is left to tell.
            let _ = self.queue.send(mapped);
        }
    }
}

impl Forwarder {
    /// Queues the personal messages of a history sync chunk, decoded off the client's event
    /// dispatch (a chunk can be megabytes). The client has already told the phone it took the
    /// chunk (WhatsApp's `hist_sync` receipt goes before the download), so these carry no ack:
    /// a worker that dies before storing them loses that history, never a live message.
    fn history(&self, event: Arc<Event>) {
        let account = wafleet_core::sync::lock(&self.account).clone();
        let (queue, device) = (self.queue.clone(), self.device);
        let queue_all = move || {
            let Event::HistorySync(sync) = &*event else {
                return;
            };
            let Some(sync) = sync.get() else {
                tracing::warn!(%device, "a history sync chunk does not decode; skipped");
                return;
            };
            let messages = map_history(sync, account.as_ref());
            tracing::info!(%device, messages = messages.len(), "history from the phone");
            for message in messages {
                let _ = queue.send(LinkEvent::Message {
                    message,
                    ack: Ack::none(),
                });
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(queue_all)),
            Err(_) => queue_all(),
        }
    }
}

/// A pairing code as the phone shows it, `XXXX-XXXX` (the client gives the eight characters bare).
fn dashed(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(left), Some(right)) if code.len() == 8 => format!("{left}-{right}"),
        _ => code.to_owned(),
    }
}

/// Moves queued events to the session's bounded channel, in order, until either side closes.
/// A logout wipes the device's stored state first: the credentials are dead, and whoever sees
/// the event may at once try to connect the device again.
pub(crate) async fn pump(
    mut queue: mpsc::UnboundedReceiver<LinkEvent>,
    events: mpsc::Sender<LinkEvent>,
    store: crate::WaStore,
) {
    while let Some(event) = queue.recv().await {
        if matches!(event, LinkEvent::LoggedOut { .. })
            && let Err(e) = store.wipe().await
        {
            tracing::warn!(device = %store.device(), error = %e, "wiping a logged-out device failed");
        }
        if events.send(event).await.is_err() {
            break;
        }
    }
}
