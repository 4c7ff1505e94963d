//! WhatsApp key material at rest: never readable in a dump of the database, re-encrypted under a
//! new key while a session keeps talking, and a database from before encryption sealed in the
//! background without losing the linked device.

use std::time::Duration;

use tokio::sync::mpsc;
use wafleet_core::db::NewUserRole;
use wafleet_core::keys::reseal::{self, SweepOptions};
use wafleet_core::keys::{KeyRing, SealedColumn, registry, source};
use wafleet_core::link::{Jid, LinkEvent, OpenMode, Outgoing, Session};
use wafleet_core::testing::{Backend, TestDb, eventually};
use wafleet_core::types::{Email, PhoneNumber};
use wafleet_wa::WaStore;
use whatsapp_rust::wacore::store::traits::{DeviceStore, SignalStore};

use crate::dump::{appears, dump};
use crate::support::{EVENT_TIMEOUT, World, next, wait_for};

/// Every sealed column, as the roles sweep them.
fn columns() -> Vec<&'static SealedColumn> {
    wafleet_wa::store::sealed::SEALED_COLUMNS
        .iter()
        .copied()
        .chain([&wafleet_core::db::LINK_CREDENTIALS])
        .collect()
}

/// The test database's secret (its ring is `test.keys`).
fn secret_of(test: &TestDb) -> source::SecretBytes {
    source::parse_secret(test.settings.wa_keys_secret.as_ref().unwrap().expose(), "test key").unwrap()
}

/// The device's private keys and its Signal session records, opened through a store with `keys`.
async fn secrets(world: &World, keys: &KeyRing) -> Vec<(String, Vec<u8>)> {
    let store = WaStore::new(world.test.db.clone(), keys.clone(), world.store.device());
    let device = store.load().await.unwrap().expect("the device is stored");
    let mut secrets = vec![
        (
            "identity private key".into(),
            device.identity_key.private_key.serialize().to_vec(),
        ),
        (
            "Noise private key".into(),
            device.noise_key.private_key.serialize().to_vec(),
        ),
        (
            "signed pre-key private key".into(),
            device.signed_pre_key.private_key.serialize().to_vec(),
        ),
        ("adv secret".into(), device.adv_secret_key.to_vec()),
    ];
    let addresses: Vec<String> = match &world.test.db {
        wafleet_core::Db::Sqlite(pool) => {
            sqlx::query_scalar("SELECT address FROM wa_sessions")
                .fetch_all(pool)
                .await
        }
        wafleet_core::Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT address FROM wa_sessions")
                .fetch_all(pool)
                .await
        }
    }
    .unwrap();
    assert!(!addresses.is_empty(), "a Signal session with the contact is stored");
    for address in addresses {
        let record = store.get_session(&address).await.unwrap().expect("the session");
        secrets.push((format!("Signal session with {address}"), record.to_vec()));
    }
    secrets
}

fn assert_none_in(dump: &[u8], secrets: &[(String, Vec<u8>)]) {
    for (what, secret) in secrets {
        assert_eq!(appears(dump, secret), None, "the {what} is readable in the dump");
    }
}

/// One text each way between the device (`me`) and `contact`, both decrypted by the other side.
async fn talk(
    world: &World,
    session: &dyn Session,
    events: &mut mpsc::Receiver<LinkEvent>,
    (me, contact): (&str, &str),
    round: &str,
) {
    let jid = Jid::for_phone(&format!("+{contact}").parse::<PhoneNumber>().unwrap());
    let text = format!("out {round}");
    let id = session.send(&Outgoing::text(&jid, &text)).await.expect("send");
    eventually(
        EVENT_TIMEOUT,
        &format!("the contact decrypts text {round}"),
        async || {
            world
                .net
                .sent(me)
                .iter()
                .any(|m| m.id == id && m.text.as_deref() == Some(text.as_str()))
        },
    )
    .await;
    let reply_text = format!("back {round}");
    let reply = world
        .net
        .send_text(contact, me, &reply_text)
        .await
        .expect("the contact replies");
    loop {
        if let LinkEvent::Message { message, ack } = next(events, &format!("reply {round}")).await {
            ack.done();
            if message.id == reply {
                assert_eq!(message.text.as_deref(), Some(reply_text.as_str()));
                return;
            }
        }
    }
}

/// Opens the device from its stored state with `keys` and waits until it is connected.
async fn connect(world: &World, keys: &KeyRing) -> (Box<dyn Session>, mpsc::Receiver<LinkEvent>) {
    let (session, mut events) = world.open_with(keys, OpenMode::Connect).await;
    wait_for(&mut events, "Connected", |e| matches!(e, LinkEvent::Connected)).await;
    (session, events)
}

