//! The control API's request and response bodies, and a typed client for it.
//!
//! Tests, benchmarks and the demo page script the simulated network through these routes (all
//! JSON, under `/control`):
//!
//! | Route | Body → answer | Effect |
//! |---|---|---|
//! | `GET /state` | → [`StateView`] | accounts, sessions, pending pairings (current codes), counters |
//! | `GET /config` | → [`crate::SimConfig`] | settings in force |
//! | `POST /scan` | [`ScanRequest`] → [`Paired`] | the phone scans a QR code |
//! | `POST /pair-code` | [`PairCodeRequest`] → [`Paired`] | the phone confirms a pair code |
//! | `POST /provision` | [`ProvisionRequest`] → `[Provisioned]` | links devices without pairing (benchmarks) |
//! | `POST /messages` | [`InjectMessage`] → [`Injected`] | a contact (or group, …) writes to an account |
//! | `POST /flood` | [`FloodRequest`] → [`Count`] | closed-loop inbound load for benchmarks |
//! | `GET /flood` | → [`FloodReport`] | what the flood did: messages, acks, delays |
//! | `POST /numbers` | [`NumberRule`] → [`NumberRule`] | a number's behaviour (on WhatsApp, 463, read/reply odds) |
//! | `GET /accounts/{phone}/sent` | → `[SentRecord]` | what the account's devices sent |
//! | `GET /accounts/{phone}/read` | → `[ReadRecord]` | the messages its devices marked read |
//! | `GET /accounts/{phone}/chat-states` | → `[ChatStateRecord]` | the typing indicators its devices showed |
//! | `GET /accounts/{phone}/presences` | → `[PresenceRecord]` | the push names and presences its devices sent |
//! | `GET /accounts/{phone}/chat-settings` | → `[ChatSettingRecord]` | the chats its devices archived, pinned, and the messages they starred or deleted for themselves |
//! | `GET /accounts/{phone}/actions` | → `[ActionRecord]` | the reactions, deletions for everyone, edits and disappearing-messages timers its devices sent |
//! | `POST /accounts/{phone}/disconnect` | → [`Count`] | drops the sockets of its devices |
//! | `POST /accounts/{phone}/logout` | → [`Count`] | unlinks its devices from the phone |
//! | `POST /accounts/{phone}/ban` | → [`Count`] | bans it |
//! | `POST /accounts/{phone}/schedule` | [`Schedule`] → [`Count`] | incoming messages at a steady rate |
//! | `POST /accounts/{phone}/calls` | [`PlaceCall`] → [`Placed`] | someone calls it: the call rings on its connected devices |
//! | `GET /accounts/{phone}/calls` | → `[CallRecord]` | the calls that rang on it, and whether a device declined each |
//! | `POST /accounts/{phone}/contacts/{contact}` | [`SaveContact`] → [`Count`] | the phone saves a contact's name |
//! | `POST /accounts/{phone}/restrict` | [`Restrict`] → [`Count`] | a reach-out timelock, a new-chat cap |
//! | `POST /waweb/scan`, `/waweb/pair-code` | [`ScanRequest`], [`PairCodeRequest`] → [`Paired`] | a phone links a wa-rs client to the WhatsApp Web front end |
//! | `GET /waweb/logged-in` | → `[String]` | JIDs of the devices logged in to the front end |
//! | `GET /waweb/stats` | → [`WaWebStats`] | the front end's linked, logged-in and pairing counts, and replaced logins |
//! | `GET /waweb/root-key` | → `String` | the key (hex) that signs the front end's certificates, for clients that check them |
//!
//! Phone numbers are E.164 (`+60123456789`) or bare digits.

mod client;
mod types;

pub use client::ControlClient;
pub use types::*;
