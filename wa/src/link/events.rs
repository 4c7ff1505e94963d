//! wa-rs events → [`LinkEvent`]s, in order, personal chats only.

use tokio::sync::mpsc;
use wa_rs_core::proto_helpers::MessageExt;
use wa_rs_core::types::events::{ConnectFailureReason, Event, EventHandler};
use wa_rs_core::types::message::MessageInfo;
use wa_rs_core::types::presence::ReceiptType;
use wafleet_core::link::{Ack, IncomingMessage, Jid, LinkEvent, MessageKind, ReceiptKind};
use wafleet_core::types::{DeviceId, Timestamp};

use wa_rs::wa_rs_proto::whatsapp as wa;

/// What a wa-rs event means for wafleet; `None` for events wafleet does not act on (presence,
/// app-state updates, history sync, …) and for anything outside personal chats: groups,
/// broadcast lists, status updates and newsletters never become events.
pub fn map_event(event: &Event) -> Option<LinkEvent> {
    Some(match event {
        Event::PairingQrCode { code, timeout } => LinkEvent::QrCode {
            code: code.clone(),
            valid_for: *timeout,
        },
        Event::PairingCode { code, .. } => LinkEvent::PairCode { code: dashed(code) },
        // The account's JID, as the other link reports it: without this companion's device id.
        Event::PairSuccess(success) => LinkEvent::PairSuccess {
            jid: Jid(success.id.to_non_ad().to_string()),
        },
        Event::PairError(error) => LinkEvent::PairError {
            reason: error.error.clone(),
        },
        Event::QrScannedWithoutMultidevice(_) => LinkEvent::PairError {
            reason: "the phone scanned the code but has multi-device disabled".into(),
        },
        Event::Connected(_) => LinkEvent::Connected,
        // wa-rs says nothing about why; the events before it (stream error, failure) do.
        Event::Disconnected(_) => LinkEvent::Disconnected {
            reason: "the connection to WhatsApp closed".into(),
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
            reason: format!("connect failure {}: {}", failure.reason.code(), failure.message),
        },
        Event::LoggedOut(logged_out) => LinkEvent::LoggedOut {
            reason: logout_reason(logged_out.reason),
            banned: logged_out.reason == ConnectFailureReason::TempBanned,
        },
        // wa-rs stops reconnecting after a ban: for wafleet the device is banned.
        Event::TemporaryBan(ban) => LinkEvent::LoggedOut {
            reason: format!("banned by WhatsApp ({}), for {} s", ban.code, ban.expire.num_seconds()),
            banned: true,
        },
        Event::Message(message, info) => return map_message(message, info),
        Event::Receipt(receipt) => {
            let kind = match &receipt.r#type {
                ReceiptType::Delivered => ReceiptKind::Delivered,
                // WhatsApp's delivery receipts carry no type; wa-rs reads a missing type as
                // "delivery" (src/receipt.rs:24), which its own mapping only knows as "" (wa-rs-core
                // src/types/presence.rs:46), so they arrive as `Other("delivery")`.
                ReceiptType::Other(other) if other == "delivery" => ReceiptKind::Delivered,
                ReceiptType::Read | ReceiptType::Played => ReceiptKind::Read,
                _ => return None,
            };
            let chat = Jid(receipt.source.chat.to_non_ad().to_string());
            // Receipts from our own other devices (read-self) are not about the recipient.
            if receipt.source.is_from_me || !chat.is_personal() {
                return None;
            }
            LinkEvent::Receipt {
                kind,
                chat,
                message_ids: receipt.message_ids.clone(),
                at: Timestamp(receipt.timestamp.timestamp_millis()),
                // wa-rs acknowledges receipts itself as they arrive.
                ack: Ack::none(),
            }
        }
        _ => return None,
    })
}

fn logout_reason(reason: ConnectFailureReason) -> String {
    match reason {
        ConnectFailureReason::LoggedOut => "the device was unlinked (401)".into(),
        ConnectFailureReason::MainDeviceGone => "the phone's account is gone (403)".into(),
        other => format!("logged out ({}: {other:?})", other.code()),
    }
}

/// A personal-chat message as wafleet sees it, or `None` for other chats and for messages that
/// carry no content (protocol messages such as key shares or revocations).
fn map_message(message: &wa::Message, info: &MessageInfo) -> Option<LinkEvent> {
    let chat = Jid(info.source.chat.to_non_ad().to_string());
    if info.source.is_group || !chat.is_personal() {
        return None;
    }
    let base = message.get_base_message();
    if base.protocol_message.is_some() || (base.sender_key_distribution_message.is_some() && !has_content(base)) {
        return None;
    }
    let (kind, text) = content(base);
    let message = IncomingMessage {
        id: info.id.clone(),
        chat,
        sender: Jid(info.source.sender.to_non_ad().to_string()),
        from_me: info.source.is_from_me,
        push_name: Some(info.push_name.clone()).filter(|name| !name.is_empty()),
        kind,
        text,
        sent_at: Timestamp(info.timestamp.timestamp_millis()),
    };
    // wa-rs acknowledges messages on its own: `Client::dispatch_parsed_message` spawns the
    // delivery receipt at the moment it dispatches the event, so nothing can wait for wafleet to
    // store it and the ack is not awaited. A crash between that receipt and our write loses the
    // message unless WhatsApp redelivers it; replays are still deduplicated by id downstream.
    Some(LinkEvent::Message {
        message,
        ack: Ack::none(),
    })
}

fn has_content(message: &wa::Message) -> bool {
    content(message).0 != MessageKind::Other
}

/// Kind and text (or caption) of a message's content.
fn content(m: &wa::Message) -> (MessageKind, Option<String>) {
    if let Some(text) = &m.conversation {
        (MessageKind::Text, Some(text.clone()))
    } else if let Some(extended) = &m.extended_text_message {
        (MessageKind::Text, extended.text.clone())
    } else if let Some(image) = &m.image_message {
        (MessageKind::Image, image.caption.clone())
    } else if let Some(video) = &m.video_message {
        (MessageKind::Video, video.caption.clone())
    } else if m.audio_message.is_some() {
        (MessageKind::Audio, None)
    } else if let Some(document) = &m.document_message {
        (MessageKind::Document, document.caption.clone())
    } else if m.sticker_message.is_some() {
        (MessageKind::Sticker, None)
    } else {
        (MessageKind::Other, None)
    }
}

/// Receives wa-rs events synchronously, in dispatch order (registered with
/// `Client::register_handler`, unlike `Bot::on_event` which spawns a task per event), and
/// queues the mapped ones without blocking wa-rs's reader.
pub(crate) struct Forwarder {
    /// The device, for logs.
    pub device: DeviceId,
    /// Unbounded so that dispatch never blocks; [`pump`] applies the session's bound.
    pub queue: mpsc::UnboundedSender<LinkEvent>,
}

impl EventHandler for Forwarder {
    fn handle_event(&self, event: &Event) {
        if let Some(mapped) = map_event(event) {
            tracing::debug!(device = %self.device, event = ?std::mem::discriminant(&mapped), "link event");
            // The session is gone when the receiver is dropped; nothing is left to tell.
            let _ = self.queue.send(mapped);
        }
    }
}

/// A pairing code as the phone shows it, `XXXX-XXXX` (wa-rs gives the eight characters bare).
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
