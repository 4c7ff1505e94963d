//! The client's own event and message types through the adapter's mapping: what becomes which
//! `LinkEvent` or stored message, and what never does (groups, status, broadcasts, newsletters).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use wafleet_core::link::{Ack, IncomingMessage, Jid, LinkEvent, MessageKind, ReceiptKind};
use wafleet_wa::{map_event, map_history, map_message, map_receipt};
use whatsapp_rust::Jid as WaJid;
use whatsapp_rust::wacore::net::DisconnectReason;
use whatsapp_rust::wacore::types::events::*;
use whatsapp_rust::wacore::types::message::{MessageInfo, MessageSource};
use whatsapp_rust::wacore::types::presence::ReceiptType;
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp as wa;

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

fn event(e: Event) -> Option<LinkEvent> {
    map_event(&e)
}

#[test]
fn pairing_and_connection_events() {
    let qr = event(Event::PairingQrCode(
        PairingQrCode::builder()
            .code("2@abc".into())
            .timeout(Duration::from_secs(60))
            .build(),
    ));
    assert!(
        matches!(qr, Some(LinkEvent::QrCode { ref code, valid_for }) if code == "2@abc" && valid_for == Duration::from_secs(60))
    );
    let code = event(Event::PairingCode(
        PairingCode::builder()
            .code("6ZPJKFNJ".into())
            .timeout(Duration::from_secs(180))
            .build(),
    ));
    assert!(matches!(code, Some(LinkEvent::PairCode { ref code }) if code == "6ZPJ-KFNJ"));
    let success = event(Event::PairSuccess(
        PairSuccess::builder()
            .id(jid("60123456789:7@s.whatsapp.net"))
            .lid(jid("100200300:7@lid"))
            .business_name(String::new())
            .platform("android".into())
            .build(),
    ));
    assert!(matches!(success, Some(LinkEvent::PairSuccess { ref jid }) if jid.0 == "60123456789@s.whatsapp.net"));
    let error = event(Event::PairError(
        PairError::builder()
            .id(WaJid::default())
            .lid(WaJid::default())
            .business_name(String::new())
            .platform(String::new())
            .error("Socket timeout".into())
            .build(),
    ));
    assert!(matches!(error, Some(LinkEvent::PairError { ref reason }) if reason == "Socket timeout"));
    assert!(matches!(
        event(Event::Connected(Connected::builder().build())),
        Some(LinkEvent::Connected)
    ));
    let dropped = event(Event::Disconnected(
        Disconnected::builder().reason(DisconnectReason::StreamEnded).build(),
    ));
    assert!(matches!(dropped, Some(LinkEvent::Disconnected { .. })));
    let replaced = event(Event::StreamReplaced(StreamReplaced::builder().build()));
    assert!(matches!(replaced, Some(LinkEvent::Disconnected { ref reason }) if reason.contains("replaced")));
    let stream = event(Event::StreamError(StreamError::builder().code("500".into()).build()));
    assert!(matches!(stream, Some(LinkEvent::Disconnected { ref reason }) if reason.contains("500")));
}

#[test]
fn logouts_and_bans() {
    let unlinked = event(Event::LoggedOut(
        LoggedOut::builder()
            .on_connect(true)
            .reason(ConnectFailureReason::LoggedOut)
            .build(),
    ));
    assert!(matches!(unlinked, Some(LinkEvent::LoggedOut { banned: false, ref reason }) if reason.contains("401")));
    let locked = event(Event::LoggedOut(
        LoggedOut::builder()
            .on_connect(false)
            .reason(ConnectFailureReason::AccountLocked)
            .build(),
    ));
    assert!(matches!(locked, Some(LinkEvent::LoggedOut { banned: false, ref reason }) if reason.contains("403")));
    let banned = event(Event::TemporaryBan(
        TemporaryBan::builder()
            .code(TempBanReason::SentToTooManyPeople)
            .expire(chrono::Duration::seconds(3600))
            .build(),
    ));
    assert!(
        matches!(banned, Some(LinkEvent::LoggedOut { banned: true, ref reason }) if reason.contains("101") && reason.contains("3600")),
        "{banned:?}"
    );
}

fn personal(message: wa::Message, info: MessageInfo, what: &str) -> IncomingMessage {
    map_message(&message, &info).unwrap_or_else(|| panic!("{what} must become a message"))
}

