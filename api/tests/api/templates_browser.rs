//! The Templates page in headless Chromium: a template with a mistake is refused with the spot
//! shown under the message, its three renders are previewed, it is saved with an image, renamed
//! and another deleted (after a confirmation); then a campaign starts from it on the Campaigns
//! page and gets its text and image. Looked at on a desktop and on a phone.

use chrono::Datelike;
use fantoccini::{Client, Locator};
use wafleet_core::types::{Timestamp, UserId};

use crate::browser::register_with_a_device;
use crate::browser::support::{
    click, fill, screenshot, start_browser, texts, wait_for_count, wait_for_text, wait_for_text_matching,
};
use crate::helpers::TestApp;

// The page checks reach the screenshot helper as `super::browser`; the admin page's test uses
// them from here (a file loaded as a module twice is refused).
use crate::browser::support as browser;
#[path = "../support/page_checks.rs"]
pub(crate) mod page_checks;

use page_checks::{set_viewport, widths};

const MESSAGE: &str = "{Hi|Hello|Hey} {first_name}, fresh bread today!";

/// A small PNG in `dir`, for the image field.
fn photo(dir: &std::path::Path) -> std::path::PathBuf {
    let image = image::RgbImage::from_fn(60, 40, |x, y| image::Rgb([x as u8 * 4, y as u8 * 6, 120]));
    let path = dir.join("bread.png");
    image.save(&path).unwrap();
    path
}

/// Fails unless the page fits its width (nothing scrolls sideways).
async fn fits(browser: &Client, what: &str) {
    let (scroll, inner) = widths(browser).await;
    assert!(scroll <= inner, "{what}: {scroll} px of content in {inner} px");
}

