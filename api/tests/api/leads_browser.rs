//! The leads page in headless Chromium: a refused import shows every bad row and stores nothing,
//! the fixed file imports, a lead is edited in place, the filtered export downloads, each lead
//! shows the name WhatsApp shows for its number, and the page fits a phone.

use fantoccini::{Client, Locator};
use wafleet_core::db::LeadFilter;
use wafleet_core::link::Jid;
use wafleet_core::types::{DeviceId, UserId};

use crate::browser::register_with_a_device;
use crate::browser::support::{click, fill, screenshot, start_browser, wait_for_count, wait_for_text};
use crate::helpers::TestApp;
use crate::leads_csv::{FIXED, TWO_BAD_ROWS};
use crate::templates_browser::page_checks::{set_viewport, widths};

async fn stored(app: &TestApp, owner: UserId, device: DeviceId) -> Vec<wafleet_core::db::Lead> {
    app.db
        .export_leads(owner, device, &LeadFilter::default())
        .await
        .unwrap()
}

/// Chooses `path` in the import form and submits it.
async fn import(browser: &Client, path: &std::path::Path) {
    let input = browser
        .find(Locator::Css("#import-leads input[type=file]"))
        .await
        .unwrap();
    input.send_keys(&path.display().to_string()).await.unwrap();
    click(browser, "#import-leads button[type=submit]").await;
}

async fn import_edit_and_export_leads_in_the_browser(app: TestApp) {
    let files = tempfile::tempdir().unwrap();
    let (bad, fixed) = (files.path().join("leads-bad.csv"), files.path().join("leads.csv"));
    std::fs::write(&bad, TWO_BAD_ROWS).unwrap();
    std::fs::write(&fixed, FIXED).unwrap();

    let (_driver, browser) = start_browser().await;
    let (owner, device) = register_with_a_device(&app, &browser, "leads@example.com").await;

    // The device's card links to its leads.
    click(&browser, ".device .leads-link").await;
    wait_for_text(&browser, "#device-name", "Sales 1").await;
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with(&format!("/device/{device}/leads"))
    );
    wait_for_text(&browser, "#no-leads", "No leads match.").await;

    // A file with two bad rows: both are listed, nothing is imported.
    click(&browser, "#import-box summary").await;
    import(&browser, &bad).await;
    wait_for_count(&browser, "#import-errors:not([hidden]) tr.import-error", 2).await;
    let errors: Vec<String> = {
        let mut texts = Vec::new();
        for row in browser.find_all(Locator::Css("tr.import-error")).await.unwrap() {
            texts.push(row.text().await.unwrap());
        }
        texts
    };
    assert!(
        errors[0].starts_with("3 phone") && errors[0].contains("`12ab` is not a phone number"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("5 status") && errors[1].contains("unknown status `hot`"),
        "{errors:?}"
    );
    let message = browser.find(Locator::Css("#import-errors-message")).await.unwrap();
    assert!(
        message.text().await.unwrap().contains("Nothing was imported"),
        "the server's message, as a sentence"
    );
    screenshot(&browser, "leads-import-refused").await;
    assert_eq!(browser.find_all(Locator::Css("#leads tr.lead")).await.unwrap().len(), 0);
    assert!(stored(&app, owner, device).await.is_empty(), "nothing was imported");

    // WhatsApp knows two of the numbers by name: Bo's phone saved, Chong's own (a chat).
    app.db
        .set_contact_name(device, &Jid("60198765432@s.whatsapp.net".into()), "Bo the florist")
        .await
        .unwrap();
    wafleet_core::testing::execute(
        &app.db,
        "INSERT INTO chats (device_id, jid, name, last_message_at) VALUES ($1, '60171112222@s.whatsapp.net', 'Chong W.', 0)",
        &[device.0.into()],
    )
    .await;

    // The fixed file imports whole.
    import(&browser, &fixed).await;
    wait_for_text(&browser, "#import-result", "4 leads imported").await;
    wait_for_count(&browser, "#leads tr.lead", 4).await;
    assert!(
        !browser
            .find(Locator::Css("#import-errors"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    assert_eq!(stored(&app, owner, device).await.len(), 4);
    // Each lead shows the name WhatsApp shows for its number, when there is one.
    wait_for_count(&browser, "#leads .whatsapp-name", 2).await;
    let mut shown = Vec::new();
    for name in browser.find_all(Locator::Css("#leads .whatsapp-name")).await.unwrap() {
        shown.push(name.text().await.unwrap());
    }
    shown.sort();
    assert_eq!(shown, ["on WhatsApp: Bo the florist", "on WhatsApp: Chong W."]);
    screenshot(&browser, "leads-imported").await;

    // Edit Bo in place.
    let bo = stored(&app, owner, device)
        .await
        .into_iter()
        .find(|l| l.name == "Bo")
        .unwrap();
    click(&browser, &format!("tr.lead[data-id='{}'] .edit", bo.id)).await;
    fill(&browser, "tr.editing input[name=notes]", "called on Monday").await;
    browser
        .find(Locator::Css("tr.editing select[name=status]"))
        .await
        .unwrap()
        .select_by_value("interested")
        .await
        .unwrap();
    click(&browser, "tr.editing .save").await;
    wait_for_text(
        &browser,
        &format!("tr.lead[data-id='{}'] .lead-status", bo.id),
        "Interested",
    )
    .await;
    let edited = app.db.lead(owner, bo.id).await.unwrap();
    assert_eq!(edited.status.as_str(), "interested");
    assert_eq!(edited.notes.as_deref(), Some("called on Monday"));
    assert_eq!(edited.phone, bo.phone, "untouched fields are kept");

    // Filter by niche, then export what is shown.
    fill(&browser, "#lead-search input[name=niche]", "florist").await;
    click(&browser, "#lead-search button[type=submit]").await;
    wait_for_count(&browser, "#leads tr.lead", 2).await;
    let exported = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(document.getElementById('export').href)
               .then(async (r) => done([r.status, r.headers.get('content-type'), await r.text()]));",
            vec![],
        )
        .await
        .unwrap();
    let href = browser
        .find(Locator::Css("#export"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(
        href.ends_with(&format!("/api/devices/{device}/leads/export?niche=florist")),
        "{href}"
    );
    assert_eq!(exported[0], 200);
    assert_eq!(exported[1], "text/csv; charset=utf-8");
    let csv = exported[2].as_str().unwrap();
    assert!(csv.starts_with("name,phone,niche,journey,status,notes\n"), "{csv}");
    assert!(
        csv.contains("Chong,+60171112222,florist") && csv.contains("Dewi,"),
        "{csv}"
    );
    assert!(
        !csv.contains("Aminah") && !csv.contains("Bo,"),
        "only the filtered leads: {csv}"
    );
    screenshot(&browser, "leads-filtered").await;

    // On a phone each lead is a card that fits the width, WhatsApp's name under the owner's.
    set_viewport(&browser, 390, 844).await;
    fill(&browser, "#lead-search input[name=niche]", "").await;
    click(&browser, "#lead-search button[type=submit]").await;
    wait_for_count(&browser, "#leads tr.lead", 4).await;
    wait_for_count(&browser, "#leads .whatsapp-name", 2).await;
    let (scroll, inner) = widths(&browser).await;
    assert!(
        scroll <= inner,
        "the leads on a phone: {scroll} px of content in {inner} px"
    );
    browser
        .execute("document.querySelector('#leads tr.lead').scrollIntoView();", vec![])
        .await
        .unwrap();
    screenshot(&browser, "leads-phone").await;

    browser.close().await.unwrap();
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => import_edit_and_export_leads_in_the_browser);
