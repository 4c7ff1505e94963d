//! Milestone 6: how the adapter sees remote logouts, replaced connections and stream errors,
//! and its own logout.

use wafleet_core::link::{LinkEvent, OpenMode};
use wafleet_core::testing::{Backend, eventually};
use whatsapp_rust::wacore::store::traits::DeviceStore;

use crate::support::{EVENT_TIMEOUT, World, wait_for};

/// The phone unlinks the device while it is connected: LoggedOut, not banned.
pub async fn remote_logout_while_connected(backend: Backend) {
    let world = World::new(backend).await;
    let (session, mut events) = world.pair_by_qr("60123000031").await;
    assert_eq!(world.net.logout("60123000031"), 1);
    let event = wait_for(&mut events, "LoggedOut", |e| matches!(e, LinkEvent::LoggedOut { .. })).await;
    assert!(matches!(event, LinkEvent::LoggedOut { banned: false, .. }), "{event:?}");
    assert!(!world.net.is_linked("60123000031:1@s.whatsapp.net"));
    session.close().await;
}

/// Unlinked while offline: the next login is refused (`<failure reason=401>`) as LoggedOut.
pub async fn logged_out_while_offline_is_refused(backend: Backend) {
    let world = World::new(backend).await;
    let (session, _events) = world.pair_by_qr("60123000032").await;
    session.close().await;
    assert_eq!(world.net.logout("60123000032"), 1);
    let (session, mut events) = world.open(OpenMode::Connect).await;
    let event = wait_for(&mut events, "LoggedOut", |e| matches!(e, LinkEvent::LoggedOut { .. })).await;
    assert!(matches!(event, LinkEvent::LoggedOut { banned: false, .. }), "{event:?}");
    assert!(world.net.logged_in().is_empty());
    session.close().await;
}

/// Another connection of the device replaces this one: Disconnected, saying so.
pub async fn replaced_connection(backend: Backend) {
    let world = World::new(backend).await;
    let (session, mut events) = world.pair_by_qr("60123000033").await;
    assert!(world.net.replace("60123000033:1@s.whatsapp.net"));
    let event = wait_for(&mut events, "Disconnected", |e| {
        matches!(e, LinkEvent::Disconnected { .. })
    })
    .await;
    let LinkEvent::Disconnected { reason } = event else {
        unreachable!()
    };
    assert!(reason.contains("replaced"), "{reason}");
    session.close().await;
}

/// A stream error the client does not know ends the connection with a Disconnected that names
/// the code; the client then reconnects and logs in again on its own.
pub async fn stream_error_then_reconnect(backend: Backend) {
    let world = World::new(backend).await;
    let (session, mut events) = world.pair_by_qr("60123000034").await;
    let jid = "60123000034:1@s.whatsapp.net";
    assert!(world.net.stream_error(jid, "500"));
    let event = wait_for(&mut events, "Disconnected", |e| {
        matches!(e, LinkEvent::Disconnected { .. })
    })
    .await;
    let LinkEvent::Disconnected { reason } = event else {
        unreachable!()
    };
    assert!(reason.contains("500"), "{reason}");
    // The client reports the stream error and then, separately, the socket the server closes
    // after it: any number of Disconnected may come before it is back.
    loop {
        match crate::support::next(&mut events, "Connected again").await {
            LinkEvent::Connected => break,
            LinkEvent::Disconnected { .. } | LinkEvent::Receipt { .. } => {}
            other => panic!("expected Connected again, got {other:?}"),
        }
    }
    eventually(EVENT_TIMEOUT, "logged in again", async || {
        world.net.logged_in() == vec![jid.to_owned()]
    })
    .await;
    session.close().await;
}

/// wafleet's own logout unlinks the device on the server and wipes its stored state.
pub async fn logout_from_wafleet_unlinks(backend: Backend) {
    let world = World::new(backend).await;
    let (session, _events) = world.pair_by_qr("60123000035").await;
    session.logout().await.expect("logout");
    assert!(!world.net.is_linked("60123000035:1@s.whatsapp.net"));
    assert!(
        world.store.load().await.unwrap().is_none(),
        "the device's state is wiped"
    );
}

wafleet_core::testing::on_both_backends!(
    remote_logout_while_connected,
    logged_out_while_offline_is_refused,
    replaced_connection,
    stream_error_then_reconnect,
    logout_from_wafleet_unlinks
);
