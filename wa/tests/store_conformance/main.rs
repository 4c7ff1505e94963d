//! One conformance suite for `WaStore`, the client's storage backend, run on SQLite and PostgreSQL:
//! every method of the client's storage traits, round-trips, upserts, deletes, and isolation
//! between devices.

#[path = "../common/mod.rs"]
mod common;

mod appsync;
mod device;
mod protocol;
mod signal;

use appsync::app_sync_store;
use device::device_from_the_previous_client;
use device::device_store;
use device::wipe_and_cascade;
use protocol::protocol_store;
use signal::signal_store;

wafleet_core::testing::on_both_backends!(
    signal_store,
    app_sync_store,
    protocol_store,
    device_store,
    wipe_and_cascade,
    device_from_the_previous_client,
);
