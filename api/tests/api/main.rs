//! Black-box tests of the HTTP application: the real router and server on 127.0.0.1:0, a real
//! database per test, real HTTP (and a real browser in `browser`). Every test runs twice, on
//! SQLite (embedded default) and on PostgreSQL (scale-out), through [`on_both_backends!`].

/// Declares `sqlite::NAME` and `postgres::NAME` tests. Functions listed after `app:` take a
/// [`helpers::TestApp`] with default settings; those after `backend:` take the
/// [`helpers::Backend`] and start the app themselves (for tests of settings).
macro_rules! on_both_backends {
    (app: $($name:ident),* $(; backend: $($custom:ident),*)? $(,)?) => {
        on_both_backends!(@mod sqlite, Sqlite, $($name),* $(; $($custom),*)?);
        on_both_backends!(@mod postgres, Postgres, $($name),* $(; $($custom),*)?);
    };
    (@mod $module:ident, $backend:ident, $($name:ident),* $(; $($custom:ident),*)?) => {
        mod $module {
            use crate::helpers::{Backend, spawn_app};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(spawn_app(Backend::$backend).await).await
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $custom() {
                    super::$custom(Backend::$backend).await
                }
            )*)?
        }
    };
}

mod accounts;
mod actions;
mod actions_isolation;
mod analytics;
mod analytics_browser;
mod browser;
mod campaign_templates;
mod campaigns;
mod campaigns_browser;
mod campaigns_isolation;
mod chat_view;
mod chat_view_browser;
mod compat;
mod csrf;
mod demo;
mod devices;
mod docs;
mod errors;
mod helpers;
mod images;
mod isolation;
mod leads;
mod leads_browser;
mod leads_csv;
mod leads_isolation;
mod login_limits;
mod mcp;
#[path = "../support/mcp.rs"]
mod mcp_client;
mod mcp_isolation;
mod nul_bytes;
mod retention;
mod security_headers;
mod sends;
mod sessions;
mod templates;
mod templates_browser;
mod tokens;
mod tokens_browser;
mod waiting;
mod webhooks;
mod webhooks_browser;
mod webhooks_isolation;
mod webhooks_targets;
