//! Retention over the JSON API and the account page: the setting (default keep everything,
//! refused out of range), then the deletes the scheduler's retention job runs, while new
//! messages are being ingested: old messages of the user who set it go, new ones and other users'
//! stay, chats keep their place, and analytics do not change.

use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

use wafleet_core::Db;
use wafleet_core::db::{Batches, Pruned};
use wafleet_core::media_store::MediaStore;
use wafleet_core::testing::{execute, fetch_optional};
use wafleet_core::types::{DeviceId, Timestamp};

use crate::analytics::{results, seed};
use crate::chat_view::{store, text};
use crate::helpers::{TestApp, expect_error};

const DAY_MS: i64 = 86_400_000;

/// Moves a chat and its messages 40 days into the past, as if they had arrived then.
async fn age(db: &Db, device: i64, number: &str) {
    let chat = format!("{number}@s.whatsapp.net");
    let params = [device.into(), chat.as_str().into(), (40 * DAY_MS).into()];
    execute(
        db,
        "UPDATE messages SET received_at = received_at - $3, sent_at = sent_at - $3 \
              WHERE device_id = $1 AND chat_jid = $2",
        &params,
    )
    .await;
    execute(
        db,
        "UPDATE chats SET last_message_at = last_message_at - $3 WHERE device_id = $1 AND jid = $2",
        &params,
    )
    .await;
}

/// Messages stored in a chat of a device.
async fn stored(db: &Db, device: i64, number: &str) -> i64 {
    let chat = format!("{number}@s.whatsapp.net");
    fetch_optional(
        db,
        "SELECT COUNT(*) FROM messages WHERE device_id = $1 AND chat_jid = $2",
        &[device.into(), chat.as_str().into()],
    )
    .await
    .expect("a count")
}

/// Makes `message` a picture whose file is to be fetched.
fn with_picture(message: &mut wafleet_core::link::IncomingMessage) {
    message.kind = wafleet_core::link::MessageKind::Image;
    message.media = Some(wafleet_core::link::IncomingMedia {
        mime: "image/jpeg".into(),
        size: 3,
        file_name: None,
        locator: "test".into(),
    });
}

/// Keeps a file for the stored picture `id` of `device`, as its worker would; returns its key.
async fn kept_file(app: &TestApp, media: &MediaStore, device: i64, id: &str) -> String {
    let key = MediaStore::key_for(DeviceId(device), id);
    media.put(&key, vec![1, 2, 3]).await.unwrap();
    let recorded = app.db.media_stored(DeviceId(device), id, &key, Timestamp::now()).await;
    assert!(recorded.unwrap(), "the file of {id} was waited for");
    key
}

/// A chat's preview, or `None` when the chat is gone (`Some(None)`: kept, without a preview).
async fn preview(db: &Db, device: i64, number: &str) -> Option<Option<String>> {
    let chat = format!("{number}@s.whatsapp.net");
    fetch_optional(
        db,
        "SELECT last_message_preview FROM chats WHERE device_id = $1 AND jid = $2",
        &[device.into(), chat.as_str().into()],
    )
    .await
}

async fn the_setting_defaults_to_keep_everything_and_refuses_bad_values(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    let ben = app.session("ben@example.com").await;
    assert_eq!(
        results(&ana, "/api/account/retention").await,
        json!({"keep_messages_days": null, "keep_media_days": null})
    );

    let saved = ana
        .put("/api/account/retention", json!({"keep_messages_days": 30}))
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    assert_eq!(
        results(&ana, "/api/account/retention").await["keep_messages_days"],
        json!(30)
    );
    assert_eq!(
        results(&ben, "/api/account/retention").await["keep_messages_days"],
        json!(null),
        "one user's setting is not another's"
    );

    for (bad, needle) in [
        (
            json!({"keep_messages_days": 0}),
            "keep_messages_days: 0 is out of range; give 1 to 3650 days",
        ),
        (
            json!({"keep_messages_days": 3651}),
            "keep_messages_days: 3651 is out of range",
        ),
        (json!({"keep_messages_days": "a month"}), "keep_messages_days"),
        (json!({"keep_days": 5}), "keep_days"),
    ] {
        expect_error(
            ana.put("/api/account/retention", bad.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
    }
    assert_eq!(
        results(&ana, "/api/account/retention").await["keep_messages_days"],
        json!(30),
        "a refused change changes nothing"
    );
    let cleared = ana
        .put("/api/account/retention", json!({"keep_messages_days": null}))
        .await;
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(
        results(&ana, "/api/account/retention").await["keep_messages_days"],
        json!(null)
    );

    // The account page's form does the same.
    let html = ana.get("/account").await.text().await.unwrap();
    assert!(
        html.contains("Keep messages") && html.contains("keep everything"),
        "{html}"
    );
    let csrf = crate::helpers::csrf_from_html(&html);
    let post = |days: &'static str| {
        let fields = [("keep_messages_days", days), ("csrf_token", csrf.as_str())];
        ana.client.post(ana.url("/account/retention")).form(&fields).send()
    };
    let refused = post("-3").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("give 1 to 3650 days"));
    let done = post("90").await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let page = done.text().await.unwrap();
    assert!(
        page.contains("Messages are kept 90 days") && page.contains("value=\"90\""),
        "{page}"
    );
    assert_eq!(
        results(&ana, "/api/account/retention").await["keep_messages_days"],
        json!(90)
    );
    let everything = post("").await.unwrap();
    assert!(everything.text().await.unwrap().contains("Every message is kept."));
    assert_eq!(
        results(&ana, "/api/account/retention").await["keep_messages_days"],
        json!(null)
    );
}

