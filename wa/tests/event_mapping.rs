//! wa-rs's own event and message types through the adapter's mapping: what becomes which
//! `LinkEvent`, and what never becomes one (groups, status, broadcasts, newsletters).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use wa_rs::Jid as WaJid;
use wa_rs::wa_rs_proto::whatsapp as wa;
use wa_rs_core::types::events::*;
use wa_rs_core::types::message::{MessageInfo, MessageSource};
use wa_rs_core::types::presence::ReceiptType;
use wafleet_core::link::{Jid, LinkEvent, MessageKind, ReceiptKind};
use wafleet_wa::map_event;

fn jid(s: &str) -> WaJid {
    s.parse().expect("jid")
}

fn info(chat: &str, sender: &str, from_me: bool) -> MessageInfo {
    MessageInfo {
        source: MessageSource {
            chat: jid(chat),
            sender: jid(sender),
            is_from_me: from_me,
            is_group: chat.ends_with("@g.us"),
            ..Default::default()
        },
        id: "3EB0ABC".into(),
        push_name: "Ali".into(),
        timestamp: Utc.timestamp_millis_opt(1_700_000_123_000).unwrap(),
        ..Default::default()
    }
}

fn text(body: &str) -> wa::Message {
    wa::Message {
        conversation: Some(body.into()),
        ..Default::default()
    }
}

fn message_event(message: wa::Message, info: MessageInfo) -> Option<LinkEvent> {
    map_event(&Event::Message(Box::new(message), info))
}

#[test]
fn pairing_and_connection_events() {
    let qr = map_event(&Event::PairingQrCode {
        code: "2@abc".into(),
        timeout: Duration::from_secs(60),
    });
    assert!(
        matches!(qr, Some(LinkEvent::QrCode { ref code, valid_for }) if code == "2@abc" && valid_for == Duration::from_secs(60))
    );
    let code = map_event(&Event::PairingCode {
        code: "6ZPJKFNJ".into(),
        timeout: Duration::from_secs(180),
    });
    assert!(matches!(code, Some(LinkEvent::PairCode { ref code }) if code == "6ZPJ-KFNJ"));
    let success = map_event(&Event::PairSuccess(PairSuccess {
        id: jid("60123456789:7@s.whatsapp.net"),
        lid: jid("100200300:7@lid"),
        business_name: String::new(),
        platform: "android".into(),
    }));
    assert!(matches!(success, Some(LinkEvent::PairSuccess { ref jid }) if jid.0 == "60123456789@s.whatsapp.net"));
    let error = map_event(&Event::PairError(PairError {
        id: WaJid::default(),
        lid: WaJid::default(),
        business_name: String::new(),
        platform: String::new(),
        error: "Socket timeout".into(),
    }));
    assert!(matches!(error, Some(LinkEvent::PairError { ref reason }) if reason == "Socket timeout"));
    assert!(matches!(
        map_event(&Event::Connected(Connected)),
        Some(LinkEvent::Connected)
    ));
    assert!(matches!(
        map_event(&Event::Disconnected(Disconnected)),
        Some(LinkEvent::Disconnected { .. })
    ));
    let replaced = map_event(&Event::StreamReplaced(StreamReplaced));
    assert!(matches!(replaced, Some(LinkEvent::Disconnected { ref reason }) if reason.contains("replaced")));
    let stream = map_event(&Event::StreamError(StreamError {
        code: "500".into(),
        raw: None,
    }));
    assert!(matches!(stream, Some(LinkEvent::Disconnected { ref reason }) if reason.contains("500")));
}

#[test]
fn logouts_and_bans() {
    let unlinked = map_event(&Event::LoggedOut(LoggedOut {
        on_connect: true,
        reason: ConnectFailureReason::LoggedOut,
    }));
    assert!(matches!(unlinked, Some(LinkEvent::LoggedOut { banned: false, ref reason }) if reason.contains("401")));
    let gone = map_event(&Event::LoggedOut(LoggedOut {
        on_connect: false,
        reason: ConnectFailureReason::MainDeviceGone,
    }));
    assert!(matches!(gone, Some(LinkEvent::LoggedOut { banned: false, .. })));
    let banned = map_event(&Event::TemporaryBan(TemporaryBan {
        code: TempBanReason::SentToTooManyPeople,
        expire: chrono::Duration::seconds(3600),
    }));
    assert!(
        matches!(banned, Some(LinkEvent::LoggedOut { banned: true, ref reason }) if reason.contains("101") && reason.contains("3600")),
        "{banned:?}"
    );
}

