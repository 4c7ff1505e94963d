//! Every page of the dashboard as a user meets it, on the real binary in demo mode, at a desktop
//! width (1440 px) and a phone's (390 px): the same navigation everywhere, nothing scrolling
//! sideways on the phone, no serious or critical accessibility violations (axe-core), and a
//! screenshot of each in `target/screenshots/`. Along the way: a device linked by pair code on
//! the simulated phone, an error that stays shown while the page refreshes, a 5 MB phone photo
//! sent, a waiting send that says why, a double click that queues one broadcast, and the
//! campaign calendar opening at this month and working from the keyboard.
//!
//! Runs against the project's WhatsApp network simulator only, never real WhatsApp.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use wafleet_core::testing::eventually;

#[path = "../api/tests/support/browser.rs"]
mod browser;
#[path = "support/demo_server.rs"]
mod demo_server;
#[path = "../api/tests/support/page_checks.rs"]
mod page_checks;

use browser::{click, fill, screenshot, start_browser, wait_for_text, wait_for_text_matching};
use demo_server::serve_demo;
use page_checks::{WIDTHS, check_page, set_viewport};

/// Calls the JSON API from the page, as the signed-in user (the page's `callApi`), and returns
/// the envelope's `results`.
async fn api(browser: &Client, method: &str, path: &str, body: Value) -> Value {
    let result = browser
        .execute_async(
            "const [method, path, body, done] = arguments;
             callApi(method, path, body === null ? undefined : body)
               .then(r => done({ ok: r.results }))
               .catch(e => done({ err: e.message }));",
            vec![json!(method), json!(path), body],
        )
        .await
        .unwrap();
    assert!(result.get("err").is_none(), "{method} {path}: {result}");
    result["ok"].clone()
}

/// Evaluates `script` (a function body) in the page.
async fn js(browser: &Client, script: &str) -> Value {
    browser.execute(script, vec![]).await.unwrap()
}

/// Waits up to `secs` for `script` (a function body returning a boolean) to hold.
async fn until(browser: &Client, what: &str, secs: u64, script: &str) {
    eventually(Duration::from_secs(secs), what, async || {
        js(browser, script).await == Value::Bool(true)
    })
    .await;
}

/// A photo as a phone makes it: a JPEG of more than 5 MB (12 Mpx of fine detail).
fn phone_photo(dir: &std::path::Path) -> std::path::PathBuf {
    let mut seed = 0x2545_f491_u32;
    let image = image::RgbImage::from_fn(4000, 3000, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed & 0x3f) as u8;
        image::Rgb([(x / 16) as u8 ^ n, (y / 12) as u8 ^ n, n.wrapping_mul(3)])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92)
        .encode_image(&image)
        .unwrap();
    assert!(bytes.len() > 5_000_000, "the photo is over 5 MB: {}", bytes.len());
    let path = dir.join("IMG_2041.jpg");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Looks at `path` at both widths, waiting for `ready` each time; collects what is wrong.
async fn walk(browser: &Client, base: &str, name: &str, path: &str, ready: &str, signed_in: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (width, height, label) in WIDTHS {
        set_viewport(browser, width, height).await;
        browser.goto(&format!("{base}{path}")).await.unwrap();
        browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(ready))
            .await
            .unwrap_or_else(|e| panic!("{name}: {ready} never showed: {e}"));
        // Let the page's scripts finish drawing what they load.
        tokio::time::sleep(Duration::from_millis(300)).await;
        problems.extend(check_page(browser, name, label, signed_in).await);
    }
    // The narrowest phones in use: nothing scrolls sideways there either.
    set_viewport(browser, 360, 740).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (scroll, inner) = page_checks::widths(browser).await;
    if scroll > inner {
        problems.push(format!(
            "{name} (360 px): scrolls sideways, {scroll} px of content in {inner} px"
        ));
    }
    problems
}

