//! The Campaigns page in headless Chromium: a day of the year calendar opens the form, the planned
//! campaign shows on its day with its niche, and once it runs its progress per device shows and
//! its failed recipient can be retried.

use chrono::Datelike;
use fantoccini::Locator;
use wafleet_core::db::{LeadStatus, NewLead};
use wafleet_core::types::{PhoneNumber, Timestamp};

use crate::browser::register_with_a_device;
use crate::browser::support::{click, fill, screenshot, start_browser, wait_for_text, wait_for_text_matching};
use crate::campaigns::exec;
use crate::helpers::TestApp;

async fn plan_a_campaign_on_the_calendar_and_follow_it(app: TestApp) {
    let (_driver, browser) = start_browser().await;
    let (owner, device) = register_with_a_device(&app, &browser, "camp@example.com").await;
    for phone in ["+60123000001", "+60123000002"] {
        let lead = NewLead {
            name: "Lead".into(),
            phone: PhoneNumber::parse(phone, app.settings.default_country).unwrap(),
            niche: Some("bakery".into()),
            journey: None,
            status: LeadStatus::New,
            notes: None,
        };
        app.db.create_lead(owner, device, &lead).await.unwrap();
    }

    // A day early in this year: already due, so dispatch starts it at once.
    let date = format!("{}-01-15", Timestamp::now().to_datetime().year());
    click(&browser, "nav a[href='/campaigns']").await;
    let day = format!(".day[data-date='{date}']");
    click(&browser, &day).await;
    fill(&browser, "#campaign-form input[name=title]", "January promo").await;
    fill(&browser, "#campaign-form input[name=niche]", "bakery").await;
    fill(&browser, "#campaign-form textarea[name=message]", "Fresh bread!").await;
    click(
        &browser,
        &format!("#campaign-form input[name=device][value='{device}']"),
    )
    .await;
    click(&browser, "#save").await;
    wait_for_text(&browser, &format!("{day} .chip"), "bakery").await;
    screenshot(&browser, "campaigns-calendar").await;

    let done = app.db.dispatch_campaigns(Timestamp::now()).await.unwrap();
    assert_eq!((done.started, done.queued), (1, 2), "{done:?}");
    exec(
        &app.db,
        "UPDATE outbound_messages SET status = 'failed', reason = '463' \
                   WHERE recipient = '60123000002@s.whatsapp.net'",
    )
    .await;

    browser.refresh().await.unwrap();
    click(&browser, &format!("{day} .chip")).await;
    wait_for_text(&browser, "#campaign-status", "running").await;
    // The status shows before the report is drawn: wait for the report.
    let text = wait_for_text_matching(&browser, "#report-total", 10, |t| !t.is_empty()).await;
    assert!(
        text.contains("1 of 2 done") && text.contains("failed 1 (50%)"),
        "{text}"
    );
    let per_device = browser
        .find_all(Locator::Css("#report-devices .device-progress"))
        .await
        .unwrap();
    assert_eq!(per_device.len(), 1);
    assert!(per_device[0].text().await.unwrap().contains("Sales 1"));
    screenshot(&browser, "campaigns-progress").await;

    click(&browser, "#retry").await;
    // The failed recipient is queued again.
    wait_for_text_matching(&browser, "#report-total", 10, |t| t.contains("0 of 2 done")).await;

    click(&browser, "#pause").await;
    wait_for_text(&browser, "#campaign-status", "paused").await;
    click(&browser, "#close").await;

    // A pooled campaign with a limit of one per device: the limit shows only for a pool, and the
    // number the limit left out is reported.
    let next_day = format!(".day[data-date='{}-01-16']", Timestamp::now().to_datetime().year());
    click(&browser, &next_day).await;
    let cap = browser.find(Locator::Css("#cap-field")).await.unwrap();
    assert!(
        !cap.is_displayed().await.unwrap(),
        "no limit for each device's own leads"
    );
    fill(&browser, "#campaign-form input[name=title]", "Pooled").await;
    fill(&browser, "#campaign-form input[name=niche]", "bakery").await;
    fill(&browser, "#campaign-form textarea[name=message]", "Fresh rolls!").await;
    click(
        &browser,
        &format!("#campaign-form input[name=device][value='{device}']"),
    )
    .await;
    click(&browser, "#campaign-form input[name=distribution][value=pool]").await;
    assert!(cap.is_displayed().await.unwrap(), "a pool has a limit per device");
    fill(&browser, "#campaign-form input[name=per_device_cap]", "1").await;
    screenshot(&browser, "campaigns-pool").await;
    click(&browser, "#save").await;
    wait_for_text(&browser, &format!("{next_day} .chip"), "bakery").await;
    let done = app.db.dispatch_campaigns(Timestamp::now()).await.unwrap();
    assert_eq!((done.started, done.listed), (1, 1), "{done:?}");
    browser.refresh().await.unwrap();
    click(&browser, &format!("{next_day} .chip")).await;
    wait_for_text_matching(&browser, "#report-left-out", 10, |t| {
        t.contains("1 number of the pool was left out")
    })
    .await;
    let chosen = browser
        .find(Locator::Css("#campaign-form input[name=distribution][value=pool]"))
        .await
        .unwrap();
    assert_eq!(chosen.prop("checked").await.unwrap().as_deref(), Some("true"));
    browser.close().await.unwrap();
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => plan_a_campaign_on_the_calendar_and_follow_it);
