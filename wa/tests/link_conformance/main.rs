//! The `Link` conformance suite (`wafleet_sim::conformance`) against the wa-rs adapter: the
//! unmodified client through `WaLink`, its state in wafleet's database, talking to the
//! simulator's WhatsApp Web front end over real sockets, on SQLite and on PostgreSQL. The checks
//! the front end or wa-rs cannot support are named with the reason in
//! [`harness::UNCOVERED`], and `coverage` fails if a check is neither run nor named.

mod harness;

use wafleet_core::testing::{Backend, TestDb};
use wafleet_sim::conformance;

use harness::WawebHarness;

/// Runs `check` against a fresh front end and database on `backend`.
async fn run<F, Fut>(backend: Backend, check: F)
where
    F: FnOnce(WawebHarness) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter("wafleet_sim=debug,wafleet_wa=debug,wa_rs=info")
        .with_test_writer()
        .try_init();
    let test_db = TestDb::new(backend).await;
    let harness = WawebHarness::start(test_db.db.clone())
        .await
        .expect("start the front end");
    check(harness).await;
}

/// Declares `sqlite::NAME` and `postgres::NAME` for each check run, and [`RUN`].
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
    send_text_gets_delivered_then_read,
    image_with_caption,
    check_numbers,
    dropped_connection_reconnects,
    remote_logout,
    unreachable_network_fails_fast,
);

/// Every check of the suite either runs above or is named as not covered, with the reason.
#[test]
fn coverage() {
    conformance::assert_coverage("WaLink against the WhatsApp Web front end", RUN, harness::UNCOVERED);
}
