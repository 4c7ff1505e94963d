//! Incoming messages (ack, replay, filter) and sending with receipts.

use wafleet_core::link::{
    Attachment, Jid, LinkError, LinkEvent, MessageKind, MessageRef, OpenMode, Outgoing, OutgoingMedia, ReceiptKind,
    Structured,
};
use wafleet_core::testing::eventually;

use super::support::{
    EVENT_TIMEOUT, contact, next_event, pair, pending, pending_receipts, sent_message, unique_phone, wait_for,
};
use super::{Action, Contact, Harness};
use crate::control::ChatKind;

fn is_message(event: &LinkEvent) -> bool {
    matches!(event, LinkEvent::Message { .. })
}

/// A personal message arrives with its id; unacknowledged it comes again, with the same id, on
/// the next connection (from another link instance); acknowledged, never again.
pub async fn incoming_message_acked_once_and_replayed_until_then(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let contact = unique_phone();
    let injected = h
        .phones()
        .write(&contact, &paired.phone, "hi there")
        .await
        .expect("inject");
    let LinkEvent::Message { message, ack } = wait_for(&mut paired.events, "the message", is_message).await else {
        unreachable!()
    };
    assert_eq!(message.id, injected);
    assert_eq!(message.text.as_deref(), Some("hi there"));
    assert_eq!(
        (message.chat.clone(), message.sender.clone()),
        (Jid::for_phone(&contact), Jid::for_phone(&contact))
    );
    assert!(!message.from_me);
    assert_eq!(message.kind, MessageKind::Text);
    drop(ack); // not stored
    paired.session.close().await;

    let mut session = h.link().open(paired.device, OpenMode::Connect).await.expect("resume");
    let mut events = session.take_events().expect("events");
    // A link may hand over what waited while it was away before it reports Connected (the real
    // client does: it goes active, drains the backlog, then says it is connected), or after.
    let (mut connected, mut replayed) = (false, false);
    while !(connected && replayed) {
        match next_event(&mut events, "Connected and the replay").await {
            LinkEvent::Connected => connected = true,
            LinkEvent::Message { message: replay, ack } => {
                assert_eq!(replay.id, injected, "a replay carries the same id");
                ack.done();
                replayed = true;
            }
            LinkEvent::Receipt { .. } => {}
            other => panic!("expected Connected and the replay, got {other:?}"),
        }
    }
    eventually(EVENT_TIMEOUT, "the ack reaches the network", || async {
        pending(h, &paired.phone).await == 0
    })
    .await;
    session.close().await;

    let mut session = h
        .link()
        .open(paired.device, OpenMode::Connect)
        .await
        .expect("resume again");
    let mut events = session.take_events().expect("events");
    assert!(matches!(
        next_event(&mut events, "Connected").await,
        LinkEvent::Connected
    ));
    let marker = h
        .phones()
        .write(&contact, &paired.phone, "marker")
        .await
        .expect("inject");
    let LinkEvent::Message { message, .. } = wait_for(&mut events, "the marker", is_message).await else {
        unreachable!()
    };
    assert_eq!(message.id, marker, "an acknowledged message is not delivered again");
    session.close().await;
}

/// Group, broadcast, status and newsletter messages never reach the event stream, though the
/// device takes each of them (decrypts it, and acknowledges it so it is not kept).
pub async fn non_personal_chats_never_surface(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let contact = contact(h, Contact::OnWhatsApp).await;
    let mut written = Vec::new();
    for chat in [
        ChatKind::Group,
        ChatKind::Broadcast,
        ChatKind::Status,
        ChatKind::Newsletter,
    ] {
        let id = h
            .phones()
            .write_in(chat, &contact, &paired.phone, &format!("{chat:?}"))
            .await
            .expect("write");
        written.push((chat, id));
    }
    let marker = h
        .phones()
        .write(&contact, &paired.phone, "personal")
        .await
        .expect("inject");
    let LinkEvent::Message { message, ack } = wait_for(&mut paired.events, "the personal message", is_message).await
    else {
        unreachable!()
    };
    assert_eq!(
        message.id, marker,
        "only the personal message surfaces, got {message:?}"
    );
    ack.done();
    for (chat, id) in &written {
        eventually(
            EVENT_TIMEOUT,
            &format!("the device takes the {chat:?} message"),
            || async {
                let answer = h.phones().answer(&paired.phone, id).await.expect("answer");
                assert_ne!(answer, Some(false), "the device could not take the {chat:?} message");
                answer == Some(true)
            },
        )
        .await;
    }
    eventually(EVENT_TIMEOUT, "filtered messages are not kept", || async {
        pending(h, &paired.phone).await == 0
    })
    .await;
    paired.session.close().await;
}

