//! The Sequences page in headless Chromium, on a real worker and the simulator, on SQLite and on
//! PostgreSQL + Redis. The owner writes a template, then builds a two-step sequence from it: a
//! mistake in step 2 is shown inside step 2; the saved sequence enrols the bakery leads by its
//! rule. Its preview says when each step would go. The scheduler's dispatch runs (as its minute
//! tick does), the worker sends step 1, and the report, open on the page, fills by itself; its
//! "sent" number opens the lead behind it. Another lead is enrolled from a CSV file on the page
//! (choosing both by hand then enrols nobody twice), and the sequence is paused, resumed and
//! archived. Looked at on a desktop and on a phone.

mod support;

#[path = "../api/tests/support/browser.rs"]
mod browser;
#[path = "../api/tests/support/page_checks.rs"]
mod page_checks;

use browser::{click, fill, screenshot, start_browser, texts, wait_for_text, wait_for_text_matching};
use fantoccini::{Client, Locator};
use page_checks::{set_viewport, widths};
use serde_json::json;
use support::stack::{Network as _, Stack};
use support::unpaced;
use wafleet_core::db::EnrolmentStatus;
use wafleet_core::testing::{Backend, eventually};
use wafleet_core::types::{DeviceId, Email, Timestamp};

const DEVICE_PHONE: &str = "+60123400301";
const BAKERY_LEAD: (&str, &str) = ("Ana Lima", "+60123400371");
const OTHER_LEAD: (&str, &str) = ("Bo Chen", "+60123400372");

/// Fails unless the page fits its width (nothing scrolls sideways).
async fn fits(browser: &Client, what: &str) {
    let (scroll, inner) = widths(browser).await;
    assert!(scroll <= inner, "{what}: {scroll} px of content in {inner} px");
}

/// Whether `css` is shown.
async fn shown(browser: &Client, css: &str) -> bool {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap()
}

