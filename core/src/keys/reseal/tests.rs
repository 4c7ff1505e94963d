//! The sweep on both backends, and the SQL it builds.

use std::time::Duration;

use super::*;
use crate::db::{LINK_CREDENTIALS, NewUserRole};
use crate::keys::source::random_secret;
use crate::keys::{KeyColumn, registry};
use crate::testing::{Backend, TestDb};
use crate::types::Email;

/// Link credentials (text envelopes) through a plain-text upgrade and a rotation, on `backend`.
async fn credentials_follow_the_current_key(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let user = db
        .create_user(
            &Email::parse("k@example.com").unwrap(),
            "h",
            NewUserRole::FirstBecomesAdmin,
        )
        .await
        .unwrap();
    let columns = [&LINK_CREDENTIALS];
    let (old, new) = (random_secret(), random_secret());
    let a = KeyRing::new(&old, None);
    let mut devices = Vec::new();
    for i in 0..5 {
        let device = db.create_device(user.id, &format!("d{i}"), None).await.unwrap().id;
        db.put_link_credentials(&a, device, "sim", &format!("{{\"token\":\"t{i}\"}}"))
            .await
            .unwrap();
        devices.push(device);
    }
    // As a release before encryption left them.
    assert_eq!(unseal_all(db, &a, &columns).await.unwrap(), 5);
    registry::startup(db, &a, &columns).await.unwrap();
    assert!(a.plaintext_readable());
    let (_trigger, shutdown) = crate::shutdown::channel();
    let small = SweepOptions {
        batch: 2,
        pause: Duration::ZERO,
        ..SweepOptions::default()
    };
    let report = sweep(db, &a, &columns, &small, &shutdown).await.unwrap();
    assert_eq!((report.moved, report.complete), (5, true));
    assert_eq!(
        census(db, &columns).await.unwrap().by_key.get(&a.current_id()),
        Some(&5)
    );

    let rotating = KeyRing::new(&new, Some(&old));
    registry::startup(db, &rotating, &columns).await.unwrap();
    assert!(!rotating.plaintext_readable(), "the upgrade is recorded as done");
    let report = sweep(db, &rotating, &columns, &small, &shutdown).await.unwrap();
    assert_eq!((report.moved, report.unreadable, report.complete), (5, 0, true));
    let after = KeyRing::new(&new, None);
    registry::startup(db, &after, &columns).await.unwrap();
    for (i, device) in devices.iter().enumerate() {
        let data = db.link_credentials(&after, *device, "sim").await.unwrap();
        assert_eq!(data, Some(format!("{{\"token\":\"t{i}\"}}")));
    }
    let err = registry::startup(db, &KeyRing::new(&old, None), &columns)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wrong WA_KEYS_SECRET"), "{err}");
}

#[test]
fn statements_page_by_the_primary_key() {
    const COLUMN: SealedColumn = SealedColumn::binary(
        "wa_base_keys",
        "base_key",
        &[KeyColumn::text("address"), KeyColumn::text("message_id")],
    );
    let sql = Statements::new(&COLUMN, 9, 50);
    assert_eq!(
        sql.next,
        "SELECT device_id, address, message_id, base_key FROM wa_base_keys WHERE base_key IS NOT NULL \
         AND (length(base_key) < 9 OR substr(base_key, 1, 9) <> $1) \
         AND (device_id, address, message_id) > ($2, $3, $4) \
         ORDER BY device_id, address, message_id LIMIT 50"
    );
    assert_eq!(
        sql.update,
        "UPDATE wa_base_keys SET base_key = $1 WHERE device_id = $2 AND address = $3 AND message_id = $4 \
         AND base_key = $5"
    );
}

crate::testing::on_both_backends!(credentials_follow_the_current_key);
