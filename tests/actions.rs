//! Device actions end to end: the real API and a real worker with the simulator's client link,
//! against an in-process simulator over real sockets, on SQLite and on PostgreSQL + Redis. A test
//! send is followed to its receipt, numbers are checked by the simulator, a broadcast goes out
//! once per number at the device's pace; then the same walk through the page in headless Chromium.
//!
//! Everything here runs against the project's WhatsApp network simulator, never real WhatsApp.

mod support;

#[path = "../api/tests/support/browser.rs"]
mod browser;

use std::time::Duration;

use fantoccini::{Client, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::stack::Stack;
use wafleet_core::testing::{Backend, poll_for};

/// A small photo-like PNG, base64-encoded.
fn png_base64() -> String {
    use base64::Engine;
    let image = image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 90]));
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `(idempotency key, sent_at)` of the device's sends whose key starts with `prefix`.
async fn sends_like(stack: &Stack, prefix: &str) -> Vec<(String, Option<i64>)> {
    let sql = "SELECT idempotency_key, sent_at FROM outbound_messages WHERE idempotency_key LIKE $1 ORDER BY id";
    let pattern = format!("{prefix}%");
    match &stack.db.db {
        wafleet_core::Db::Sqlite(pool) => sqlx::query_as(sql).bind(pattern).fetch_all(pool).await,
        wafleet_core::Db::Postgres(pool) => sqlx::query_as(sql).bind(pattern).fetch_all(pool).await,
    }
    .unwrap()
}

