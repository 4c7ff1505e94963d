//! `outbound_messages.replied_at`, which the analytics roll-up counts replies from: migration 0013
//! fills it for the sends already stored, by the counting rule (a message the contact wrote at or
//! after a send that went out), and the first refresh after it finds nothing left to mark but
//! what the rule now counts too: a message stamped in the send's second (WhatsApp stamps to the
//! second).

use wafleet_core::Db;
use wafleet_core::testing::{Backend, TestDb, bare_account_and_device};
use wafleet_core::types::{DeviceId, UserId};

const ANA: &str = "60111000001@s.whatsapp.net";
const BEN: &str = "60111000002@s.whatsapp.net";
const CAL: &str = "60111000003@s.whatsapp.net";

async fn exec(db: &Db, sql: String, user: UserId, device: DeviceId) {
    let sql = sqlx::AssertSqlSafe(sql);
    match db {
        Db::Sqlite(pool) => sqlx::query(sql).bind(user).bind(device).execute(pool).await.map(drop),
        Db::Postgres(pool) => sqlx::query(sql).bind(user).bind(device).execute(pool).await.map(drop),
    }
    .unwrap();
}

/// `(idempotency key, replied_at, updated_at)` of every send, by key.
async fn sends(db: &Db) -> Vec<(String, Option<i64>, i64)> {
    const SQL: &str = "SELECT idempotency_key, replied_at, updated_at FROM outbound_messages ORDER BY idempotency_key";
    match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await,
    }
    .unwrap()
}

async fn migration_marks_the_sends_already_answered(backend: Backend) {
    let test = TestDb::migrated_to(backend, 12).await;
    let db = &test.db;
    let (user, device) = bare_account_and_device(db).await;
    let send = |key: &str, to: &str, status: &str, sent_at: &str| {
        format!("($1, $2, '{key}', '{to}', 'text', 'Offer', '{status}', 1, 10, 10, {sent_at})")
    };
    exec(
        db,
        format!(
            "INSERT INTO outbound_messages (user_id, device_id, idempotency_key, recipient, kind, body, status, \
             attempts, created_at, updated_at, sent_at) VALUES {}",
            [
                send("a1", ANA, "read", "100000"),
                send("a2", ANA, "delivered", "400000"),
                send("b1", BEN, "failed", "NULL"),
                send("b2", BEN, "queued", "NULL"),
                send("b3", BEN, "sent", "120000"),
                send("c1", CAL, "read", "700500"),
            ]
            .join(", ")
        ),
        user,
        device,
    )
    .await;
    let message = |id: &str, chat: &str, from_me: bool, sent_at: i64| {
        let sender = if from_me { "me" } else { chat };
        format!("($2, '{id}', '{chat}', '{sender}', {from_me}, 'text', 'hi', {sent_at}, {sent_at})")
    };
    exec(
        db,
        format!(
            "INSERT INTO messages (device_id, id, chat_jid, sender_jid, from_me, kind, body, sent_at, received_at) \
             VALUES {}",
            [
                // Ana wrote before the first send, then twice after it; we wrote after the second.
                message("m1", ANA, false, 50000),
                message("m2", ANA, false, 300000),
                message("m3", ANA, false, 200000),
                message("m4", ANA, true, 500000),
                message("m5", BEN, false, 150000),
                // Cal answered at once: WhatsApp stamped the answer with the send's second, and
                // wrote a second earlier too.
                message("m6", CAL, false, 699000),
                message("m7", CAL, false, 700000),
            ]
            .join(", ")
        ),
        user,
        device,
    )
    .await;

    db.migrate().await.unwrap();

    let mut expected = vec![
        ("a1".to_owned(), Some(200000), 10),
        ("a2".to_owned(), None, 10),
        ("b1".to_owned(), None, 10),
        ("b2".to_owned(), None, 10),
        ("b3".to_owned(), Some(150000), 10),
        ("c1".to_owned(), None, 10),
    ];
    assert_eq!(
        sends(db).await,
        expected,
        "the contact's first message at or after each send that went out; ours and earlier ones are no reply"
    );

    // The first refresh recounts every day and marks nothing the migration found; it adds the
    // answer stamped in the send's second, and not the message of the second before.
    db.refresh_analytics().await.unwrap();
    let after = sends(db).await;
    let (answered, rest) = after.split_last().unwrap();
    assert_eq!((answered.0.as_str(), answered.1), ("c1", Some(700000)), "{after:?}");
    expected.pop();
    assert_eq!(rest, expected);
}

wafleet_core::testing::on_both_backends!(migration_marks_the_sends_already_answered);
