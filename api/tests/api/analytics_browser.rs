//! The dashboard's Analytics tab in headless Chromium: the figures of the seeded sends show with
//! their percentages and chart, and change with the range and the device filter.

use fantoccini::Locator;

use crate::analytics::seed;
use crate::browser::support::{click, screenshot, start_browser, wait_for_text};
use crate::helpers::TestApp;

async fn analytics_tab_shows_and_filters_the_figures(app: TestApp) {
    let s = seed(&app).await;
    app.refresh_analytics().await;
    let (_driver, browser) = start_browser().await;
    crate::browser::log_in(&app, &browser, "ana@example.com").await;
    click(&browser, "[data-tab=analytics]").await;

    // The last seven days, all devices.
    wait_for_text(&browser, ".stat[data-stat=sent] .count", "7").await;
    wait_for_text(&browser, ".stat[data-stat=delivered] .pct", "71.4%").await;
    wait_for_text(&browser, ".stat[data-stat=not_read] .count", "2").await;
    wait_for_text(&browser, ".stat[data-stat=replied] .count", "2").await;
    wait_for_text(&browser, ".stat[data-stat=active] .count", "1").await;
    wait_for_text(&browser, ".stat[data-stat=inactive] .count", "1").await;
    let lines = browser
        .find_all(Locator::Css("#analytics-chart polyline"))
        .await
        .unwrap();
    assert_eq!(lines.len(), 4, "a line each for sent, delivered, read and replied");
    screenshot(&browser, "analytics").await;

    click(&browser, "[data-days='1']").await;
    wait_for_text(&browser, ".stat[data-stat=sent] .count", "5").await;
    wait_for_text(&browser, ".stat[data-stat=read] .pct", "75%").await;

    click(&browser, &format!("#analytics-device option[value='{}']", s.stall)).await;
    wait_for_text(&browser, ".stat[data-stat=sent] .count", "1").await;
    wait_for_text(&browser, ".stat[data-stat=read] .pct", "100%").await;
    wait_for_text(&browser, ".stat[data-stat=active] .count", "0").await;

    click(&browser, &format!("#analytics-device option[value='{}']", s.shop)).await;
    click(&browser, "[data-days='30']").await;
    wait_for_text(&browser, ".stat[data-stat=sent] .count", "6").await;
    wait_for_text(&browser, ".stat[data-stat=failed] .count", "1").await;
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => analytics_tab_shows_and_filters_the_figures);
