//! Demo mode as a new user meets it: `wafleet serve --demo` (the real binary, with its in-process
//! network simulator), driven through the dashboard in headless Chromium.
//!
//! Runs against the project's WhatsApp network simulator only, never real WhatsApp.

use std::time::Duration;

use fantoccini::Locator;

#[path = "support/demo_server.rs"]
mod demo_server;
#[path = "../api/tests/support/browser.rs"]
mod support;

use demo_server::serve_demo;
use support::{click, fill, screenshot, start_browser, texts, wait_for_text, wait_for_text_matching};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_links_a_simulated_phone_and_sees_its_chats() {
    let server = serve_demo();
    let (_driver, browser) = start_browser().await;
    browser.goto(&format!("{}/register", server.base)).await.unwrap();
    fill(&browser, "input[name=email]", "demo@example.com").await;
    fill(&browser, "input[name=password]", "correct horse battery").await;
    click(&browser, "#account-form button[type=submit]").await;
    let banner = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#demo-banner"))
        .await
        .unwrap();
    assert!(
        banner.text().await.unwrap().contains("simulated"),
        "the page says plainly that this is a simulation"
    );

    fill(&browser, "#add-device input[name=name]", "Demo phone").await;
    fill(&browser, "#add-device input[name=phone]", "+60123456789").await;
    click(&browser, "#add-device button[type=submit]").await;
    wait_for_text(&browser, ".device .status", "Offline").await;

    // Scan QR code: the code is drawn in the page, then the simulated phone scans it.
    click(&browser, ".device .pair-qr").await;
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(".device .qr svg"))
        .await
        .unwrap();
    screenshot(&browser, "demo-qr").await;
    click(&browser, ".device .demo-scan button[type=submit]").await;
    // The card turns online without a reload (server-sent events).
    wait_for_text(&browser, ".device .status", "Online").await;
    wait_for_text(&browser, ".device .jid", "Linked as 60123456789").await;

    // The simulated contacts write (three people, and one group message that must not appear).
    wait_for_text(&browser, ".device .chat-count", "3").await;
    click(&browser, ".device .show-chats").await;
    wait_for_text(&browser, ".device .chat-list li .who", "Chandra").await;
    let chats = texts(&browser, ".device .chat-list li").await;
    assert_eq!(chats.len(), 3, "{chats:?}");
    assert!(
        chats.iter().all(|c| !c.contains("group message")),
        "group messages are never stored: {chats:?}"
    );
    screenshot(&browser, "demo-online").await;

    // Check numbers: the demo network has no account for +60129990000.
    click(&browser, ".device .show-check").await;
    fill(
        &browser,
        ".device .check input[name=phones]",
        "+60129990000, +60191000001",
    )
    .await;
    click(&browser, ".device .check button[type=submit]").await;
    wait_for_text(
        &browser,
        ".device .check-results .not-on-wa",
        "+60129990000: not on WhatsApp",
    )
    .await;
    wait_for_text(&browser, ".device .check-results .on-wa", "+60191000001: on WhatsApp").await;

    // Log out from wafleet: the card shows it.
    browser.execute("window.confirm = () => true;", vec![]).await.unwrap();
    click(&browser, ".device .logout").await;
    wait_for_text(&browser, ".device .status", "Logged out").await;
    browser.close().await.unwrap();
}

/// A CSV of five bakery leads where rows 2 and 4 (the file's lines 3 and 5) are wrong.
const LEADS_TWO_BAD_ROWS: &str = "Name,Phone,Niche,Status\n\
    Aminah,+60 12-300 0001,bakery,new\n\
    Bo,12ab,bakery,new\n\
    Chong,+60 12-300 0003,bakery,new\n\
    Aminah again,+60 12-300 0001,bakery,new\n\
    Dewi,+60 12-300 0005,bakery,new\n";