/// A sent text gets the network's id, then a delivered and a read receipt for that id.
pub async fn send_text_gets_delivered_then_read(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let to = Jid::for_phone(&contact(h, Contact::ReadsEverything).await);
    let id = paired.session.send(&Outgoing::text(&to, "hello")).await.expect("send");
    let sent = sent_message(h, &paired.phone, &id).await;
    assert_eq!((sent.text.as_deref(), sent.kind), (Some("hello"), MessageKind::Text));
    for expected in [ReceiptKind::Delivered, ReceiptKind::Read] {
        let event = next_event(&mut paired.events, "a receipt").await;
        let LinkEvent::Receipt {
            kind,
            chat,
            message_ids,
            ..
        } = event
        else {
            panic!("expected a receipt: {event:?}")
        };
        assert_eq!((kind, chat, message_ids), (expected, to.clone(), vec![id.clone()]));
    }
    paired.session.close().await;
}

/// A picture, a video and a document a person sends arrive with their media described (type,
/// size, name), and the session fetches each file byte for byte.
pub async fn incoming_media_downloads(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let contact = unique_phone();
    let (video, _) = crate::control::sample_media(MessageKind::Video, 300_000);
    let (document, _) = crate::control::sample_media(MessageKind::Document, 5_000);
    let files = [
        (
            MessageKind::Image,
            crate::control::PROFILE_PICTURE,
            "image/jpeg",
            Some("the menu"),
            None,
        ),
        (MessageKind::Video, &video[..], "video/mp4", Some("the shop"), None),
        (
            MessageKind::Document,
            &document[..],
            "application/pdf",
            None,
            Some("price list.pdf"),
        ),
    ];
    for (kind, bytes, mime, caption, file_name) in files {
        let file = crate::control::MediaFile {
            bytes,
            mime,
            caption,
            file_name,
        };
        let id = h
            .phones()
            .write_media(&contact, &paired.phone, kind, &file)
            .await
            .expect("send the file");
        let LinkEvent::Message { message, ack } = wait_for(&mut paired.events, "the message", is_message).await else {
            unreachable!()
        };
        ack.done();
        assert_eq!((message.id.as_str(), message.kind), (id.as_str(), kind));
        assert_eq!(message.text.as_deref(), caption);
        let media = message.media.expect("the message describes its file");
        assert_eq!(
            (media.mime.as_str(), media.size, media.file_name.as_deref()),
            (mime, bytes.len() as u64, file_name)
        );
        let fetched = paired.session.download(&media).await.expect("download the file");
        assert!(fetched == bytes, "{kind:?}: the file fetched is the one sent");
    }
    paired.session.close().await;
}

/// An image with a caption is sent as an image.
pub async fn image_with_caption(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let to = Jid::for_phone(&contact(h, Contact::OnWhatsApp).await);
    let bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 0xFF, 0xD9];
    let image = OutgoingMedia {
        file: Attachment::jpeg(bytes.clone()),
        caption: Some("look".into()),
    };
    let id = paired
        .session
        .send(&Outgoing::media(&to, image))
        .await
        .expect("send the image");
    let record = sent_message(h, &paired.phone, &id).await;
    assert_eq!(
        (record.kind, record.text.as_deref()),
        (MessageKind::Image, Some("look"))
    );
    assert_eq!(record.media_bytes, Some(bytes.len()));
    let event = next_event(&mut paired.events, "the delivered receipt").await;
    assert!(
        matches!(&event, LinkEvent::Receipt { kind: ReceiptKind::Delivered, message_ids, .. } if *message_ids == [id.clone()]),
        "{event:?}"
    );
    paired.session.close().await;
}

