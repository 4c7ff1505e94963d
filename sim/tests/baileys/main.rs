//! Baileys 7, a second real WhatsApp Web client (JavaScript, its own Noise, Signal and binary
//! node code), against the simulator's WhatsApp Web front end: it links by QR code, logs in again
//! from its stored credentials after a restart, and exchanges text with a phone both ways.
//!
//! Needs Node 20 and npm: the pinned Baileys is installed once into a cache directory
//! (`BAILEYS_CACHE_DIR`, default `target/baileys`; see [`wafleet_sim::baileys`]). `infra/test`
//! installs Node and npm from Debian's packages when they are missing; without them, or when the
//! install fails, the test fails.

use std::time::Duration;

use wafleet_sim::baileys::{Baileys, Driver, Event};
use wafleet_sim::waweb::{self, WaWebConfig};

/// How long any step may take (Baileys' own timeouts are around 10-20 s).
const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baileys_pairs_resumes_and_talks() {
    let baileys = Baileys::install().await.expect("install Baileys");
    let _ = tracing_subscriber::fmt()
        .with_env_filter("wafleet_sim=debug")
        .with_test_writer()
        .try_init();
    let net = waweb::start(WaWebConfig {
        qr_refresh: Duration::from_secs(2),
        ..WaWebConfig::for_tests()
    })
    .await
    .expect("start the front end");
    let (phone, contact) = ("60123700001", "60198700901");
    net.add_account(contact);
    let auth = baileys.auth_dir();
    let root = net.root_key();

    // Linked by QR: the phone scans the newest code Baileys shows.
    let mut first = start(&baileys, &net.url(), &auth, &root);
    loop {
        match next(&mut first, "a QR code or the open connection").await {
            Event::Qr(code) => {
                // An older code may be shown while a newer one is on its way: scan what links.
                let _ = net.scan(&code, phone);
            }
            Event::Open(jid) => {
                assert!(jid.starts_with(phone), "linked to {jid}");
                break;
            }
            // After linking the server restarts the stream, and Baileys connects again.
            Event::Close(code) => assert_eq!(code, Some(515), "the connection closed while linking"),
            Event::Error(error) => panic!("Baileys failed while linking: {error}"),
            other => panic!("while linking: {other:?}"),
        }
    }
    assert_eq!(net.logged_in(), vec![format!("{phone}:1@s.whatsapp.net")]);
    first.quit().await;

    // A restart: the stored credentials log in, nothing is paired again.
    let mut second = start(&baileys, &net.url(), &auth, &root);
    match next(&mut second, "the resumed connection").await {
        Event::Open(_) => {}
        Event::Close(code) => panic!("the resumed connection closed ({code:?})"),
        Event::Error(error) => panic!("Baileys failed while resuming: {error}"),
        other => panic!("while resuming: {other:?}"),
    }
    assert!(net.pairing_refs().is_empty(), "nothing pairs again");

    // Text both ways.
    second
        .send(0, &format!("{contact}@s.whatsapp.net"), "hello from baileys")
        .expect("ask Baileys to send");
    let id = match next(&mut second, "the send's id").await {
        Event::Sent(id) => id,
        Event::Error(error) => panic!("Baileys failed to send: {error}"),
        other => panic!("while sending: {other:?}"),
    };
    let deadline = tokio::time::Instant::now() + STEP;
    while !net
        .sent(phone)
        .iter()
        .any(|m| m.id == id && m.to == contact && m.text.as_deref() == Some("hello from baileys"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the phone never decrypted the text"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = net
        .send_text(contact, phone, "hello from the phone")
        .await
        .expect("the phone replies");
    loop {
        match next(&mut second, "the phone's text").await {
            Event::Message { id, text } if id == reply => {
                assert_eq!(text, "hello from the phone");
                break;
            }
            Event::Message { .. } => {}
            Event::Close(code) => panic!("the connection closed while receiving ({code:?})"),
            other => panic!("while receiving: {other:?}"),
        }
    }
    second.quit().await;
    let _ = std::fs::remove_dir_all(&auth);
}

/// A driver holding one session, on the credentials in `auth`.
fn start(baileys: &Baileys, url: &str, auth: &std::path::Path, root: &[u8; 32]) -> Driver {
    let mut driver = Driver::spawn(baileys, url, root).expect("start the Baileys driver");
    driver.open(0, auth).expect("open the session");
    driver
}

/// The driver's next event, or a panic naming what was expected.
async fn next(driver: &mut Driver, expecting: &str) -> Event {
    let (_, event) = driver
        .next(STEP)
        .await
        .unwrap_or_else(|e| panic!("{e:#} while expecting {expecting}"));
    if let Event::Close(code) = event {
        eprintln!("driver: closed ({code:?})");
    }
    event
}
