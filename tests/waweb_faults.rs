//! kill -9 of a worker holding real-client sessions, at the two moments that matter, against the
//! simulator's WhatsApp Web front end over real sockets, on SQLite and on PostgreSQL:
//!
//! - between decrypting an incoming message and committing it: every message the front end sent
//!   is stored exactly once after another worker resumes the session, and no delivery receipt
//!   reached the front end for a message before it was stored;
//! - between sending a message and recording it as sent: the send ends delivered, resolved by the
//!   id it went out under, sent once, never marked failed;
//! - between a delivery receipt's arrival and its commit: WhatsApp keeps the receipt until it is
//!   stored, and the send ends delivered once another worker resumes the session.
//!
//! The worker runs on a runtime of its own; dropping that runtime is the kill (none of its code
//! runs again and its sockets close). Everything here runs against the project's simulator.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use support::faults::{FreezeAfterSend, StallCommit, worker_process};
use support::stack::{StackOn, wa_link_config};
use wafleet_core::Db;
use wafleet_core::testing::{Backend, eventually};
use wafleet_sim::waweb::{self, WaWebConfig, WaWebHandle};
use wafleet_wa::WaLink;

type Stack = StackOn<WaWebHandle>;

const MESSAGES: usize = 20;
/// The message the first worker holds between decrypting and committing it.
const STALLED: usize = 7;

