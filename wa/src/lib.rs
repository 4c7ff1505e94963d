//! The real WhatsApp link: a whatsapp-rust adapter whose session state lives in wafleet's database.
//!
//! - [`store::WaStore`]: the client's storage backend on our SQLite or PostgreSQL database, one
//!   device's state per store.
//! - [`WaLink`]: wafleet's [`Link`](wafleet_core::link::Link) on whatsapp-rust, one client per device,
//!   events in order and limited to personal chats.

pub mod link;
pub mod store;

pub use link::{WaLink, WaLinkConfig, WaSession, map_event, map_history, map_message, map_receipt};
pub use store::WaStore;