#[test]
fn personal_messages_carry_their_content() {
    let message = personal(
        text("hello"),
        info("60111@s.whatsapp.net", "60111:3@s.whatsapp.net", false),
        "a personal text",
    );
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
        image_message: MessageField::some(wa::message::ImageMessage {
            caption: Some("menu".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Disappearing messages arrive wrapped; the content inside counts.
    let wrapped = wa::Message {
        ephemeral_message: MessageField::some(wa::message::FutureProofMessage {
            message: MessageField::some(image),
        }),
        ..Default::default()
    };
    let mut mine = info("100200300@lid", "60999@s.whatsapp.net", true);
    mine.push_name = String::new();
    let message = personal(wrapped, mine, "an image in a LID chat");
    assert_eq!(
        (message.kind, message.text.as_deref()),
        (MessageKind::Image, Some("menu"))
    );
    assert_eq!((message.from_me, message.push_name), (true, None));

    let extended = wa::Message {
        extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
            text: Some("https://x".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let message = personal(
        extended,
        info("60111@s.whatsapp.net", "60111@s.whatsapp.net", false),
        "extended text",
    );
    assert_eq!(
        (message.kind, message.text.as_deref()),
        (MessageKind::Text, Some("https://x"))
    );

    let sticker = wa::Message {
        sticker_message: MessageField::some(wa::message::StickerMessage::default()),
        ..Default::default()
    };
    let message = personal(
        sticker,
        info("60111@s.whatsapp.net", "60111@s.whatsapp.net", false),
        "a sticker",
    );
    assert_eq!((message.kind, message.text), (MessageKind::Sticker, None));
}

#[test]
fn other_chats_never_become_messages() {
    for (chat, sender) in [
        ("120363000000@g.us", "60111@s.whatsapp.net"),
        ("status@broadcast", "60111@s.whatsapp.net"),
        ("1700000000@broadcast", "60111@s.whatsapp.net"),
        ("120363111111@newsletter", "120363111111@newsletter"),
    ] {
        assert!(
            map_message(&text("hi"), &info(chat, sender, false)).is_none(),
            "{chat} became a message"
        );
    }
    let protocol = wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage::default()),
        ..Default::default()
    };
    assert!(map_message(&protocol, &info("60111@s.whatsapp.net", "60111@s.whatsapp.net", false)).is_none());
    let done = event(Event::OfflineSyncCompleted(
        OfflineSyncCompleted::builder().count(3).build(),
    ));
    assert!(done.is_none());
}

fn receipt(chat: &str, kind: ReceiptType, from_me: bool) -> Receipt {
    Receipt::builder()
        .source(MessageSource {
            chat: jid(chat),
            sender: jid(chat),
            is_from_me: from_me,
            ..Default::default()
        })
        .message_ids(vec!["A1".into(), "A2".into()])
        .timestamp(Utc.timestamp_millis_opt(1_700_000_999_000).unwrap())
        .r#type(kind)
        .offline(false)
        .build()
}

/// A receipt as wafleet sees it, with an ack nothing waits for.
fn receipt_event(receipt: Receipt) -> Option<LinkEvent> {
    map_receipt(&receipt, Ack::none())
}

#[test]
fn receipts_for_personal_chats() {
    let delivered = receipt_event(receipt("60111@s.whatsapp.net", ReceiptType::Delivered, false));
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
    let read = receipt_event(receipt("60111@s.whatsapp.net", ReceiptType::Read, false));
    assert!(matches!(
        read,
        Some(LinkEvent::Receipt {
            kind: ReceiptKind::Read,
            ..
        })
    ));
    assert!(receipt_event(receipt("60111@s.whatsapp.net", ReceiptType::Sender, false)).is_none());
    assert!(receipt_event(receipt("60111@s.whatsapp.net", ReceiptType::Retry, false)).is_none());
    assert!(receipt_event(receipt("60111@s.whatsapp.net", ReceiptType::ReadSelf, true)).is_none());
    assert!(receipt_event(receipt("120363000000@g.us", ReceiptType::Read, false)).is_none());
    assert!(receipt_event(receipt("status@broadcast", ReceiptType::Read, false)).is_none());
    // They come through the durability hook, which holds their ack, never as plain events.
    let delivered = receipt("60111@s.whatsapp.net", ReceiptType::Delivered, false);
    assert!(event(Event::Receipt(delivered)).is_none());
}

#[test]
fn a_lid_addressed_message_keeps_the_senders_number() {
    let mut lid = info("2511@lid", "2511:4@lid", false);
    lid.source.sender_alt = Some(jid("60111:4@s.whatsapp.net"));
    let message = personal(text("hi"), lid, "a message from a LID");
    assert_eq!(message.chat, Jid("2511@lid".into()));
    assert_eq!(message.sender, Jid("2511@lid".into()));
    assert_eq!(
        message.sender_alt,
        Some(Jid("60111@s.whatsapp.net".into())),
        "the number, without the device"
    );
    let plain = personal(
        text("hi"),
        info("60111@s.whatsapp.net", "60111@s.whatsapp.net", false),
        "a message",
    );
    assert_eq!(plain.sender_alt, None);
}

fn saved(contact: &str, full: Option<&str>, first: Option<&str>, pn: Option<&str>) -> Option<LinkEvent> {
    event(Event::ContactUpdate(
        ContactUpdate::builder()
            .jid(jid(contact))
            .timestamp(Utc.timestamp_millis_opt(1_700_000_123_000).unwrap())
            .action(Box::new(wa::sync_action_value::ContactAction {
                full_name: full.map(Into::into),
                first_name: first.map(Into::into),
                pn_jid: pn.map(Into::into),
                ..Default::default()
            }))
            .from_full_sync(true)
            .build(),
    ))
}

#[test]
fn saved_contacts_name_personal_chats() {
    let name_of = |e: Option<LinkEvent>| match e {
        Some(LinkEvent::ContactName { jid, name, .. }) => Some((jid.0, name)),
        other => panic!("expected a contact name: {other:?}"),
    };
    assert_eq!(
        name_of(saved("60111@s.whatsapp.net", Some("Nadia Baker"), Some("Nadia"), None)),
        Some(("60111@s.whatsapp.net".into(), "Nadia Baker".into()))
    );
    assert_eq!(
        name_of(saved("60111@s.whatsapp.net", None, Some("Nadia"), None)).map(|n| n.1),
        Some("Nadia".into()),
        "the first name when there is no full name"
    );
    assert_eq!(
        name_of(saved("2511@lid", Some("Nadia"), None, Some("60111@s.whatsapp.net"))).map(|n| n.0),
        Some("60111@s.whatsapp.net".into()),
        "a LID entry with its number names the number's chat"
    );
    assert_eq!(
        name_of(saved("2511@lid", Some("Nadia"), None, None)).map(|n| n.0),
        Some("2511@lid".into())
    );
    assert_eq!(
        name_of(saved("60111@s.whatsapp.net", None, None, None)).map(|n| n.1),
        Some(String::new()),
        "no name: removed from the address book"
    );
    assert!(
        saved("120363@g.us", Some("A group"), None, None).is_none(),
        "groups are not contacts"
    );
}

fn history_line(chat: &str, id: &str, from_me: bool, body: Option<&str>) -> wa::HistorySyncMsg {
    wa::HistorySyncMsg {
        message: MessageField::some(wa::WebMessageInfo {
            key: MessageField::some(wa::MessageKey {
                remote_jid: Some(chat.into()),
                from_me: Some(from_me),
                id: Some(id.into()),
                participant: None,
            }),
            message: match body {
                Some(body) => MessageField::some(text(body)),
                None => MessageField::some(wa::Message {
                    protocol_message: MessageField::some(wa::message::ProtocolMessage::default()),
                    ..Default::default()
                }),
            },
            message_timestamp: Some(1_700_000_000),
            push_name: (!from_me).then(|| "Ali".into()),
            ..Default::default()
        }),
        msg_order_id: None,
    }
}

#[test]
fn history_keeps_personal_chats_as_history() {
    let conversation = |id: &str, pn: Option<&str>, lines: Vec<wa::HistorySyncMsg>| wa::Conversation {
        id: id.into(),
        pn_jid: pn.map(Into::into),
        messages: lines,
        ..Default::default()
    };
    let sync = wa::HistorySync {
        conversations: vec![
            conversation(
                "601@s.whatsapp.net",
                None,
                vec![
                    history_line("601@s.whatsapp.net", "A1", false, Some("hello again")),
                    history_line("601@s.whatsapp.net", "A2", true, Some("talk soon")),
                    // A key share or deletion: nothing to show.
                    history_line("601@s.whatsapp.net", "A3", false, None),
                ],
            ),
            conversation(
                "98765@lid",
                Some("602@s.whatsapp.net"),
                vec![history_line("98765@lid", "B1", false, Some("from a LID"))],
            ),
            conversation(
                "120363000@g.us",
                None,
                vec![history_line("120363000@g.us", "G1", false, Some("group news"))],
            ),
            conversation(
                "status@broadcast",
                None,
                vec![history_line("status@broadcast", "S1", false, Some("a status"))],
            ),
        ],
        ..Default::default()
    };
    let me = Jid("600@s.whatsapp.net".into());
    let messages = map_history(&sync, Some(&me));
    let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["A1", "A2", "B1"], "personal chats with content only");
    assert!(messages.iter().all(|m| m.history), "{messages:?}");
    let (theirs, ours, lid) = (&messages[0], &messages[1], &messages[2]);
    assert_eq!(theirs.sender, Jid("601@s.whatsapp.net".into()));
    assert_eq!(theirs.push_name.as_deref(), Some("Ali"));
    assert_eq!(theirs.text.as_deref(), Some("hello again"));
    assert_eq!(theirs.sent_at.millis(), 1_700_000_000_000);
    assert!(ours.from_me);
    assert_eq!(ours.sender, me, "what the account wrote is its own");
    assert_eq!(lid.chat, Jid("98765@lid".into()));
    assert_eq!(
        lid.sender_alt,
        Some(Jid("602@s.whatsapp.net".into())),
        "a LID chat's number, when the phone knows it, goes with its messages"
    );
}
