//! The WhatsApp page in headless Chromium: reached from the device's card, it lists stored chats
//! while the device is offline (red bar), opens a chat with its ticks, offers no way to write, and
//! shows a message that arrives while it is open without a reload; received files show as
//! thumbnails, players and download links on a phone's screen.

use fantoccini::{Client, Locator};
use wafleet_core::db::DeviceStatus;
use wafleet_core::link::{IncomingMedia, IncomingMessage, MessageKind, ReceiptKind};
use wafleet_core::media_store::MediaStore;
use wafleet_core::types::Timestamp;

use crate::browser::register_with_a_device;
use crate::browser::support::{click, screenshot, start_browser, wait_for_text};
use crate::chat_view::{hold, jid, store, text};
use crate::helpers::TestApp;
use crate::templates_browser::page_checks::set_viewport;

const EMAIL: &str = "viewer@example.com";

async fn attr(browser: &Client, css: &str, name: &str) -> Option<String> {
    browser.find(Locator::Css(css)).await.unwrap().attr(name).await.unwrap()
}

async fn read_stored_chats_and_see_new_messages_live(app: TestApp) {
    let (_driver, browser) = start_browser().await;
    let (_, device) = register_with_a_device(&app, &browser, EMAIL).await;

    // History stored by a worker that holds the device, which is now offline.
    let fence = hold(&app, EMAIL, device.0).await;
    let (aminah, bo) = ("60191000001", "60191000002");
    let now = Timestamp::now().millis();
    store(
        &app,
        fence,
        vec![
            text(
                "a1",
                aminah,
                false,
                Some("Aminah"),
                "hi, is the cake ready?",
                now - 60_000,
            ),
            text("a2", aminah, true, None, "hello Aminah", now - 50_000),
            text("a3", aminah, true, None, "yes, come at five", now - 40_000),
            text("b1", bo, false, Some("Bo"), "price list please", now - 90_000),
        ],
    )
    .await;
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    app.db
        .apply_receipt(fence, &jid(aminah), ReceiptKind::Read, &ids(&["a2"]))
        .await
        .unwrap();
    app.db
        .apply_receipt(fence, &jid(aminah), ReceiptKind::Delivered, &ids(&["a3"]))
        .await
        .unwrap();
    app.db.set_device_status(fence, DeviceStatus::Offline).await.unwrap();
    app.changed(fence.device).await;

    // The device's card links to its WhatsApp page.
    click(&browser, ".device .whatsapp-link").await;
    wait_for_text(&browser, "#device-name", "Sales 1").await;
    let path = browser.current_url().await.unwrap().path().to_owned();
    assert!(path.ends_with(&format!("/device/{device}/whatsapp-web")), "{path}");
    wait_for_text(&browser, "li.chat .chat-name", "Aminah").await;
    wait_for_text(&browser, "li.chat .chat-name", "Bo").await;
    let first = browser.find(Locator::Css("li.chat .chat-name")).await.unwrap();
    assert_eq!(first.text().await.unwrap(), "Aminah", "newest first");
    let bar = attr(&browser, "#status-bar", "class").await.unwrap();
    assert!(bar.contains("offline"), "a red bar while offline: {bar}");
    let bar_text = browser
        .find(Locator::Css("#status-bar"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(bar_text.contains("stored history"), "{bar_text}");

    // Opening a chat shows who wrote what, with ticks on the account's own messages.
    click(&browser, &format!("li.chat[data-jid='{aminah}@s.whatsapp.net']")).await;
    wait_for_text(&browser, "li.message .body", "yes, come at five").await;
    wait_for_text(&browser, "#thread-name", "Aminah").await;
    let read = attr(&browser, "li.message[data-id='a2'] .tick", "data-status").await;
    assert_eq!(read.as_deref(), Some("read"));
    let delivered = attr(&browser, "li.message[data-id='a3'] .tick", "data-status").await;
    assert_eq!(delivered.as_deref(), Some("delivered"));
    let incoming = browser.find(Locator::Css("li.message[data-id='a1']")).await.unwrap();
    assert_eq!(incoming.attr("class").await.unwrap().as_deref(), Some("message in"));
    assert!(
        browser
            .find_all(Locator::Css("li.message[data-id='a1'] .tick"))
            .await
            .unwrap()
            .is_empty()
    );
    let order: Vec<String> = {
        let mut ids = Vec::new();
        for li in browser.find_all(Locator::Css("li.message")).await.unwrap() {
            ids.push(li.attr("data-id").await.unwrap().unwrap());
        }
        ids
    };
    assert_eq!(order, ["a1", "a2", "a3"], "oldest at the top, like WhatsApp");
    assert!(
        browser.find_all(Locator::Css("textarea")).await.unwrap().is_empty(),
        "no input box"
    );
    let inputs = browser
        .find_all(Locator::Css("input:not([type=hidden])"))
        .await
        .unwrap();
    assert_eq!(inputs.len(), 1, "only the chat search");
    screenshot(&browser, "whatsapp-chat-open").await;

    // Messages that arrive while the page is open appear without a reload.
    let later = Timestamp::now().millis();
    store(&app, fence, vec![text("a4", aminah, false, None, "on my way", later)]).await;
    wait_for_text(&browser, "li.message .body", "on my way").await;
    store(
        &app,
        fence,
        vec![text(
            "c1",
            "60191000003",
            false,
            Some("Chong"),
            "new customer here",
            later + 1,
        )],
    )
    .await;
    wait_for_text(&browser, "li.chat .chat-name", "Chong").await;
    let first = browser.find(Locator::Css("li.chat .chat-name")).await.unwrap();
    assert_eq!(first.text().await.unwrap(), "Chong", "the newest chat moves to the top");
    assert_eq!(
        browser.find_all(Locator::Css("li.message")).await.unwrap().len(),
        4,
        "another chat's message stays out of the open one"
    );

    // The bar turns green when the device comes online.
    app.db.set_device_status(fence, DeviceStatus::Online).await.unwrap();
    wait_for_text(
        &browser,
        "#status-bar.online",
        "Online: new messages appear as they arrive.",
    )
    .await;
    screenshot(&browser, "whatsapp-live").await;
    browser.close().await.unwrap();
}

/// A message carrying a file that wafleet kept.
fn with_file(
    id: &str,
    kind: MessageKind,
    caption: Option<&str>,
    mime: &str,
    name: Option<&str>,
    bytes: &[u8],
    sent_at: i64,
) -> IncomingMessage {
    let mut message = text(
        id,
        "60191000001",
        false,
        Some("Aminah"),
        caption.unwrap_or_default(),
        sent_at,
    );
    message.kind = kind;
    message.text = caption.map(str::to_owned);
    message.media = Some(IncomingMedia {
        mime: mime.into(),
        size: bytes.len() as u64,
        file_name: name.map(str::to_owned),
        locator: "{}".into(),
    });
    message
}

/// Received files in the open chat, on a phone's screen: a picture as its thumbnail (a link to the
/// picture itself), a video as a player, a document as a link that saves it under its name; each
/// with its size and a download link.
async fn files_show_as_thumbnails_players_and_links(app: TestApp) {
    let (_driver, browser) = start_browser().await;
    let (_, device) = register_with_a_device(&app, &browser, EMAIL).await;
    let fence = hold(&app, EMAIL, device.0).await;
    let mut photo = Vec::new();
    image::RgbImage::from_fn(1280, 960, |x, y| image::Rgb([(x / 5) as u8, (y / 4) as u8, 160]))
        .write_to(&mut std::io::Cursor::new(&mut photo), image::ImageFormat::Jpeg)
        .unwrap();
    // An MP4's first box, enough for the page to offer a player.
    let mut video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
    video.resize(40_000, 0);
    let pdf = b"%PDF-1.7 the price list".to_vec();
    let now = Timestamp::now().millis();
    let files = [
        (
            "f1",
            MessageKind::Image,
            Some("this one, in blue"),
            "image/jpeg",
            None,
            &photo[..],
        ),
        (
            "f2",
            MessageKind::Video,
            Some("the shop"),
            "video/mp4",
            None,
            &video[..],
        ),
        (
            "f3",
            MessageKind::Document,
            None,
            "application/pdf",
            Some("price list.pdf"),
            &pdf[..],
        ),
    ];
    let messages = files
        .iter()
        .enumerate()
        .map(|(i, (id, kind, caption, mime, name, bytes))| {
            with_file(id, *kind, *caption, mime, *name, bytes, now - 60_000 + i as i64 * 1_000)
        })
        .collect();
    store(&app, fence, messages).await;
    // Kept as the worker keeps what it fetched.
    let media = MediaStore::from_settings(&app.settings).unwrap();
    for (id, _, _, mime, _, bytes) in &files {
        let key = MediaStore::key_for(device, id);
        media.keep(&key, bytes.to_vec(), mime).await.unwrap();
        assert!(app.db.media_stored(device, id, &key, Timestamp::now()).await.unwrap());
    }
    app.changed(device).await;

    set_viewport(&browser, 390, 844).await;
    click(&browser, ".device .whatsapp-link").await;
    click(&browser, "li.chat[data-jid='60191000001@s.whatsapp.net']").await;
    wait_for_text(&browser, "li.message .body", "this one, in blue").await;
    let shown = wafleet_core::testing::poll_for(std::time::Duration::from_secs(20), async || {
        let size = browser
            .execute(
                "const img = document.querySelector('.media.image img'); \
                 return img && img.complete ? [img.naturalWidth, img.naturalHeight] : null;",
                vec![],
            )
            .await
            .ok()?;
        let size = size
            .as_array()?
            .iter()
            .map(|v| v.as_u64())
            .collect::<Option<Vec<_>>>()?;
        (size[0] > 0).then_some(size)
    })
    .await;
    assert_eq!(shown, Some(vec![320, 240]), "the picture shows as its thumbnail");
    let full = format!("/api/devices/{device}/media/f1");
    assert!(
        attr(&browser, ".media.image a", "href").await.unwrap().ends_with(&full),
        "the thumbnail opens the picture"
    );
    let player = attr(&browser, ".media.video video", "src").await.unwrap();
    assert!(player.ends_with("/media/f2"), "{player}");
    let save = browser
        .find(Locator::Css(".media.document .media-save"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(save.starts_with("price list.pdf"), "{save}");
    assert!(
        attr(&browser, ".media.document .media-save", "href")
            .await
            .unwrap()
            .ends_with("/media/f3?download=true")
    );
    // Nothing spills past the phone's screen.
    let wide = browser
        .execute("return document.documentElement.scrollWidth;", vec![])
        .await
        .unwrap();
    assert!(wide.as_u64().unwrap() <= 390, "the page is {wide} px wide");
    screenshot(&browser, "whatsapp-files-phone").await;
    browser
        .execute("document.querySelector('.media.document').scrollIntoView();", vec![])
        .await
        .unwrap();
    screenshot(&browser, "whatsapp-files-phone-scrolled").await;
    browser.close().await.unwrap();
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => read_stored_chats_and_see_new_messages_live, files_show_as_thumbnails_players_and_links);