/// A bad message is refused with its position shown under the field; the fixed one previews
/// three renders and is saved with an image.
async fn write_a_template(app: &TestApp, browser: &Client, owner: UserId) {
    click(browser, "nav a[href='/templates']").await;
    wait_for_text(
        browser,
        "#no-templates",
        "No templates yet. Choose New template to write one.",
    )
    .await;
    click(browser, "#new-template").await;
    fill(browser, "#template-form input[name=name]", "Spring bread").await;
    fill(browser, "#template-form textarea[name=message]", "Hi there {Hello|Hey").await;
    click(browser, "#save-template").await;
    wait_for_text_matching(browser, "#message-error .what", 10, |t| {
        t.starts_with("Unbalanced braces: `{` at position 10 is never closed")
    })
    .await;
    wait_for_text(browser, "#message-error .where", "Hi there {Hello|Hey").await;
    assert_eq!(texts(browser, "#message-error mark").await, ["{"], "the spot is marked");
    let invalid = browser
        .execute(
            "const m = document.querySelector('#template-form [name=message]');
             return [m.getAttribute('aria-invalid'), m.selectionStart, m.selectionEnd];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(invalid, serde_json::json!(["true", 9, 10]), "the brace is selected");
    screenshot(browser, "templates-error-desktop").await;
    assert!(app.db.list_templates(owner).await.unwrap().is_empty(), "nothing saved");

    // The same mistake in "Preview 3 variations" shows the same way.
    fill(browser, "#template-form textarea[name=message]", "Hi {frist_name}").await;
    click(browser, "#preview-form").await;
    wait_for_text_matching(browser, "#message-error .what", 10, |t| {
        t.starts_with("Unknown variable `{frist_name}` at position 4")
    })
    .await;

    fill(browser, "#template-form textarea[name=message]", MESSAGE).await;
    click(browser, "#preview-form").await;
    wait_for_text_matching(browser, "#form-previews li", 10, |t| {
        t.contains("Alex, fresh bread today!")
    })
    .await;
    let renders = texts(browser, "#form-previews li").await;
    assert_eq!(renders.len(), 3, "{renders:?}");
    let mut openings: Vec<&str> = renders.iter().map(|r| r.split(' ').next().unwrap()).collect();
    openings.sort();
    assert_eq!(openings, ["Hello", "Hey", "Hi"], "three different renders");
    assert!(
        !browser
            .find(Locator::Css("#message-error"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "the error is gone once the message is right"
    );

    let dir = tempfile::tempdir().unwrap();
    browser
        .find(Locator::Css("#template-form input[name=image]"))
        .await
        .unwrap()
        .send_keys(photo(dir.path()).to_str().unwrap())
        .await
        .unwrap();
    click(browser, "#save-template").await;
    wait_for_text(browser, "#templates .template .name", "Spring bread with image").await;
    wait_for_text(browser, "#saved", "Saved “Spring bread”.").await;
    let saved = app.db.list_templates(owner).await.unwrap();
    assert_eq!(
        (saved.len(), saved[0].message.as_str(), saved[0].has_image),
        (1, MESSAGE, true)
    );
}

/// A card previews its template; another template is renamed, then deleted once confirmed.
async fn preview_rename_and_delete(app: &TestApp, browser: &Client, owner: UserId) {
    click(browser, "#templates .template .preview").await;
    wait_for_text_matching(browser, "#templates .template .previews li", 10, |t| t.contains("Alex")).await;
    assert_eq!(texts(browser, "#templates .template .previews li").await.len(), 3);

    click(browser, "#new-template").await;
    fill(browser, "#template-form input[name=name]", "Old offer").await;
    fill(browser, "#template-form textarea[name=message]", "Last week's offer").await;
    click(browser, "#save-template").await;
    wait_for_text(browser, "#templates .template .name", "Old offer").await;
    let old = format!(
        "#templates .template[data-id='{}']",
        app.db.list_templates(owner).await.unwrap()[0].id
    );
    click(browser, &format!("{old} .edit")).await;
    fill(browser, "#template-form input[name=name]", "Older offer").await;
    click(browser, "#save-template").await;
    wait_for_text(browser, &format!("{old} .name"), "Older offer").await;

    browser.execute("window.confirm = () => false;", vec![]).await.unwrap();
    click(browser, &format!("{old} .delete")).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.db.list_templates(owner).await.unwrap().len(),
        2,
        "not confirmed: kept"
    );
    browser.execute("window.confirm = () => true;", vec![]).await.unwrap();
    click(browser, &format!("{old} .delete")).await;
    wait_for_text(browser, "#saved", "Deleted “Older offer”.").await;
    // The notice comes first, then the list is drawn again.
    wait_for_count(browser, "#templates .template", 1).await;
    assert_eq!(app.db.list_templates(owner).await.unwrap().len(), 1);
}

/// On a phone the page and its error fit the width.
async fn on_a_phone(browser: &Client) {
    set_viewport(browser, 390, 844).await;
    browser.refresh().await.unwrap();
    wait_for_text(browser, "#templates .template .name", "Spring bread with image").await;
    click(browser, "#templates .template .preview").await;
    wait_for_text_matching(browser, "#templates .template .previews li", 10, |t| t.contains("Alex")).await;
    fits(browser, "templates on a phone").await;
    screenshot(browser, "templates-list-phone").await;
    click(browser, "#templates .template .edit").await;
    fill(
        browser,
        "#template-form textarea[name=message]",
        "A longer message for the phone's narrow screen: {Hi|Hello} {first_name}} and more words after it",
    )
    .await;
    click(browser, "#save-template").await;
    wait_for_text_matching(browser, "#message-error .what", 10, |t| t.contains("position 72")).await;
    fits(browser, "an error on a phone").await;
    screenshot(browser, "templates-error-phone").await;
    click(browser, "#cancel-edit").await;
}

/// "Start a campaign" on a template's card opens the campaign form with it chosen; "Start from a
/// template" there fills the campaign's message and says its image goes with it.
async fn start_a_campaign_from_it(app: &TestApp, browser: &Client, owner: UserId, device: i64) {
    let template = app.db.list_templates(owner).await.unwrap()[0].id;
    click(browser, "#templates .template a.use").await;
    wait_for_text_matching(browser, "#template-note", 10, |t| {
        t.starts_with("Message filled from “Spring bread”.")
    })
    .await;
    let chosen = browser
        .execute("return document.getElementById('template-picker').value;", vec![])
        .await
        .unwrap();
    assert_eq!(chosen, template.to_string());
    set_viewport(browser, 1440, 900).await;
    screenshot(browser, "campaigns-from-template-desktop").await;
    click(browser, "#close").await;
    set_viewport(browser, 390, 844).await;

    // The picker, in a form opened from the calendar.
    let date = format!("{}-01-15", Timestamp::now().to_datetime().year());
    click(browser, &format!(".day[data-date='{date}']")).await;
    fill(browser, "#campaign-form input[name=title]", "Bread week").await;
    fill(browser, "#campaign-form input[name=niche]", "bakery").await;
    browser
        .find(Locator::Css("#template-picker"))
        .await
        .unwrap()
        .select_by_value(&template.to_string())
        .await
        .unwrap();
    wait_for_text_matching(browser, "#template-note", 10, |t| {
        t.contains("Its image will be sent with the campaign")
    })
    .await;
    let filled = browser
        .execute(
            "return document.querySelector('#campaign-form [name=message]').value;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(filled, MESSAGE);
    click(browser, &format!("#campaign-form input[name=device][value='{device}']")).await;
    fits(browser, "the campaign form on a phone").await;
    screenshot(browser, "campaigns-from-template-phone").await;
    click(browser, "#save").await;
    wait_for_text(browser, &format!(".day[data-date='{date}'] .chip"), "bakery").await;
    let campaigns = app
        .db
        .list_campaigns(owner, Timestamp(0), Timestamp(i64::MAX / 2))
        .await
        .unwrap();
    assert_eq!(campaigns.len(), 1);
    assert_eq!(campaigns[0].message, MESSAGE);
    assert!(campaigns[0].has_image, "the template's image came with it");
}

async fn write_preview_and_use_a_template(app: TestApp) {
    let (_driver, browser) = start_browser().await;
    set_viewport(&browser, 1440, 900).await;
    let (owner, device) = register_with_a_device(&app, &browser, "tpl@example.com").await;
    write_a_template(&app, &browser, owner).await;
    preview_rename_and_delete(&app, &browser, owner).await;
    fits(&browser, "templates on a desktop").await;
    screenshot(&browser, "templates-list-desktop").await;
    on_a_phone(&browser).await;
    start_a_campaign_from_it(&app, &browser, owner, device.0).await;
    browser.close().await.unwrap();
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => write_preview_and_use_a_template);
