//! The dashboard in headless Chromium, driven as a user would.

use std::time::Duration;

use fantoccini::{Client, Locator};
use wafleet_core::types::{DeviceId, Email, UserId};

#[path = "../support/browser.rs"]
pub(crate) mod support;

use support::{click, fill, screenshot, start_browser, wait_for_text};

use crate::helpers::TestApp;

async fn user_id(app: &TestApp, email: &str) -> UserId {
    app.db
        .user_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .expect("registered")
        .id
}

/// Registers `email` on the register page and adds the device "Sales 1" on the dashboard, as a new
/// user does; returns the user and the device.
/// Logs `email` (registered with the tests' password) in on the login page of `app`.
pub(crate) async fn log_in(app: &TestApp, browser: &Client, email: &str) {
    browser.goto(&app.url("/login")).await.unwrap();
    fill(browser, "input[name=email]", email).await;
    fill(browser, "input[name=password]", "correct horse battery").await;
    click(browser, "#account-form button[type=submit]").await;
}

pub(crate) async fn register_with_a_device(app: &TestApp, browser: &Client, email: &str) -> (UserId, DeviceId) {
    browser.goto(&app.url("/register")).await.unwrap();
    fill(browser, "input[name=email]", email).await;
    fill(browser, "input[name=password]", "correct horse battery").await;
    click(browser, "#account-form button[type=submit]").await;
    fill(browser, "#add-device input[name=name]", "Sales 1").await;
    click(browser, "#add-device button[type=submit]").await;
    wait_for_text(browser, ".device .name", "Sales 1").await;
    let owner = user_id(app, email).await;
    let device = app.db.list_devices(owner).await.unwrap()[0].id;
    (owner, device)
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

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => register_and_manage_devices_in_the_browser);
