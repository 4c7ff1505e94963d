//! Milestone 7 (images): pictures both ways through the simulated media host.

use wafleet_core::link::{Attachment, Jid, LinkEvent, MessageKind, Outgoing, OutgoingMedia};
use wafleet_core::testing::{Backend, eventually};
use wafleet_core::types::PhoneNumber;

use crate::support::{EVENT_TIMEOUT, World, next};

/// A picture the client uploads (encrypted) and sends reaches the contact's phone, which
/// fetches and decrypts the same bytes; the contact's picture arrives as an image message.
pub async fn image_both_ways(backend: Backend) {
    let world = World::new(backend).await;
    let (me, contact) = ("60123000041", "60198700041");
    world.net.add_account(contact);
    let (session, mut events) = world.pair_by_qr(me).await;
    let contact_jid = Jid::for_phone(&format!("+{contact}").parse::<PhoneNumber>().expect("phone"));
    let picture: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();

    let id = session
        .send(&Outgoing::media(
            &contact_jid,
            OutgoingMedia {
                file: Attachment::jpeg(picture.clone()),
                caption: Some("a picture".into()),
            },
        ))
        .await
        .expect("send an image");
    eventually(
        EVENT_TIMEOUT,
        "the contact's phone gets the image message",
        async || world.net.sent(me).iter().any(|m| m.id == id && m.kind == "image"),
    )
    .await;
    let sent = world.net.sent(me).into_iter().find(|m| m.id == id).expect("sent");
    assert_eq!(sent.text.as_deref(), Some("a picture"));
    assert_eq!(world.net.media_bytes(&sent).expect("download and decrypt"), picture);

    let back = world
        .net
        .send_image(contact, me, &picture[..1000], "back at you")
        .await
        .expect("the contact sends a picture");
    loop {
        match next(&mut events, "the contact's picture").await {
            LinkEvent::Message { message, .. } => {
                assert_eq!(message.id, back);
                assert_eq!(message.kind, MessageKind::Image);
                assert_eq!(message.text.as_deref(), Some("back at you"));
                break;
            }
            LinkEvent::Receipt { .. } => {}
            other => panic!("expected the picture, got {other:?}"),
        }
    }
    session.close().await;
}

wafleet_core::testing::on_both_backends!(image_both_ways);
