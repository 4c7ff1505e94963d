//! Simulator behaviour beyond the `Link` contract: replies, schedules, stopping, the live page.

use std::time::Duration;

use wafleet_core::link::{Jid, LinkError, LinkEvent, OpenMode, Outgoing};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_sim::conformance::{Harness, SimHarness, pair, unique_phone, wait_for};
use wafleet_sim::control::NumberRule;

async fn harness() -> (TestDb, SimHarness) {
    let test_db = TestDb::new(Backend::Sqlite).await;
    let harness = SimHarness::start(test_db.db.clone())
        .await
        .expect("start the simulator");
    (test_db, harness)
}

fn is_message(event: &LinkEvent) -> bool {
    matches!(event, LinkEvent::Message { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_reply_and_schedules_deliver() {
    let (_db, h) = harness().await;
    let mut paired = pair(&h).await;
    let contact = unique_phone();
    let rule = NumberRule {
        phone: contact.as_str().into(),
        reply_probability: Some(1.0),
        ..NumberRule::default()
    };
    h.network().set_number(&rule).await.expect("configure the contact");
    paired
        .session
        .send(&Outgoing::text(&Jid::for_phone(&contact), "ping"))
        .await
        .expect("send");
    let LinkEvent::Message { message, ack } = wait_for(&mut paired.events, "the reply", is_message).await else {
        unreachable!()
    };
    assert_eq!(
        (message.sender, message.text.as_deref()),
        (Jid::for_phone(&contact), Some("Re: ping"))
    );
    ack.done();
    let state = h.network().state().await.expect("state");
    let account = state
        .accounts
        .iter()
        .find(|a| a.phone == paired.phone.as_str())
        .expect("account");
    assert_eq!(
        (account.stranger_messages, account.unreplied),
        (1, 0),
        "a reply clears the unreplied count"
    );

    let sender = unique_phone();
    h.network()
        .schedule(paired.phone.as_str(), 1200.0, vec![sender.as_str().into()])
        .await
        .expect("schedule");
    for _ in 0..2 {
        let LinkEvent::Message { message, .. } = wait_for(&mut paired.events, "a scheduled message", is_message).await
        else {
            unreachable!()
        };
        assert_eq!(message.sender, Jid::for_phone(&sender));
    }
    h.network()
        .schedule(paired.phone.as_str(), 0.0, vec![])
        .await
        .expect("stop the schedule");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_simulator_gives_transient_errors() {
    let (_db, h) = harness().await;
    let mut paired = pair(&h).await;
    let link = h.link();
    drop(h);
    let event = wait_for(&mut paired.events, "Disconnected", |e| {
        matches!(e, LinkEvent::Disconnected { .. })
    })
    .await;
    assert!(matches!(event, LinkEvent::Disconnected { .. }));
    let sent = tokio::time::timeout(
        Duration::from_secs(10),
        paired.session.send(&Outgoing::text(&paired.jid(), "hello")),
    )
    .await
    .expect("never hangs");
    assert!(matches!(sent, Err(LinkError::Transient(_))), "{sent:?}");
    let opened = tokio::time::timeout(Duration::from_secs(10), link.open(paired.device, OpenMode::Connect))
        .await
        .expect("never hangs");
    assert!(matches!(opened, Err(LinkError::Transient(_))), "{:?}", opened.err());
    paired.session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_lists_pending_pairings_and_the_page_renders() {
    let (_db, h) = harness().await;
    let device = wafleet_sim::conformance::new_device(h.db()).await;
    let mut session = h.link().open(device, OpenMode::PairQr).await.expect("open");
    let mut events = session.take_events().expect("events");
    let Some(LinkEvent::QrCode { code, .. }) = events.recv().await else {
        panic!("expected a QR code")
    };
    let state = h.network().state().await.expect("state");
    let shown = state
        .pairings
        .iter()
        .find(|p| p.kind == "qr")
        .expect("a pending QR pairing");
    if shown.code != code {
        // Refreshed in between: the state shows the next code.
        let Some(LinkEvent::QrCode { code: next, .. }) = events.recv().await else {
            panic!("expected a QR code")
        };
        assert_eq!(next, shown.code);
    }
    let page = reqwest::get(format!("http://{}/", h.sim().addr()))
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("/control/state"));
    session.close().await;
    for _ in 0..200 {
        if h.network().state().await.expect("state").pairings.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a closed pairing session is forgotten");
}
