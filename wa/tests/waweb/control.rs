//! The simulator's control API scripts the front end's phones for other processes
//! (`/control/waweb/…`, served when `wafleet sim --waweb-port` runs it).

use std::sync::Arc;
use std::time::Duration;

use wafleet_core::link::{Link, LinkEvent, OpenMode};
use wafleet_core::testing::Backend;
use wafleet_sim::SimConfig;
use wafleet_sim::waweb::{self, WaWebConfig};
use wafleet_wa::{WaLink, WaLinkConfig};

use crate::support::wait_for;

/// One device links by QR and one by pair code through the control API; what cannot be done
/// (no front end, a code without its number, a wrong code) is refused with the reason.
pub async fn control_api_links_by_qr_and_code(backend: Backend) {
    let (test, _user, stores) = crate::common::devices(backend, 2).await;
    let sim = wafleet_sim::start(SimConfig::for_tests())
        .await
        .expect("start the simulator");
    let control = sim.control();
    let err = control
        .waweb_logged_in()
        .await
        .expect_err("no front end is attached yet");
    assert!(format!("{err:#}").contains("--waweb-port"), "{err:#}");

    let net = Arc::new(
        waweb::start(WaWebConfig::for_tests())
            .await
            .expect("start the front end"),
    );
    sim.attach_waweb(Arc::clone(&net));
    let link = WaLink::with_config(
        test.db.clone(),
        test.keys.clone(),
        WaLinkConfig {
            server_url: Some(net.url()),
            connect_timeout: Duration::from_secs(5),
            app_version: Some((2, 3000, 1)),
            plain_http_media: true,
            ..WaLinkConfig::default()
        },
    );

    let mut by_qr = link.open(stores[0].device(), OpenMode::PairQr).await.expect("open");
    let mut events = by_qr.take_events().expect("events");
    let mut linked = None;
    while linked.is_none() {
        let LinkEvent::QrCode { code, .. } =
            wait_for(&mut events, "a QR code", |e| matches!(e, LinkEvent::QrCode { .. })).await
        else {
            unreachable!()
        };
        linked = control.waweb_scan(&code, "+60123000041").await.ok();
    }
    assert_eq!(linked.unwrap().jid.0, "60123000041@s.whatsapp.net");
    wait_for(&mut events, "PairSuccess", |e| {
        matches!(e, LinkEvent::PairSuccess { .. })
    })
    .await;
    wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;

    let number = "+60123000042".parse().expect("a valid number");
    let mut by_code = link
        .open(stores[1].device(), OpenMode::PairCode(number))
        .await
        .expect("open");
    let mut events = by_code.take_events().expect("events");
    let LinkEvent::PairCode { code } =
        wait_for(&mut events, "a pair code", |e| matches!(e, LinkEvent::PairCode { .. })).await
    else {
        unreachable!()
    };
    let err = control
        .waweb_enter_code("", &code)
        .await
        .expect_err("a code needs its number");
    assert!(format!("{err:#}").contains("not a phone number"), "{err:#}");
    let err = control
        .waweb_enter_code("+60123000043", &code)
        .await
        .expect_err("nobody asked for a code for this number");
    assert!(format!("{err:#}").contains("no companion waits"), "{err:#}");
    let paired = control
        .waweb_enter_code("+60123000042", &code)
        .await
        .expect("the phone types the code");
    assert_eq!(paired.jid.0, "60123000042@s.whatsapp.net");
    wait_for(&mut events, "PairSuccess", |e| {
        matches!(e, LinkEvent::PairSuccess { .. })
    })
    .await;
    wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;

    assert_eq!(
        control.waweb_logged_in().await.expect("logged in"),
        vec!["60123000041:1@s.whatsapp.net", "60123000042:1@s.whatsapp.net"]
    );
    let stats = control.waweb_stats().await.expect("stats");
    assert_eq!(
        (
            stats.linked,
            stats.pairings,
            stats.logged_in,
            stats.pairing,
            stats.replaced
        ),
        (2, 2, 2, 0, 0),
        "{stats:?}"
    );
    by_qr.close().await;
    by_code.close().await;
}

wafleet_core::testing::on_both_backends!(control_api_links_by_qr_and_code);
