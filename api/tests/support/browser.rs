//! Driving headless Chromium through WebDriver (chromedriver), shared by the test crates.
//!
//! Needs `chromium` and `chromedriver` (Debian packages `chromium`, `chromium-driver`); the test
//! command `infra/test` installs them when missing. Override the paths with `WAFLEET_CHROMEDRIVER`
//! and `WAFLEET_CHROMIUM`; set `WAFLEET_SCREENSHOTS` to a directory to keep screenshots.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use wafleet_core::testing::poll_for;

/// A chromedriver process, killed when dropped.
pub struct Driver {
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

pub async fn start_browser() -> (Driver, Client) {
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
    let client = poll_for(Duration::from_secs(10), async || {
        let connected = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await;
        connected.map_err(|e| last_error = Some(e)).ok()
    })
    .await;
    match client {
        Some(client) => (driver, client),
        None => panic!("chromedriver at {} did not start a browser: {last_error:?}", driver.url),
    }
}

/// Waits up to 10 s for `css` to match an element whose text is `text`.
pub async fn wait_for_text(browser: &Client, css: &str, text: &str) {
    let shown = poll_for(Duration::from_secs(10), async || {
        texts(browser, css).await.iter().any(|t| t == text).then_some(())
    })
    .await;
    if shown.is_none() {
        panic!(
            "no `{css}` with text {text:?} appeared:\n{}",
            browser.source().await.unwrap_or_default()
        );
    }
}

/// Waits up to 30 s for exactly `count` elements to match `css`.
pub async fn wait_for_count(browser: &Client, css: &str, count: usize) {
    let shown = poll_for(Duration::from_secs(30), async || {
        (browser.find_all(Locator::Css(css)).await.unwrap().len() == count).then_some(())
    })
    .await;
    if shown.is_none() {
        panic!(
            "expected {count} `{css}`:\n{}",
            browser.source().await.unwrap_or_default()
        );
    }
}

/// The texts of every element matching `css`, in page order.
pub async fn texts(browser: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in browser.find_all(Locator::Css(css)).await.unwrap() {
        out.push(element.text().await.unwrap_or_default());
    }
    out
}

/// Waits up to `secs` for an element matching `css` whose text satisfies `ok`, and returns that
/// text: for what a page updates on its own (a report refreshed by polling, live counts).
pub async fn wait_for_text_matching(browser: &Client, css: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
    let mut seen = Vec::new();
    let found = poll_for(Duration::from_secs(secs), async || {
        seen = texts(browser, css).await;
        seen.iter().find(|t| ok(t)).cloned()
    })
    .await;
    found.unwrap_or_else(|| panic!("after {secs} s, `{css}` still shows {seen:?}"))
}

/// Types `value` into the field `css` once it can take input (shown, enabled), replacing its text.
pub async fn fill(browser: &Client, css: &str, value: &str) {
    until_interactable(browser, css, async |input| {
        input.clear().await?;
        input.send_keys(value).await
    })
    .await;
}

/// Clicks `css` once it can be clicked: present is not enough while a page's script is still
/// showing it, as a person would wait for the button to appear.
pub async fn click(browser: &Client, css: &str) {
    until_interactable(browser, css, async |element| element.click().await.map(drop)).await;
}

async fn until_interactable(
    browser: &Client,
    css: &str,
    mut act: impl AsyncFnMut(fantoccini::elements::Element) -> Result<(), fantoccini::error::CmdError>,
) {
    // Generous: on a loaded machine (the whole suite starting at once) a page's script and its
    // event stream can take seconds to show an element, and a session that failed to open there
    // is retried after a backoff of up to a few tens of seconds before the page shows it again.
    let mut last_error = None;
    let done = poll_for(Duration::from_secs(60), async || {
        let element = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap();
        // Not interactable yet, or replaced by the page's script meanwhile: look again.
        act(element).await.map_err(|err| last_error = Some(err)).ok()
    })
    .await;
    if done.is_none() {
        screenshot(browser, "never-usable").await;
        // What hides it: each ancestor that is hidden or not displayed, and the text around it.
        let why = browser
            .execute(
                "const found = document.querySelector(arguments[0]);
                 if (!found) return 'gone';
                 const hiding = [];
                 for (let e = found; e; e = e.parentElement) {
                   if (e.hidden || getComputedStyle(e).display === 'none')
                     hiding.push(e.tagName + '.' + [...e.classList].join('.'));
                 }
                 const around = found.closest('article, li, section, form') || found.parentElement;
                 return 'hidden by: ' + JSON.stringify(hiding) + '; around it: ' + around.innerText;",
                vec![serde_json::Value::String(css.to_owned())],
            )
            .await;
        panic!("{css} never became usable: {last_error:?}; {why:?} (screenshot never-usable.png)");
    }
}

/// Saves a screenshot as `<dir>/<name>.png`, where `dir` is `WAFLEET_SCREENSHOTS` or else the
/// workspace's `target/screenshots`, for a reviewer to look at the pages.
pub async fn screenshot(browser: &Client, name: &str) {
    let dir = std::env::var_os("WAFLEET_SCREENSHOTS").map_or_else(default_screenshots, std::path::PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// `target/screenshots` of the workspace this test crate is in.
fn default_screenshots() -> std::path::PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("Cargo.lock").exists() {
        dir = dir.parent().expect("the workspace holds a Cargo.lock");
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| dir.join("target"), std::path::PathBuf::from)
        .join("screenshots")
}
