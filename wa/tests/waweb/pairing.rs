//! Milestones 1-3: handshake and registration, QR pairing, logging in again after a restart.

use wafleet_core::link::{LinkEvent, OpenMode};
use wafleet_core::testing::{Backend, eventually};
use whatsapp_rust::wacore::store::traits::DeviceStore;

use crate::support::{EVENT_TIMEOUT, World, next, wait_for};

/// The real client completes the Noise handshake against the self-made certificate chain,
/// registers, and shows the refs the server issues as QR codes, a new one on each refresh.
pub async fn handshake_then_refreshing_qr_codes(backend: Backend) {
    let world = World::new(backend).await;
    let (session, mut events) = world.open(OpenMode::PairQr).await;
    let LinkEvent::QrCode { code: first, valid_for } = next(&mut events, "the first QR code").await else {
        panic!("the first event must be a QR code");
    };
    assert!(!valid_for.is_zero());
    let parts: Vec<&str> = first.split(',').collect();
    assert_eq!(
        parts.len(),
        5,
        "ref, noise key, identity key, ADV secret, platform (as WhatsApp Web shows them): {first}"
    );
    let issued = world.net.pairing_refs();
    assert_eq!(issued.len(), 1, "one companion is pairing");
    assert_eq!(issued[0][0], parts[0], "the QR code shows the server's first ref");

    let LinkEvent::QrCode { code: second, .. } = next(&mut events, "a refreshed QR code").await else {
        panic!("expected a refreshed QR code");
    };
    assert_ne!(first, second);
    assert!(
        world.net.scan(&first, "60123000001").is_err(),
        "a replaced code does not link"
    );
    assert!(world.net.logged_in().is_empty());
    session.close().await;
}

/// A simulated phone scans the code: the client verifies the account's signature over its
/// identity, counter-signs, restarts the stream and logs in as the phone's new device.
pub async fn qr_pairing_logs_in(backend: Backend) {
    let world = World::new(backend).await;
    let phone = "60123000002";
    let (session, _events) = world.pair_by_qr(phone).await;
    let jid = format!("{phone}:1@s.whatsapp.net");
    assert_eq!(world.net.logged_in(), vec![jid.clone()]);
    let stored = world.store.load().await.unwrap().expect("the device is stored");
    assert_eq!(stored.pn.map(|j| j.to_string()), Some(jid));
    assert!(stored.account.is_some(), "the signed device identity is kept");
    assert!(stored.lid.is_some(), "the account's LID is kept");
    session.close().await;
}

/// After a restart (a new link on the same database), the device logs in with its stored
/// credentials: Connected, without any pairing event.
pub async fn restart_logs_in_without_pairing(backend: Backend) {
    let world = World::new(backend).await;
    let phone = "60123000003";
    let (session, _events) = world.pair_by_qr(phone).await;
    session.close().await;
    eventually(EVENT_TIMEOUT, "the first session is gone", async || {
        world.net.logged_in().is_empty()
    })
    .await;

    let before = world.net.handshakes();
    let (session, mut events) = world.open(OpenMode::Connect).await;
    let event = wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
    assert!(matches!(event, LinkEvent::Connected));
    assert_eq!(world.net.logged_in(), vec![format!("{phone}:1@s.whatsapp.net")]);
    assert!(world.net.pairing_refs().is_empty(), "no pairing on the way");
    let after = world.net.handshakes();
    assert_eq!(
        (after.ik - before.ik, after.xx - before.xx),
        (1, 0),
        "the client kept the server's static key and resumed with IK"
    );
    session.close().await;
}