/// Waits for the pair code the page asked for. On a busy machine the worker can take a while to
/// claim the device and open its session; when it never shows, the failure says what the page
/// and the API knew (the server's log follows from [`demo_server`]).
async fn pair_code_shown(browser: &Client) {
    let shown = wafleet_core::testing::poll_for(Duration::from_secs(90), async || {
        let codes = browser::texts(browser, ".device .pair-code b").await;
        codes.into_iter().find(|code| code.len() >= 8)
    })
    .await;
    if shown.is_none() {
        let flash = browser::texts(browser, "#flash-text").await;
        let devices = api(browser, "GET", "/api/devices", Value::Null).await;
        panic!("no pair code shown after 90 s; the page's message: {flash:?}; the API's devices: {devices}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_at_desktop_and_phone_width() {
    let server = serve_demo();
    let base = server.base.clone();
    let (_driver, browser) = start_browser().await;
    let mut problems = Vec::new();

    problems.extend(walk(&browser, &base, "login", "/login", "#account-form", false).await);
    problems.extend(walk(&browser, &base, "register", "/register", "#account-form", false).await);

    set_viewport(&browser, 1440, 900).await;
    browser.goto(&format!("{base}/register")).await.unwrap();
    fill(&browser, "input[name=email]", "tour@example.com").await;
    fill(&browser, "input[name=password]", "correct horse battery").await;
    click(&browser, "#account-form button[type=submit]").await;

    // Link a device by pair code, confirmed on the simulated phone from the page.
    fill(&browser, "#add-device input[name=name]", "Sales 1").await;
    fill(&browser, "#add-device input[name=phone]", "+60123450001").await;
    click(&browser, "#add-device button[type=submit]").await;
    wait_for_text(&browser, ".device .status", "Offline").await;
    click(&browser, ".device .pair-code-open").await;
    click(&browser, ".device .code-form button[type=submit]").await;
    pair_code_shown(&browser).await;
    screenshot(&browser, "pair-code-desktop").await;
    click(&browser, ".device .demo-confirm").await;
    wait_for_text_matching(&browser, ".device .status", 30, |s| s == "Online").await;
    let device = api(&browser, "GET", "/api/devices", Value::Null).await[0]["id"]
        .as_i64()
        .unwrap();
    until(
        &browser,
        "an online card has the connected look",
        10,
        "return document.querySelector('.device').classList.contains('online');",
    )
    .await;

    // A second device, never linked: its sends are refused.
    fill(&browser, "#add-device input[name=name]", "Spare").await;
    fill(&browser, "#add-device input[name=phone]", "").await;
    click(&browser, "#add-device button[type=submit]").await;
    wait_for_text_matching(&browser, ".device .name", 10, |n| n == "Spare").await;
    let spare = api(&browser, "GET", "/api/devices", Value::Null).await[1]["id"]
        .as_i64()
        .unwrap();

    // Something on every page: leads (one with a long number), a token, a template, a sequence.
    for (name, phone) in [("Aminah binti Abdullah", "+60123000001"), ("Bo", "+601234567890")] {
        api(
            &browser,
            "POST",
            "/api/leads",
            json!({"device_id": device, "name": name, "phone": phone, "niche": "bakery", "status": "new"}),
        )
        .await;
    }
    api(&browser, "POST", "/api/tokens", json!({"name": "crm-sync"})).await;
    api(
        &browser,
        "POST",
        "/api/templates",
        json!({"name": "Weekend opening hours for every bakery lead", "message":
               "{Hi|Hello} {first_name}, {greeting}! This weekend we open at 7 with {fresh bread|warm buns|a new cake}."}),
    )
    .await;

    api(
        &browser,
        "POST",
        "/api/sequences",
        json!({"name": "Bakery follow-up over two weeks", "device_ids": [device], "status": "paused",
               "enrol_rule": {"niche": "bakery"}, "stop_statuses": ["converted", "lost"],
               "steps": [{"message": "{Hi|Hello} {first_name}, fresh bread every morning."},
                         {"message": "Still thinking about it, {first_name}?", "delay_days": 3},
                         {"message": "Last note from us: 10% off this week.", "delay_days": 7}]}),
    )
    .await;

    // Every signed-in page, at both widths.
    let pages = [
        ("dashboard", "/dashboard".to_owned(), ".device .status"),
        (
            "analytics",
            "/dashboard#analytics".to_owned(),
            "#tab-analytics:not([hidden]) .stat",
        ),
        (
            "webhooks",
            "/dashboard#webhooks".to_owned(),
            "#tab-webhooks:not([hidden]) #webhook-form",
        ),
        ("tokens", "/dashboard#tokens".to_owned(), "#tokens tbody tr"),
        ("campaigns", "/campaigns".to_owned(), ".day.today"),
        ("templates", "/templates".to_owned(), "#templates .template"),
        ("sequences", "/sequences".to_owned(), "#sequences .sequence"),
        ("account", "/account".to_owned(), "#password-form"),
        ("docs", "/docs".to_owned(), ".swagger-ui .opblock"),
        ("leads", format!("/device/{device}/leads"), "#leads tr.lead"),
        ("whatsapp", format!("/device/{device}/whatsapp-web"), "#status-bar"),
        ("actions", format!("/device/{device}/actions"), "#test-send"),
        ("device-not-found", "/device/99999/leads".to_owned(), "#problem"),
        ("admin", "/admin".to_owned(), "#accounts .account"),
    ];
    for (name, path, ready) in &pages {
        problems.extend(walk(&browser, &base, name, path, ready, true).await);
    }

    // On a phone the leads table shows each number whole, on one line.
    set_viewport(&browser, 390, 844).await;
    browser.goto(&format!("{base}/device/{device}/leads")).await.unwrap();
    wait_for_text_matching(&browser, "#leads td.phone", 10, |p| p == "+601234567890").await;
    let lines = js(
        &browser,
        "return [...document.querySelectorAll('#leads td.phone')].map(td => {
           const range = document.createRange(); range.selectNodeContents(td);
           return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; });",
    )
    .await;
    assert!(
        lines.as_array().unwrap().iter().all(|n| n == 1),
        "numbers never break across lines: {lines}"
    );

    // A missing device, or another user's, is a page, not JSON.
    let missing = reqwest::get(format!("{base}/device/99999/leads")).await.unwrap();
    assert_eq!(
        missing.url().path(),
        "/login",
        "signed out, a device page asks to log in"
    );
    browser.goto(&format!("{base}/device/99999/actions")).await.unwrap();
    wait_for_text(&browser, "#problem h1", "Device not found").await;

    // The icon browsers ask for exists.
    let icon = reqwest::get(format!("{base}/favicon.ico")).await.unwrap();
    assert_eq!(icon.status(), reqwest::StatusCode::OK);
    assert_eq!(icon.headers()["content-type"], "image/x-icon");

    assert!(problems.is_empty(), "{}", problems.join("\n"));

    actions_page(&browser, &base, device, spare).await;
    // The worker takes up a new pacing policy within a minute: the campaigns page is walked
    // meanwhile.
    send_to_strangers_unpaced(&browser, device).await;
    campaigns_page(&browser, &base, device).await;
    restricted_device(&browser, &base, device).await;
}