/// A message passed on reaches the contact marked "Forwarded" whatever it holds (a text, a
/// picture, a contact card); one that is not passed on is not marked.
pub async fn forwarded_sends_are_marked(h: &dyn Harness) {
    let paired = pair(h).await;
    let to = Jid::for_phone(&contact(h, Contact::OnWhatsApp).await);
    let picture = OutgoingMedia {
        file: Attachment::jpeg(vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 0xFF, 0xD9,
        ]),
        caption: Some("passed on".into()),
    };
    let card = Structured::Contact {
        name: "Aldino Kemal".into(),
        phone: "+6289685024992".into(),
    };
    let sends = [
        (Outgoing::text(&to, "passed on"), true),
        (Outgoing::media(&to, picture), true),
        (Outgoing::structured(&to, card), true),
        (Outgoing::text(&to, "my own words"), false),
    ];
    for (mut message, forwarded) in sends {
        message.forwarded = forwarded;
        let id = paired.session.send(&message).await.expect("send");
        let record = sent_message(h, &paired.phone, &id).await;
        assert_eq!(record.forwarded, forwarded, "{:?}", message.content);
        assert!(record.text.is_some() || record.structured.is_some(), "{record:?}");
    }
    paired.session.close().await;
}

/// Presence needs a push name, as WhatsApp's clients send it only with one: before the account
/// has one (the real client may have had it from WhatsApp at pairing) it is refused as such; once
/// set, the name is announced, and online and offline carry it.
pub async fn push_name_then_presence(h: &dyn Harness) {
    let paired = pair(h).await;
    match paired.session.set_presence(true).await {
        Ok(()) => {}
        Err(LinkError::Invalid(why)) => assert!(why.contains(wafleet_core::link::NO_PUSH_NAME), "{why}"),
        Err(other) => panic!("presence before a push name was set: {other:?}"),
    }
    paired
        .session
        .set_push_name("Kedai Aisyah")
        .await
        .expect("set the push name");
    paired.session.set_presence(true).await.expect("show online");
    paired.session.set_presence(false).await.expect("show offline");
    let name = Some("Kedai Aisyah".to_owned());
    let expected = [(name.clone(), None), (name.clone(), Some(true)), (name, Some(false))];
    eventually(
        EVENT_TIMEOUT,
        "the push name and both presences reach the network",
        || async {
            h.phones()
                .presences(&paired.phone)
                .await
                .is_ok_and(|seen| seen.ends_with(&expected))
        },
    )
    .await;
    paired.session.close().await;
}

/// A contact card, a location, a link and polls reach the contact as WhatsApp's apps send them,
/// and read back the same: name and number, coordinates, link and text, question, options and
/// how many may be picked.
pub async fn structured_messages_are_sent(h: &dyn Harness) {
    let paired = pair(h).await;
    let to = Jid::for_phone(&contact(h, Contact::OnWhatsApp).await);
    let poll = |selectable| Structured::Poll {
        question: "Which day?".into(),
        options: vec!["Monday".into(), "Friday".into(), "Sunday".into()],
        selectable,
    };
    let messages = [
        Structured::Contact {
            name: "Aldino Kemal".into(),
            phone: "+6289685024992".into(),
        },
        Structured::Location {
            latitude: -7.797068,
            longitude: 110.370529,
        },
        Structured::Link {
            url: "https://example.com/menu".into(),
            caption: Some("Our menu".into()),
        },
        poll(1),
        poll(2),
    ];
    for structured in messages {
        let id = paired
            .session
            .send(&Outgoing::structured(&to, structured.clone()))
            .await
            .unwrap_or_else(|e| panic!("send {structured:?}: {e}"));
        let record = sent_message(h, &paired.phone, &id).await;
        assert_eq!(record.structured.as_ref(), Some(&structured));
    }
    paired.session.close().await;
}

