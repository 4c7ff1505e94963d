//! The dashboard in headless Chromium, driven through WebDriver (chromedriver), as a user would.
//!
//! Needs `chromium` and `chromedriver` (Debian packages `chromium`, `chromium-driver`); the test
//! command `infra/test` installs them when missing. Override the paths with `WAFLEET_CHROMEDRIVER`
//! and `WAFLEET_CHROMIUM`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use wafleet_core::types::{Email, UserId};

use crate::helpers::TestApp;

/// A chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_browser() -> (Driver, Client) {
    // The WebDriver client speaks TLS through rustls; name its provider (ring) explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let program = std::env::var("WAFLEET_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let child = Command::new(&program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start `{program}` ({e}): install Debian's chromium and chromium-driver (infra/test does)")
        });
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };

    let binary = std::env::var("WAFLEET_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--window-size=1280,900".into(),
        format!("--user-data-dir={}", driver._profile.path().display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({"binary": binary, "args": args}));
    let mut last_error = None;
    for _ in 0..100 {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver at {} did not start a browser: {last_error:?}", driver.url);
}

/// Waits up to 10 s for `css` to match an element whose text is `text`.
async fn wait_for_text(browser: &Client, css: &str, text: &str) {
    for _ in 0..100 {
        for element in browser.find_all(Locator::Css(css)).await.unwrap() {
            if element.text().await.unwrap_or_default() == text {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no `{css}` with text {text:?} appeared:\n{}",
        browser.source().await.unwrap_or_default()
    );
}

async fn fill(browser: &Client, css: &str, value: &str) {
    let input = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn click(browser: &Client, css: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Saves a screenshot as `<WAFLEET_SCREENSHOTS>/<name>.png` when that variable is set (for looking
/// at the pages while working on them).
async fn screenshot(browser: &Client, name: &str) {
    if let Ok(dir) = std::env::var("WAFLEET_SCREENSHOTS") {
        let png = browser.screenshot().await.unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

async fn user_id(app: &TestApp, email: &str) -> UserId {
    app.db
        .user_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .expect("registered")
        .id
}

async fn register_and_manage_devices_in_the_browser(app: TestApp) {
    let (_driver, browser) = start_browser().await;
    browser.goto(&app.url("/dashboard")).await.unwrap();
    assert!(
        browser.current_url().await.unwrap().path().ends_with("/login"),
        "logged-out visitors land on the login page"
    );

    screenshot(&browser, "login").await;
    click(&browser, "a[href='/register']").await;
    fill(&browser, "input[name=email]", "Browser@Example.com").await;
    fill(&browser, "input[name=password]", "correct horse battery").await;
    click(&browser, "#account-form button[type=submit]").await;
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_url(&url::Url::parse(&app.url("/dashboard")).unwrap())
        .await
        .unwrap();
    wait_for_text(&browser, ".who", "browser@example.com admin").await;

    // Add a device with a national number: the card shows it in international form.
    fill(&browser, "#add-device input[name=name]", "Sales 1").await;
    fill(&browser, "#add-device input[name=phone]", "012-345 6789").await;
    click(&browser, "#add-device button[type=submit]").await;
    wait_for_text(&browser, ".device .name", "Sales 1").await;
    wait_for_text(&browser, ".device .phone", "+60123456789").await;
    wait_for_text(&browser, ".device .status", "Offline").await;
    screenshot(&browser, "dashboard-devices").await;
    let owner = user_id(&app, "browser@example.com").await;
    let stored = app.db.list_devices(owner).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].phone.as_ref().unwrap().as_str(), "+60123456789");

    // A bad number is explained and nothing is added.
    fill(&browser, "#add-device input[name=name]", "Broken").await;
    fill(&browser, "#add-device input[name=phone]", "12ab").await;
    click(&browser, "#add-device button[type=submit]").await;
    let flash = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#flash:not([hidden])"))
        .await
        .unwrap();
    assert!(
        flash.text().await.unwrap().contains("phone"),
        "the error names the field"
    );
    screenshot(&browser, "dashboard-error").await;
    assert_eq!(app.db.list_devices(owner).await.unwrap().len(), 1);

    // Rename in place (the form shows only when asked for), then delete (confirming the dialog).
    let rename = browser.find(Locator::Css(".device .rename")).await.unwrap();
    assert!(!rename.is_displayed().await.unwrap(), "the rename form starts hidden");
    click(&browser, ".device .edit").await;
    assert!(rename.is_displayed().await.unwrap(), "Rename shows the form");
    fill(&browser, ".device .rename input[name=name]", "Sales A").await;
    click(&browser, ".device .rename button[type=submit]").await;
    wait_for_text(&browser, ".device .name", "Sales A").await;
    assert_eq!(app.db.list_devices(owner).await.unwrap()[0].name, "Sales A");

    browser.execute("window.confirm = () => true;", vec![]).await.unwrap();
    click(&browser, ".device .delete").await;
    wait_for_text(
        &browser,
        "#no-devices",
        "No devices yet. Add one to link a WhatsApp number.",
    )
    .await;
    assert!(app.db.list_devices(owner).await.unwrap().is_empty());

    // Log out, then back in through the login form.
    click(&browser, "#logout").await;
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_url(&url::Url::parse(&app.url("/login")).unwrap())
        .await
        .unwrap();
    fill(&browser, "input[name=email]", "browser@example.com").await;
    fill(&browser, "input[name=password]", "correct horse battery").await;
    click(&browser, "#account-form button[type=submit]").await;
    wait_for_text(
        &browser,
        "#no-devices",
        "No devices yet. Add one to link a WhatsApp number.",
    )
    .await;

    browser.close().await.unwrap();
}

on_both_backends!(app: register_and_manage_devices_in_the_browser);