/// The owner turns pacing off and sends to eight strangers at once.
async fn send_to_strangers_unpaced(browser: &Client, device: i64) {
    let pacing = format!("/api/devices/{device}/pacing");
    let mut policy = api(browser, "GET", &pacing, Value::Null).await["policy"].clone();
    policy["enabled"] = false.into();
    api(browser, "PUT", &pacing, policy).await;
    for n in 0..8 {
        api(
            browser,
            "POST",
            &format!("/api/devices/{device}/send"),
            json!({"to": format!("+6019555000{n}"), "text": "A special offer"}),
        )
        .await;
    }
}

/// After those sends, the simulator's ban model has put a reach-out timelock on the number: the
/// device card and the actions page say that sends to new chats wait, and until when.
async fn restricted_device(browser: &Client, base: &str, device: i64) {
    set_viewport(browser, 390, 844).await;
    browser.goto(&format!("{base}/dashboard")).await.unwrap();
    wait_for_text_matching(browser, ".device .restriction", 120, |t| {
        t.contains("New chats paused until")
    })
    .await;
    let overflow = js(
        browser,
        "const card = document.querySelector('.device'); return card.scrollWidth > card.clientWidth;",
    )
    .await;
    assert_eq!(overflow, json!(false), "the card's restriction fits a phone");
    screenshot(browser, "device-restricted-phone").await;
    browser.goto(&format!("{base}/device/{device}/actions")).await.unwrap();
    wait_for_text_matching(browser, "#restriction", 10, |t| t.contains("reach-out timelock")).await;
    screenshot(browser, "actions-restricted-phone").await;
}

