//! The dashboard's Webhooks tab in headless Chromium: setting the URL shows the generated secret
//! once, a dead delivery is listed and its Replay button queues it again under the same id; a
//! device is given a webhook of its own and has it removed.

use fantoccini::Locator;
use wafleet_core::db::DeliveryStatus;

use wafleet_core::types::DeviceId;

use crate::browser::support::{click, fill, screenshot, start_browser, wait_for_text, wait_for_text_matching};
use crate::helpers::TestApp;
use crate::webhooks::{dead_delivery, user_id};

async fn webhooks_tab_sets_the_url_and_replays_a_dead_delivery(app: TestApp) {
    app.session("ana@example.com").await;
    let user = user_id(&app, "ana@example.com").await;
    let (_driver, browser) = start_browser().await;
    crate::browser::log_in(&app, &browser, "ana@example.com").await;
    click(&browser, "[data-tab=webhooks]").await;

    // A wrong URL is refused with the server's message.
    fill(&browser, "#webhook-form input[name=url]", "ftp://example.com/h").await;
    click(&browser, "#webhook-form button[type=submit]").await;
    wait_for_text(
        &browser,
        "#flash-text",
        "URL: must start with http:// or https:// (got ftp:)",
    )
    .await;

    fill(
        &browser,
        "#webhook-form input[name=url]",
        "https://example.com/hooks/wafleet",
    )
    .await;
    click(&browser, "#webhook-form input[value='campaign.finished']").await;
    click(&browser, "#webhook-form button[type=submit]").await;
    let stored = loop {
        if let Some(hook) = app.db.webhook(user).await.unwrap() {
            break hook;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    wait_for_text(&browser, "#webhook-secret-value", &stored.secret).await;
    assert_eq!(stored.url, "https://example.com/hooks/wafleet");
    assert_eq!(
        stored.events,
        "message,message.ack,call.offer,device.connected,device.disconnected,sequence.step_sent,sequence.completed",
        "the unticked event is left out"
    );
    screenshot(&browser, "webhooks-secret").await;

    // Shown once: after a reload only its last characters are.
    let dead = dead_delivery(&app, "ana@example.com").await;
    browser.refresh().await.unwrap();
    click(&browser, "[data-tab=webhooks]").await;
    let hint = &stored.secret[stored.secret.len() - 4..];
    wait_for_text(&browser, "#webhook-secret-hint code", &format!("…{hint}")).await;
    let secret_box = browser.find(Locator::Css("#webhook-secret")).await.unwrap();
    assert!(
        !secret_box.is_displayed().await.unwrap(),
        "the secret is not shown again"
    );

    let row = format!("#webhook-deliveries tr[data-id='{dead}']");
    wait_for_text(&browser, &format!("{row} td:nth-child(4)"), "dead").await;
    screenshot(&browser, "webhooks-dead").await;
    click(&browser, &format!("{row} .replay")).await;
    wait_for_text(&browser, &format!("{row} td:nth-child(4)"), "pending").await;
    let replayed = app.db.delivery(user, dead).await.unwrap();
    assert_eq!(replayed.status, DeliveryStatus::Pending);
    assert_eq!(replayed.attempts, 0);

    // Send test event: a new pending delivery is listed above the replayed one.
    click(&browser, "#webhook-test").await;
    let mut rows = 0;
    for _ in 0..100 {
        rows = browser
            .find_all(Locator::Css("#webhook-deliveries tbody tr"))
            .await
            .unwrap()
            .len();
        if rows == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows, 2, "the test event is listed");
    assert_eq!(app.db.deliveries(user, None, 10).await.unwrap().len(), 2);
}

async fn a_device_gets_a_webhook_of_its_own(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let user = user_id(&app, "ana@example.com").await;
    ana.add_device("Office", None).await;
    let shop = DeviceId(ana.add_device("Shop", None).await);
    let (_driver, browser) = start_browser().await;
    crate::browser::log_in(&app, &browser, "ana@example.com").await;
    click(&browser, "[data-tab=webhooks]").await;
    wait_for_text(
        &browser,
        "#device-webhooks li",
        "No device has a webhook of its own: every event goes to the webhook above.",
    )
    .await;

    let select = browser
        .find(Locator::Css("#device-webhook-form select[name=device]"))
        .await
        .unwrap();
    select.select_by_label("Shop").await.unwrap();
    fill(
        &browser,
        "#device-webhook-form input[name=url]",
        "https://example.com/hooks/shop",
    )
    .await;
    click(&browser, "#device-webhook-form input[value='device.connected']").await;
    click(&browser, "#device-webhook-form button[type=submit]").await;
    let item = format!("#device-webhooks li[data-device='{}']", shop.0);
    wait_for_text_matching(&browser, &item, 10, |t| {
        t.starts_with("Shop → https://example.com/hooks/shop (message, message.ack, call.offer, device.disconnected;")
    })
    .await;
    let stored = app
        .db
        .device_webhook(user, shop)
        .await
        .unwrap()
        .expect("the shop's webhook");
    assert_eq!(stored.url, "https://example.com/hooks/shop");
    assert_eq!(stored.events, "message,message.ack,call.offer,device.disconnected");
    wait_for_text(&browser, "#device-webhook-secret-value", &stored.secret).await;
    screenshot(&browser, "webhooks-device").await;

    click(&browser, &format!("{item} .delete")).await;
    wait_for_text(
        &browser,
        "#device-webhooks li",
        "No device has a webhook of its own: every event goes to the webhook above.",
    )
    .await;
    assert!(app.db.device_webhook(user, shop).await.unwrap().is_none());
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app =>
    webhooks_tab_sets_the_url_and_replays_a_dead_delivery,
    a_device_gets_a_webhook_of_its_own);
