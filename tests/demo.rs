//! Demo mode as a new user meets it: `wafleet serve --demo` (the real binary, with its in-process
//! network simulator), driven through the dashboard in headless Chromium.
//!
//! Runs against the project's WhatsApp network simulator only, never real WhatsApp.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

#[path = "../api/tests/support/browser.rs"]
mod support;

use support::{click, fill, screenshot, start_browser, wait_for_text};

/// The `wafleet` process, killed when dropped.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_demo() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_wafleet"))
        .args(["serve", "--demo"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "wafleet serve --demo did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server { child, base, _dir: dir }
}

/// The texts of the elements matching `css`.
async fn texts(browser: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in browser.find_all(Locator::Css(css)).await.unwrap() {
        out.push(element.text().await.unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_links_a_simulated_phone_and_sees_its_chats() {
    let server = serve_demo();
    let (_driver, browser) = start_browser().await;
    browser.goto(&format!("{}/register", server.base)).await.unwrap();
    fill(&browser, "input[name=email]", "demo@example.com").await;
    fill(&browser, "input[name=password]", "correct horse battery").await;
    click(&browser, "#account-form button[type=submit]").await;
    let banner = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#demo-banner"))
        .await
        .unwrap();
    assert!(
        banner.text().await.unwrap().contains("simulated"),
        "the page says plainly that this is a simulation"
    );

    fill(&browser, "#add-device input[name=name]", "Demo phone").await;
    fill(&browser, "#add-device input[name=phone]", "+60123456789").await;
    click(&browser, "#add-device button[type=submit]").await;
    wait_for_text(&browser, ".device .status", "Offline").await;

    // Scan QR code: the code is drawn in the page, then the simulated phone scans it.
    click(&browser, ".device .pair-qr").await;
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(".device .qr svg"))
        .await
        .unwrap();
    screenshot(&browser, "demo-qr").await;
    click(&browser, ".device .demo-scan button[type=submit]").await;
    // The card turns online without a reload (server-sent events).
    wait_for_text(&browser, ".device .status", "Online").await;
    wait_for_text(&browser, ".device .jid", "Linked as 60123456789").await;

    // The simulated contacts write (three people, and one group message that must not appear).
    wait_for_text(&browser, ".device .chat-count", "3").await;
    click(&browser, ".device .show-chats").await;
    wait_for_text(&browser, ".device .chat-list li .who", "Chandra").await;
    let chats = texts(&browser, ".device .chat-list li").await;
    assert_eq!(chats.len(), 3, "{chats:?}");
    assert!(
        chats.iter().all(|c| !c.contains("group message")),
        "group messages are never stored: {chats:?}"
    );
    screenshot(&browser, "demo-online").await;

    // Check numbers: the demo network has no account for +60129990000.
    click(&browser, ".device .show-check").await;
    fill(
        &browser,
        ".device .check input[name=phones]",
        "+60129990000, +60191000001",
    )
    .await;
    click(&browser, ".device .check button[type=submit]").await;
    wait_for_text(
        &browser,
        ".device .check-results .not-on-wa",
        "+60129990000: not on WhatsApp",
    )
    .await;
    wait_for_text(&browser, ".device .check-results .on-wa", "+60191000001: on WhatsApp").await;

    // Log out from wafleet: the card shows it.
    browser.execute("window.confirm = () => true;", vec![]).await.unwrap();
    click(&browser, ".device .logout").await;
    wait_for_text(&browser, ".device .status", "Logged out").await;
    browser.close().await.unwrap();
}
