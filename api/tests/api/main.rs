//! Black-box tests of the HTTP application: the real router and server on 127.0.0.1:0, a real
//! database per test, real HTTP (and a real browser in `browser`). Every test runs twice, on
//! SQLite (embedded default) and on PostgreSQL (scale-out), through
//! `wafleet_core::testing::on_both_backends!` (most with an app of their own from
//! `helpers::spawn_app`).

mod accounts;
mod actions;
mod actions_isolation;
mod admin;
mod admin_browser;
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
mod compat_chats;
mod compat_devices;
mod compat_message;
mod csrf;
mod demo;
mod device_webhooks;
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
mod sequences;
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
