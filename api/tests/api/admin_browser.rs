//! The Admin page in headless Chromium, at a desktop's width and a phone's: an administrator
//! disables an account, after which its session, its API token and its queued send stop at once;
//! enables it again; and deletes another after typing its email.

use wafleet_core::db::NextSend;
use wafleet_core::types::{DeviceId, Timestamp};

use crate::actions::count;
use crate::browser::support::{
    click, fill, screenshot, start_browser, wait_for_count, wait_for_text, wait_for_text_matching,
};
use crate::helpers::TestApp;
use crate::webhooks::user_id;

use crate::templates_browser::page_checks::{set_viewport, widths};

async fn an_administrator_disables_an_account_and_it_stops_at_once(app: TestApp) {
    app.session("root@example.com").await;
    let ana = app.session("ana@example.com").await;
    app.session("bo@example.com").await;
    let (token, device, _) = crate::admin::a_token_and_a_queued_send(&app, &ana).await;
    let ana_id = user_id(&app, "ana@example.com").await;
    let bo_id = user_id(&app, "bo@example.com").await;
    let token_works = async || {
        reqwest::Client::new()
            .get(app.url("/api/devices"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    };
    assert!(token_works().await);

    let (_driver, browser) = start_browser().await;
    crate::browser::log_in(&app, &browser, "root@example.com").await;
    click(&browser, "#admin-link").await;
    wait_for_count(&browser, "#accounts .account", 3).await;
    let ana_card = format!("#accounts .account[data-id='{}']", ana_id.0);
    wait_for_text_matching(&browser, &format!("{ana_card} .facts"), 10, |t| {
        t.starts_with("1 device (1 online)")
    })
    .await;
    screenshot(&browser, "admin-accounts-desktop").await;

    click(&browser, &format!("{ana_card} .disable")).await;
    wait_for_text(&browser, &format!("{ana_card} .state"), "disabled").await;
    wait_for_text(&browser, "#admin-done", "Account ana@example.com is disabled").await;
    // At once, on the server: her session, her token and her send.
    assert_eq!(
        ana.get("/api/devices").await.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert!(!token_works().await, "a disabled account's token stops");
    let next = app.db.next_send(DeviceId(device), Timestamp::now()).await.unwrap();
    assert!(
        matches!(next, NextSend::Idle),
        "a disabled account sends nothing: {next:?}"
    );
    wait_for_text_matching(&browser, "#actions .action", 10, |t| {
        t.contains("root@example.com: disable ana@example.com")
    })
    .await;

    // On a phone: the page fits, and the account is enabled again from there.
    set_viewport(&browser, 390, 844).await;
    browser.refresh().await.unwrap();
    wait_for_text(&browser, &format!("{ana_card} .state"), "disabled").await;
    let (scroll, inner) = widths(&browser).await;
    assert!(
        scroll <= inner,
        "the Admin page on a phone: {scroll} px of content in {inner} px"
    );
    screenshot(&browser, "admin-disabled-phone").await;
    click(&browser, &format!("{ana_card} .enable")).await;
    wait_for_text(&browser, "#admin-done", "Account ana@example.com is enabled").await;
    assert!(token_works().await, "enabled: her token works again");
    let next = app.db.next_send(DeviceId(device), Timestamp::now()).await.unwrap();
    assert!(matches!(next, NextSend::Due(_)), "enabled: her send goes: {next:?}");

    // Deleting bo needs his email typed.
    let bo_card = format!("#accounts .account[data-id='{}']", bo_id.0);
    click(&browser, &format!("{bo_card} .delete")).await;
    fill(
        &browser,
        &format!("{bo_card} .delete-form input[name=confirm]"),
        "ana@example.com",
    )
    .await;
    click(&browser, &format!("{bo_card} .delete-form button[type=submit]")).await;
    wait_for_text_matching(&browser, &format!("{bo_card} .delete-error"), 10, |t| {
        t.starts_with("Confirm: type the account's email, bo@example.com")
    })
    .await;
    screenshot(&browser, "admin-delete-refused-phone").await;
    assert_eq!(count(&app, "users").await, 3, "a wrong confirmation deletes nothing");
    fill(
        &browser,
        &format!("{bo_card} .delete-form input[name=confirm]"),
        "bo@example.com",
    )
    .await;
    click(&browser, &format!("{bo_card} .delete-form button[type=submit]")).await;
    wait_for_count(&browser, "#accounts .account", 2).await;
    assert_eq!(count(&app, "users").await, 2);
    assert!(app.db.user_by_id(bo_id).await.unwrap().is_none());
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => an_administrator_disables_an_account_and_it_stops_at_once);