/// A video, an audio file, a document and a sticker each reach the contact as their kind of
/// message, with their size, type, caption (where the kind shows one) and a document's name.
pub async fn files_of_every_kind_are_sent(h: &dyn Harness) {
    let paired = pair(h).await;
    let to = Jid::for_phone(&contact(h, Contact::OnWhatsApp).await);
    let files = [
        (MessageKind::Video, "video/mp4", Some("the tour"), None, 70_000),
        (MessageKind::Audio, "audio/ogg; codecs=opus", None, None, 9_000),
        (
            MessageKind::Document,
            "application/pdf",
            Some("the price list"),
            Some("prices.pdf"),
            30_000,
        ),
        (MessageKind::Sticker, "image/webp", None, None, 4_000),
    ];
    for (kind, mime, caption, file_name, size) in files {
        let bytes: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let media = OutgoingMedia {
            file: Attachment {
                kind,
                bytes,
                mime: mime.into(),
                file_name: file_name.map(str::to_owned),
            },
            caption: caption.map(str::to_owned),
        };
        let id = paired
            .session
            .send(&Outgoing::media(&to, media))
            .await
            .unwrap_or_else(|e| panic!("send the {kind:?}: {e}"));
        let record = sent_message(h, &paired.phone, &id).await;
        assert_eq!(
            (record.kind, record.text.as_deref(), record.media_bytes),
            (kind, caption, Some(size as usize)),
            "{kind:?}"
        );
        assert_eq!(
            (record.mime.as_deref(), record.file_name.as_deref()),
            (Some(mime), file_name),
            "{kind:?}"
        );
    }
    paired.session.close().await;
}

fn is_receipt_for(id: &str) -> impl Fn(&LinkEvent) -> bool + '_ {
    move |event| matches!(event, LinkEvent::Receipt { message_ids, .. } if message_ids.iter().any(|m| m == id))
}

/// A message goes out under the id chosen before sending it, and its receipts name that id: so a
/// send recorded with its id first can be recognised after its worker died.
pub async fn send_goes_out_under_the_chosen_id(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let to = Jid::for_phone(&contact(h, Contact::OnWhatsApp).await);
    let message = Outgoing::text(&to, "under my own id");
    let id = paired.session.send(&message).await.expect("send");
    assert_eq!(id, message.id, "the link reports the id it was given");
    let sent = sent_message(h, &paired.phone, &message.id).await;
    assert_eq!(sent.text.as_deref(), Some("under my own id"));
    wait_for(
        &mut paired.events,
        "a receipt naming the chosen id",
        is_receipt_for(&message.id),
    )
    .await;
    paired.session.close().await;
}

