//! Milestone 5: one-to-one text both ways with real Signal encryption, server acks, and
//! delivered and read receipts.

use wafleet_core::link::{Jid, LinkEvent, MessageKind, Outgoing, ReceiptKind};
use wafleet_core::testing::{Backend, eventually};
use wafleet_core::types::PhoneNumber;

use crate::support::{EVENT_TIMEOUT, World, next};

/// Text to a contact reaches the contact's phone decrypted, and delivery then reading come back
/// as receipts; the contact's reply is decrypted by the client and acknowledged with a receipt.
pub async fn text_both_ways_with_receipts(backend: Backend) {
    let world = World::new(backend).await;
    let (me, contact) = ("60123000021", "60198700021");
    world.net.add_account(contact);
    let (session, mut events) = world.pair_by_qr(me).await;
    let contact_jid = Jid::for_phone(&format!("+{contact}").parse::<PhoneNumber>().expect("phone"));

    let id = session
        .send(&Outgoing::text(&contact_jid, "hello from wafleet"))
        .await
        .expect("send");
    eventually(EVENT_TIMEOUT, "the contact's phone decrypts the text", async || {
        world
            .net
            .sent(me)
            .iter()
            .any(|m| m.id == id && m.to == contact && m.text.as_deref() == Some("hello from wafleet"))
    })
    .await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match next(&mut events, "receipts for the text").await {
            LinkEvent::Receipt {
                kind,
                chat,
                message_ids,
                ..
            } if message_ids.contains(&id) => {
                assert_eq!(chat, contact_jid);
                seen.push(kind);
            }
            other => panic!("expected receipts for {id}, got {other:?}"),
        }
    }
    assert_eq!(seen, vec![ReceiptKind::Delivered, ReceiptKind::Read]);

    let reply = world
        .net
        .send_text(contact, me, "hi back")
        .await
        .expect("the contact replies");
    let LinkEvent::Message { message, ack } = next(&mut events, "the reply").await else {
        panic!("expected the reply");
    };
    ack.done();
    assert_eq!(message.id, reply);
    assert_eq!(message.chat, contact_jid);
    assert_eq!(message.sender, contact_jid);
    assert!(!message.from_me);
    assert_eq!(message.kind, MessageKind::Text);
    assert_eq!(message.text.as_deref(), Some("hi back"));
    eventually(EVENT_TIMEOUT, "the client reports delivery of the reply", async || {
        world.net.receipts_for(&reply).iter().any(|k| k == "delivery")
    })
    .await;

    // A second message each way rides the established sessions (Signal `msg`, not `pkmsg`).
    let second = session
        .send(&Outgoing::text(&contact_jid, "and again"))
        .await
        .expect("send again");
    eventually(EVENT_TIMEOUT, "the second text is decrypted", async || {
        world
            .net
            .sent(me)
            .iter()
            .any(|m| m.id == second && m.text.as_deref() == Some("and again"))
    })
    .await;
    let reply2 = world.net.send_text(contact, me, "me too").await.expect("reply again");
    loop {
        match next(&mut events, "the second reply").await {
            LinkEvent::Message { message, .. } => {
                assert_eq!(
                    (message.id.as_str(), message.text.as_deref()),
                    (reply2.as_str(), Some("me too"))
                );
                break;
            }
            LinkEvent::Receipt { .. } => {}
            other => panic!("expected the second reply, got {other:?}"),
        }
    }
    session.close().await;
}

wafleet_core::testing::on_both_backends!(text_both_ways_with_receipts);
