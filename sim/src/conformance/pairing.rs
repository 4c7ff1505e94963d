//! Pairing by QR code and by pair code, and resuming a device from another link instance.

use wafleet_core::link::{Jid, LinkError, LinkEvent, OpenMode, Outgoing};

use super::support::{contact, new_device, next_event, pair, sent_message, unique_phone, wait_for};
use super::{Contact, Harness};

/// QR codes come at once and refresh; an old code no longer links; scanning the current one
/// gives PairSuccess with the scanning phone's JID, stored credentials, then Connected.
pub async fn qr_pairing_with_refreshing_codes(h: &dyn Harness) {
    let device = new_device(h.db()).await;
    let phone = unique_phone();
    let mut session = h
        .link()
        .open(device, OpenMode::PairQr)
        .await
        .expect("open for QR pairing");
    let mut events = session.take_events().expect("events");
    let LinkEvent::QrCode { code: first, valid_for } = next_event(&mut events, "the first QR code").await else {
        panic!("the first event must be a QR code");
    };
    assert!(!valid_for.is_zero(), "a QR code says how long it is valid");
    let LinkEvent::QrCode { code: mut current, .. } = next_event(&mut events, "a refreshed QR code").await else {
        panic!("QR codes must refresh");
    };
    assert_ne!(first, current, "a refreshed code differs");
    assert!(
        h.phones().scan(&first, &phone).await.is_err(),
        "an expired code does not link"
    );
    // The code may refresh again between reading it and scanning it: scan the newest one.
    let mut attempts = 0;
    while let Err(err) = h.phones().scan(&current, &phone).await {
        attempts += 1;
        assert!(attempts < 5, "scanning the current QR code failed: {err:#}");
        let LinkEvent::QrCode { code, .. } = next_event(&mut events, "a QR code").await else {
            panic!("expected a QR code");
        };
        current = code;
    }
    let event = wait_for(&mut events, "PairSuccess", |e| {
        matches!(e, LinkEvent::PairSuccess { .. })
    })
    .await;
    let LinkEvent::PairSuccess { jid } = event else {
        panic!("expected PairSuccess, got {event:?}")
    };
    assert_eq!(jid, Jid::for_phone(&phone));
    wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
    assert!(
        h.has_credentials(device).await,
        "credentials are stored on pair success"
    );
    session.close().await;
}

/// One `XXXX-XXXX` code (A-Z, 0-9; QR codes may come too, as either way links); typing it on
/// the phone of the number it was asked for links that number.
pub async fn pair_code_pairing(h: &dyn Harness) {
    let device = new_device(h.db()).await;
    let phone = unique_phone();
    let mut session = h
        .link()
        .open(device, OpenMode::PairCode(phone.clone()))
        .await
        .expect("open for pair code");
    let mut events = session.take_events().expect("events");
    let LinkEvent::PairCode { code } =
        wait_for(&mut events, "a pair code", |e| matches!(e, LinkEvent::PairCode { .. })).await
    else {
        unreachable!("wait_for returns what it waited for");
    };
    let (left, right) = code.split_once('-').unwrap_or_else(|| panic!("{code} has no dash"));
    for half in [left, right] {
        assert_eq!(half.len(), 4, "{code}");
        assert!(
            half.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
            "{code}"
        );
    }
    assert!(
        h.phones().enter_pair_code(&phone, "AAAA-0000").await.is_err(),
        "an unknown code links nothing"
    );
    let linked = h.phones().enter_pair_code(&phone, &code).await.expect("type the code");
    assert_eq!(linked, Jid::for_phone(&phone));
    let event = wait_for(&mut events, "PairSuccess", |e| {
        matches!(e, LinkEvent::PairSuccess { .. })
    })
    .await;
    let LinkEvent::PairSuccess { jid } = event else {
        panic!("expected PairSuccess, got {event:?}");
    };
    assert_eq!(jid, Jid::for_phone(&phone));
    wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
    assert!(
        h.has_credentials(device).await,
        "credentials are stored on pair success"
    );
    session.close().await;
}

/// After `close()`, another link instance (another worker) resumes the device from the stored
/// credentials and can send; a device without credentials cannot connect.
pub async fn reconnect_from_another_link(h: &dyn Harness) {
    let paired = pair(h).await;
    paired.session.close().await;
    assert!(h.has_credentials(paired.device).await, "close keeps the credentials");

    let mut session = h
        .link()
        .open(paired.device, OpenMode::Connect)
        .await
        .expect("resume elsewhere");
    let mut events = session.take_events().expect("events");
    assert!(matches!(
        next_event(&mut events, "Connected").await,
        LinkEvent::Connected
    ));
    let to = Jid::for_phone(&contact(h, Contact::OnWhatsApp).await);
    let id = session
        .send(&Outgoing::text(&to, "from the second worker"))
        .await
        .expect("send after resuming");
    assert_eq!(sent_message(h, &paired.phone, &id).await.to, to);
    session.close().await;

    let unpaired = new_device(h.db()).await;
    match h.link().open(unpaired, OpenMode::Connect).await {
        Err(LinkError::Device(_)) => {}
        other => panic!("a device without credentials cannot connect: {:?}", other.err()),
    }
}
