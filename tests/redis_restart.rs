//! A Redis restart without persistence while paced sends wait for their slots, in scale-out mode:
//! PostgreSQL, a Redis server of the test's own, a `wafleet worker` process, the API, and the
//! simulator over real sockets. Every send still goes out exactly once, at its pace, soon after
//! Redis is back; the queue carries about one job per send; and tidying leaves no finished job's
//! keys behind.
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
use wafleet_core::db::Pacing;
use wafleet_core::testing::{Backend, TestDb, eventually};
use wafleet_core::types::Email;
use wafleet_sim::SimConfig;

const DEVICES: usize = 4;
/// Sends per device, half recorded before the restart and half after.
const PER_DEVICE: usize = 8;
/// The pace: one send every two seconds per device.
const PER_MINUTE: i64 = 30;
const INTERVAL: Duration = Duration::from_secs(2);
/// The longest a device may go without sending while it has sends due: its pace, plus the time
/// the holder needs to notice work the lost queue no longer announces (its sweep), plus slack
/// for a busy machine.
const RECOVERY: Duration = Duration::from_secs(12);
const CONTACT: &str = "+60191000009";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_sends_waiting_through_a_redis_restart_go_out_once_each() {
    let mut redis = Redis::start();
    let redis_url = redis.url();
    let test = TestDb::with_settings(Backend::Postgres, |s| s.redis_url = Some(redis_url.as_str().into())).await;
    let db = &test.db;
    let sim = wafleet_sim::start(SimConfig::for_tests()).await.unwrap();
    let control = sim.control();
    let devices = link_simulated_devices(db, &control, &sim.ws_url(), DEVICES, &test.keys, |_| "owner".into()).await;
    let phones: Vec<String> = (0..DEVICES).map(|i| format!("+6012{:07}", 1_000_000 + i)).collect();
    // The contact wrote to every number first: these are replies in open chats, not messages to
    // a stranger, which the simulator's ban model would punish at this rate.
    for phone in &phones {
        control.inject_text(phone, CONTACT, "hello?").await.unwrap();
    }
    let _worker = spawn_worker("w1", &test.settings, &sim.ws_url(), 3);
    wait_all_held(db, &control, DEVICES, Duration::from_secs(60)).await;

    let user = db
        .user_by_email(&Email::parse("owner@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let pace = Pacing {
        enabled: true,
        per_minute: PER_MINUTE,
        jitter_ms: 0,
        daily_cap: 10_000,
        warmup_days: 0,
        error_burst: 0,
        unreplied_max_percent: 100,
        ..Pacing::default()
    };
    for &device in &devices {
        db.set_pacing(user.id, device, &pace).await.unwrap();
    }
    let token = wafleet_core::auth::random_secret();
    db.create_api_token(user.id, "load", &wafleet_core::auth::digest(&token), "load")
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (api_stop, api_shutdown) = wafleet_core::shutdown::channel();
    let queues = test.queues().await;
    let state = AppState::new(db.clone(), Arc::new(test.settings.clone())).with_queues(queues.clone());
    tokio::spawn(wafleet_api::serve(state, listener, api_shutdown));
    let client = reqwest::Client::new();
    let send = |n: usize| {
        let request = client
            .post(format!("{base}/api/devices/{}/send", devices[n % DEVICES]))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("paced-{n}"))
            .json(&json!({"to": CONTACT, "text": format!("paced {n}")}));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED, "send {n}");
        }
    };

    let started = Instant::now();
    let half = DEVICES * PER_DEVICE / 2;
    for n in 0..half {
        send(n).await;
    }
    // Each device sends its first at once; the rest wait for their slots when Redis dies.
    eventually(Duration::from_secs(30), "each device sent its first", || async {
        sent_at_sim(&control, &phones).await.len() >= DEVICES
    })
    .await;
    tokio::task::block_in_place(|| redis.restart());
    for n in half..2 * half {
        send(n).await;
    }

    // Every send settles, sent once at the simulator.
    let total = DEVICES * PER_DEVICE;
    let limit = INTERVAL * PER_DEVICE as u32 + RECOVERY * 3;
    let statuses = loop {
        let rows: Vec<(String, Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT status, waiting_reason, next_attempt_at FROM outbound_messages ORDER BY id")
                .fetch_all(postgres(db))
                .await
                .unwrap();
        if rows.len() == total
            && rows
                .iter()
                .all(|(s, _, _)| matches!(s.as_str(), "sent" | "delivered" | "read"))
        {
            break rows;
        }
        assert!(
            started.elapsed() < limit,
            "not all sent within {limit:?} (the pace needs {:?}): {rows:?}",
            INTERVAL * PER_DEVICE as u32
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(statuses.len(), total);
    let sent = sent_at_sim(&control, &phones).await;
    for n in 0..total {
        let count = sent.iter().filter(|(_, text, _)| *text == format!("paced {n}")).count();
        assert_eq!(count, 1, "paced {n} reached the simulator {count} times");
    }

    // At its pace, and never stalled for long by the restart.
    let mut by_device: HashMap<&str, Vec<i64>> = HashMap::new();
    for (phone, _, at) in &sent {
        by_device.entry(phone.as_str()).or_default().push(*at);
    }
    for (phone, mut times) in by_device {
        times.sort_unstable();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= INTERVAL.as_millis() as i64 - 100,
                "{phone} sent two within {gap} ms, faster than its pace"
            );
            assert!(
                gap <= (INTERVAL + RECOVERY).as_millis() as i64,
                "{phone} stalled {gap} ms between two sends"
            );
        }
    }

    // The queue carried wake-ups, not a job per second of waiting: at most a few per send.
    let mut redis_conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let queue = queues.full_name(&wafleet_core::queue::sends_queue("w1"));
    let jobs: u64 = redis::cmd("HLEN")
        .arg(format!("{queue}:data"))
        .query_async(&mut redis_conn)
        .await
        .unwrap();
    assert!(
        jobs as usize <= 2 * half,
        "{jobs} send jobs in Redis for {half} sends recorded since the restart"
    );

    // Tidying removes every finished job's keys.
    queues.tidy(&["w1".to_owned()], Duration::ZERO).await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{queue}:*"))
        .query_async(&mut redis_conn)
        .await
        .unwrap();
    let per_job: Vec<&String> = keys.iter().filter(|k| k.contains(":meta:")).collect();
    assert!(per_job.is_empty(), "finished jobs left keys: {per_job:?}");
    let left: u64 = redis::cmd("HLEN")
        .arg(format!("{queue}:data"))
        .query_async(&mut redis_conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "finished jobs' data is gone");
    let done: u64 = redis::cmd("SCARD")
        .arg(format!("{queue}:done"))
        .query_async(&mut redis_conn)
        .await
        .unwrap();
    assert_eq!(done, 0, "the finished set is emptied");
    api_stop.trigger();
}

/// What the devices' accounts sent, as the simulator recorded it: (account, text, when in ms).
async fn sent_at_sim(control: &wafleet_sim::ControlClient, phones: &[String]) -> Vec<(String, String, i64)> {
    let mut sent = Vec::new();
    for phone in phones {
        for record in control.sent(phone).await.unwrap() {
            sent.push((phone.clone(), record.text.unwrap_or_default(), record.at.millis()));
        }
    }
    sent
}
