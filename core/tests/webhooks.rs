//! Webhook storage: what webhooks cost the ingest, and housekeeping of deliveries.
//!
//! The ingest test writes batches of 500 messages for a device whose owner has a webhook and for
//! one whose owner has none, interleaved, each timed. The hooked batches record one delivery per
//! new message, all for their owner; the others record none. The times are printed
//! (`--no-capture`) for the README's figures.

use std::time::{Duration, Instant};

use wafleet_core::Db;
use wafleet_core::db::{Desired, DeviceStatus, Fence, IngestItem, NewUserRole};
use wafleet_core::link::{IncomingMessage, Jid, MessageKind};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::{Email, Timestamp, UserId};

const BATCHES: usize = 10;
const ROWS: usize = 500;

async fn held_device(db: &Db, owner: &str) -> (UserId, Fence) {
    let email = Email::parse(&format!("{owner}@example.com")).unwrap();
    let user = db
        .create_user(&email, "unused", NewUserRole::FirstBecomesAdmin)
        .await
        .unwrap()
        .id;
    let device = db.create_device(user, owner, None).await.unwrap().id;
    db.request_session(user, device, Desired::Connected, None)
        .await
        .unwrap();
    let fences = db.claim_leases("ingest", 10, 600).await.unwrap();
    (user, *fences.iter().find(|f| f.device == device).unwrap())
}

fn batch(fence: Fence, n: usize) -> Vec<(Fence, IngestItem)> {
    (0..ROWS)
        .map(|i| {
            let chat = Jid(format!("6019{:07}@s.whatsapp.net", i % 50));
            let message = IncomingMessage {
                id: format!("m{n}-{i}"),
                chat: chat.clone(),
                sender: chat,
                sender_alt: None,
                from_me: false,
                push_name: Some("Contact".into()),
                kind: MessageKind::Text,
                text: Some(format!("message {i} of batch {n}")),
                sent_at: Timestamp::now(),
                history: false,
                media: None,
            };
            (fence, IngestItem::Message(message))
        })
        .collect()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

async fn webhooks_cost_the_ingest_little(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let (hooked, hooked_fence) = held_device(db, "hooked").await;
    let (plain, plain_fence) = held_device(db, "plain").await;
    db.put_webhook(hooked, "http://127.0.0.1:9/hook", "a-secret-of-enough-length", "", true)
        .await
        .unwrap();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for n in 0..BATCHES {
        for (fence, times) in [(plain_fence, &mut without), (hooked_fence, &mut with)] {
            let items = batch(fence, n);
            let started = Instant::now();
            let outcome = db.write_batch(&items).await.unwrap();
            times.push(started.elapsed());
            assert_eq!(outcome.new_messages, ROWS as u64);
        }
    }
    let recorded = db.deliveries(hooked, None, 500).await.unwrap();
    assert_eq!(recorded.len(), 500, "the newest page is full");
    assert!(
        recorded
            .iter()
            .all(|d| d.event == "message" && d.body.contains("\"session_id\""))
    );
    let session = format!("\"session_id\":\"{}\"", hooked_fence.device);
    assert!(
        recorded.iter().all(|d| d.body.contains(&session)),
        "only the hooked device's messages"
    );
    assert!(
        db.deliveries(plain, None, 10).await.unwrap().is_empty(),
        "no webhook, no deliveries"
    );
    let claimed = db.claim_unqueued_deliveries(100_000).await.unwrap();
    assert_eq!(claimed.len(), BATCHES * ROWS, "one delivery per new message");
    // Replays of a batch are skipped and record nothing more.
    db.write_batch(&batch(hooked_fence, 0)).await.unwrap();
    assert!(db.claim_unqueued_deliveries(10).await.unwrap().is_empty());
    println!(
        "{backend:?}: median batch of {ROWS} messages: {:?} without a webhook, {:?} with one",
        median(without),
        median(with)
    );
}

async fn housekeeping_removes_old_deliveries_and_requeues_lost_ones(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let email = Email::parse("tidy@example.com").unwrap();
    let user = db
        .create_user(&email, "unused", NewUserRole::FirstBecomesAdmin)
        .await
        .unwrap()
        .id;
    db.put_webhook(user, "https://example.com/h", "a-secret-of-enough-length", "", true)
        .await
        .unwrap();
    let lost = db.record_test_delivery(user).await.unwrap();
    assert_eq!(db.claim_unqueued_deliveries(10).await.unwrap(), [lost]);
    assert!(
        db.claim_unqueued_deliveries(10).await.unwrap().is_empty(),
        "claimed once"
    );

    // Nothing is old or stale yet.
    let long_ago = Timestamp::now().plus_secs(-3600);
    assert_eq!(db.tidy_deliveries(long_ago, long_ago).await.unwrap(), (0, 0));
    // Pending and claimed, but untouched since: its job was lost, so it is queued again.
    let soon = Timestamp::now().plus_secs(1);
    assert_eq!(db.tidy_deliveries(long_ago, soon).await.unwrap(), (0, 1));
    assert_eq!(db.claim_unqueued_deliveries(10).await.unwrap(), [lost]);
    // Old enough: removed.
    assert_eq!(db.tidy_deliveries(soon, long_ago).await.unwrap(), (1, 0));
    assert!(db.deliveries(user, None, 10).await.unwrap().is_empty());
}

/// The owner logging an online device out, or asking to pair it again, takes it offline:
/// `device.disconnected` is recorded with that change, once; the holder's later status change
/// (from a device no longer online) adds none.
async fn owner_requests_record_device_disconnected(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let (user, fence) = held_device(db, "owner").await;
    db.put_webhook(
        user,
        "https://hooks.example.com/in",
        "a-secret-of-enough-length",
        "",
        true,
    )
    .await
    .unwrap();
    let events = || async {
        let mut names: Vec<(String, String)> = db
            .deliveries(user, None, 500)
            .await
            .unwrap()
            .into_iter()
            .map(|d| {
                let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
                (
                    d.event,
                    body["payload"]["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        names.reverse();
        names
    };

    db.set_device_status(fence, DeviceStatus::Online).await.unwrap();
    db.request_session(user, fence.device, Desired::PairQr, None)
        .await
        .unwrap();
    // The holder reopens it to pair; pairing is no change of online-ness.
    db.set_device_status(fence, DeviceStatus::Pairing).await.unwrap();
    db.set_device_status(fence, DeviceStatus::Online).await.unwrap();
    db.request_session(user, fence.device, Desired::Unlinked, None)
        .await
        .unwrap();
    db.mark_unlinked(fence, DeviceStatus::LoggedOut, "logged out by its owner")
        .await
        .unwrap();
    assert_eq!(
        events().await,
        [
            ("device.connected".to_owned(), "online".to_owned()),
            ("device.disconnected".to_owned(), "pairing".to_owned()),
            ("device.connected".to_owned(), "online".to_owned()),
            ("device.disconnected".to_owned(), "offline".to_owned()),
        ]
    );
}

wafleet_core::testing::on_both_backends!(
    webhooks_cost_the_ingest_little,
    housekeeping_removes_old_deliveries_and_requeues_lost_ones,
    owner_requests_record_device_disconnected
);