async fn actions_reach_the_simulator_paced_and_logged(backend: Backend) {
    let stack = Stack::start(backend).await;
    let phone = "+60123458888";
    let id = stack.linked_device("Sales", phone).await;
    let device = format!("/api/devices/{id}");
    // Pacing stays on (the point of the broadcast), at a pace a test can wait for: 3 s apart.
    stack
        .pace(id, |p| {
            p["per_minute"] = json!(20);
            p["jitter_ms"] = json!(0);
            p["warmup_days"] = json!(0);
        })
        .await;
    let control = stack.sim.control();

    // A test text, followed to its receipt.
    let (status, sent) = stack
        .post(
            &format!("{device}/actions/test-send"),
            json!({"to": "0191000001", "text": "is this thing on?"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let message = sent["results"]["id"].as_i64().unwrap();
    stack
        .eventually(&format!("/api/messages/{message}"), "delivered", |m| {
            m["status"] == "delivered" || m["status"] == "read"
        })
        .await;

    // Numbers checked by the simulator; a bad line answered as invalid.
    control
        .set_number(&wafleet_sim::control::NumberRule {
            phone: "+60129990000".into(),
            on_whatsapp: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, checked) = stack
        .post(
            &format!("{device}/actions/check"),
            json!({"numbers": "+60129990000\n012-abc\n0191000001\n+60 19-100 0001"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    let results: Vec<&str> = checked["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["not_on_whatsapp", "invalid", "on_whatsapp", "on_whatsapp"]);
    assert_eq!(checked["results"][2]["jid"], "60191000001@s.whatsapp.net");
    assert_eq!(checked["results"][1]["line"], 2);

    // A list with a bad line queues nothing.
    let (status, refused) = stack
        .post(
            &format!("{device}/broadcasts"),
            json!({"numbers": "+60191000011\nbogus\n+60191000012", "text": "Our new menu"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["results"]["errors"][0]["line"], 2);
    assert!(sends_like(&stack, "broadcast:").await.is_empty());

    // Fixed, with an image: three numbers (a fourth line repeats one), each sent once, paced.
    let body = json!({
        "numbers": "+60191000011\n+60191000012\n0191000013\n+60191000011",
        "text": "Our new menu",
        "image_base64": png_base64(),
    });
    let broadcast = |body: Value| {
        stack
            .client
            .post(format!("{}{device}/broadcasts", stack.base))
            .header("X-CSRF-Token", &stack.csrf)
            .header("Idempotency-Key", "menu-2026")
            .json(&body)
            .send()
    };
    let response = broadcast(body.clone()).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.unwrap();
    let broadcast_id = accepted["results"]["broadcast"]["id"].as_i64().unwrap();
    assert_eq!(accepted["results"]["broadcast"]["duplicates"], 1);
    // The client retries (it did not see the answer): the same broadcast, no new sends.
    let retried = broadcast(body).await.unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    let progress_path = format!("{device}/broadcasts/{broadcast_id}");
    let started = std::time::Instant::now();
    let done = stack
        .eventually_within(
            Duration::from_secs(90),
            &progress_path,
            "every recipient reached",
            |b| {
                let p = &b["progress"];
                p["total"] == 3 && p["queued"] == 0 && p["failed"] == 0
            },
        )
        .await;
    assert_eq!(done["has_image"], true);
    println!("broadcast to 3 numbers reached them all in {:?}", started.elapsed());

    let sent = control.sent(phone).await.unwrap();
    for to in ["60191000011", "60191000012", "60191000013"] {
        let copies = sent
            .iter()
            .filter(|r| r.to.0.contains(to) && r.text.as_deref() == Some("Our new menu"))
            .count();
        assert_eq!(copies, 1, "{to} got the broadcast once: {sent:?}");
    }
    assert!(
        sent.iter()
            .filter(|r| r.text.as_deref() == Some("Our new menu"))
            .all(|r| r.media_bytes.is_some_and(|b| b > 0)),
        "the image went with each"
    );
    let mut times: Vec<i64> = sends_like(&stack, &format!("broadcast:{broadcast_id}:"))
        .await
        .into_iter()
        .map(|(_, at)| at.expect("sent"))
        .collect();
    assert_eq!(times.len(), 3);
    times.sort();
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("broadcast paced at 20 a minute: gaps {gaps:?} ms");
    assert!(gaps.iter().all(|g| *g >= 2_900), "paced three seconds apart: {gaps:?}");

    // The activity log, newest first.
    let log = stack.get(&format!("{device}/activity")).await;
    let kinds: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["broadcast", "check_numbers", "test_send"]);
    assert_eq!(log["entries"][1]["result"], "2 on WhatsApp, 1 not, 1 invalid");
}

/// Waits up to `secs` seconds for the text of `css` to be one of `texts`.
async fn wait_for_any(browser: &Client, css: &str, texts: &[&str], secs: u64) -> String {
    let found = poll_for(Duration::from_secs(secs), async || {
        let element = browser.find(Locator::Css(css)).await.ok()?;
        let text = element.text().await.unwrap_or_default();
        texts.contains(&text.as_str()).then_some(text)
    })
    .await;
    match found {
        Some(text) => text,
        None => panic!(
            "`{css}` never read any of {texts:?}:\n{}",
            browser.source().await.unwrap_or_default()
        ),
    }
}

/// The classes of the elements matching `css`.
async fn classes(browser: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in browser.find_all(Locator::Css(css)).await.unwrap() {
        out.push(element.attr("class").await.unwrap().unwrap_or_default());
    }
    out
}

async fn walk_the_actions_page_in_the_browser(backend: Backend) {
    use browser::{click, fill, screenshot, start_browser, wait_for_count, wait_for_text};

    let stack = Stack::start(backend).await;
    let id = stack.linked_device("Sales 1", "+60123459999").await;
    // This walk is about the page, not the pace.
    stack.pace(id, |p| p["enabled"] = json!(false)).await;
    stack
        .sim
        .control()
        .set_number(&wafleet_sim::control::NumberRule {
            phone: "+60129990000".into(),
            on_whatsapp: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();

    let (_driver, browser) = start_browser().await;
    browser.goto(&format!("{}/login", stack.base)).await.unwrap();
    fill(&browser, "input[name=email]", "ana@example.com").await;
    fill(&browser, "input[name=password]", "correct horse battery").await;
    click(&browser, "#account-form button[type=submit]").await;
    // The device's card links to its actions.
    click(&browser, ".device .actions-link").await;
    wait_for_text(&browser, "#device-name", "Sales 1").await;
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with(&format!("/device/{id}/actions"))
    );

    // A test text, seen to reach delivered.
    fill(&browser, "#test-send input[name=to]", "0191000001").await;
    fill(&browser, "#test-send input[name=text]", "hello from the page").await;
    click(&browser, "#test-send button[type=submit]").await;
    let reached = wait_for_any(&browser, "#test-status .status", &["delivered", "read"], 30).await;
    println!("test send reached {reached}");

    // Numbers checked, one line invalid.
    fill(
        &browser,
        "#check-numbers textarea",
        "+60129990000\nnot a number\n0191000001",
    )
    .await;
    click(&browser, "#check-numbers button[type=submit]").await;
    wait_for_count(&browser, "#check-results tr.checked", 3).await;
    let answers = classes(&browser, "#check-results tr.checked").await;
    assert_eq!(
        answers,
        ["checked not_on_whatsapp", "checked invalid", "checked on_whatsapp"]
    );

    // A list with a bad line: the error is shown and nothing is queued.
    let before = sends_like(&stack, "broadcast:").await.len();
    fill(
        &browser,
        "#broadcast textarea[name=numbers]",
        "+60191000011\nbogus\n+60191000012",
    )
    .await;
    fill(&browser, "#broadcast textarea[name=text]", "Our new menu").await;
    click(&browser, "#broadcast button[type=submit]").await;
    wait_for_count(&browser, "#broadcast-errors:not([hidden]) tbody tr", 1).await;
    let error = browser
        .find(Locator::Css("#broadcast-errors tbody tr"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(error.starts_with("2 bogus"), "{error}");
    screenshot(&browser, "actions-refused").await;
    assert_eq!(sends_like(&stack, "broadcast:").await.len(), before, "nothing queued");

    // Fixed: queued, repeats dropped, progress shown as the sends go out.
    fill(
        &browser,
        "#broadcast textarea[name=numbers]",
        "+60191000011\n+60191000012\n+60191000011",
    )
    .await;
    click(&browser, "#broadcast button[type=submit]").await;
    // The first broadcast of this test's own database.
    wait_for_text(
        &browser,
        "#broadcast-result",
        "broadcast 1 to 2 numbers queued; 1 repeated number dropped",
    )
    .await;
    wait_for_count(&browser, "#broadcasts tr.broadcast", 1).await;
    // Sends queued behind others come back on the queue's next poll: allow a minute.
    wait_for_any(&browser, "#broadcasts tr.broadcast td.queued", &["0"], 60).await;
    wait_for_text(&browser, "#broadcasts tr.broadcast td.failed", "0").await;
    assert_eq!(sends_like(&stack, "broadcast:").await.len(), 2);

    // The activity log shows all three, newest first.
    wait_for_count(&browser, "#activity tr.activity", 3).await;
    let kinds = classes(&browser, "#activity tr.activity").await;
    assert_eq!(
        kinds,
        ["activity broadcast", "activity check_numbers", "activity test_send"]
    );
    screenshot(&browser, "actions").await;
}

wafleet_core::testing::on_both_backends!(
    actions_reach_the_simulator_paced_and_logged,
    walk_the_actions_page_in_the_browser
);
