//! The conformance suite of [`wafleet_core::link::Link`].
//!
//! Each check is a public async function taking a [`Harness`]: something that makes link
//! instances (as separate worker processes would have them, sharing one database) and scripts
//! the network's phones through [`Phones`]. [`SimHarness`] runs them against [`crate::SimLink`]
//! and an in-process simulator over real sockets; the wa-rs adapter runs them against the
//! simulator's WhatsApp Web front end (`wafleet-wa`'s `conformance` tests). A harness that cannot
//! run a check names it with the reason ([`Harness::uncovered`]), and [`assert_coverage`] fails
//! when a check is neither run nor named, so no check is skipped silently.

mod failures;
mod harness;
mod messages;
mod pairing;
mod phones;
mod settings;
mod support;

use std::sync::Arc;

use async_trait::async_trait;
use wafleet_core::Db;
use wafleet_core::link::Link;
use wafleet_core::types::DeviceId;

pub use failures::{
    ban_after_fast_sends_to_strangers, business_profile, check_numbers, dropped_connection_reconnects,
    own_profile_picture_changes, privacy_settings, profile_picture, refusal_463, remote_logout,
    timelock_restricts_new_chats_only, unreachable_network_fails_fast, user_info,
};
pub use harness::SimHarness;
pub use messages::{
    files_of_every_kind_are_sent, forwarded_sends_are_marked, image_with_caption, incoming_media_downloads,
    incoming_message_acked_once_and_replayed_until_then, mark_read_sends_a_read_receipt,
    non_personal_chats_never_surface, push_name_then_presence, react_edit_and_delete_for_everyone,
    receipt_acked_once_and_replayed_until_then, send_goes_out_under_the_chosen_id, send_text_gets_delivered_then_read,
    structured_messages_are_sent, typing_shows_in_the_chat,
};
pub use pairing::{pair_code_pairing, qr_pairing_with_refreshing_codes, reconnect_from_another_link};
pub use phones::{Action, Contact, Phones, Sent};
pub use settings::{calls_ring_and_are_declined, chat_settings_and_disappearing_timer};
pub use support::{
    Paired, contact, new_device, next_event, next_event_within, pair, unique_phone, wait_for, wait_for_within,
};

/// Declares a conformance test suite in a test crate: for each named check, `sqlite::CHECK` and
/// `postgres::CHECK` tests that run it against a fresh `$harness` (its `start(db)`) on a database
/// of their own, logging at `$log` (an env-filter); and `RUN`, the checks run, for
/// [`assert_coverage`]. The test crate needs `wafleet-core` (feature `testing`) and
/// `tracing-subscriber`.
#[macro_export]
macro_rules! conformance_suite {
    (harness: $harness:ty, log: $log:expr, checks: [$($name:ident),+ $(,)?] $(,)?) => {
        /// Runs `check` against a fresh harness and database on `backend`.
        async fn run<F, Fut>(backend: ::wafleet_core::testing::Backend, check: F)
        where
            F: FnOnce($harness) -> Fut,
            Fut: ::std::future::Future<Output = ()>,
        {
            let _ = ::tracing_subscriber::fmt().with_env_filter($log).with_test_writer().try_init();
            let test_db = ::wafleet_core::testing::TestDb::new(backend).await;
            let harness = <$harness>::start(test_db.db.clone()).await.expect("start the harness");
            check(harness).await;
        }

        /// The checks this suite runs.
        const RUN: &[&str] = &[$(stringify!($name)),*];
        $(
            async fn $name(backend: ::wafleet_core::testing::Backend) {
                run(backend, |h| async move { $crate::conformance::$name(&h).await }).await
            }
        )*
        ::wafleet_core::testing::on_both_backends!($($name),*);
    };
}

/// Every check of the suite, by function name.
pub const CHECKS: &[&str] = &[
    "qr_pairing_with_refreshing_codes",
    "pair_code_pairing",
    "reconnect_from_another_link",
    "incoming_message_acked_once_and_replayed_until_then",
    "non_personal_chats_never_surface",
    "send_text_gets_delivered_then_read",
    "send_goes_out_under_the_chosen_id",
    "receipt_acked_once_and_replayed_until_then",
    "image_with_caption",
    "files_of_every_kind_are_sent",
    "structured_messages_are_sent",
    "push_name_then_presence",
    "chat_settings_and_disappearing_timer",
    "calls_ring_and_are_declined",
    "forwarded_sends_are_marked",
    "incoming_media_downloads",
    "mark_read_sends_a_read_receipt",
    "typing_shows_in_the_chat",
    "react_edit_and_delete_for_everyone",
    "check_numbers",
    "user_info",
    "privacy_settings",
    "profile_picture",
    "own_profile_picture_changes",
    "business_profile",
    "refusal_463",
    "timelock_restricts_new_chats_only",
    "dropped_connection_reconnects",
    "remote_logout",
    "ban_after_fast_sends_to_strangers",
    "unreachable_network_fails_fast",
];

/// Fails unless every check in [`CHECKS`] is either in `run` or named in `uncovered` (not
/// both), and prints the uncovered ones with their reasons.
pub fn assert_coverage(harness: &str, run: &[&str], uncovered: &[(&str, &str)]) {
    for (check, reason) in uncovered {
        println!("{harness}: not covered: {check}: {reason}");
        assert!(!reason.trim().is_empty(), "{check} is uncovered without a reason");
        assert!(!run.contains(check), "{check} is both run and named uncovered");
    }
    for check in CHECKS {
        assert!(
            run.contains(check) || uncovered.iter().any(|(c, _)| c == check),
            "{harness} neither runs nor names {check}"
        );
    }
    for check in run.iter().chain(uncovered.iter().map(|(c, _)| c)) {
        assert!(CHECKS.contains(check), "{check} is not a check of the suite");
    }
}

/// What the checks need: links, their database and the network's phones.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new link instance, as another worker process would hold; all share one database and
    /// one network.
    fn link(&self) -> Arc<dyn Link>;
    /// A link whose network is not there (nothing listens).
    fn unreachable_link(&self) -> Arc<dyn Link>;
    /// The database links keep credentials in.
    fn db(&self) -> &Db;
    /// The network's phones.
    fn phones(&self) -> &dyn Phones;
    /// Whether the link keeps credentials for `device` (it may connect without pairing).
    async fn has_credentials(&self, device: DeviceId) -> bool;
    /// Checks this harness cannot run, each with the reason.
    fn uncovered(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
}
