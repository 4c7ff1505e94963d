//! Files of received messages, end to end on SQLite and on PostgreSQL + Redis: a picture, a video
//! and a document a contact sends are fetched by the device's worker through its session (the
//! simulator's link, and the real client against the WhatsApp Web front end), kept once, listed
//! with their messages, served to their owner only (the file, and the upstream API's
//! `/message/{id}/download`), and a file over `MAX_RECEIVED_MEDIA_BYTES` is not kept, with the
//! reason shown.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::stack::{Network, StackOn};
use wafleet_core::link::MessageKind;
use wafleet_core::testing::Backend;
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

async fn files_are_kept_once_and_served_to_their_owner<N: Network>(stack: StackOn<N>) {
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
    assert_eq!(
        kept_files(stack.db.settings.media_dir.as_deref().unwrap()),
        3,
        "each file kept once"
    );

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

wafleet_core::testing::on_both_backends!(
    received_files_are_kept_once_and_served,
    with_the_real_client_received_files_are_kept_once_and_served
);
