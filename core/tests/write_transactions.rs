//! Write transactions that read first never fail with "database is locked" when they run at once:
//! on SQLite each takes the write lock up front (`BEGIN IMMEDIATE`) and waits its turn, where a
//! deferred transaction whose snapshot went stale would fail at its first write.

use wafleet_core::Db;
use wafleet_core::db::{Desired, NewUserRole};
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::Email;

/// Requests sessions for several devices from many tasks at once; each request reads the
/// device's status, then writes it and the session row in one transaction.
async fn concurrent_session_requests_all_succeed(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db: Db = test_db.db.clone();
    let email = Email::parse("owner@example.com").unwrap();
    let user = db
        .create_user(&email, "unused", NewUserRole::FirstBecomesAdmin)
        .await
        .unwrap()
        .id;
    let mut devices = Vec::new();
    for n in 0..4 {
        devices.push(db.create_device(user, &format!("Shop {n}"), None).await.unwrap().id);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..16 {
        let (db, device) = (db.clone(), devices[task % devices.len()]);
        tasks.spawn(async move {
            for round in 0..10 {
                let desired = if (task + round) % 2 == 0 {
                    Desired::PairQr
                } else {
                    Desired::Unlinked
                };
                db.request_session(user, device, desired, None).await?;
            }
            Ok::<_, wafleet_core::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().expect("a concurrent write transaction failed");
    }
}

wafleet_core::testing::on_both_backends!(concurrent_session_requests_all_succeed);