/// The Actions page: an error stays while the page refreshes; a 5 MB photo is sent; a waiting
/// send says why; a double click queues one broadcast.
async fn actions_page(browser: &Client, base: &str, device: i64, spare: i64) {
    set_viewport(browser, 390, 844).await;
    browser.goto(&format!("{base}/device/{spare}/actions")).await.unwrap();
    fill(browser, "#test-send input[name=to]", "+60191000001").await;
    fill(browser, "#test-send input[name=text]", "hello").await;
    click(browser, "#test-send button[type=submit]").await;
    wait_for_text_matching(browser, "#flash-text", 10, |t| t.contains("not linked")).await;
    // The page refreshes its broadcasts every 2 s; two refreshes later the error is still there.
    for _ in 0..2 {
        browser
            .execute_async(
                "const done = arguments[0]; loadBroadcasts().then(() => done(true));",
                vec![],
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let flash = browser.find(Locator::Css("#flash")).await.unwrap();
    assert!(
        flash.is_displayed().await.unwrap(),
        "the error stays until the next action"
    );
    screenshot(browser, "actions-error-phone").await;
    click(browser, "#flash-close").await;
    assert!(!flash.is_displayed().await.unwrap(), "dismissed");

    // A photo straight from a phone (over 5 MB), sent as a test message.
    set_viewport(browser, 1440, 900).await;
    browser.goto(&format!("{base}/device/{device}/actions")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let photo = phone_photo(dir.path());
    fill(browser, "#test-send input[name=to]", "+60191000001").await;
    fill(browser, "#test-send input[name=text]", "our new cake").await;
    browser
        .find(Locator::Css("#test-send input[name=image]"))
        .await
        .unwrap()
        .send_keys(photo.to_str().unwrap())
        .await
        .unwrap();
    click(browser, "#test-send button[type=submit]").await;
    wait_for_text_matching(browser, "#test-status .status", 60, |s| {
        ["sent", "delivered", "read"].contains(&s)
    })
    .await;
    let id = js(
        browser,
        "return document.querySelector('#test-status .id').textContent;",
    )
    .await;
    let sent = api(
        browser,
        "GET",
        &format!("/api/messages/{}", id.as_str().unwrap()),
        Value::Null,
    )
    .await;
    assert_eq!(sent["kind"], "image", "{sent}");

    // The next send waits for the device's pace (3 a minute by default), and says so.
    fill(browser, "#test-send input[name=text]", "and a price list").await;
    browser
        .execute(
            "document.querySelector('#test-send input[name=image]').value = '';",
            vec![],
        )
        .await
        .unwrap();
    click(browser, "#test-send button[type=submit]").await;
    let why = wait_for_text_matching(browser, "#test-status .waiting-reason", 20, |t| {
        t.contains("pace") && t.contains("Next attempt")
    })
    .await;
    println!("waiting send shows: {why}");
    screenshot(browser, "actions-waiting-desktop").await;
    let id = js(
        browser,
        "return document.querySelector('#test-status .id').textContent;",
    )
    .await;
    let waiting = api(
        browser,
        "GET",
        &format!("/api/messages/{}", id.as_str().unwrap()),
        Value::Null,
    )
    .await;
    assert!(
        waiting["status"] == "queued"
            && waiting["waiting_reason"].is_string()
            && waiting["next_attempt_at"].is_string()
            || waiting["status"] != "queued",
        "the API says why too: {waiting}"
    );

    // A double click on "Queue broadcast" queues one broadcast.
    fill(
        browser,
        "#broadcast textarea[name=numbers]",
        "+60191000021\n+60191000022",
    )
    .await;
    fill(browser, "#broadcast textarea[name=text]", "Open on Sunday").await;
    browser
        .execute(
            "const b = document.querySelector('#broadcast button[type=submit]'); b.click(); b.click();",
            vec![],
        )
        .await
        .unwrap();
    wait_for_text_matching(browser, "#broadcast-result", 20, |t| t.contains("queued")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broadcasts = api(
        browser,
        "GET",
        &format!("/api/devices/{device}/broadcasts"),
        Value::Null,
    )
    .await;
    assert_eq!(broadcasts.as_array().unwrap().len(), 1, "{broadcasts}");
    // Its recipients wait behind the pace, and the table says why.
    wait_for_text_matching(browser, "#broadcasts tr.broadcast td.queued .waiting-reason", 20, |t| {
        t.contains("pace") && t.contains("Next attempt")
    })
    .await;
    screenshot(browser, "actions-broadcast-desktop").await;
}

/// The calendar opens at this month, works from the keyboard, and "+N more" lists the day.
async fn campaigns_page(browser: &Client, base: &str, device: i64) {
    for (width, height, label) in WIDTHS {
        set_viewport(browser, width, height).await;
        browser.goto(&format!("{base}/campaigns")).await.unwrap();
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(".day.today"))
            .await
            .unwrap();
        until(
            browser,
            &format!("this month is in view ({label})"),
            10,
            "const r = document.querySelector('.month.current').getBoundingClientRect();
             return r.top < window.innerHeight && r.bottom > 0;",
        )
        .await;
        let headings = js(
            browser,
            "return [...document.querySelectorAll('.month.current .weekday')].map(w => w.textContent);",
        )
        .await;
        assert_eq!(headings, json!(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]));
    }

    // From the keyboard: "This month" focuses today; the arrow moves a day; Enter plans there.
    set_viewport(browser, 1440, 900).await;
    browser.goto(&format!("{base}/campaigns")).await.unwrap();
    click(browser, "#this-month").await;
    until(
        browser,
        "today's day has the focus",
        10,
        "return document.activeElement.closest('.day.today') !== null;",
    )
    .await;
    let today = js(browser, "return document.activeElement.closest('.day').dataset.date;").await;
    browser
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E014}")
        .await
        .unwrap();
    let next = js(browser, "return document.activeElement.closest('.day').dataset.date;").await;
    let tomorrow = (chrono::NaiveDate::parse_from_str(today.as_str().unwrap(), "%Y-%m-%d").unwrap()
        + chrono::Days::new(1))
    .format("%Y-%m-%d")
    .to_string();
    assert_eq!(next, json!(tomorrow), "the right arrow moves to the next day");
    browser
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    until(
        browser,
        "Enter opens the form",
        10,
        "return document.getElementById('editor').open;",
    )
    .await;
    assert_eq!(
        js(
            browser,
            "return document.querySelector('#campaign-form [name=day]').value;"
        )
        .await,
        json!(tomorrow)
    );

    // A refused save shows its error inside the form, where the user is looking.
    fill(browser, "#campaign-form input[name=title]", "Sunday menu").await;
    fill(browser, "#campaign-form input[name=niche]", "bakery").await;
    fill(browser, "#campaign-form textarea[name=message]", "Fresh bread").await;
    click(browser, &format!("#campaign-form input[name=device][value='{device}']")).await;
    fill(browser, "#campaign-form input[name=time_zone]", "Mars/Olympus").await;
    click(browser, "#save").await;
    let error = wait_for_text_matching(browser, "#editor-error", 10, |t| !t.is_empty()).await;
    assert!(error.starts_with("Time zone: "), "readable, in the dialog: {error}");
    screenshot(browser, "campaigns-error-desktop").await;
    click(browser, "#close").await;

    // Six on one day: the calendar shows five and "+1 more", which lists all six.
    let day = format!("{}-28", &tomorrow[..7]);
    for i in 0..6 {
        api(
            browser,
            "POST",
            "/api/campaigns",
            json!({"title": format!("Promo {i}"), "niche": format!("n{i}"), "message": "hi",
                   "send_at": format!("{day}T1{i}:00"), "time_zone": "UTC", "device_ids": [device],
                   "status": "draft"}),
        )
        .await;
    }
    browser.refresh().await.unwrap();
    click(browser, &format!(".day[data-date='{day}'] .more")).await;
    until(
        browser,
        "the day's list opens",
        10,
        "return document.getElementById('day-list').open;",
    )
    .await;
    wait_for_text_matching(browser, "#day-campaigns li", 10, |t| t.contains("Promo 5")).await;
    let listed = js(browser, "return document.querySelectorAll('#day-campaigns li').length;").await;
    assert_eq!(listed, json!(6));
    screenshot(browser, "campaigns-day-list-desktop").await;
}
