//! Milestone 4: what keeps a session usable — keepalive pings both ways, prekeys uploaded and
//! counted, and the usync query behind "is this number on WhatsApp".

use std::time::Duration;

use wafleet_core::testing::{Backend, eventually};
use wafleet_core::types::PhoneNumber;

use crate::support::{EVENT_TIMEOUT, World};

/// The client uploads a batch of one-time prekeys when the server counts too few, answers the
/// server's pings, and pings on its own (every 20-30 s).
pub async fn keepalive_and_prekeys(backend: Backend) {
    let world = World::new(backend).await;
    let (session, _events) = world.pair_by_qr("60123000011").await;
    let jid = "60123000011:1@s.whatsapp.net";
    eventually(EVENT_TIMEOUT, "prekeys are uploaded", async || {
        world.net.prekey_count(jid).unwrap_or(0) >= 5
    })
    .await;
    world
        .net
        .ping(jid, Duration::from_secs(5))
        .await
        .expect("the client answers the server's ping");
    eventually(
        Duration::from_secs(40),
        "a keepalive ping from the client",
        async || world.net.pings_from(jid) > 0,
    )
    .await;
    session.close().await;
}

/// Numbers with an account are on WhatsApp (with their JID), others are not.
pub async fn check_numbers_uses_usync(backend: Backend) {
    let world = World::new(backend).await;
    world.net.add_account("60198700001");
    let (session, _events) = world.pair_by_qr("60123000012").await;
    let on: PhoneNumber = "+60198700001".parse().expect("phone");
    let off: PhoneNumber = "+60198700002".parse().expect("phone");
    let checks = session
        .check_numbers(&[on.clone(), off.clone()])
        .await
        .expect("check numbers");
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].phone, on);
    assert_eq!(
        checks[0].jid.as_ref().map(|j| j.0.as_str()),
        Some("60198700001@s.whatsapp.net")
    );
    assert_eq!(checks[1].phone, off);
    assert_eq!(checks[1].jid, None, "an unknown number is not on WhatsApp");
    session.close().await;
}

wafleet_core::testing::on_both_backends!(keepalive_and_prekeys, check_numbers_uses_usync);