/// A client that kept a static key the server no longer has (it rotated its key) resumes with
/// IK sealed to the old key: the server cannot open it and answers XXfallback, over which the
/// client logs in and learns the new key, so that its next resume is IK again.
pub async fn stale_server_key_falls_back_to_xx(backend: Backend) {
    let world = World::new(backend).await;
    let phone = "60123000006";
    let (session, _events) = world.pair_by_qr(phone).await;
    session.close().await;
    eventually(EVENT_TIMEOUT, "the first session is gone", async || {
        world.net.logged_in().is_empty()
    })
    .await;
    // The closed client's last writes may still land: replace the key until it stays replaced.
    let stale = [7; 32];
    let mut current = None;
    for _ in 0..100 {
        let mut device = world.store.load().await.unwrap().expect("the device is stored");
        match device.server_cert_chain.as_mut() {
            Some(chain) if chain.leaf.key == stale => break,
            Some(chain) => {
                current = Some(chain.leaf.key);
                chain.leaf.key = stale;
                world.store.save(&device).await.unwrap();
            }
            None => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let current = current.expect("the server's key is kept");

    let before = world.net.handshakes();
    let (session, mut events) = world.open(OpenMode::Connect).await;
    wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
    let after = world.net.handshakes();
    assert_eq!(after.xx_fallback - before.xx_fallback, 1, "{before:?} → {after:?}");
    // The client stores the key it learnt once its handshake is done, in the background.
    eventually(
        std::time::Duration::from_secs(10),
        "the server's current key is kept",
        async || {
            let device = world.store.load().await.unwrap().expect("the device is stored");
            device.server_cert_chain.map(|c| c.leaf.key) == Some(current)
        },
    )
    .await;
    session.close().await;
    eventually(EVENT_TIMEOUT, "the session is gone", async || {
        world.net.logged_in().is_empty()
    })
    .await;

    let (session, mut events) = world.open(OpenMode::Connect).await;
    wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
    assert_eq!(world.net.handshakes().ik - after.ik, 1, "resumed with IK again");
    session.close().await;
}

/// The client asks for a pairing code for a number; the phone of that number types it: the
/// key exchange completes, the phone vouches for the companion's identity as after a QR scan,
/// and the device logs in, then logs in again from stored credentials on a new link.
pub async fn pair_code_links_and_logs_in_again(backend: Backend) {
    let world = World::new(backend).await;
    let phone = "60123000004";
    let (session, _events) = world.pair_by_code(phone).await;
    let jid = format!("{phone}:1@s.whatsapp.net");
    assert_eq!(world.net.logged_in(), vec![jid.clone()]);
    let stored = world.store.load().await.unwrap().expect("the device is stored");
    assert_eq!(stored.pn.map(|j| j.to_string()), Some(jid.clone()));
    assert!(stored.account.is_some(), "the signed device identity is kept");
    session.close().await;
    eventually(EVENT_TIMEOUT, "the first session is gone", async || {
        world.net.logged_in().is_empty()
    })
    .await;

    let (session, mut events) = world.open(OpenMode::Connect).await;
    wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
    assert_eq!(world.net.logged_in(), vec![jid]);
    session.close().await;
}

/// A code typed wrong cannot open the companion's key bundle: nothing is linked, the phone is
/// told why, and the companion is not logged in.
pub async fn wrong_pair_code_links_nothing(backend: Backend) {
    let world = World::new(backend).await;
    let phone = "60123000005";
    let (code, session, _events) = world.request_code(phone).await;
    let wrong = if code.starts_with('A') { "BBBBBBBB" } else { "AAAAAAAA" };
    let err = world
        .net
        .enter_code(phone, wrong)
        .await
        .expect_err("a wrong code must not link");
    assert!(err.to_string().contains("code"), "says the code is wrong: {err:#}");
    assert!(!world.net.is_linked(&format!("{phone}:1@s.whatsapp.net")));
    assert!(world.net.logged_in().is_empty());
    assert!(
        world.net.enter_code("60123000099", &code).await.is_err(),
        "no companion waits for another number"
    );
    session.close().await;
}

wafleet_core::testing::on_both_backends!(
    handshake_then_refreshing_qr_codes,
    qr_pairing_logs_in,
    restart_logs_in_without_pairing,
    stale_server_key_falls_back_to_xx,
    pair_code_links_and_logs_in_again,
    wrong_pair_code_links_nothing
);
