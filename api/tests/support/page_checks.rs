//! What every dashboard page is checked for in the browser: the shared navigation, no sideways
//! scrolling on a phone, no serious or critical accessibility violations (axe-core), and a
//! screenshot for a reviewer.
//!
//! axe-core is pinned and installed from the npm registry into `target/axe-core` on first use
//! (`AXE_CORE_DIR` overrides the directory); `infra/test` installs Node and npm when missing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use fantoccini::Client;
use serde_json::Value;

use super::browser::screenshot;

/// The axe-core release the checks run.
const AXE_CORE: &str = "axe-core@4.11.0";

/// The two widths every page is looked at: a desktop and a phone (390 × 844, an iPhone 14).
pub const WIDTHS: [(u32, u32, &str); 2] = [(1440, 900, "desktop"), (390, 844, "phone")];

/// The main navigation every signed-in page shows, as `label href` pairs.
pub const MAIN_NAV: [&str; 8] = [
    "Devices /dashboard",
    "Campaigns /campaigns",
    "Sequences /sequences",
    "Templates /templates",
    "Analytics /dashboard#analytics",
    "Webhooks /dashboard#webhooks",
    "API tokens /dashboard#tokens",
    "API docs /docs",
];

/// The entry administrators see after [`MAIN_NAV`].
pub const ADMIN_NAV: &str = "Admin /admin";

/// The source of axe-core, installed on first use.
pub fn axe_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let dir = std::env::var_os("AXE_CORE_DIR").map_or_else(default_dir, PathBuf::from);
        let script = dir.join("node_modules/axe-core/axe.min.js");
        let package = dir.join("node_modules/axe-core/package.json");
        let wanted = AXE_CORE.trim_start_matches("axe-core@");
        let installed = std::fs::read_to_string(&package)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|p| p["version"] == wanted);
        if !installed {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("package.json"), r#"{"name":"wafleet-axe","private":true}"#).unwrap();
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--save-exact", AXE_CORE])
                .current_dir(&dir)
                .status()
                .unwrap_or_else(|e| panic!("cannot run npm ({e}): install Node and npm (infra/test does)"));
            assert!(status.success(), "npm install {AXE_CORE} failed");
        }
        std::fs::read_to_string(&script).unwrap()
    })
}

fn default_dir() -> PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("Cargo.lock").exists() {
        dir = dir.parent().expect("the workspace holds a Cargo.lock");
    }
    dir.join("target/axe-core")
}

/// Resizes the browser window so the page's viewport is `width` × `height`.
pub async fn set_viewport(browser: &Client, width: u32, height: u32) {
    browser.set_window_size(width, height).await.unwrap();
    // The window includes whatever the browser draws around the page: grow it by the difference.
    let inner = browser
        .execute("return [window.innerWidth, window.innerHeight];", vec![])
        .await
        .unwrap();
    let (w, h) = (inner[0].as_u64().unwrap() as u32, inner[1].as_u64().unwrap() as u32);
    if (w, h) != (width, height) {
        browser
            .set_window_size(width + (width - w.min(width)), height + (height - h.min(height)))
            .await
            .unwrap();
    }
}

/// `label href` of each main navigation link of the page.
pub async fn main_nav(browser: &Client) -> Vec<String> {
    let links = browser
        .execute(
            "return [...document.querySelectorAll('#main-nav a')].map(a => a.textContent.trim() + ' ' + a.getAttribute('href'));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(links).unwrap()
}

/// `(scrollWidth, innerWidth)` of the page: wider content scrolls sideways.
pub async fn widths(browser: &Client) -> (u64, u64) {
    let w = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    (w[0].as_u64().unwrap(), w[1].as_u64().unwrap())
}

/// The serious and critical axe-core violations of the page as it is now, one line each.
pub async fn accessibility_violations(browser: &Client) -> Vec<String> {
    let loaded = browser
        .execute("return typeof window.axe !== 'undefined';", vec![])
        .await
        .unwrap();
    if loaded != Value::Bool(true) {
        browser
            .execute(&format!("{}\n;return true;", axe_source()), vec![])
            .await
            .unwrap();
    }
    let result = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => `${v.impact} ${v.id}: ${v.help} (${v.nodes.length}: ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')})`)))
               .catch(e => done([`axe failed: ${e}`]));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(result).unwrap()
}

/// Checks the page shown at `width` (see [`WIDTHS`]) and saves its screenshot as
/// `<name>-<label>.png`: the main navigation when `signed_in`, no sideways scrolling, no serious
/// or critical accessibility violations. Returns the problems found, so a walk reports them all.
pub async fn check_page(browser: &Client, name: &str, label: &str, signed_in: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if signed_in {
        // Administrators see one more entry, last: the Admin page.
        let mut nav = main_nav(browser).await;
        if nav.last().is_some_and(|last| last == ADMIN_NAV) {
            nav.pop();
        }
        if nav != MAIN_NAV {
            problems.push(format!("{name} ({label}): navigation {nav:?}"));
        }
    }
    let (scroll, inner) = widths(browser).await;
    if scroll > inner {
        problems.push(format!(
            "{name} ({label}): scrolls sideways, {scroll} px of content in {inner} px"
        ));
    }
    for violation in accessibility_violations(browser).await {
        problems.push(format!("{name} ({label}): {violation}"));
    }
    screenshot(browser, &format!("{name}-{label}")).await;
    problems
}
