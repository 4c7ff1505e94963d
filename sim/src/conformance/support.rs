//! Helpers shared by the checks. They panic with a clear message: they are test code.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use wafleet_core::Db;
use wafleet_core::db::NewUserRole;
use wafleet_core::link::{Jid, LinkEvent, OpenMode, Session};
use wafleet_core::testing::eventually_some;
use wafleet_core::types::{DeviceId, Email, PhoneNumber};

use super::{Contact, Harness, Sent};

/// How long any expected event may take.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A valid number not used before in this process (`+6012…`, Malaysian mobile).
pub fn unique_phone() -> PhoneNumber {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let base: u32 = rand::rng().random_range(0..5_000_000);
    let phone = format!("+6012{:07}", base + n % 5_000_000);
    phone
        .parse()
        .unwrap_or_else(|e| panic!("{phone} should be valid: {e:?}"))
}

/// A new user and device in `db` (credentials reference devices).
pub async fn new_device(db: &Db) -> DeviceId {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nonce: u64 = rand::rng().random();
    let email = Email::parse(&format!("conformance-{n}-{nonce}@example.com")).expect("valid email");
    let user = db
        .create_user(&email, "not-a-hash", NewUserRole::Admin)
        .await
        .expect("create user");
    db.create_device(user.id, &format!("phone {n}"), None)
        .await
        .expect("create device")
        .id
}

/// The next event within [`EVENT_TIMEOUT`], or a panic naming what was expected.
pub async fn next_event(events: &mut mpsc::Receiver<LinkEvent>, expecting: &str) -> LinkEvent {
    next_event_within(EVENT_TIMEOUT, events, expecting).await
}

/// The next event within `limit`, or a panic naming what was expected.
///
/// LID mappings, which the client reports whenever it learns one (a number check, a send), are
/// skipped: they may come between any two events.
pub async fn next_event_within(limit: Duration, events: &mut mpsc::Receiver<LinkEvent>, expecting: &str) -> LinkEvent {
    loop {
        match tokio::time::timeout(limit, events.recv()).await {
            Ok(Some(LinkEvent::LidMapping { .. })) => continue,
            Ok(Some(event)) => return event,
            Ok(None) => panic!("the event stream ended while expecting {expecting}"),
            Err(_) => panic!("no event within {limit:?} while expecting {expecting}"),
        }
    }
}

/// The first event matching `wanted`, each within [`EVENT_TIMEOUT`], skipping receipts and QR
/// codes only; any other event first is a failure.
pub async fn wait_for(
    events: &mut mpsc::Receiver<LinkEvent>,
    expecting: &str,
    wanted: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    wait_for_within(EVENT_TIMEOUT, events, expecting, wanted).await
}

/// [`wait_for`], waiting up to `limit` for each event.
pub async fn wait_for_within(
    limit: Duration,
    events: &mut mpsc::Receiver<LinkEvent>,
    expecting: &str,
    wanted: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    loop {
        let event = next_event_within(limit, events, expecting).await;
        if wanted(&event) {
            return event;
        }
        assert!(
            matches!(event, LinkEvent::Receipt { .. } | LinkEvent::QrCode { .. }),
            "expected {expecting}, got {event:?}"
        );
    }
}

/// A device linked by pair code, its connected session and events.
pub struct Paired {
    /// The device.
    pub device: DeviceId,
    /// Its number.
    pub phone: PhoneNumber,
    /// The session.
    pub session: Box<dyn Session>,
    /// Its events, after `Connected`.
    pub events: mpsc::Receiver<LinkEvent>,
}

impl Paired {
    /// The account's JID.
    pub fn jid(&self) -> Jid {
        Jid::for_phone(&self.phone)
    }
}

/// Pairs a new device by code and waits until it is connected.
pub async fn pair(h: &dyn Harness) -> Paired {
    let device = new_device(h.db()).await;
    let phone = unique_phone();
    let mut session = h
        .link()
        .open(device, OpenMode::PairCode(phone.clone()))
        .await
        .expect("open for pairing");
    let mut events = session.take_events().expect("events");
    let LinkEvent::PairCode { code } =
        wait_for(&mut events, "a pair code", |e| matches!(e, LinkEvent::PairCode { .. })).await
    else {
        unreachable!("wait_for returns what it waited for");
    };
    h.phones()
        .enter_pair_code(&phone, &code)
        .await
        .expect("type the pair code on the phone");
    wait_for(&mut events, "PairSuccess", |e| {
        matches!(e, LinkEvent::PairSuccess { .. })
    })
    .await;
    wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
    Paired {
        device,
        phone,
        session,
        events,
    }
}

/// A new contact's number that behaves as `how`.
pub async fn contact(h: &dyn Harness, how: Contact) -> PhoneNumber {
    let phone = unique_phone();
    h.phones()
        .set_contact(&phone, how)
        .await
        .expect("configure the contact");
    phone
}

/// The message `id` as the network recorded it from the devices of `phone`. Waits for it: a
/// client may return from a send once the stanza is written, before the network has it.
pub async fn sent_message(h: &dyn Harness, phone: &PhoneNumber, id: &str) -> Sent {
    eventually_some(EVENT_TIMEOUT, &format!("the network gets {id}"), async || {
        let sent = h.phones().sent(phone).await.expect("sent messages");
        sent.into_iter().find(|m| m.id == id)
    })
    .await
}

/// Messages waiting for an ack on the account of `phone`.
pub async fn pending(h: &dyn Harness, phone: &PhoneNumber) -> usize {
    h.phones().pending(phone).await.expect("network state")
}

/// Receipts the network keeps for `phone`'s devices until they acknowledge them.
pub async fn pending_receipts(h: &dyn Harness, phone: &PhoneNumber) -> usize {
    h.phones().pending_receipts(phone).await.expect("network state")
}
