//! The WhatsApp network simulator and its client link.
//!
//! - [`server`]: the simulator (`wafleet sim`): accounts with contacts, linked devices, pairing
//!   by QR or code, incoming messages with an offline queue, receipts, replies, error replies,
//!   drops, logouts and a ban model. Devices speak [`protocol`] over a WebSocket; tests and
//!   pages script the network through the [`control`] API.
//! - [`waweb`]: its WhatsApp Web front end, where unmodified WhatsApp Web clients connect.
//! - [`ban`]: the ban model both judge accounts by.
//! - [`SimLink`]: the [`wafleet_core::link::Link`] to it.
//! - `conformance` (feature `conformance`, for test crates): the conformance suite every `Link`
//!   implementation passes.
//! - [`baileys`]: Baileys (Node), a second real client of the WhatsApp Web front end, for its
//!   test and the benchmark harness.

pub mod baileys;
pub mod ban;
pub mod client;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod control;
mod history;
pub mod protocol;
pub mod server;
pub mod waweb;

pub use client::{LinkOptions, SimLink};
pub use config::SimConfig;
pub use control::ControlClient;
pub use server::{SimHandle, run, start};