/// The same file, fixed.
const LEADS_FIXED: &str = "Name,Phone,Niche,Status\n\
    Aminah,+60 12-300 0001,bakery,new\n\
    Bo,+60 12-300 0002,bakery,new\n\
    Chong,+60 12-300 0003,bakery,new\n\
    Dani,+60 12-300 0004,bakery,new\n\
    Dewi,+60 12-300 0005,bakery,new\n";

/// The whole product as one user meets it, on the real binary in demo mode: link a phone, read a
/// chat, import leads (a refused file first), plan a campaign a minute ahead on the calendar, watch
/// it go out paced and come back delivered and read, and see the analytics count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_walks_from_pairing_to_analytics() {
    let server = serve_demo();
    let files = tempfile::tempdir().unwrap();
    let (bad, fixed) = (files.path().join("leads-bad.csv"), files.path().join("leads.csv"));
    std::fs::write(&bad, LEADS_TWO_BAD_ROWS).unwrap();
    std::fs::write(&fixed, LEADS_FIXED).unwrap();
    let (_driver, browser) = start_browser().await;

    // Register, add a phone and link it by QR code.
    browser.goto(&format!("{}/register", server.base)).await.unwrap();
    fill(&browser, "input[name=email]", "walk@example.com").await;
    fill(&browser, "input[name=password]", "correct horse battery").await;
    click(&browser, "#account-form button[type=submit]").await;
    fill(&browser, "#add-device input[name=name]", "Shop").await;
    fill(&browser, "#add-device input[name=phone]", "+60125550000").await;
    click(&browser, "#add-device button[type=submit]").await;
    click(&browser, ".device .pair-qr").await;
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(".device .qr svg"))
        .await
        .unwrap();
    click(&browser, ".device .demo-scan button[type=submit]").await;
    wait_for_text(&browser, ".device .status", "Online").await;
    let dashboard = browser.current_url().await.unwrap();

    // Read a chat in the WhatsApp view.
    click(&browser, ".device .whatsapp-link").await;
    wait_for_text_matching(&browser, "li.chat .chat-name", 20, |t| t == "Aisyah").await;
    wait_for_text(
        &browser,
        "#status-bar.online",
        "Online: new messages appear as they arrive.",
    )
    .await;
    click(&browser, "li.chat[data-jid='60191000001@s.whatsapp.net']").await;
    wait_for_text(&browser, "#thread-name", "Aisyah").await;
    wait_for_text(
        &browser,
        "li.message.in .body",
        "Hi, this is Aisyah. Is this still available?",
    )
    .await;
    // Her photo, fetched by the worker through the session, shows in the chat.
    wait_for_text(&browser, "li.message.in .body", "This one, in blue").await;
    let loaded = wafleet_core::testing::poll_for(Duration::from_secs(30), async || {
        let width = browser
            .execute(
                "const img = document.querySelector('li.message.in .media.image img'); \
                 return img && img.complete ? img.naturalWidth : 0;",
                vec![],
            )
            .await
            .ok()?;
        (width.as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    assert!(
        loaded.is_some(),
        "the photo never showed:\n{}",
        browser.source().await.unwrap_or_default()
    );
    screenshot(&browser, "walk-chat").await;

    // Import leads: the file with two bad rows is refused whole, with both rows explained.
    browser.goto(dashboard.as_str()).await.unwrap();
    click(&browser, ".device .leads-link").await;
    click(&browser, "#import-box summary").await;
    let choose = async |path: &std::path::Path| {
        let input = browser
            .find(Locator::Css("#import-leads input[type=file]"))
            .await
            .unwrap();
        input.send_keys(&path.display().to_string()).await.unwrap();
        click(&browser, "#import-leads button[type=submit]").await;
    };
    choose(&bad).await;
    let errors = wait_for_text_matching(&browser, "#import-errors-message", 10, |t| {
        t.contains("Nothing was imported")
    })
    .await;
    let rows = texts(&browser, "tr.import-error").await;
    assert_eq!(rows.len(), 2, "{errors}: {rows:?}");
    assert!(rows[0].contains("12ab"), "{rows:?}");
    assert!(
        rows[1].to_lowercase().contains("duplicate") || rows[1].contains("already"),
        "{rows:?}"
    );
    assert!(
        texts(&browser, "#leads tr.lead").await.is_empty(),
        "nothing was imported"
    );
    screenshot(&browser, "walk-import-refused").await;
    choose(&fixed).await;
    wait_for_text(&browser, "#import-result", "5 leads imported").await;
    wait_for_text_matching(&browser, "#leads tr.lead", 10, |t| t.contains("Dani")).await;

    // Plan a campaign for the bakery leads a minute ahead (the next whole minute at least 45 s away).
    let now = chrono::Utc::now();
    let at = now + chrono::Duration::seconds(105);
    let at = at - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&at)));
    let date = at.format("%Y-%m-%d").to_string();
    browser.goto(dashboard.as_str()).await.unwrap();
    click(&browser, "nav a[href='/campaigns']").await;
    click(&browser, &format!(".day[data-date='{date}']")).await;
    fill(&browser, "#campaign-form input[name=title]", "Fresh bread").await;
    fill(&browser, "#campaign-form input[name=niche]", "bakery").await;
    fill(&browser, "#campaign-form textarea[name=message]", "Fresh bread today!").await;
    browser
        .execute(
            "const f = document.getElementById('campaign-form').elements; f.time.value = arguments[0]; f.time_zone.value = 'UTC';",
            vec![serde_json::json!(at.format("%H:%M").to_string())],
        )
        .await
        .unwrap();
    click(&browser, "#campaign-form input[name=device]").await;
    click(&browser, "#save").await;
    let chip = format!(".day[data-date='{date}'] .chip");
    wait_for_text(&browser, &chip, "bakery").await;
    click(&browser, &chip).await;
    wait_for_text(&browser, "#campaign-status", "scheduled").await;
    screenshot(&browser, "walk-campaign-scheduled").await;

    // At its minute the scheduler starts it; the open report follows it to delivered and read.
    wait_for_text_matching(&browser, "#campaign-status", 150, |t| t == "running" || t == "finished").await;
    // The report counts each send once, by the furthest it got: done and neither still "sent"
    // (no receipt) nor failed means every one was delivered, read or answered.
    let done = wait_for_text_matching(&browser, "#report-total", 240, |t| {
        t.contains("5 of 5 done") && t.contains("sent 0 ") && t.contains("failed 0 ")
    })
    .await;
    let count = |state: &str| -> u32 {
        done.split(&format!("{state} "))
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {state} count in {done:?}"))
    };
    let (delivered, read, replied) = (count("delivered"), count("read"), count("replied"));
    assert_eq!(delivered + read + replied, 5, "{done}");
    eprintln!("campaign: {done}");
    screenshot(&browser, "walk-campaign-delivered").await;

    // The analytics tab counts the campaign's sends once the next roll-up ran.
    browser.goto(dashboard.as_str()).await.unwrap();
    click(&browser, "[data-tab=analytics]").await;
    wait_for_text_matching(&browser, ".stat[data-stat=sent] .count", 120, |t| t == "5").await;
    wait_for_text(&browser, ".stat[data-stat=delivered] .count", "5").await;
    wait_for_text(&browser, ".stat[data-stat=delivered] .pct", "100%").await;
    let shown: u32 = texts(&browser, ".stat[data-stat=read] .count").await[0]
        .parse()
        .unwrap();
    assert!(
        shown >= read,
        "analytics read {shown} < the campaign's read-only {read}"
    );
    // Replies keep coming after the report was read, so the later roll-up may count more.
    let answered: u32 = texts(&browser, ".stat[data-stat=replied] .count").await[0]
        .parse()
        .unwrap();
    assert!(
        answered >= replied,
        "analytics replied {answered} < the campaign's {replied}"
    );
    screenshot(&browser, "walk-analytics").await;
    browser.close().await.unwrap();
}