async fn old_messages_go_while_new_ones_arrive_and_analytics_stay(app: TestApp) {
    let s = seed(&app).await;
    let now = Timestamp::now().millis();
    // Old chats of Ana's Shop and of Ben's device; a chat of Shop's with old and new messages.
    let mut old: Vec<_> = (0..25)
        .map(|i| {
            text(
                &format!("old-{i}"),
                "60111000020",
                i % 2 == 0,
                None,
                "Long ago",
                now + i,
            )
        })
        .collect();
    // An old picture, and a new one: the old one's file goes with its message.
    with_picture(&mut old[1]);
    store(&app, s.shop_fence, old).await;
    let media = MediaStore::from_settings(&app.settings).unwrap();
    let old_file = kept_file(&app, &media, s.shop, "old-1").await;
    age(&app.db, s.shop, "60111000020").await;
    let mixed = vec![text("mixed-old", "60111000021", false, None, "Then", now)];
    store(&app, s.shop_fence, mixed).await;
    age(&app.db, s.shop, "60111000021").await;
    let mut new = text("mixed-new", "60111000021", false, None, "Now", now + 5);
    with_picture(&mut new);
    store(&app, s.shop_fence, vec![new]).await;
    let new_file = kept_file(&app, &media, s.shop, "mixed-new").await;
    let bens: Vec<_> = (0..10)
        .map(|i| text(&format!("ben-old-{i}"), "60111000020", false, None, "Ben's", now + i))
        .collect();
    store(&app, s.ben_fence, bens).await;
    age(&app.db, s.ben_device, "60111000020").await;

    let recent = stored(&app.db, s.shop, "60111000001").await;
    assert!(recent >= 1, "the seeded reply is stored");
    app.refresh_analytics().await;
    let ana_before = results(&s.ana, "/api/analytics/90").await;
    let ben_before = results(&s.ben, "/api/analytics/90").await;

    let saved = s
        .ana
        .put("/api/account/retention", json!({"keep_messages_days": 30}))
        .await;
    assert_eq!(saved.status(), StatusCode::OK);

    // Ingest goes on while retention deletes in small batches.
    let ingest = async {
        for batch in 0..20 {
            let messages = (0..10)
                .map(|i| {
                    text(
                        &format!("new-{batch}-{i}"),
                        "60111000030",
                        false,
                        None,
                        "Fresh",
                        now + batch * 10 + i,
                    )
                })
                .collect();
            store(&app, s.shop_fence, messages).await;
            tokio::task::yield_now().await;
        }
    };
    // Batches of 4 without a pause: many statements interleave with the ingest's.
    let batches = Batches {
        size: 4,
        pause: Duration::ZERO,
        max: 1_000,
    };
    let limited = app
        .db
        .enforce_retention(Timestamp::now(), Batches { max: 2, ..batches }, &media)
        .await
        .unwrap();
    assert_eq!(
        (limited.files, limited.messages, limited.more),
        (1, 4, true),
        "a run stops at its batch limit: a batch of files (the old picture's), one of messages"
    );
    let prune = app.db.enforce_retention(Timestamp::now(), batches, &media);
    let ((), pruned) = tokio::join!(ingest, prune);
    let pruned = pruned.unwrap();
    assert_eq!(
        (pruned.messages, pruned.previews, pruned.more),
        (22, 1, false),
        "the rest of Ana's 25 old messages and the old one of the mixed chat; one chat's preview"
    );
    assert_eq!(
        (&limited.devices, &pruned.devices),
        (&vec![DeviceId(s.shop)], &vec![DeviceId(s.shop)]),
        "each run names the device it changed, whose cached reads then go; Ben keeps everything"
    );
    let again = app
        .db
        .enforce_retention(Timestamp::now(), batches, &media)
        .await
        .unwrap();
    assert_eq!(again, Pruned::default(), "nothing left to delete, no device changed");
    assert_eq!(limited.files + pruned.files, 1);
    assert!(
        media.get(&old_file).await.unwrap().is_none(),
        "the old picture's file is gone"
    );
    assert!(
        media.get(&new_file).await.unwrap().is_some(),
        "the new picture's file stays"
    );

    assert_eq!(stored(&app.db, s.shop, "60111000020").await, 0);
    assert_eq!(
        stored(&app.db, s.shop, "60111000021").await,
        1,
        "the new message of a chat stays"
    );
    assert_eq!(
        stored(&app.db, s.shop, "60111000030").await,
        200,
        "no message ingested meanwhile is lost"
    );
    assert_eq!(
        stored(&app.db, s.shop, "60111000001").await,
        recent,
        "a recent chat stays whole"
    );
    assert_eq!(
        stored(&app.db, s.ben_device, "60111000020").await,
        10,
        "Ben keeps everything"
    );
    assert_eq!(
        preview(&app.db, s.shop, "60111000020").await,
        Some(None),
        "the chat stays, without a preview"
    );
    assert_eq!(preview(&app.db, s.shop, "60111000021").await, Some(Some("Now".into())));
    assert_eq!(
        preview(&app.db, s.ben_device, "60111000020").await,
        Some(Some("Ben's".into()))
    );

    app.refresh_analytics().await;
    for (session, before) in [(&s.ana, &ana_before), (&s.ben, &ben_before)] {
        let after = results(session, "/api/analytics/90").await;
        assert_eq!(after["totals"], before["totals"]);
        assert_eq!(after["series"], before["series"]);
    }
}

