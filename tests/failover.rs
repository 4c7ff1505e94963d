//! kill -9 and a Redis restart under load, in scale-out mode: PostgreSQL, a Redis server of the
//! test's own (restarted mid-way, keeping nothing), three `wafleet worker` processes, the API, and
//! the simulator over real sockets. Sends keyed by idempotency keys go out at most once each and
//! none is lost without a visible status; every message the simulator's contacts sent to the
//! devices ends up stored.
//!
//! Everything here runs against the project's WhatsApp network simulator, never real WhatsApp.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::redis::Redis;
use support::{link_simulated_devices, postgres, spawn_worker, wait_all_held};
use wafleet_api::AppState;
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::Email;
use wafleet_sim::SimConfig;

const LEASE_TTL_SECS: u64 = 3;
const DEVICES: usize = 12;
const SENDS: usize = 1_000;
const INBOUND: usize = 600;
const CONTACTS: [&str; 3] = ["+60191000001", "+60191000002", "+60191000003"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_a_redis_restart_lose_nothing_and_send_nothing_twice() {
    let mut redis = Redis::start();
    let redis_url = redis.url();
    let test = TestDb::with_settings(Backend::Postgres, |s| s.redis_url = Some(redis_url.as_str().into())).await;
    let db = &test.db;
    let sim = wafleet_sim::start(SimConfig::for_tests()).await.unwrap();
    let control = sim.control();
    let devices = link_simulated_devices(db, &control, &sim.ws_url(), DEVICES, &test.keys, |_| "owner".into()).await;
    let phones: Vec<String> = (0..DEVICES).map(|i| format!("+6012{:07}", 1_000_000 + i)).collect();

    let mut workers: HashMap<&str, support::Worker> = ["w1", "w2", "w3"]
        .into_iter()
        .map(|id| (id, spawn_worker(id, &test.settings, &sim.ws_url(), LEASE_TTL_SECS)))
        .collect();
    wait_all_held(db, &control, DEVICES, Duration::from_secs(60)).await;

    // The API, with an API token of the devices' owner.
    let user = db
        .user_by_email(&Email::parse("owner@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    support::unpaced(db, user.id, &devices).await;
    let token = wafleet_core::auth::random_secret();
    db.create_api_token(user.id, "load", &wafleet_core::auth::digest(&token), "load")
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (api_stop, api_shutdown) = wafleet_core::shutdown::channel();
    let state = AppState::new(db.clone(), Arc::new(test.settings.clone())).with_queues(test.queues().await);
    tokio::spawn(wafleet_api::serve(state, listener, api_shutdown));

    // Inbound: contacts write to the devices throughout.
    let inbound = {
        let control = control.clone();
        let phones = phones.clone();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(INBOUND);
            for i in 0..INBOUND {
                let to = &phones[i % DEVICES];
                let from = CONTACTS[i % CONTACTS.len()];
                let injected = control.inject_text(to, from, &format!("inbound {i}")).await.unwrap();
                ids.push(injected.id);
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
            ids
        })
    };

    // Outbound: SENDS sends, each under its own key, spread over the devices, 8 at a time.
    let client = reqwest::Client::new();
    let outbound = {
        let (client, base, token, devices) = (client.clone(), base.clone(), token.clone(), devices.clone());
        tokio::spawn(async move {
            let mut ids = vec![0i64; SENDS];
            for chunk in (0..SENDS).collect::<Vec<_>>().chunks(8) {
                let requests: Vec<_> = chunk
                    .iter()
                    .map(|&i| {
                        let device = devices[i % DEVICES];
                        let request = client
                            .post(format!("{base}/api/devices/{device}/send"))
                            .bearer_auth(&token)
                            .header("Idempotency-Key", format!("key-{i}"))
                            .json(&json!({"to": CONTACTS[i % CONTACTS.len()], "text": format!("outbound {i}")}))
                            .send();
                        tokio::spawn(request)
                    })
                    .collect();
                for (&i, request) in chunk.iter().zip(requests) {
                    let response = request.await.unwrap().unwrap();
                    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED, "send {i}");
                    let body: serde_json::Value = response.json().await.unwrap();
                    ids[i] = body["results"]["id"].as_i64().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ids
        })
    };

    // Mid-way, a worker dies without a word; a replacement joins later.
    tokio::time::sleep(Duration::from_millis(700)).await;
    workers.remove("w1").unwrap().kill_9();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Redis dies and comes back empty: every queued job in it is gone.
    tokio::task::block_in_place(|| redis.restart());
    tokio::time::sleep(Duration::from_millis(800)).await;
    workers.remove("w2").unwrap().kill_9();
    workers.insert("w4", spawn_worker("w4", &test.settings, &sim.ws_url(), LEASE_TTL_SECS));

    let inbound_ids = inbound.await.unwrap();
    let send_ids = outbound.await.unwrap();

    // Every send reaches a final state: no send stays queued or in flight.
    let started = Instant::now();
    let statuses = loop {
        let rows: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, status, reason FROM outbound_messages ORDER BY id")
                .fetch_all(postgres(db))
                .await
                .unwrap();
        let open = rows.iter().filter(|(_, s, _)| s == "queued" || s == "sending").count();
        if open == 0 && rows.len() == SENDS {
            break rows;
        }
        if started.elapsed() >= Duration::from_secs(120) {
            // (send, status, device, lease holder, lease expiry)
            type Stuck = (i64, String, i64, Option<String>, Option<i64>);
            let stuck: Vec<Stuck> = sqlx::query_as(
                "SELECT o.id, o.status, o.device_id, l.holder, l.expires_at FROM outbound_messages o \
                 LEFT JOIN device_leases l ON l.device_id = o.device_id \
                 WHERE o.status IN ('queued', 'sending') ORDER BY o.id",
            )
            .fetch_all(postgres(db))
            .await
            .unwrap();
            panic!("{open} of {} sends still open after 120 s: {stuck:?}", rows.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Count at the simulator: what each device's account actually sent.
    let mut at_sim: HashMap<String, usize> = HashMap::new();
    for phone in &phones {
        for record in control.sent(phone).await.unwrap() {
            *at_sim.entry(record.text.unwrap_or_default()).or_default() += 1;
        }
    }
    let by_id: HashMap<i64, (String, Option<String>)> = statuses
        .into_iter()
        .map(|(id, status, reason)| (id, (status, reason)))
        .collect();
    let (mut sent_once, mut unknown) = (0, 0);
    for (i, id) in send_ids.iter().enumerate() {
        let text = format!("outbound {i}");
        let count = at_sim.get(&text).copied().unwrap_or(0);
        assert!(count <= 1, "key-{i} was sent {count} times");
        let (status, reason) = &by_id[id];
        match status.as_str() {
            "sent" | "delivered" | "read" => {
                assert_eq!(count, 1, "key-{i} is {status} but the simulator never got it");
                sent_once += 1;
            }
            "failed" => {
                let reason = reason.as_deref().unwrap_or_default();
                assert!(reason.contains("outcome unknown"), "key-{i} failed: {reason}");
                // Every send goes out under an id recorded first, and the simulator's receipts
                // name it: one that reached the simulator is resolved, never left unknown.
                assert_eq!(count, 0, "key-{i} reached the simulator but ended unknown");
                unknown += 1;
            }
            other => panic!("key-{i} ended {other}"),
        }
    }
    eprintln!(
        "{SENDS} keys: {sent_once} sent exactly once, {unknown} unknown after kill -9 (never sent twice); \
         all settled {:?} after the last was accepted",
        started.elapsed()
    );
    assert!(
        unknown <= 2 * 64,
        "at most the sends in flight on the two killed workers end unknown: {unknown}"
    );

    // Inbound: every message the contacts sent is stored once, whoever held the device.
    let started = Instant::now();
    loop {
        let (stored,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM messages WHERE NOT from_me AND body LIKE 'inbound %'")
                .fetch_one(postgres(db))
                .await
                .unwrap();
        if stored as usize == inbound_ids.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stored {stored} of {} inbound messages",
            inbound_ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let state = control.state().await.unwrap();
    assert!(
        state.accounts.iter().all(|a| a.pending == 0),
        "the simulator holds no unacknowledged message"
    );
    api_stop.trigger();
}
