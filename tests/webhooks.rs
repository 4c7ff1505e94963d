//! Webhooks end to end: a worker holding a simulated device delivers each kind of event to a real
//! HTTP receiver on loopback, which checks every signature with the user's secret; retries keep
//! the delivery id; a receiver that keeps failing leaves the delivery dead, and a replay delivers
//! it once the receiver is fixed. One user's events never reach another user's URL, and a device
//! with a webhook of its own sends its events there instead of to its owner's.
//!
//! Runs against the project's WhatsApp network simulator only, never real WhatsApp.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::{link_simulated_devices, unpaced};
use wafleet_core::cache::{Invalidations, ReadCache};
use wafleet_core::db::{CampaignStatus, DeliveryStatus, LeadStatus, NewCampaign, NewLead, NewSend};
use wafleet_core::link::Jid;
use wafleet_core::shutdown::{self, ShutdownTrigger};
use wafleet_core::testing::{Backend, TestDb, eventually, eventually_some, poll_for};
use wafleet_core::types::{DeviceId, Email, Timestamp, UserId};
use wafleet_core::{Db, Settings};
use wafleet_sim::{SimConfig, SimHandle, SimLink};

const SECRET: &str = "a-receivers-secret-of-enough-length";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    delivery: String,
    event: String,
    body: Value,
    /// Whether `X-Hub-Signature-256` was the HMAC-SHA256 of the exact body under [`SECRET`].
    signed: bool,
}

