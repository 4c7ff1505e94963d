//! Pacing on the real send path: a worker holding a simulated device spaces the device's sends by
//! its pacing policy (sends over pace come back later instead of going at once), and with pacing
//! off sends them as they come.
//!
//! Runs against the project's WhatsApp network simulator only, never real WhatsApp.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::link_simulated_devices;
use wafleet_core::cache::{Invalidations, ReadCache};
use wafleet_core::db::{NewSend, OutboundStatus, Pacing};
use wafleet_core::link::Jid;
use wafleet_core::shutdown;
use wafleet_core::testing::{Backend, TestDb, poll_for};
use wafleet_core::types::{Email, Timestamp};
use wafleet_sim::{SimConfig, SimLink};
use wafleet_workers::WorkerOptions;

/// Sends three messages from one device under `policy` and returns when WhatsApp accepted each.
async fn three_sends(backend: Backend, policy: Pacing) -> Vec<Timestamp> {
    let test = TestDb::new(backend).await;
    let db = test.db.clone();
    let sim = wafleet_sim::start(SimConfig::for_tests()).await.unwrap();
    let device = link_simulated_devices(&db, &sim.control(), &sim.ws_url(), 1, &test.keys, |_| "pace".into()).await[0];
    let user = db
        .user_by_email(&Email::parse("pace@example.com").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    db.set_pacing(user, device, &policy).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let send = NewSend {
            user,
            device,
            idempotency_key: format!("pace-{n}"),
            to: Jid(format!("6019000000{n}@s.whatsapp.net")),
            body: Some("hello".into()),
            media: None,
            structured: None,
            forwarded: false,
        };
        ids.push(db.record_send(&send).await.unwrap().0.id);
    }
    let (trigger, signal) = shutdown::channel();
    let options = WorkerOptions {
        id: "pacer".into(),
        capacity: 10,
        claim_rate: 100,
        lease_ttl: Duration::from_secs(5),
        confirm_wait: Duration::from_secs(60),
        webhooks: wafleet_workers::WebhookOptions::default(),
        media: None,
    };
    let link = Arc::new(SimLink::new(sim.ws_url(), db.clone(), test.keys.clone()));
    let worker = tokio::spawn(wafleet_workers::run(
        db.clone(),
        link,
        test.queues().await,
        Invalidations::Local(ReadCache::off()),
        options,
        signal,
    ));
    let mut sent = Vec::new();
    // Not a failure by itself when it times out: the checks below say what went wrong.
    poll_for(Duration::from_secs(60), async || {
        sent.clear();
        for id in &ids {
            let message = db.outbound_message(user, *id).await.unwrap();
            assert_ne!(message.status, OutboundStatus::Failed, "{message:?}");
            sent.extend(message.sent_at);
        }
        (sent.len() == ids.len()).then_some(())
    })
    .await;
    trigger.trigger();
    let _ = worker.await;
    assert_eq!(sent.len(), 3, "every send went out");
    sent.sort();
    sent
}

fn gaps(sent: &[Timestamp]) -> Vec<i64> {
    sent.windows(2).map(|w| w[1].millis() - w[0].millis()).collect()
}

async fn sends_keep_the_devices_pace(backend: Backend) {
    let policy = Pacing {
        per_minute: 20,
        jitter_ms: 0,
        warmup_days: 0,
        ..Pacing::default()
    };
    let paced = gaps(&three_sends(backend, policy.clone()).await);
    println!("paced at 20 a minute: gaps {paced:?} ms");
    assert!(paced.iter().all(|gap| *gap >= 2_900), "three seconds apart: {paced:?}");
    let unpaced = gaps(
        &three_sends(
            backend,
            Pacing {
                enabled: false,
                ..policy
            },
        )
        .await,
    );
    println!("pacing off: gaps {unpaced:?} ms");
    assert!(unpaced.iter().all(|gap| *gap < 2_000), "at once: {unpaced:?}");
}

wafleet_core::testing::on_both_backends!(sends_keep_the_devices_pace);