async fn build_a_sequence_and_watch_its_report(backend: Backend) {
    let stack = Stack::start(backend).await;
    let db = stack.db.db.clone();
    for (_, phone) in [BAKERY_LEAD, OTHER_LEAD] {
        stack.sim.add_contact(phone.trim_start_matches('+'));
    }
    let device = stack.linked_device("Bakery", DEVICE_PHONE).await;
    let owner = db
        .user_by_email(&Email::parse("ana@example.com").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    unpaced(&db, owner, &[DeviceId(device)]).await;
    for ((name, phone), niche) in [(BAKERY_LEAD, "bakery"), (OTHER_LEAD, "florist")] {
        let (status, body) = stack
            .post(
                "/api/leads",
                json!({"device_id": device, "name": name, "phone": phone, "niche": niche}),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    }

    let (_driver, browser) = start_browser().await;
    set_viewport(&browser, 1440, 900).await;
    browser.goto(&format!("{}/login", stack.base)).await.unwrap();
    fill(&browser, "input[name=email]", "ana@example.com").await;
    fill(&browser, "input[name=password]", "correct horse battery").await;
    click(&browser, "#account-form button[type=submit]").await;
    wait_for_text(&browser, ".device .name", "Bakery").await;

    // A template first, on its page.
    click(&browser, "nav a[href='/templates']").await;
    click(&browser, "#new-template").await;
    fill(&browser, "#template-form input[name=name]", "Fresh bread").await;
    fill(
        &browser,
        "#template-form textarea[name=message]",
        "{Hi|Hello} {first_name}, fresh bread today!",
    )
    .await;
    click(&browser, "#save-template").await;
    wait_for_text(&browser, "#saved", "Saved “Fresh bread”.").await;

    // The sequence, built from it; the page opened from the navigation.
    click(&browser, "nav a[href='/sequences']").await;
    wait_for_text(
        &browser,
        "#no-sequences",
        "No sequences yet. Choose New sequence to build one.",
    )
    .await;
    click(&browser, "#new-sequence").await;
    fill(&browser, "#sequence-form input[name=name]", "Bakery follow-up").await;
    fill(&browser, "#sequence-form input[name=time_zone]", "UTC").await;
    // Open all day, every day, so step 1 is due when the test runs.
    browser
        .execute(
            "const f = document.getElementById('sequence-form');
             f.elements.window_start.value = '00:00'; f.elements.window_end.value = '23:59';
             for (const d of f.querySelectorAll('input[name=weekday]')) d.checked = true;",
            vec![],
        )
        .await
        .unwrap();
    let device_box = browser
        .execute(
            "return document.querySelector('#sequence-form input[name=device]').checked;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(device_box, json!(true), "the only device is chosen for a new sequence");
    browser
        .find(Locator::Css("#steps .step select[name=template]"))
        .await
        .unwrap()
        .select_by_label("Fresh bread")
        .await
        .unwrap();
    wait_for_text(
        &browser,
        "#steps .step .template-note",
        "Message filled from “Fresh bread”.",
    )
    .await;
    click(&browser, "#add-step").await;
    let second = "#steps .step:nth-child(2)";
    fill(&browser, &format!("{second} input[name=delay_days]"), "2").await;
    fill(
        &browser,
        &format!("{second} textarea[name=message]"),
        "Still fresh, {frist_name}?",
    )
    .await;
    click(&browser, "#sequence-form input[name=rule]").await;
    fill(&browser, "#sequence-form input[name=rule_niche]", "bakery").await;
    click(&browser, "#save-sequence").await;
    let error = wait_for_text_matching(&browser, &format!("{second} .field-error"), 10, |t| {
        t.starts_with("Step 2: Unknown variable `{frist_name}`")
    })
    .await;
    assert!(error.contains("position"), "the spot is named: {error}");
    let invalid = browser
        .execute(
            "return document.querySelector('#steps .step:nth-child(2) textarea').getAttribute('aria-invalid');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(invalid, json!("true"), "the step's message is marked");
    screenshot(&browser, "sequences-error-desktop").await;
    assert!(db.list_sequences(owner).await.unwrap().is_empty(), "nothing saved");

    fill(
        &browser,
        &format!("{second} textarea[name=message]"),
        "Still fresh, {first_name}?",
    )
    .await;
    click(&browser, "#save-sequence").await;
    wait_for_text_matching(&browser, "#saved", 10, |t| t.starts_with("Saved “Bakery follow-up”.")).await;
    let saved = db.list_sequences(owner).await.unwrap();
    assert_eq!(saved.len(), 1);
    let sequence = &saved[0];
    assert_eq!(
        (
            sequence.steps[0].message.as_str(),
            sequence.steps[1].message.as_str(),
            sequence.steps[1].delay_days
        ),
        (
            "{Hi|Hello} {first_name}, fresh bread today!",
            "Still fresh, {first_name}?",
            2
        )
    );
    assert_eq!(
        (
            sequence.window.start.as_str(),
            sequence.window.end.as_str(),
            sequence.window.weekdays.len()
        ),
        ("00:00", "24:00", 7)
    );
    assert_eq!(sequence.device_ids, [DeviceId(device)]);
    assert!(sequence.stop_on_reply, "stops on a reply by default");
    let card = format!("#sequences .sequence[data-id='{}']", sequence.id);
    wait_for_text_matching(&browser, &format!("{card} .summary"), 10, |t| {
        t.starts_with("2 steps · from Bakery · every day 00:00–24:00 (UTC) · enrols niche bakery by itself")
    })
    .await;

    // The preview: step 2 two days after step 1, each message rendered for the sample lead.
    click(&browser, &format!("{card} button.preview")).await;
    let previews = wait_for_text_matching(&browser, &format!("{card} .preview-steps > li"), 10, |t| {
        t.starts_with("Step 2:")
    })
    .await;
    assert!(previews.contains("Still fresh, Alex?"), "{previews}");
    let renders = texts(
        &browser,
        &format!("{card} .preview-steps > li:first-child .previews li"),
    )
    .await;
    assert_eq!(renders.len(), 3, "{renders:?}");
    assert!(
        renders.iter().all(|r| r.ends_with("Alex, fresh bread today!")),
        "{renders:?}"
    );

    // The report, open while the scheduler's dispatch runs and the worker sends.
    click(&browser, &format!("{card} button.report")).await;
    wait_for_text(
        &browser,
        &format!("{card} .step-report tbody tr:first-child td.sent"),
        "0",
    )
    .await;
    let id = sequence.id;
    eventually(
        std::time::Duration::from_secs(30),
        "step 1 goes to the bakery lead",
        async || {
            db.dispatch_sequences(Timestamp::now()).await.unwrap();
            let report = db.sequence_report(owner, id).await.unwrap();
            report.steps[0].sent == 1
        },
    )
    .await;
    wait_for_text_matching(
        &browser,
        &format!("{card} .step-report tbody tr:first-child td.sent"),
        15,
        |t| t == "1",
    )
    .await;
    assert_eq!(
        stack.sim.sent_to(DEVICE_PHONE.trim_start_matches('+')).await,
        [BAKERY_LEAD.1.trim_start_matches('+')],
        "only the lead of the rule's niche got step 1"
    );
    click(
        &browser,
        &format!("{card} .step-report tbody tr:first-child td.sent button"),
    )
    .await;
    let drilled = wait_for_text_matching(&browser, &format!("{card} .drill-leads li"), 10, |t| {
        t.starts_with("Ana Lima")
    })
    .await;
    assert!(
        drilled.contains(BAKERY_LEAD.1) && drilled.contains("enrolled by rule"),
        "{drilled}"
    );
    assert_eq!(texts(&browser, &format!("{card} .drill-leads li")).await.len(), 1);
    screenshot(&browser, "sequences-report-desktop").await;

    // Enrolling from a file: Bo's number enrols him; a number that is no lead is named back.
    click(&browser, &format!("{card} button.enrol")).await;
    wait_for_text_matching(&browser, &format!("{card} .enrol-leads li"), 10, |t| {
        t.contains("Bo Chen")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("numbers.csv");
    std::fs::write(
        &file,
        format!("name,phone\nBo,{}\nStranger,+60129999999\n", OTHER_LEAD.1),
    )
    .unwrap();
    browser
        .find(Locator::Css(&format!("{card} input[name=enrol_file]")))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    click(&browser, &format!("{card} .enrol-file")).await;
    let told = wait_for_text_matching(&browser, &format!("{card} .enrol-file-note"), 10, |t| !t.is_empty()).await;
    assert!(
        told.starts_with("1 lead enrolled; 0 in it already.")
            && told.contains("1 number is no lead of its devices: line 3 (+60129999999)"),
        "{told}"
    );
    // By hand: both chosen; both are in it already and are left as they are.
    click(&browser, &format!("{card} .select-all")).await;
    click(&browser, &format!("{card} .enrol-selected")).await;
    wait_for_text(
        &browser,
        &format!("{card} .enrol-note"),
        "0 leads enrolled; 2 already in it (or not a lead of its devices) were left as they are.",
    )
    .await;
    screenshot(&browser, "sequences-enrol-desktop").await;
    let filter = wafleet_core::db::EnrolmentFilter::default();
    let enrolled = db.sequence_enrolments(owner, id, &filter, 0, 10).await.unwrap();
    let mut sources: Vec<(String, &str)> = enrolled
        .iter()
        .map(|e| (e.lead_name.clone().unwrap(), e.source.as_str()))
        .collect();
    sources.sort();
    assert_eq!(
        sources,
        [("Ana Lima".to_owned(), "rule"), ("Bo Chen".to_owned(), "csv")]
    );
    assert!(enrolled.iter().all(|e| e.status == EnrolmentStatus::Active));

    // Pause, resume, archive.
    click(&browser, &format!("{card} button.pause")).await;
    wait_for_text(&browser, &format!("{card} .badge.status"), "paused").await;
    click(&browser, &format!("{card} button.resume")).await;
    wait_for_text(&browser, &format!("{card} .badge.status"), "active").await;
    fits(&browser, "sequences on a desktop").await;
    screenshot(&browser, "sequences-list-desktop").await;

    // On a phone: the list, the report and the form fit the width.
    set_viewport(&browser, 390, 844).await;
    browser.refresh().await.unwrap();
    click(&browser, &format!("{card} button.report")).await;
    wait_for_text(
        &browser,
        &format!("{card} .step-report tbody tr:first-child td.sent"),
        "1",
    )
    .await;
    fits(&browser, "a report on a phone").await;
    screenshot(&browser, "sequences-report-phone").await;
    click(&browser, &format!("{card} button.edit")).await;
    wait_for_text(&browser, "#form-title", "Edit “Bakery follow-up”").await;
    fits(&browser, "the form on a phone").await;
    screenshot(&browser, "sequences-form-phone").await;
    click(&browser, "#cancel-edit").await;
    assert!(!shown(&browser, "#sequence-form").await);

    browser.execute("window.confirm = () => true;", vec![]).await.unwrap();
    click(&browser, &format!("{card} button.archive")).await;
    wait_for_text(&browser, &format!("{card} .badge.status"), "archived").await;
    let report = db.sequence_report(owner, id).await.unwrap();
    assert_eq!(report.exited.get("archived"), Some(&2), "{report:?}");
    browser.close().await.unwrap();
}

wafleet_core::testing::on_both_backends!(build_a_sequence_and_watch_its_report);
