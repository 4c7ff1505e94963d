//! The unmodified WhatsApp Web client (whatsapp-rust 0.7), through `WaLink` and `WaStore`, against the simulator's WhatsApp
//! Web front end (`wafleet_sim::waweb`) over real sockets on 127.0.0.1: the Noise handshake,
//! pairing, logging in again from stored credentials, and the rest of the protocol the link uses.
//! Every check runs on SQLite and on PostgreSQL storage.

mod chat;
#[path = "../common/mod.rs"]
mod common;
mod control;
mod dump;
mod failures;
mod keys;
mod media;
mod pairing;
mod support;
mod upkeep;
