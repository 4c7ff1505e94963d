//! Fixtures shared by this crate's integration tests.

#![allow(dead_code)]

use wafleet_core::db::NewUserRole;
use wafleet_core::testing::{Backend, TestDb};
use wafleet_core::types::{DeviceId, Email, UserId};
use wafleet_wa::WaStore;

/// A migrated database of the test's own with one user and `n` devices, and a store per device.
pub async fn devices(backend: Backend, n: usize) -> (TestDb, UserId, Vec<WaStore>) {
    devices_in(TestDb::new(backend).await, n).await
}

/// [`devices`] in the database `test`.
pub async fn devices_in(test: TestDb, n: usize) -> (TestDb, UserId, Vec<WaStore>) {
    let email = Email::parse("owner@example.com").expect("email");
    let user = test
        .db
        .create_user(&email, "hash", NewUserRole::FirstBecomesAdmin)
        .await
        .expect("user");
    let mut stores = Vec::new();
    for i in 0..n {
        let device = test
            .db
            .create_device(user.id, &format!("phone {i}"), None)
            .await
            .expect("device");
        stores.push(WaStore::new(test.db.clone(), test.keys.clone(), device.id));
    }
    (test, user.id, stores)
}

/// Deletes a device row through the API-facing storage, as its owner would.
pub async fn delete_device(test: &TestDb, user: UserId, device: DeviceId) {
    test.db.delete_device(user, device).await.expect("delete device");
}
