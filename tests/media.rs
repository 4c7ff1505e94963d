//! Files of received messages, end to end on SQLite and on PostgreSQL + Redis: a picture, a video
//! and a document a contact sends are fetched by the device's worker through its session (the
//! simulator's link, and the real client against the WhatsApp Web front end), kept once, listed
//! with their messages, served to their owner only (the file, and the upstream API's
//! `/message/{id}/download`), and a file over `MAX_RECEIVED_MEDIA_BYTES` is not kept, with the
//! reason shown; with `MEDIA_URL` they are kept in an S3-compatible bucket instead. Files go out
//! the other way through the upstream API's media routes (`/send/video`, `/send/audio`,
//! `/send/file`, `/send/sticker`), a 15 MB video among them, and so do contact cards, locations,
//! links and polls (`/send/contact`, `/send/location`, `/send/link`, `/send/poll`).

mod support;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use support::stack::{Network, StackOn};
use wafleet_core::link::{MessageKind, Structured};
use wafleet_core::media_store::MediaStore;
use wafleet_core::testing::Backend;
use wafleet_core::testing::s3::S3Server;
use wafleet_sim::control::{MediaFile, PROFILE_PICTURE, sample_media};
use wafleet_sim::waweb::WaWebHandle;
use wafleet_sim::{SimConfig, SimHandle};

const DEVICE_PHONE: &str = "60123400011";
const CONTACT: &str = "60123400088";
/// Received files larger than this are not kept, in these tests.
const LIMIT: u64 = 400_000;

/// The messages of the contact's chat, newest first.
fn messages(page: &Value) -> Vec<Value> {
    page["messages"].as_array().cloned().unwrap_or_default()
}

/// Files kept in the media directory, counted.
fn kept_files(dir: &std::path::Path) -> usize {
    let Ok(devices) = std::fs::read_dir(dir) else {
        return 0;
    };
    devices
        .flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .map(|files| files.flatten().filter(|f| f.path().is_file()).count())
        .sum()
}

/// Files kept where the stack's settings say (its directory, or its bucket), counted.
async fn kept<N: Network>(stack: &StackOn<N>) -> usize {
    MediaStore::from_settings(&stack.db.settings)
        .expect("the media store opens")
        .count()
        .await
        .expect("the media store lists")
}