/// (a) After linking and a conversation, none of the device's private keys nor its Signal
/// sessions can be found in a dump of the database, raw, in hex or in base64.
pub async fn dump_holds_no_key_material(backend: Backend) {
    let world = World::new(backend).await;
    let people = ("60123000041", "60198700041");
    world.net.add_account(people.1);
    registry::startup(&world.test.db, &world.test.keys, &columns())
        .await
        .unwrap();
    let (session, mut events) = world.pair_by_qr(people.0).await;
    talk(&world, session.as_ref(), &mut events, people, "1").await;
    session.close().await;

    let secrets = secrets(&world, &world.test.keys).await;
    assert_none_in(&dump(&world.test).await.all(), &secrets);
}

/// (b) Rotation: the worker restarts with a new key as current and the old one as previous; the
/// sweep moves every device's rows to the new key while the session sends and receives; the
/// session goes on talking afterwards and the device connects with the new key alone. The old
/// key alone is then refused at start-up.
pub async fn rotation_reseals_while_the_session_talks(backend: Backend) {
    let world = World::new(backend).await;
    let people = ("60123000042", "60198700042");
    world.net.add_account(people.1);
    let db = world.test.db.clone();
    let (old, columns) = (world.test.keys.clone(), columns());
    registry::startup(&db, &old, &columns).await.unwrap();
    let (session, mut events) = world.pair_by_qr(people.0).await;
    talk(&world, session.as_ref(), &mut events, people, "1").await;
    session.close().await;
    eventually(EVENT_TIMEOUT, "the first session is gone", async || {
        world.net.logged_in().is_empty()
    })
    .await;
    // A second device with state of its own under the old key.
    let other = second_device(&world.test, &old).await;

    let new_secret = source::random_secret();
    let rotating = KeyRing::new(&new_secret, Some(&secret_of(&world.test)));
    registry::startup(&db, &rotating, &columns).await.unwrap();
    let (session, mut events) = connect(&world, &rotating).await;
    let (_trigger, shutdown) = wafleet_core::shutdown::channel();
    let slow = SweepOptions {
        batch: 16,
        pause: Duration::from_millis(10),
        ..SweepOptions::default()
    };
    let sweep = tokio::spawn({
        let (db, rotating, columns) = (db.clone(), rotating.clone(), columns.clone());
        async move { reseal::sweep(&db, &rotating, &columns, &slow, &shutdown).await }
    });
    talk(&world, session.as_ref(), &mut events, people, "during").await;
    let report = sweep.await.unwrap().unwrap();
    assert!(report.complete && report.unreadable == 0, "{report:?}");
    assert!(report.moved > 10, "{report:?}");

    let census = reseal::census(&db, &columns).await.unwrap();
    assert_eq!(census.plaintext, 0);
    assert_eq!(
        census.by_key.keys().copied().collect::<Vec<_>>(),
        vec![rotating.current_id()]
    );
    let registered = registry::registered(&db).await.unwrap();
    assert!(
        registered
            .iter()
            .any(|k| k.id == old.current_id() && k.retired_at.is_some())
    );
    talk(&world, session.as_ref(), &mut events, people, "after").await;
    session.close().await;
    eventually(EVENT_TIMEOUT, "the rotating session is gone", async || {
        world.net.logged_in().is_empty()
    })
    .await;

    let new_only = KeyRing::new(&new_secret, None);
    registry::startup(&db, &new_only, &columns).await.unwrap();
    let (session, mut events) = connect(&world, &new_only).await;
    talk(&world, session.as_ref(), &mut events, people, "new key alone").await;
    session.close().await;
    let moved = WaStore::new(db.clone(), new_only.clone(), other);
    assert_eq!(
        moved.get_session("contact.0").await.unwrap().map(|r| r.to_vec()),
        Some(b"a session record".to_vec())
    );

    let err = registry::startup(&db, &old, &columns).await.unwrap_err().to_string();
    assert!(err.contains("wrong WA_KEYS_SECRET"), "{err}");
    assert!(
        err.contains(&rotating.current_id().to_string()),
        "names the key in use: {err}"
    );
}

/// A second device of another user, with a Signal session stored under `keys`.
async fn second_device(test: &TestDb, keys: &KeyRing) -> wafleet_core::types::DeviceId {
    let email = Email::parse("second@example.com").unwrap();
    let user = test
        .db
        .create_user(&email, "hash", NewUserRole::FirstBecomesAdmin)
        .await
        .unwrap();
    let device = test.db.create_device(user.id, "second", None).await.unwrap().id;
    let store = WaStore::new(test.db.clone(), keys.clone(), device);
    store.create().await.unwrap();
    store.put_session("contact.0", b"a session record").await.unwrap();
    device
}