/// Starts the stack on a front end with `config`, links one device by QR code with the stack's
/// own worker, and stops that worker; returns the stack and the device's API path.
async fn linked(backend: Backend, config: WaWebConfig, phone: &str) -> (Stack, String) {
    let net = waweb::start(config).await.expect("front end starts");
    let mut stack = Stack::start_on(backend, net).await;
    let device = stack.add_device("Shop", &format!("+{phone}")).await;
    let (status, body) = stack.post(&format!("{device}/qr"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut code = body["results"]["qr_code"].as_str().unwrap().to_owned();
    while stack.sim.scan(&code, phone).is_err() {
        let fresh = stack
            .eventually(&format!("{device}/qr"), "a newer QR code", |v| {
                v["qr_code"].as_str().is_some_and(|c| c != code)
            })
            .await;
        code = fresh["qr_code"].as_str().unwrap().to_owned();
    }
    stack.eventually(&device, "online", |d| d["status"] == "online").await;
    stack.stop_worker().await;
    (stack, device)
}

/// [`linked`] on a front end whose phones report delivery `delivered_after` a message and read it
/// only ten minutes later, with the account of `contact` on it and the device's pacing off (a new
/// number's warm-up would hold its first send).
async fn linked_unpaced(backend: Backend, delivered_after: Duration, phone: &str, contact: &str) -> (Stack, String) {
    let config = WaWebConfig {
        delivered_after,
        read_after: Duration::from_secs(600),
        ..WaWebConfig::for_tests()
    };
    let (stack, device) = linked(backend, config, phone).await;
    stack.sim.add_account(contact);
    let mut policy = stack.get(&format!("{device}/pacing")).await["policy"].clone();
    policy["enabled"] = json!(false);
    let (status, body) = stack
        .call(reqwest::Method::PUT, &format!("{device}/pacing"), Some(policy))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (stack, device)
}

/// How many stored incoming messages have exactly `body`.
async fn stored(db: &Db, body: &str) -> i64 {
    const SQL: &str = "SELECT COUNT(*) FROM messages WHERE NOT from_me AND body = $1";
    wafleet_core::testing::fetch_optional(db, SQL, &[body.into()])
        .await
        .expect("a count")
}

fn body(n: usize) -> String {
    if n == STALLED {
        format!("stall {n}")
    } else {
        format!("message {n}")
    }
}

async fn messages_survive_a_kill_between_decrypt_and_commit(backend: Backend) {
    let (phone, contact) = ("60123500001", "60191500001");
    let (mut stack, _device) = linked(backend, WaWebConfig::for_tests(), phone).await;
    stack.sim.add_account(contact);

    let url = stack.sim.url();
    let first = worker_process(&stack.db.settings, &stack.db.keys, "first", move |db, keys| {
        Arc::new(StallCommit::messages(Arc::new(WaLink::with_config(
            db,
            keys,
            wa_link_config(&url),
        ))))
    });
    eventually(Duration::from_secs(30), "the first worker is logged in", || async {
        !stack.sim.logged_in().is_empty()
    })
    .await;
    let mut ids = Vec::with_capacity(MESSAGES);
    for n in 0..MESSAGES {
        ids.push(stack.sim.send_text(contact, phone, &body(n)).await.unwrap());
    }
    eventually(
        Duration::from_secs(30),
        "the messages before the stalled one are stored",
        || async {
            let mut all = true;
            for n in 0..STALLED {
                all &= stored(&stack.db.db, &body(n)).await == 1;
            }
            all
        },
    )
    .await;
    // Time for anything that would go wrong to go wrong: a receipt the phone must not have.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored(&stack.db.db, &body(STALLED)).await, 0, "held before its commit");
    assert!(
        !stack.sim.receipts_for(&ids[STALLED]).contains(&"delivery".to_owned()),
        "the phone heard the message was delivered before it was stored"
    );
    first.shutdown_background();

    stack.start_worker();
    eventually(
        Duration::from_secs(60),
        "every message stored after the resume",
        || async {
            let mut all = true;
            for n in 0..MESSAGES {
                all &= stored(&stack.db.db, &body(n)).await >= 1;
            }
            all
        },
    )
    .await;
    for n in 0..MESSAGES {
        assert_eq!(stored(&stack.db.db, &body(n)).await, 1, "{} stored once", body(n));
    }
    eventually(
        Duration::from_secs(30),
        "every message receipted to the phone",
        || async {
            ids.iter()
                .all(|id| stack.sim.receipts_for(id).contains(&"delivery".to_owned()))
        },
    )
    .await;
    assert!(
        stack.sim.pairing_refs().is_empty(),
        "the device resumed, nothing paired again"
    );
}

async fn a_send_killed_on_the_wire_is_resolved_by_its_receipt(backend: Backend) {
    let (phone, contact) = ("60123500002", "60191500002");
    // The phone reports delivery after the first worker is gone.
    let (mut stack, device) = linked_unpaced(backend, Duration::from_secs(3), phone, contact).await;

    let url = stack.sim.url();
    let first = worker_process(&stack.db.settings, &stack.db.keys, "first", move |db, keys| {
        Arc::new(FreezeAfterSend(Arc::new(WaLink::with_config(
            db,
            keys,
            wa_link_config(&url),
        ))))
    });
    stack.eventually(&device, "online", |d| d["status"] == "online").await;
    let send = stack
        .send(
            &device,
            "on-the-wire",
            json!({"to": format!("+{contact}"), "text": "did it arrive?"}),
        )
        .await;
    eventually(Duration::from_secs(30), "the phone got the message", || async {
        stack
            .sim
            .sent(phone)
            .iter()
            .any(|m| m.text.as_deref() == Some("did it arrive?"))
    })
    .await;
    assert_eq!(
        stack.get(&send).await["status"],
        "sending",
        "on the wire, not yet recorded"
    );
    first.shutdown_background();

    stack.start_worker();
    let resolved = stack
        .eventually_within(Duration::from_secs(60), &send, "delivered, resolved by its id", |m| {
            m["status"] == "delivered"
        })
        .await;
    let sent = stack.sim.sent(phone);
    let copies: Vec<_> = sent
        .iter()
        .filter(|m| m.text.as_deref() == Some("did it arrive?"))
        .collect();
    assert_eq!(copies.len(), 1, "sent once: {sent:?}");
    assert_eq!(
        resolved["wa_message_id"], copies[0].id,
        "recorded under the id it went out with"
    );
    assert!(resolved["sent_at"].is_string(), "{resolved}");
}

async fn a_receipt_survives_a_kill_before_its_commit(backend: Backend) {
    let (phone, contact) = ("60123500003", "60191500003");
    let (mut stack, device) = linked_unpaced(backend, Duration::from_millis(500), phone, contact).await;

    let url = stack.sim.url();
    let first = worker_process(&stack.db.settings, &stack.db.keys, "first", move |db, keys| {
        Arc::new(StallCommit::receipts(Arc::new(WaLink::with_config(
            db,
            keys,
            wa_link_config(&url),
        ))))
    });
    stack.eventually(&device, "online", |d| d["status"] == "online").await;
    let send = stack
        .send(
            &device,
            "receipt-held",
            json!({"to": format!("+{contact}"), "text": "tell me when it arrives"}),
        )
        .await;
    stack.eventually(&send, "sent", |m| m["status"] == "sent").await;
    eventually(Duration::from_secs(30), "the phone reported delivery", || async {
        stack.sim.pending_receipts(phone) > 0
    })
    .await;
    // Time for anything that would go wrong to go wrong: an ack for a receipt not stored.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        stack.sim.pending_receipts(phone) > 0,
        "WhatsApp was told the receipt was handled before it was stored"
    );
    assert_eq!(stack.get(&send).await["status"], "sent", "held before its commit");
    first.shutdown_background();

    stack.start_worker();
    stack
        .eventually_within(Duration::from_secs(60), &send, "delivered after the resume", |m| {
            m["status"] == "delivered"
        })
        .await;
    eventually(
        Duration::from_secs(30),
        "the receipt acknowledged once stored",
        || async { stack.sim.pending_receipts(phone) == 0 },
    )
    .await;
}

wafleet_core::testing::on_both_backends!(
    messages_survive_a_kill_between_decrypt_and_commit,
    a_send_killed_on_the_wire_is_resolved_by_its_receipt,
    a_receipt_survives_a_kill_before_its_commit
);