async fn files_are_kept_once_and_served_to_their_owner<N: Network>(stack: StackOn<N>) -> StackOn<N> {
    let device = stack.linked_device("shop", &format!("+{DEVICE_PHONE}")).await;
    let (video, _) = sample_media(MessageKind::Video, 300_000);
    let (document, _) = sample_media(MessageKind::Document, 20_000);
    let (too_large, _) = sample_media(MessageKind::Video, 500_000);
    let files = [
        (
            MessageKind::Image,
            PROFILE_PICTURE,
            "image/jpeg",
            Some("this one"),
            None,
        ),
        (MessageKind::Video, &video[..], "video/mp4", Some("the shop"), None),
        (
            MessageKind::Document,
            &document[..],
            "application/pdf",
            None,
            Some("price list.pdf"),
        ),
        (MessageKind::Video, &too_large[..], "video/mp4", Some("too long"), None),
    ];
    let mut ids = Vec::new();
    for (kind, bytes, mime, caption, file_name) in files {
        let file = MediaFile {
            bytes,
            mime,
            caption,
            file_name,
        };
        ids.push(stack.sim.write_file(CONTACT, DEVICE_PHONE, kind, &file).await);
    }
    let chat = format!("/api/devices/{device}/messages/{CONTACT}%40s.whatsapp.net");
    let page = stack
        .eventually(&chat, "every file fetched or refused", |page| {
            let listed = messages(page);
            listed.len() == 4 && listed.iter().all(|m| m["media_state"] != "pending")
        })
        .await;
    let by_id = |id: &str| {
        messages(&page)
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("message {id} listed: {page}"))
    };
    let photo = by_id(&ids[0]);
    assert_eq!(
        (
            &photo["kind"],
            &photo["media_state"],
            &photo["media_mime"],
            &photo["body"]
        ),
        (
            &"image".into(),
            &"stored".into(),
            &"image/jpeg".into(),
            &"this one".into()
        ),
        "{photo}"
    );
    assert_eq!(photo["media_size"], PROFILE_PICTURE.len());
    let pdf = by_id(&ids[2]);
    assert_eq!(
        (&pdf["media_state"], &pdf["media_file_name"]),
        (&"stored".into(), &"price list.pdf".into())
    );
    let refused = by_id(&ids[3]);
    assert_eq!(refused["media_state"], "failed", "{refused}");

    // Each file is served as it was sent: pictures and videos shown, the document saved.
    for (index, (_, bytes, mime, _, _)) in files.iter().take(3).enumerate() {
        let response = stack
            .client
            .get(format!("{}/api/devices/{device}/media/{}", stack.base, ids[index]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        let disposition = headers["content-disposition"].to_str().unwrap().to_owned();
        let served = response.bytes().await.unwrap();
        assert!(served == *bytes, "file {index} is served byte for byte");
        if *mime == "application/pdf" {
            assert_eq!(headers["content-type"], "application/octet-stream");
            assert_eq!(disposition, "attachment; filename=\"price list.pdf\"");
        } else {
            assert_eq!(headers["content-type"], *mime);
            assert!(disposition.starts_with("inline"), "{disposition}");
        }
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    assert_eq!(kept(&stack).await, 3, "each file kept once");

    // The viewer shows a picture's thumbnail, made when it was kept; a file that is not a
    // picture has none, and asking for one gives the file.
    let store = MediaStore::from_settings(&stack.db.settings).unwrap();
    let key = |index: usize| MediaStore::key_for(wafleet_core::types::DeviceId(device), &ids[index]);
    assert!(
        store.thumbnail(&key(0)).await.unwrap().is_some(),
        "the photo has a thumbnail"
    );
    assert!(
        store.thumbnail(&key(2)).await.unwrap().is_none(),
        "the document has none"
    );
    for (index, mime) in [(0, "image/jpeg"), (2, "application/pdf")] {
        let response = stack
            .client
            .get(format!(
                "{}/api/devices/{device}/media/{}?thumbnail=true",
                stack.base, ids[index]
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let served_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        let served = response.bytes().await.unwrap();
        if index == 0 {
            assert_eq!(served_type, mime);
            assert_eq!(&served[..2], &[0xFF, 0xD8], "a JPEG");
        } else {
            assert_eq!(served.as_ref(), files[index].1, "the document itself");
        }
    }

    // The file that was too large: its message stays, and says why there is no file.
    let (status, body) = stack
        .call(
            reqwest::Method::GET,
            &format!("/api/devices/{device}/media/{}", ids[3]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("MAX_RECEIVED_MEDIA_BYTES"),
        "{body}"
    );

    // The upstream API says where the file is; its address serves it to the same caller.
    let (status, token) = stack.post("/api/tokens", serde_json::json!({"name": "scripts"})).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let token = token["results"]["token"].as_str().unwrap().to_owned();
    let api = reqwest::Client::new();
    let download = api
        .get(format!("{}/message/{}/download?phone={CONTACT}", stack.base, ids[1]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    let download: Value = download.json().await.unwrap();
    let results = &download["results"];
    assert_eq!(
        (&results["media_type"], &results["file_size"], &results["message_id"]),
        (&"video".into(), &video.len().into(), &ids[1].as_str().into()),
        "{download}"
    );
    let url = results["file_url"].as_str().unwrap();
    // As the upstream's clients send their credentials: Basic, the token as the password.
    let served = api.get(url).basic_auth("scripts", Some(&token)).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK, "{url}");
    assert!(served.bytes().await.unwrap() == video, "the video, from file_url");
    let missing = api
        .get(format!("{}/message/{}/download?phone={CONTACT}", stack.base, ids[3]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "a file not kept is 404 upstream"
    );

    // Nobody else's: another user's session gets 404, as for a file that does not exist.
    let other = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let creds = serde_json::json!({"email": "ben@example.com", "password": "correct horse battery"});
    let registered = other
        .post(format!("{}/api/register", stack.base))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let theirs = other
        .get(format!("{}/api/devices/{device}/media/{}", stack.base, ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    stack
}

/// A PNG of `side` x `side` pixels, for a sticker.
fn png(side: u32) -> Vec<u8> {
    let image = image::RgbaImage::from_fn(side, side, |x, y| image::Rgba([x as u8, y as u8, 90, 255]));
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// Posts `form` to the upstream media route `route` from `device` as its clients do (Basic, the
/// token as password); the status and body.
async fn post_file(base: &str, token: &str, device: i64, route: &str, form: Form) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{route}"))
        .basic_auth("scripts", Some(token))
        .header("X-Device-Id", device.to_string())
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// A 15 MB video, an audio file, a document and a sticker go out through the upstream's media
/// routes, at the device's pace, and reach the contact's phone as their kinds of message with
/// every byte (the real client uploads them encrypted; the phone decrypts them); a file that is
/// not what its route sends is refused with what to do, and nothing is queued for it.
async fn files_go_out_through_the_upstream_routes<N: Network>(stack: StackOn<N>) {
    let device = stack.linked_device("shop", &format!("+{DEVICE_PHONE}")).await;
    stack.pace(device, |p| p["enabled"] = serde_json::json!(false)).await;
    // The contact wrote first, as customers do: a dozen quick sends to a stranger would be a ban.
    stack.sim.write(CONTACT, DEVICE_PHONE, "What do you have?").await;
    let (status, token) = stack.post("/api/tokens", serde_json::json!({"name": "scripts"})).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let token = token["results"]["token"].as_str().unwrap().to_owned();
    let (video, _) = sample_media(MessageKind::Video, 15_000_000);
    let (audio, _) = sample_media(MessageKind::Audio, 40_000);
    let (pdf, _) = sample_media(MessageKind::Document, 60_000);
    let part = |bytes: &[u8], name: &str, mime: &str| {
        Part::bytes(bytes.to_vec())
            .file_name(name.to_owned())
            .mime_str(mime)
            .unwrap()
    };
    let phone = format!("{CONTACT}@s.whatsapp.net");
    let sends = [
        (
            "/send/video",
            Form::new()
                .text("phone", phone.clone())
                .text("caption", "the shop")
                .part("video", part(&video, "shop.mp4", "video/mp4")),
        ),
        (
            "/send/audio",
            Form::new()
                .text("phone", phone.clone())
                .part("audio", part(&audio, "hello.ogg", "audio/ogg")),
        ),
        (
            "/send/file",
            Form::new()
                .text("phone", phone.clone())
                .text("caption", "prices")
                .part("file", part(&pdf, "../price list.pdf", "application/octet-stream")),
        ),
        (
            "/send/sticker",
            Form::new()
                .text("phone", phone.clone())
                .part("sticker", part(&png(300), "smile.png", "image/png")),
        ),
    ];
    let mut ids = Vec::new();
    for (route, form) in sends {
        let (status, body) = post_file(&stack.base, &token, device, route, form).await;
        assert_eq!(status, StatusCode::OK, "{route}: {body}");
        ids.push(body["results"]["message_id"].as_str().unwrap().to_owned());
        let send = format!("/api/messages/{}", body["results"]["send_id"].as_str().unwrap());
        let what = format!("{route}'s send goes out");
        stack
            .eventually_within(std::time::Duration::from_secs(120), &send, &what, |s| {
                s["status"] != "queued" && s["status"] != "sending"
            })
            .await;
    }
    let sent = stack.sim.sent(DEVICE_PHONE).await;
    let seen = |id: &str| {
        sent.iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("{id} reached the phone: {sent:?}"))
    };
    let video_sent = seen(&ids[0]);
    assert_eq!(
        (video_sent.kind, video_sent.text.as_deref(), video_sent.mime.as_deref()),
        (MessageKind::Video, Some("the shop"), Some("video/mp4"))
    );
    assert_eq!(video_sent.media_bytes, Some(video.len()), "the whole 15 MB video");
    let audio_sent = seen(&ids[1]);
    assert_eq!(
        (audio_sent.kind, audio_sent.mime.as_deref(), audio_sent.media_bytes),
        (MessageKind::Audio, Some("audio/ogg; codecs=opus"), Some(audio.len()))
    );
    let pdf_sent = seen(&ids[2]);
    assert_eq!(
        (pdf_sent.kind, pdf_sent.text.as_deref(), pdf_sent.mime.as_deref()),
        (MessageKind::Document, Some("prices"), Some("application/pdf")),
        "the type read from the file when the client gives none"
    );
    assert_eq!(
        (pdf_sent.file_name.as_deref(), pdf_sent.media_bytes),
        (Some("price list.pdf"), Some(pdf.len())),
        "its name without the folder part"
    );
    let sticker_sent = seen(&ids[3]);
    assert_eq!(
        (sticker_sent.kind, sticker_sent.mime.as_deref()),
        (MessageKind::Sticker, Some("image/webp"))
    );
    assert!(sticker_sent.media_bytes.is_some_and(|b| b > 0), "{sticker_sent:?}");

    // They are in the chat as the account's own messages of their kinds.
    let chat = format!("/api/devices/{device}/messages/{CONTACT}%40s.whatsapp.net");
    let page = stack
        .eventually(&chat, "the four sends in the chat", |page| messages(page).len() >= 4)
        .await;
    let kinds: Vec<Value> = ids
        .iter()
        .map(|id| {
            messages(&page)
                .into_iter()
                .find(|m| m["id"] == *id)
                .map(|m| m["kind"].clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(kinds, ["video", "audio", "document", "sticker"], "{page}");
    // The chat shows the files sent as it shows those received: kept, and served to their owner.
    let sent_video = messages(&page).into_iter().find(|m| m["id"] == ids[0]).unwrap();
    assert_eq!(
        (
            &sent_video["media_state"],
            &sent_video["media_mime"],
            &sent_video["media_size"]
        ),
        (&"stored".into(), &"video/mp4".into(), &video.len().into()),
        "{sent_video}"
    );
    let sent_pdf = messages(&page).into_iter().find(|m| m["id"] == ids[2]).unwrap();
    assert_eq!(sent_pdf["media_file_name"], "price list.pdf", "{sent_pdf}");
    let served = stack
        .client
        .get(format!("{}/api/devices/{device}/media/{}", stack.base, ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert!(served.bytes().await.unwrap() == video, "the sent video, byte for byte");
    // Kept there, the sends let go of their copies: finished sends hold no files.
    let held: Option<i64> = wafleet_core::testing::fetch_optional(
        &stack.db.db,
        "SELECT COUNT(*) FROM outbound_messages WHERE image IS NOT NULL",
        &[],
    )
    .await;
    assert_eq!(held, Some(0));

    // Not what the route sends: refused, saying what to do; nothing queued.
    let before = stack.sim.sent(DEVICE_PHONE).await.len();
    let refusals = [
        ("/send/video", "video", &pdf[..], "not an MP4 video"),
        ("/send/audio", "audio", &video[..64], "not an audio file WhatsApp plays"),
        ("/send/sticker", "sticker", &pdf[..], "not an image"),
        ("/send/file", "file", &[][..], "the file is empty"),
    ];
    for (route, field, bytes, says) in refusals {
        let form = Form::new()
            .text("phone", phone.clone())
            .part(field, part(bytes, "x.bin", "application/octet-stream"));
        let (status, body) = post_file(&stack.base, &token, device, route, form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{field}: ")) && message.contains(says),
            "{route}: {body}"
        );
    }
    let (status, body) = post_file(
        &stack.base,
        &token,
        device,
        "/send/video",
        Form::new().text("phone", phone.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("video_url"), "{body}");
    let recorded: Option<i64> =
        wafleet_core::testing::fetch_optional(&stack.db.db, "SELECT COUNT(*) FROM outbound_messages", &[]).await;
    assert_eq!(recorded, Some(4), "only the four sends were recorded");
    assert_eq!(
        stack.sim.sent(DEVICE_PHONE).await.len(),
        before,
        "nothing more went out"
    );

    cards_go_out_through_the_upstream_routes(&stack, &token, device).await;

    // Forwarded, the document goes out again, whole and marked so; an unknown message is 404.
    let api = reqwest::Client::new();
    let forward = async |id: &str| {
        let response = api
            .post(format!("{}/message/{id}/forward", stack.base))
            .basic_auth("scripts", Some(&token))
            .header("X-Device-Id", device.to_string())
            .json(&serde_json::json!({"phone": phone}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };
    let (status, answer) = forward(&ids[2]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let again = answer["results"]["message_id"].as_str().unwrap().to_owned();
    assert_ne!(again, ids[2], "a forward is a message of its own");
    let send = format!("/api/messages/{}", answer["results"]["send_id"].as_str().unwrap());
    stack
        .eventually(&send, "the forward goes out", |s| {
            s["status"] != "queued" && s["status"] != "sending"
        })
        .await;
    let seen = stack.sim.sent(DEVICE_PHONE).await.into_iter().find(|m| m.id == again);
    let seen = seen.expect("the forward reached the phone");
    assert_eq!(
        (seen.kind, seen.forwarded, seen.file_name.as_deref(), seen.media_bytes),
        (MessageKind::Document, true, Some("price list.pdf"), Some(pdf.len()))
    );
    let (status, answer) = forward("3EB0000000000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}

/// A contact card, a location, a link and a poll go out through the upstream's routes and reach
/// the contact's phone as WhatsApp's apps send them; bad ones are refused naming the field.
async fn cards_go_out_through_the_upstream_routes<N: Network>(stack: &StackOn<N>, token: &str, device: i64) {
    let phone = format!("{CONTACT}@s.whatsapp.net");
    let api = reqwest::Client::new();
    let post = async |route: &str, body: Value| {
        let response = api
            .post(format!("{}{route}", stack.base))
            .basic_auth("scripts", Some(token))
            .header("X-Device-Id", device.to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };
    let sends = [
        (
            "/send/contact",
            serde_json::json!({"phone": phone, "contact_name": "Aldino Kemal", "contact_phone": "6289685024992"}),
            Structured::Contact {
                name: "Aldino Kemal".into(),
                phone: "+6289685024992".into(),
            },
        ),
        (
            "/send/location",
            serde_json::json!({"phone": phone, "latitude": "-7.797068", "longitude": 110.370529}),
            Structured::Location {
                latitude: -7.797068,
                longitude: 110.370529,
            },
        ),
        (
            "/send/link",
            serde_json::json!({"phone": phone, "link": "https://example.com/menu", "caption": "Our menu"}),
            Structured::Link {
                url: "https://example.com/menu".into(),
                caption: Some("Our menu".into()),
            },
        ),
        (
            "/send/poll",
            serde_json::json!({"phone": phone, "question": "Which day?", "options": ["Monday", "Friday"], "max_answer": 1}),
            Structured::Poll {
                question: "Which day?".into(),
                options: vec!["Monday".into(), "Friday".into()],
                selectable: 1,
            },
        ),
    ];
    for (route, body, expected) in sends {
        let (status, answer) = post(route, body).await;
        assert_eq!(status, StatusCode::OK, "{route}: {answer}");
        let id = answer["results"]["message_id"].as_str().unwrap().to_owned();
        let send = format!("/api/messages/{}", answer["results"]["send_id"].as_str().unwrap());
        let sent = stack
            .eventually(&send, &format!("{route}'s send goes out"), |s| {
                s["status"] != "queued" && s["status"] != "sending"
            })
            .await;
        assert_eq!(sent["kind"], expected.kind(), "{sent}");
        let seen = stack.sim.sent(DEVICE_PHONE).await.into_iter().find(|m| m.id == id);
        assert_eq!(seen.and_then(|m| m.structured), Some(expected), "{route}");
    }
    let refusals = [
        (
            "/send/contact",
            serde_json::json!({"phone": phone, "contact_name": "Ana"}),
            "contact_phone: ",
        ),
        (
            "/send/location",
            serde_json::json!({"phone": phone, "latitude": "91", "longitude": "0"}),
            "latitude: ",
        ),
        (
            "/send/link",
            serde_json::json!({"phone": phone, "link": "javascript:alert(1)"}),
            "link: ",
        ),
        (
            "/send/poll",
            serde_json::json!({"phone": phone, "question": "Day?", "options": ["A", "A"], "max_answer": 1}),
            "options[1]: ",
        ),
        (
            "/send/poll",
            serde_json::json!({"phone": phone, "question": "Day?", "options": ["A", "B"], "max_answer": 3}),
            "max_answer: ",
        ),
    ];
    for (route, body, says) in refusals {
        let (status, answer) = post(route, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route}: {answer}");
        assert!(
            answer["message"].as_str().unwrap_or_default().starts_with(says),
            "{route}: {answer}"
        );
    }
}

async fn files_are_sent_through_the_upstream_routes(backend: Backend) {
    let stack = StackOn::<SimHandle>::start(backend).await;
    files_go_out_through_the_upstream_routes(stack).await;
}

async fn with_the_real_client_files_are_sent_through_the_upstream_routes(backend: Backend) {
    let network = <WaWebHandle as Network>::start().await;
    network.add_account(CONTACT);
    let stack = StackOn::<WaWebHandle>::start_on(backend, network).await;
    files_go_out_through_the_upstream_routes(stack).await;
}

fn limited(settings: &mut wafleet_core::Settings) {
    settings.max_received_media_bytes = LIMIT;
}

async fn received_files_are_kept_once_and_served(backend: Backend) {
    let sim = wafleet_sim::start(SimConfig::for_tests())
        .await
        .expect("simulator starts");
    let stack = StackOn::<SimHandle>::start_configured(backend, sim, limited).await;
    files_are_kept_once_and_served_to_their_owner(stack).await;
}

async fn with_the_real_client_received_files_are_kept_once_and_served(backend: Backend) {
    let network = <WaWebHandle as Network>::start().await;
    network.add_account(CONTACT);
    let stack = StackOn::<WaWebHandle>::start_configured(backend, network, limited).await;
    files_are_kept_once_and_served_to_their_owner(stack).await;
}

/// With `MEDIA_URL` the files go to an S3-compatible bucket, under its prefix, and nothing to
/// the media directory: the same files kept once and served, through the S3 API.
async fn received_files_are_kept_in_a_bucket(backend: Backend) {
    let s3 = S3Server::start().await;
    s3.create_bucket("wafleet-media").await;
    let sim = wafleet_sim::start(SimConfig::for_tests())
        .await
        .expect("simulator starts");
    let options = s3.options();
    let stack = StackOn::<SimHandle>::start_configured(backend, sim, |s| {
        limited(s);
        s.media_url = Some("s3://wafleet-media/fleet".into());
        s.media_options = options;
    })
    .await;
    let stack = files_are_kept_once_and_served_to_their_owner(stack).await;
    assert_eq!(kept_files(stack.db.settings.media_dir.as_deref().unwrap()), 0);
    let bucket = |url: &str| {
        let options = s3.options().into_iter().map(|(k, v)| (k, v.expose().to_owned()));
        MediaStore::in_bucket(url, options).expect("the bucket opens")
    };
    assert_eq!(bucket("s3://wafleet-media").count().await.unwrap(), 3, "in the bucket");
    assert_eq!(
        bucket("s3://wafleet-media/other").count().await.unwrap(),
        0,
        "under the prefix"
    );
}

wafleet_core::testing::on_both_backends!(
    received_files_are_kept_once_and_served,
    with_the_real_client_received_files_are_kept_once_and_served,
    received_files_are_kept_in_a_bucket,
    files_are_sent_through_the_upstream_routes,
    with_the_real_client_files_are_sent_through_the_upstream_routes
);