/// (d) A database a release before encryption wrote (key material in plain text, no key
/// registered): after the upgrade the device still connects and talks while the sweep seals
/// every row, plain text is refused from then on, and the dump holds none of its keys.
///
/// The current client cannot run on that release's schema (0013 lacks the tables it needs), so
/// the old database is made from a current one: the session's rows are unsealed to plain text and
/// the keys' registry is emptied, as that release left them.
pub async fn plaintext_database_is_sealed_and_keeps_working(backend: Backend) {
    let world = World::new(backend).await;
    let people = ("60123000043", "60198700043");
    world.net.add_account(people.1);
    let db = world.test.db.clone();
    let (session, mut events) = world.pair_by_qr(people.0).await;
    talk(&world, session.as_ref(), &mut events, people, "1").await;
    session.close().await;
    eventually(EVENT_TIMEOUT, "the first session is gone", async || {
        world.net.logged_in().is_empty()
    })
    .await;
    let columns = columns();
    let keys = world.test.keys.clone();
    let secrets = secrets(&world, &keys).await;
    assert!(reseal::unseal_all(&db, &keys, &columns).await.unwrap() > 10);
    forget_sealing(&db).await;
    // The check itself: the keys are there to find in the old release's database.
    let before = dump(&world.test).await.all();
    for (what, secret) in &secrets {
        assert!(appears(&before, secret).is_some(), "the {what} is in the old database");
    }

    // The upgrade: new migrations, then a worker with a key starts.
    db.migrate().await.unwrap();
    let upgraded = KeyRing::new(&secret_of(&world.test), None);
    registry::startup(&db, &upgraded, &columns).await.unwrap();
    assert!(upgraded.plaintext_readable(), "rows from before are read until sealed");
    let session = match &db {
        // The embedded default seals everything before sessions start, and rebuilds the file.
        wafleet_core::Db::Sqlite(_) => {
            reseal::seal_plaintext_before_start(&db, &upgraded, &columns)
                .await
                .unwrap();
            assert!(!upgraded.plaintext_readable());
            let (session, events) = connect(&world, &upgraded).await;
            (session, events)
        }
        // Scale-out seals in the background while sessions run.
        wafleet_core::Db::Postgres(_) => {
            let (session, mut events) = connect(&world, &upgraded).await;
            talk(&world, session.as_ref(), &mut events, people, "upgraded").await;
            let (_trigger, shutdown) = wafleet_core::shutdown::channel();
            let report = reseal::sweep(&db, &upgraded, &columns, &SweepOptions::default(), &shutdown)
                .await
                .unwrap();
            assert!(report.complete && report.moved > 10, "{report:?}");
            assert!(!upgraded.plaintext_readable());
            (session, events)
        }
    };
    let (session, mut events) = session;
    assert_eq!(reseal::census(&db, &columns).await.unwrap().plaintext, 0);
    talk(&world, session.as_ref(), &mut events, people, "sealed").await;
    session.close().await;
    eventually(EVENT_TIMEOUT, "the session is gone", async || {
        world.net.logged_in().is_empty()
    })
    .await;

    // A restart: plain text is refused now, and the sealed state connects.
    let restarted = KeyRing::new(&secret_of(&world.test), None);
    registry::startup(&db, &restarted, &columns).await.unwrap();
    assert!(!restarted.plaintext_readable());
    let (session, mut events) = connect(&world, &restarted).await;
    talk(&world, session.as_ref(), &mut events, people, "restarted").await;
    session.close().await;
    // Neither the dump nor (SQLite) the database file holds a key any more. PostgreSQL's own
    // files keep dead row versions until vacuumed: see docs/operations.md.
    assert_none_in(&dump(&world.test).await.all(), &secrets);
}

/// Empties the registry of sealing keys and its progress, as a release before encryption had them.
async fn forget_sealing(db: &wafleet_core::Db) {
    const FORGET: [&str; 2] = [
        "DELETE FROM seal_keys",
        "UPDATE seal_progress SET plaintext_done_at = NULL, sweep_finished_at = NULL, sweep_key_id = NULL",
    ];
    for statement in FORGET {
        wafleet_core::testing::execute(db, statement, &[]).await;
    }
}

wafleet_core::testing::on_both_backends!(
    dump_holds_no_key_material,
    rotation_reseals_while_the_session_talks,
    plaintext_database_is_sealed_and_keeps_working
);