/// Files kept a shorter time than messages: an old picture's file goes, its message stays and
/// says the file expired; a new picture keeps its file.
async fn old_files_go_and_their_messages_stay(app: TestApp) {
    let s = seed(&app).await;
    let now = Timestamp::now().millis();
    let media = MediaStore::from_settings(&app.settings).unwrap();
    let mut kept = Vec::new();
    for (id, chat) in [("pic-old", "60111000040"), ("pic-new", "60111000041")] {
        let mut message = text(id, chat, false, None, "look", now);
        with_picture(&mut message);
        store(&app, s.shop_fence, vec![message]).await;
        let key = kept_file(&app, &media, s.shop, id).await;
        kept.push(key);
    }
    age(&app.db, s.shop, "60111000040").await;
    let saved = s
        .ana
        .put(
            "/api/account/retention",
            json!({"keep_messages_days": null, "keep_media_days": 30}),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    assert_eq!(
        results(&s.ana, "/api/account/retention").await,
        json!({"keep_messages_days": null, "keep_media_days": 30})
    );
    let batches = Batches {
        size: 10,
        pause: Duration::ZERO,
        max: 100,
    };
    let pruned = app
        .db
        .enforce_retention(Timestamp::now(), batches, &media)
        .await
        .unwrap();
    assert_eq!(
        (pruned.files, pruned.messages, &pruned.devices),
        (1, 0, &vec![DeviceId(s.shop)])
    );
    assert!(media.get(&kept[0]).await.unwrap().is_none(), "the old file is gone");
    assert!(media.get(&kept[1]).await.unwrap().is_some(), "the new file stays");
    assert_eq!(stored(&app.db, s.shop, "60111000040").await, 1, "its message stays");
    let page = results(
        &s.ana,
        &format!("/api/devices/{}/messages/60111000040%40s.whatsapp.net", s.shop),
    )
    .await;
    assert_eq!(page["messages"][0]["media_state"], "expired", "{page}");
    let gone = s.ana.get(&format!("/api/devices/{}/media/pic-old", s.shop)).await;
    assert_eq!(gone.status(), StatusCode::GONE);
    assert!(gone.text().await.unwrap().contains("retention"));
    let shown = s.ana.get(&format!("/api/devices/{}/media/pic-new", s.shop)).await;
    assert_eq!(shown.status(), StatusCode::OK);

    for (bad, needle) in [
        (json!({"keep_media_days": 0}), "keep_media_days: 0 is out of range"),
        (json!({"keep_media_days": "a week"}), "keep_media_days"),
    ] {
        expect_error(
            s.ana.put("/api/account/retention", bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            needle,
        )
        .await;
    }
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => the_setting_defaults_to_keep_everything_and_refuses_bad_values, old_messages_go_while_new_ones_arrive_and_analytics_stay, old_files_go_and_their_messages_stay);
