//! The `Link` conformance suite against `SimLink` and an in-process simulator over real
//! sockets on 127.0.0.1, on SQLite and on PostgreSQL (each test its own database and simulator).

use wafleet_core::testing::{Backend, TestDb};
use wafleet_sim::conformance::{self, SimHarness};

/// Runs `check` against a fresh simulator and database on `backend`.
async fn run<F, Fut>(backend: Backend, check: F)
where
    F: FnOnce(SimHarness) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter("wafleet_sim=debug")
        .with_test_writer()
        .try_init();
    let test_db = TestDb::new(backend).await;
    let harness = SimHarness::start(test_db.db.clone())
        .await
        .expect("start the simulator");
    check(harness).await;
}

/// Declares `sqlite::NAME` and `postgres::NAME` for each conformance check.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        /// The checks this suite runs.
        const RUN: &[&str] = &[$(stringify!($name)),*];
        on_both_backends!(@mod sqlite, Sqlite, $($name),*);
        on_both_backends!(@mod postgres, Postgres, $($name),*);
    };
    (@mod $module:ident, $backend:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(wafleet_core::testing::Backend::$backend, |h| async move {
                        super::conformance::$name(&h).await
                    })
                    .await
                }
            )*
        }
    };
}

on_both_backends!(
    qr_pairing_with_refreshing_codes,
    pair_code_pairing,
    reconnect_from_another_link,
    incoming_message_acked_once_and_replayed_until_then,
    non_personal_chats_never_surface,
    send_text_gets_delivered_then_read,
    image_with_caption,
    check_numbers,
    refusal_463,
    dropped_connection_reconnects,
    remote_logout,
    ban_after_fast_sends_to_strangers,
    unreachable_network_fails_fast,
);

/// The simulator's own link runs every check of the suite.
#[test]
fn coverage() {
    conformance::assert_coverage("SimLink", RUN, &[]);
}