#[test]
fn personal_messages_carry_their_content() {
    let Some(LinkEvent::Message { message, .. }) = message_event(
        text("hello"),
        info("60111@s.whatsapp.net", "60111:3@s.whatsapp.net", false),
    ) else {
        panic!("a personal text must become a message");
    };
    assert_eq!(message.id, "3EB0ABC");
    assert_eq!(message.chat, Jid("60111@s.whatsapp.net".into()));
    assert_eq!(
        message.sender,
        Jid("60111@s.whatsapp.net".into()),
        "device suffix dropped"
    );
    assert_eq!(
        (message.kind, message.text.as_deref()),
        (MessageKind::Text, Some("hello"))
    );
    assert_eq!((message.from_me, message.push_name.as_deref()), (false, Some("Ali")));
    assert_eq!(message.sent_at.millis(), 1_700_000_123_000);

    let image = wa::Message {
        image_message: Some(Box::new(wa::message::ImageMessage {
            caption: Some("menu".into()),
            ..Default::default()
        })),
        ..Default::default()
    };
    // Disappearing messages arrive wrapped; the content inside counts.
    let wrapped = wa::Message {
        ephemeral_message: Some(Box::new(wa::message::FutureProofMessage {
            message: Some(Box::new(image)),
        })),
        ..Default::default()
    };
    let mut mine = info("100200300@lid", "60999@s.whatsapp.net", true);
    mine.push_name = String::new();
    let Some(LinkEvent::Message { message, .. }) = message_event(wrapped, mine) else {
        panic!("an image in a LID chat must become a message");
    };
    assert_eq!(
        (message.kind, message.text.as_deref()),
        (MessageKind::Image, Some("menu"))
    );
    assert_eq!((message.from_me, message.push_name), (true, None));

    let extended = wa::Message {
        extended_text_message: Some(Box::new(wa::message::ExtendedTextMessage {
            text: Some("https://x".into()),
            ..Default::default()
        })),
        ..Default::default()
    };
    let Some(LinkEvent::Message { message, .. }) =
        message_event(extended, info("60111@s.whatsapp.net", "60111@s.whatsapp.net", false))
    else {
        panic!("extended text must become a message");
    };
    assert_eq!(
        (message.kind, message.text.as_deref()),
        (MessageKind::Text, Some("https://x"))
    );

    let sticker = wa::Message {
        sticker_message: Some(Box::default()),
        ..Default::default()
    };
    let Some(LinkEvent::Message { message, .. }) =
        message_event(sticker, info("60111@s.whatsapp.net", "60111@s.whatsapp.net", false))
    else {
        panic!("a sticker must become a message");
    };
    assert_eq!((message.kind, message.text), (MessageKind::Sticker, None));
}

#[test]
fn other_chats_never_become_events() {
    for (chat, sender) in [
        ("120363000000@g.us", "60111@s.whatsapp.net"),
        ("status@broadcast", "60111@s.whatsapp.net"),
        ("1700000000@broadcast", "60111@s.whatsapp.net"),
        ("120363111111@newsletter", "120363111111@newsletter"),
    ] {
        assert!(
            message_event(text("hi"), info(chat, sender, false)).is_none(),
            "{chat} became an event"
        );
    }
    let protocol = wa::Message {
        protocol_message: Some(Box::default()),
        ..Default::default()
    };
    assert!(message_event(protocol, info("60111@s.whatsapp.net", "60111@s.whatsapp.net", false)).is_none());
    let presence = Event::OfflineSyncCompleted(OfflineSyncCompleted { count: 3 });
    assert!(map_event(&presence).is_none());
}

fn receipt(chat: &str, kind: ReceiptType, from_me: bool) -> Event {
    Event::Receipt(Receipt {
        source: MessageSource {
            chat: jid(chat),
            sender: jid(chat),
            is_from_me: from_me,
            ..Default::default()
        },
        message_ids: vec!["A1".into(), "A2".into()],
        timestamp: Utc.timestamp_millis_opt(1_700_000_999_000).unwrap(),
        r#type: kind,
        message_sender: jid(chat),
    })
}

#[test]
fn receipts_for_personal_chats() {
    let delivered = map_event(&receipt("60111@s.whatsapp.net", ReceiptType::Delivered, false));
    let Some(LinkEvent::Receipt {
        kind,
        chat,
        message_ids,
        at,
        ..
    }) = delivered
    else {
        panic!("a delivery receipt must become an event");
    };
    assert_eq!(
        (kind, chat.0.as_str(), at.millis()),
        (ReceiptKind::Delivered, "60111@s.whatsapp.net", 1_700_000_999_000)
    );
    assert_eq!(message_ids, vec!["A1", "A2"]);
    let read = map_event(&receipt("60111@s.whatsapp.net", ReceiptType::Read, false));
    assert!(matches!(
        read,
        Some(LinkEvent::Receipt {
            kind: ReceiptKind::Read,
            ..
        })
    ));
    // What wa-rs makes of WhatsApp's untyped delivery receipts.
    let untyped = map_event(&receipt(
        "60111@s.whatsapp.net",
        ReceiptType::Other("delivery".into()),
        false,
    ));
    assert!(matches!(
        untyped,
        Some(LinkEvent::Receipt {
            kind: ReceiptKind::Delivered,
            ..
        })
    ));
    assert!(
        map_event(&receipt(
            "60111@s.whatsapp.net",
            ReceiptType::Other("sender".into()),
            false
        ))
        .is_none()
    );
    assert!(map_event(&receipt("60111@s.whatsapp.net", ReceiptType::Retry, false)).is_none());
    assert!(map_event(&receipt("60111@s.whatsapp.net", ReceiptType::ReadSelf, true)).is_none());
    assert!(map_event(&receipt("120363000000@g.us", ReceiptType::Read, false)).is_none());
    assert!(map_event(&receipt("status@broadcast", ReceiptType::Read, false)).is_none());
}
