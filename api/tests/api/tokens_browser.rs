//! The dashboard's API tokens tab in headless Chromium: a token is made with only the scopes and
//! devices ticked, and the list shows each token's scopes and devices.

use std::time::Duration;

use wafleet_core::types::{DeviceId, DeviceLimit, Scope, Scopes};

use crate::browser::support::{click, fill, screenshot, start_browser, wait_for_text};
use crate::helpers::TestApp;
use crate::webhooks::user_id;

async fn a_token_gets_the_scopes_and_devices_ticked_in_the_form(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let shop = ana.add_device("Shop", None).await;
    ana.add_device("Cafe", None).await;
    let user = user_id(&app, "ana@example.com").await;
    let (_driver, browser) = start_browser().await;
    crate::browser::log_in(&app, &browser, "ana@example.com").await;
    click(&browser, "[data-tab=tokens]").await;

    fill(&browser, "#add-token input[name=name]", "assistant").await;
    // All three are ticked to begin with: this agent may read only.
    click(&browser, "#add-token input[value=send]").await;
    click(&browser, "#add-token input[value=manage]").await;
    // Only the shop's number.
    click(
        &browser,
        &format!("#add-token input[name=token-device][value='{shop}']"),
    )
    .await;
    click(&browser, "#add-token button[type=submit]").await;
    wait_for_text(&browser, "#tokens tbody td", "read").await;
    wait_for_text(&browser, "#tokens tbody td", "Shop").await;
    screenshot(&browser, "tokens-scopes").await;

    let tokens = loop {
        let tokens = app.db.list_api_tokens(user).await.unwrap();
        if !tokens.is_empty() {
            break tokens;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(tokens[0].name, "assistant");
    assert_eq!(tokens[0].scopes, Scopes::from_iter([Scope::Read]));
    assert_eq!(tokens[0].device_ids, DeviceLimit::only(&[DeviceId(shop)]));
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => a_token_gets_the_scopes_and_devices_ticked_in_the_form);
