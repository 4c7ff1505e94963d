//! The conformance suite of [`wafleet_core::link::Link`].
//!
//! Each check is a public async function taking a [`Harness`]: something that makes link
//! instances (as separate worker processes would have them, sharing one database) and scripts
//! the network through the simulator's control API. [`SimHarness`] runs them against
//! [`crate::SimLink`] and an in-process simulator over real sockets; another implementation
//! passes the same checks against the simulator speaking its protocol.

mod failures;
mod harness;
mod messages;
mod pairing;
mod support;

use std::sync::Arc;

use wafleet_core::Db;
use wafleet_core::link::Link;

use crate::ControlClient;

pub use failures::{
    ban_after_fast_sends_to_strangers, check_numbers, dropped_connection_reconnects, refusal_463, remote_logout,
    unreachable_network_fails_fast,
};
pub use harness::SimHarness;
pub use messages::{
    image_with_caption, incoming_message_acked_once_and_replayed_until_then, non_personal_chats_never_surface,
    send_text_gets_delivered_then_read,
};
pub use pairing::{pair_code_pairing, qr_pairing_with_refreshing_codes, reconnect_from_another_link};
pub use support::{Paired, new_device, next_event, pair, unique_phone, wait_for};

/// What the checks need: links, their database and the network's control API.
pub trait Harness: Send + Sync {
    /// A new link instance, as another worker process would hold; all share one database and
    /// one network.
    fn link(&self) -> Arc<dyn Link>;
    /// A link whose network is not there (nothing listens).
    fn unreachable_link(&self) -> Arc<dyn Link>;
    /// The database links keep credentials in.
    fn db(&self) -> &Db;
    /// The simulated network.
    fn network(&self) -> &ControlClient;
    /// The name the link stores credentials under (`link_credentials.link`).
    fn credentials_name(&self) -> &str;
}