/// A webhook receiver on loopback: records what arrives and answers with the planned statuses
/// (200 once the plan is used up, unless it is told to keep failing).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    plan: Arc<Mutex<VecDeque<u16>>>,
    failing: Arc<Mutex<bool>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until a request satisfies `probe`; returns it.
    async fn wait_for(&self, what: &str, probe: impl Fn(&Received) -> bool) -> Received {
        let found = poll_for(Duration::from_secs(120), async || {
            self.got().into_iter().find(|r| probe(r))
        })
        .await;
        found.unwrap_or_else(|| panic!("{what}: not received within two minutes; got {:#?}", self.got()))
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    receiver.got.lock().unwrap().push(Received {
        delivery: header("x-webhook-delivery"),
        event: header("x-webhook-event"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signed: header("x-hub-signature-256") == format!("sha256={expected}"),
    });
    if *receiver.failing.lock().unwrap() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let planned = receiver.plan.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(planned).unwrap()
}

/// Short retries and polls through settings; the code path is the production one.
fn quick(settings: &mut Settings) {
    settings.webhook_first_retry_ms = 100;
    settings.webhook_poll_ms = 50;
    settings.webhook_max_attempts = 3;
    settings.webhook_timeout_secs = 2;
    // The receivers listen on loopback, which webhooks reach only when the operator allows it.
    settings.webhook_allowed_hosts = "127.0.0.1".parse().unwrap();
    // The worker sweeps for recorded sends (and polls its send queue) at a fraction of this.
    settings.lease_ttl_secs = 3;
}

/// A worker on `test`'s database and queues, linked to `sim`.
async fn start_worker(test: &TestDb, sim: &SimHandle, id: &str) -> (ShutdownTrigger, tokio::task::JoinHandle<()>) {
    let (trigger, signal) = shutdown::channel();
    let mut options = wafleet_workers::WorkerOptions::from_settings(&test.settings).expect("worker options");
    options.id = id.into();
    let link = Arc::new(SimLink::new(sim.ws_url(), test.db.clone(), test.keys.clone()));
    let worker = tokio::spawn({
        let (db, queues) = (test.db.clone(), test.queues().await);
        async move {
            wafleet_workers::run(
                db,
                link,
                queues,
                Invalidations::Local(ReadCache::off()),
                options,
                signal,
            )
            .await
            .unwrap();
        }
    });
    (trigger, worker)
}

async fn user(db: &Db, name: &str) -> UserId {
    db.user_by_email(&Email::parse(&format!("{name}@example.com")).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn phone_of(db: &Db, user: UserId, device: DeviceId) -> String {
    db.device(user, device).await.unwrap().phone.unwrap().to_string()
}

async fn every_source_is_delivered_signed(backend: Backend) {
    let test = TestDb::with_settings(backend, quick).await;
    let db = test.db.clone();
    let sim = wafleet_sim::start(SimConfig::for_tests()).await.unwrap();
    let owners = ["hooked", "bystander"];
    let devices = link_simulated_devices(&db, &sim.control(), &sim.ws_url(), 2, &test.keys, |i| owners[i].into()).await;
    let (hooked, bystander) = (user(&db, "hooked").await, user(&db, "bystander").await);
    let (receiver, url) = Receiver::start().await;
    let (other, other_url) = Receiver::start().await;
    db.put_webhook(hooked, &url, SECRET, "", true).await.unwrap();
    // The bystander subscribes to campaign events only, at a URL of their own.
    db.put_webhook(bystander, &other_url, SECRET, "campaign.finished", true)
        .await
        .unwrap();
    // The bystander's device has a webhook of its own: it takes every event of that device.
    let (own, own_url) = Receiver::start().await;
    db.put_device_webhook(bystander, devices[1], &own_url, SECRET, "")
        .await
        .unwrap();
    let device = devices[0];
    let phone = phone_of(&db, hooked, device).await;
    let (trigger, worker) = start_worker(&test, &sim, "hook-worker").await;
    let clock = Instant::now();

    let connected = receiver
        .wait_for("device.connected", |r| r.event == "device.connected")
        .await;
    assert_eq!(connected.body["session_id"], device.0.to_string());
    assert_eq!(connected.body["payload"]["status"], "online");
    assert!(
        connected.body["device_id"]
            .as_str()
            .unwrap()
            .ends_with("@s.whatsapp.net"),
        "{connected:?}"
    );

    let own_connected = own
        .wait_for("the device webhook's device.connected", |r| {
            r.event == "device.connected"
        })
        .await;
    assert_eq!(own_connected.body["session_id"], devices[1].0.to_string());
    assert!(own_connected.signed, "signed with the device webhook's secret");
    assert!(
        other.got().iter().all(|r| r.event == "campaign.finished"),
        "the device's events go to its own webhook, not its owner's: {:?}",
        other.got()
    );

    println!("{:?}: connected; a contact writes", clock.elapsed());
    // A simulated contact writes.
    sim.control()
        .inject_text(&phone, "+60199990001", "hello hook")
        .await
        .unwrap();
    let message = receiver
        .wait_for("message", |r| {
            r.event == "message" && r.body["payload"]["body"] == "hello hook"
        })
        .await;
    assert!(
        message.body["payload"]["from"]
            .as_str()
            .unwrap()
            .starts_with("60199990001")
    );
    assert_eq!(message.body["payload"]["is_from_me"], false);

    println!("{:?}: message arrived; a contact calls", clock.elapsed());
    // A call rings: `call.offer` names it and the caller, and declining it through the holder
    // (as `POST /call/reject` asks) reaches the network.
    let call_id = sim.control().place_call(&phone, "+60199990003", false).await.unwrap();
    let offer = receiver.wait_for("call.offer", |r| r.event == "call.offer").await;
    assert!(offer.signed, "{offer:?}");
    assert_eq!(offer.body["payload"]["call_id"], call_id.as_str(), "{offer:?}");
    assert_eq!(offer.body["payload"]["from"], "60199990003@s.whatsapp.net", "{offer:?}");
    assert_eq!(offer.body["payload"]["auto_rejected"], false, "{offer:?}");
    assert_eq!(offer.body["session_id"], device.0.to_string());
    let question = serde_json::json!({ "caller": offer.body["payload"]["from"], "call_id": call_id });
    db.create_device_request(hooked, device, "reject_call", &question.to_string())
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the call is declined", async || {
        let calls = sim.control().calls(&phone).await.unwrap();
        calls.iter().any(|c| c.call.id == call_id && c.rejected)
    })
    .await;

    println!("{:?}: call declined; sending", clock.elapsed());
    // A send from the device comes back delivered and read, under the WhatsApp id the compatible
    // API answers when it accepts the send (whether the worker has begun it yet or not).
    let (sent, _) = db
        .record_send(&NewSend {
            user: hooked,
            device,
            idempotency_key: "hook-1".into(),
            to: Jid("60199990002@s.whatsapp.net".into()),
            body: Some("hi there".into()),
            media: None,
            structured: None,
            forwarded: false,
        })
        .await
        .unwrap();
    let wa_id = db.choose_wa_message_id(sent.id).await.unwrap();
    for kind in ["delivered", "read"] {
        let ack = receiver
            .wait_for(kind, |r| {
                r.event == "message.ack" && r.body["payload"]["receipt_type"] == kind
            })
            .await;
        assert_eq!(ack.body["payload"]["chat_id"], "60199990002@s.whatsapp.net");
        assert_eq!(ack.body["payload"]["ids"], serde_json::json!([wa_id]));
    }

    println!("{:?}: receipts arrived; campaign", clock.elapsed());
    // A campaign to one lead finishes once its send settles; the event fires once.
    unpaced(&db, hooked, &[device]).await;
    let lead = NewLead {
        name: "Baker".into(),
        phone: "+60199990003".parse().unwrap(),
        niche: Some("bakery".into()),
        journey: None,
        status: LeadStatus::New,
        notes: None,
    };
    db.create_lead(hooked, device, &lead).await.unwrap();
    let campaign = db
        .create_campaign(
            hooked,
            &NewCampaign {
                title: "Bread day".into(),
                niche: "bakery".into(),
                message: "Fresh bread".into(),
                image: None,
                send_at: Timestamp::now().plus_secs(-1),
                time_zone: "UTC".into(),
                status: CampaignStatus::Scheduled,
                devices: vec![device],
                distribution: Default::default(),
                per_device_cap: None,
            },
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(120), "the campaign finishes", async || {
        if receiver.got().iter().any(|r| r.event == "campaign.finished") {
            return true;
        }
        db.dispatch_campaigns(Timestamp::now()).await.unwrap();
        false
    })
    .await;
    for _ in 0..3 {
        db.dispatch_campaigns(Timestamp::now()).await.unwrap();
    }
    let finished = receiver
        .wait_for("campaign.finished", |r| r.event == "campaign.finished")
        .await;
    assert_eq!(finished.body["payload"]["id"], campaign.id.0);
    assert_eq!(finished.body["payload"]["title"], "Bread day");

    println!("{:?}: campaign finished; dropping the connection", clock.elapsed());
    // The connection drops: disconnected, then connected again as the link reconnects.
    let before = receiver.got().iter().filter(|r| r.event == "device.connected").count();
    sim.control().disconnect(&phone).await.unwrap();
    receiver
        .wait_for("device.disconnected", |r| r.event == "device.disconnected")
        .await;
    eventually(Duration::from_secs(120), "the device reconnects", async || {
        receiver.got().iter().filter(|r| r.event == "device.connected").count() > before
    })
    .await;

    println!("{:?}: reconnected", clock.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.got();
    assert!(
        got.iter().all(|r| r.signed),
        "every body signed with the secret: {got:#?}"
    );
    assert_eq!(
        got.iter().filter(|r| r.event == "campaign.finished").count(),
        1,
        "campaign.finished fires once"
    );
    for r in &got {
        assert_eq!(r.body["event"], r.event.as_str(), "the header names the body's event");
        if let Some(session) = r.body["session_id"].as_str() {
            assert_eq!(session, device.0.to_string(), "only the hooked user's device: {r:?}");
        }
    }
    assert!(
        other.got().is_empty(),
        "the bystander's URL got another user's events: {:#?}",
        other.got()
    );
    for r in own.got() {
        assert_eq!(
            r.body["session_id"],
            devices[1].0.to_string(),
            "only its own device's events: {r:?}"
        );
    }
    let delivered = db
        .deliveries(hooked, Some(DeliveryStatus::Delivered), 500)
        .await
        .unwrap();
    assert_eq!(delivered.len(), got.len(), "each delivery recorded as delivered once");
    println!("{:?}: stopping", clock.elapsed());
    trigger.trigger();
    worker.await.unwrap();
    println!("{:?}: stopped", clock.elapsed());
}

/// A user with a webhook at `url` and no device.
async fn hook_user(db: &Db, name: &str, url: &str) -> UserId {
    let email = Email::parse(&format!("{name}@example.com")).unwrap();
    let user = db
        .create_user(&email, "unused", wafleet_core::db::NewUserRole::FirstBecomesAdmin)
        .await
        .unwrap();
    db.put_webhook(user.id, url, SECRET, "", true).await.unwrap();
    user.id
}

async fn retries_keep_the_delivery_id(backend: Backend) {
    let test = TestDb::with_settings(backend, quick).await;
    let sim = wafleet_sim::start(SimConfig::for_tests()).await.unwrap();
    let (receiver, url) = Receiver::start().await;
    receiver.plan.lock().unwrap().extend([500, 500]);
    let user = hook_user(&test.db, "retry", &url).await;
    let (trigger, worker) = start_worker(&test, &sim, "retry-worker").await;
    let id = test.db.record_test_delivery(user).await.unwrap();

    let d = eventually_some(Duration::from_secs(30), "the delivery is delivered", async || {
        let d = test.db.delivery(user, id).await.unwrap();
        (d.status == DeliveryStatus::Delivered).then_some(d)
    })
    .await;
    assert_eq!(d.attempts, 3, "{d:?}");
    assert_eq!(d.response_status, Some(200));
    let got = receiver.got();
    assert_eq!(got.len(), 3, "two failures, then the delivery: {got:#?}");
    assert!(got.iter().all(|r| r.delivery == id.to_string() && r.signed), "{got:#?}");
    assert!(got.iter().all(|r| r.body == got[0].body), "the same body each time");
    assert_eq!(got[0].event, "webhook.test");
    trigger.trigger();
    worker.await.unwrap();
}

async fn a_dead_delivery_is_listed_and_replayed(backend: Backend) {
    let test = TestDb::with_settings(backend, quick).await;
    let sim = wafleet_sim::start(SimConfig::for_tests()).await.unwrap();
    let (receiver, url) = Receiver::start().await;
    *receiver.failing.lock().unwrap() = true;
    let user = hook_user(&test.db, "dead", &url).await;
    let (trigger, worker) = start_worker(&test, &sim, "dead-worker").await;
    let id = test.db.record_test_delivery(user).await.unwrap();

    let dead = eventually_some(Duration::from_secs(30), "the delivery is dead", async || {
        let dead = test.db.deliveries(user, Some(DeliveryStatus::Dead), 10).await.unwrap();
        dead.into_iter().next()
    })
    .await;
    assert_eq!(dead.id, id);
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.response_status, Some(500));
    assert!(dead.last_error.as_deref().unwrap().contains("500"), "{dead:?}");
    assert_eq!(receiver.got().len(), 3);
    // The queue files its dead letter just after the deliverer marks the delivery dead.
    let letters = poll_for(Duration::from_secs(10), async || {
        let letters = test.db.dead_letters(Some("webhooks"), 10).await.unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await
    .unwrap_or_default();
    assert_eq!(letters.len(), 1, "filed as the queue's dead letter");
    assert!(letters[0].replayed_at.is_none());

    *receiver.failing.lock().unwrap() = false;
    let replayed = test.db.replay_delivery(user, id).await.unwrap();
    assert_eq!(replayed.status, DeliveryStatus::Pending);
    eventually(Duration::from_secs(30), "the replay is delivered", async || {
        test.db.delivery(user, id).await.unwrap().status == DeliveryStatus::Delivered
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.got();
    // At least once: a job whose consumer missed its heartbeats under load runs again elsewhere,
    // so a delivery can arrive twice; receivers tell by the delivery id, which never changes.
    assert!(got.len() >= 4, "three failures and the replayed delivery: {got:#?}");
    assert!(got.iter().all(|r| r.delivery == id.to_string() && r.signed));
    let letters = test.db.dead_letters(Some("webhooks"), 10).await.unwrap();
    assert!(letters[0].replayed_at.is_some(), "the dead letter is marked replayed");
    trigger.trigger();
    worker.await.unwrap();
}

wafleet_core::testing::on_both_backends!(
    every_source_is_delivered_signed,
    retries_keep_the_delivery_id,
    a_dead_delivery_is_listed_and_replayed
);
