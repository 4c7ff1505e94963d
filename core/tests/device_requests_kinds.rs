//! Migrations 0027, 0029 and 0030 let `device_requests` take more kinds of questions (message actions, profiles,
//! presence, chat settings). On SQLite each rebuilds the table to widen its check: the requests already there keep their ids and answers, and new
//! ones never take an id that was used before (the sequence carries over).

use wafleet_core::testing::{Backend, TestDb, bare_account_and_device, execute, fetch_optional};

async fn requests_survive_and_ids_go_on(backend: Backend) {
    let test = TestDb::migrated_to(backend, 26).await;
    let db = &test.db;
    let (user, device) = bare_account_and_device(db).await;
    // Three requests, the newest removed: its id must not come back.
    for _ in 0..3 {
        execute(
            db,
            "INSERT INTO device_requests (device_id, kind, payload, created_at) \
             VALUES ($1, 'check_numbers', '{\"phones\":[]}', 5)",
            &[device.0.into()],
        )
        .await;
    }
    execute(
        db,
        "UPDATE device_requests SET state = 'done', result = '[]' WHERE id = 1",
        &[],
    )
    .await;
    execute(db, "DELETE FROM device_requests WHERE id = 3", &[]).await;

    db.migrate().await.expect("migrate to the latest");

    let kept: Option<String> = fetch_optional(db, "SELECT result FROM device_requests WHERE id = 1", &[]).await;
    assert_eq!(kept.as_deref(), Some("[]"), "an answered request keeps its answer");
    let pending = db.pending_device_requests().await.unwrap();
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        [2],
        "the pending one is still pending"
    );
    let id = db
        .create_device_request(user, device, "mark_read", "{\"chat\":\"x\",\"ids\":[]}")
        .await
        .expect("a mark_read request is accepted");
    assert_eq!(id, 4, "ids go on after the highest ever used");
    for kind in [
        "chat_presence",
        "react",
        "revoke",
        "edit",
        "user_info",
        "privacy",
        "profile_picture",
        "set_profile_picture",
        "business_profile",
        "push_name",
        "presence",
        "chat_setting",
        "disappearing",
        "reject_call",
    ] {
        db.create_device_request(user, device, kind, "{}")
            .await
            .unwrap_or_else(|e| panic!("a {kind} request is refused: {e}"));
    }
    let refused = db.create_device_request(user, device, "reboot", "{}").await;
    assert!(refused.is_err(), "other kinds are still refused");
}

wafleet_core::testing::on_both_backends!(requests_survive_and_ids_go_on);
