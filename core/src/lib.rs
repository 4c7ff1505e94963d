//! Shared ground of every wafleet role: configuration, domain types, storage and telemetry.
//!
//! The `api`, `workers` and `scheduler` crates depend on this one and never on each other.

pub mod accounts;
pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod egress;
pub mod error;
pub mod keys;
pub mod link;
pub mod media;
pub mod media_store;
pub mod metrics;
pub mod queue;
pub mod shutdown;
pub mod sync;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;
pub mod types;
pub mod webhooks;

pub use config::Settings;
pub use db::Db;
pub use error::{Error, Result};
