//! Migration 0029 lets sends carry videos, audio, documents and stickers. On SQLite it rebuilds
//! `outbound_messages`, which broadcast and campaign recipients point at: every send, id and
//! pointer must come through, the foreign keys must still hold, and ids must go on from where
//! they were.

use wafleet_core::Db;
use wafleet_core::db::NewSend;
use wafleet_core::link::{Attachment, Jid, MessageKind};
use wafleet_core::testing::{Backend, TestDb, bare_account_and_device, execute, fetch_optional};

async fn sends_and_their_pointers_survive_the_migration(backend: Backend) {
    let test = TestDb::migrated_to(backend, 28).await;
    let db = &test.db;
    let (user, device) = bare_account_and_device(db).await;
    let (u, d) = (user.0.into(), device.0.into());
    let text: i64 = fetch_optional(
        db,
        "INSERT INTO outbound_messages (user_id, device_id, idempotency_key, recipient, kind, body, status, \
         created_at, updated_at) VALUES ($1, $2, 'k-text', '60111000001@s.whatsapp.net', 'text', 'Hi', 'sent', 5, 5) \
         RETURNING id",
        &[u, d],
    )
    .await
    .unwrap();
    let picture: i64 = fetch_optional(
        db,
        "INSERT INTO outbound_messages (user_id, device_id, idempotency_key, recipient, kind, body, image, status, \
         created_at, updated_at) VALUES ($1, $2, 'k-image', '60111000002@s.whatsapp.net', 'image', 'Menu', \
         'JPEG bytes', 'queued', 6, 6) RETURNING id",
        &[u, d],
    )
    .await
    .unwrap();
    let broadcast: i64 = fetch_optional(
        db,
        "INSERT INTO broadcasts (user_id, device_id, idempotency_key, message, has_image, duplicates, created_at) \
         VALUES ($1, $2, 'b', 'Menu', TRUE, 0, 6) RETURNING id",
        &[u, d],
    )
    .await
    .unwrap();
    execute(
        db,
        "INSERT INTO broadcast_recipients (broadcast_id, phone, outbound_id) VALUES ($1, '+60111000002', $2)",
        &[broadcast.into(), picture.into()],
    )
    .await;
    let campaign: i64 = fetch_optional(
        db,
        "INSERT INTO campaigns (user_id, title, niche, message, send_at, time_zone, created_at, updated_at) \
         VALUES ($1, 'Bread', 'bakery', 'Hi', 1, 'UTC', 1, 1) RETURNING id",
        &[u],
    )
    .await
    .unwrap();
    execute(
        db,
        "INSERT INTO campaign_recipients (campaign_id, device_id, lead_id, phone, outbound_id, created_at) \
         VALUES ($1, $2, 1, '+60111000001', $3, 1)",
        &[campaign.into(), d, text.into()],
    )
    .await;

    db.migrate().await.unwrap();
    if let Db::Sqlite(pool) = db {
        // Run again, as after a crash between the rebuild's commit and its record: same result.
        let sql = include_str!("../../migrations/sqlite/0029_more_sends.sql");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await.unwrap();
    }

    let kept: Option<String> = fetch_optional(
        db,
        "SELECT kind || ':' || body || ':' || status FROM outbound_messages WHERE id = $1",
        &[picture.into()],
    )
    .await;
    assert_eq!(kept.as_deref(), Some("image:Menu:queued"));
    let pointed: Option<i64> = fetch_optional(
        db,
        "SELECT outbound_id FROM broadcast_recipients WHERE broadcast_id = $1",
        &[broadcast.into()],
    )
    .await;
    assert_eq!(
        pointed,
        Some(picture),
        "the broadcast's recipient still points at its send"
    );
    let pointed: Option<i64> = fetch_optional(
        db,
        "SELECT outbound_id FROM campaign_recipients WHERE campaign_id = $1",
        &[campaign.into()],
    )
    .await;
    assert_eq!(pointed, Some(text), "the campaign's recipient still points at its send");

    // A video now records, under an id after every earlier one, with its type.
    let video = Attachment {
        kind: MessageKind::Video,
        bytes: vec![0; 64],
        mime: "video/mp4".into(),
        file_name: None,
    };
    let new = NewSend {
        user,
        device,
        idempotency_key: "k-video".into(),
        to: Jid("60111000003@s.whatsapp.net".into()),
        body: Some("The tour".into()),
        media: Some(video),
        structured: None,
        forwarded: false,
    };
    let (sent, created) = db.record_send(&new).await.unwrap();
    assert!(created);
    assert_eq!(sent.kind, "video");
    assert!(
        sent.id > picture,
        "ids go on from where they were: {} after {picture}",
        sent.id
    );
    let mime: Option<String> = fetch_optional(
        db,
        "SELECT media_mime FROM outbound_messages WHERE id = $1",
        &[sent.id.into()],
    )
    .await;
    assert_eq!(mime.as_deref(), Some("video/mp4"));

    // The foreign keys hold on the rebuilt table: deleting a send removes its broadcast recipient.
    execute(db, "DELETE FROM outbound_messages WHERE id = $1", &[picture.into()]).await;
    let left: Option<i64> = fetch_optional(
        db,
        "SELECT COUNT(*) FROM broadcast_recipients WHERE broadcast_id = $1",
        &[broadcast.into()],
    )
    .await;
    assert_eq!(left, Some(0));
}

wafleet_core::testing::on_both_backends!(sends_and_their_pointers_survive_the_migration);