/// A receipt arrives with an ack; unacknowledged it comes again on the next connection (from
/// another link instance), acknowledged it does not: so a receipt that arrives while a device
/// changes hands is not lost.
pub async fn receipt_acked_once_and_replayed_until_then(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let to = Jid::for_phone(&contact(h, Contact::ReadsEverything).await);
    let first = paired.session.send(&Outgoing::text(&to, "first")).await.expect("send");
    for kind in [ReceiptKind::Delivered, ReceiptKind::Read] {
        let LinkEvent::Receipt { kind: got, ack, .. } =
            wait_for(&mut paired.events, "a receipt", is_receipt_for(&first)).await
        else {
            unreachable!()
        };
        assert_eq!(got, kind);
        drop(ack); // not stored
    }
    paired.session.close().await;

    let mut session = h.link().open(paired.device, OpenMode::Connect).await.expect("resume");
    let mut events = session.take_events().expect("events");
    // The replayed receipts may come before Connected: a client may report the connection only
    // once the network's queue for it has drained.
    let (mut connected, mut replayed) = (false, Vec::new());
    while !connected || replayed.len() < 2 {
        match next_event(&mut events, "Connected and the replayed receipts").await {
            LinkEvent::Connected => connected = true,
            LinkEvent::Receipt {
                kind, message_ids, ack, ..
            } if message_ids.contains(&first) => {
                replayed.push(kind);
                ack.done();
            }
            other => panic!("expected Connected or a replayed receipt: {other:?}"),
        }
    }
    assert_eq!(
        replayed,
        [ReceiptKind::Delivered, ReceiptKind::Read],
        "receipts are replayed in order"
    );
    eventually(EVENT_TIMEOUT, "the acks reach the network", || async {
        pending_receipts(h, &paired.phone).await == 0
    })
    .await;
    session.close().await;

    let mut session = h
        .link()
        .open(paired.device, OpenMode::Connect)
        .await
        .expect("resume again");
    let mut events = session.take_events().expect("events");
    assert!(matches!(
        next_event(&mut events, "Connected").await,
        LinkEvent::Connected
    ));
    let marker = session
        .send(&Outgoing::text(&to, "marker"))
        .await
        .expect("send the marker");
    let LinkEvent::Receipt { message_ids, .. } = wait_for(&mut events, "the next receipt", |e| {
        matches!(e, LinkEvent::Receipt { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(message_ids, [marker], "an acknowledged receipt is not delivered again");
    session.close().await;
}

/// Marking a received message read sends WhatsApp the read receipt (the sender's blue ticks),
/// and only then: receiving and storing it is not reading it.
pub async fn mark_read_sends_a_read_receipt(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let contact = unique_phone();
    let id = h
        .phones()
        .write(&contact, &paired.phone, "are you open today?")
        .await
        .expect("inject");
    let LinkEvent::Message { message, ack } = wait_for(&mut paired.events, "the message", is_message).await else {
        unreachable!()
    };
    assert_eq!(message.id, id);
    ack.done();
    eventually(EVENT_TIMEOUT, "the ack reaches the network", || async {
        pending(h, &paired.phone).await == 0
    })
    .await;
    let read = h.phones().read(&paired.phone).await.expect("read receipts");
    assert!(read.is_empty(), "a stored message is not read yet: {read:?}");

    paired
        .session
        .mark_read(&message.chat, std::slice::from_ref(&id))
        .await
        .expect("mark read");
    eventually(EVENT_TIMEOUT, "the read receipt reaches the network", || async {
        h.phones()
            .read(&paired.phone)
            .await
            .is_ok_and(|ids| ids == [id.clone()])
    })
    .await;
    paired.session.close().await;
}

/// Typing shows in the chat, and stops: the network gets `composing`, then `paused`, for the
/// person's chat.
pub async fn typing_shows_in_the_chat(h: &dyn Harness) {
    let paired = pair(h).await;
    let person = contact(h, Contact::OnWhatsApp).await;
    let chat = Jid::for_phone(&person);
    paired.session.chat_presence(&chat, true).await.expect("start typing");
    paired.session.chat_presence(&chat, false).await.expect("stop typing");
    eventually(EVENT_TIMEOUT, "both indicators reach the network", || async {
        h.phones()
            .chat_states(&paired.phone)
            .await
            .is_ok_and(|states| states == [(chat.clone(), true), (chat.clone(), false)])
    })
    .await;
    let group = Jid("120363000000000000@g.us".into());
    match paired.session.chat_presence(&group, true).await {
        Err(LinkError::Invalid(_)) => {}
        other => panic!("typing in a group is not a personal chat's: {other:?}"),
    }
    paired.session.close().await;
}

/// A reaction to a received message, an edit of a sent one and a deletion for everyone of
/// another reach the network, each about the right message.
pub async fn react_edit_and_delete_for_everyone(h: &dyn Harness) {
    let mut paired = pair(h).await;
    let person = contact(h, Contact::OnWhatsApp).await;
    let chat = Jid::for_phone(&person);
    let theirs = h
        .phones()
        .write(&person, &paired.phone, "the parcel arrived")
        .await
        .expect("inject");
    let LinkEvent::Message { ack, .. } = wait_for(&mut paired.events, "the message", is_message).await else {
        unreachable!()
    };
    ack.done();
    let target = MessageRef {
        id: theirs.clone(),
        from_me: false,
    };
    let reaction = paired.session.react(&chat, &target, "👍").await.expect("react");
    assert_ne!(reaction, theirs, "a reaction is a message of its own");
    let mine = paired
        .session
        .send(&Outgoing::text(&chat, "sent by mistake"))
        .await
        .expect("send");
    paired.session.revoke(&chat, &mine).await.expect("delete for everyone");
    let typo = paired
        .session
        .send(&Outgoing::text(&chat, "see you at 9"))
        .await
        .expect("send");
    paired.session.edit(&chat, &typo, "see you at 10").await.expect("edit");
    let expected = [
        Action {
            chat: chat.clone(),
            kind: "reaction".into(),
            target: theirs.clone(),
            text: Some("👍".into()),
        },
        Action {
            chat: chat.clone(),
            kind: "revoke".into(),
            target: mine,
            text: None,
        },
        Action {
            chat: chat.clone(),
            kind: "edit".into(),
            target: typo,
            text: Some("see you at 10".into()),
        },
    ];
    eventually(
        EVENT_TIMEOUT,
        "the reaction, the deletion and the edit reach the network",
        || async { h.phones().actions(&paired.phone).await.is_ok_and(|a| a == expected) },
    )
    .await;
    paired.session.close().await;
}
