//! One conformance suite for `WaStore`, the client's storage backend, run on SQLite and PostgreSQL:
//! every method of the client's storage traits, round-trips, upserts, deletes, and isolation
//! between devices.

#[path = "../common/mod.rs"]
mod common;

mod appsync;
mod device;
mod protocol;
mod signal;

/// Declares one test per backend for each suite function.
macro_rules! on_both_backends {
    ($($module:ident :: $suite:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $suite() { crate::$module::$suite(wafleet_core::testing::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $suite() { crate::$module::$suite(wafleet_core::testing::Backend::Postgres).await } )* }
    };
}

on_both_backends!(
    signal::signal_store,
    appsync::app_sync_store,
    protocol::protocol_store,
    device::device_store,
    device::wipe_and_cascade,
    device::device_from_the_previous_client,
);
