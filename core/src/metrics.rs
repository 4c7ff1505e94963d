//! Prometheus metrics. Every role installs the same recorder and serves it at `GET /metrics`.
//!
//! | Metric | Kind | Meaning |
//! |---|---|---|
//! | `wafleet_sessions_held{worker}` | gauge | device sessions this worker holds |
//! | `wafleet_leases_claimed_total{worker}` | counter | device leases claimed |
//! | `wafleet_leases_lost_total{worker}` | counter | leases found taken by another worker (stepped down) |
//! | `wafleet_leases_handed_off_total{worker}` | counter | devices given to other workers (balancing, shutdown) |
//! | `wafleet_devices_wanted` | gauge | devices whose owners want a session |
//! | `wafleet_devices_unheld` | gauge | of those, held by no live worker: **scale workers on this** |
//! | `wafleet_workers_live` | gauge | workers with a recent heartbeat |
//! | `wafleet_messages_stored_total` | counter | incoming personal messages stored (replays not counted) |
//! | `wafleet_jobs_total{queue,outcome}` | counter | job runs by outcome: `done`, `retried`, `dead` (dead letters) |
//! | `wafleet_queue_depth{queue}` | gauge | jobs waiting in a queue (`sends`: queued or in-flight sends across all workers) |
//! | `wafleet_sends_total{status}` | counter | outbound sends by how they ended: `sent`, `failed`, `unknown` |
//! | `wafleet_webhook_deliveries_total{outcome}` | counter | webhook attempts: `delivered`, `retried`, `dead` |
//! | `wafleet_flush_batch_rows` | histogram | events written per ingest batch |
//! | `wafleet_flush_seconds` | histogram | time to write one ingest batch |
//! | `wafleet_device_actions_total{kind}` | counter | actions taken from a device's actions page or API: `test_send`, `check_numbers`, `broadcast` |
//! | `wafleet_broadcast_recipients_total` | counter | recipients of accepted broadcasts (each one send) |
//! | `wafleet_http_requests_total{status}` | counter | HTTP requests answered, by status class (`2xx`, `4xx`, …) |
//! | `wafleet_http_request_duration_seconds` | summary | HTTP request latency |

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Device sessions held by a worker.
pub const SESSIONS_HELD: &str = "wafleet_sessions_held";
/// Leases claimed.
pub const LEASES_CLAIMED: &str = "wafleet_leases_claimed_total";
/// Leases lost to another worker.
pub const LEASES_LOST: &str = "wafleet_leases_lost_total";
/// Devices handed to other workers.
pub const LEASES_HANDED_OFF: &str = "wafleet_leases_handed_off_total";
/// Workers found dead by their liveness lock, whose devices were moved before their leases expired.
pub const WORKERS_BURIED: &str = "wafleet_workers_buried_total";
/// Devices that want a session.
pub const DEVICES_WANTED: &str = "wafleet_devices_wanted";
/// Devices that want a session and have no live holder.
pub const DEVICES_UNHELD: &str = "wafleet_devices_unheld";
/// Live workers.
pub const WORKERS_LIVE: &str = "wafleet_workers_live";
/// Incoming messages stored.
pub const MESSAGES_STORED: &str = "wafleet_messages_stored_total";
/// Job runs by queue and outcome.
pub const JOBS: &str = "wafleet_jobs_total";
/// Jobs waiting per queue.
pub const QUEUE_DEPTH: &str = "wafleet_queue_depth";
/// Outbound sends by how they ended.
pub const SENDS: &str = "wafleet_sends_total";
/// Webhook delivery attempts by outcome.
pub const WEBHOOK_DELIVERIES: &str = "wafleet_webhook_deliveries_total";
/// Events written per ingest batch.
pub const FLUSH_BATCH_ROWS: &str = "wafleet_flush_batch_rows";
/// Seconds to write one ingest batch.
pub const FLUSH_SECONDS: &str = "wafleet_flush_seconds";
/// Reads answered by the read cache (`result="hit"`) or the database (`result="miss"`).
pub const READ_CACHE: &str = "wafleet_read_cache_total";
/// Credentials resolved from the read cache (`result="hit"`) or the database (`result="miss"`).
pub const CALLER_CACHE: &str = "wafleet_caller_cache_total";
/// Entries in this process's read cache, as of its last cleanup.
pub const READ_CACHE_ENTRIES: &str = "wafleet_read_cache_entries";
/// Device actions taken (test sends, number checks, broadcasts) by kind.
pub const DEVICE_ACTIONS: &str = "wafleet_device_actions_total";
/// MCP tool calls, by whether they succeeded (`ok="true"` or `"false"`).
pub const MCP_TOOL_CALLS: &str = "wafleet_mcp_tool_calls_total";
/// Recipients of accepted broadcasts.
pub const BROADCAST_RECIPIENTS: &str = "wafleet_broadcast_recipients_total";
/// Images given to be sent, by outcome: `compressed`, `too_large` (refused from the header, never
/// decoded) or `unreadable`.
pub const IMAGES: &str = "wafleet_images_total";
/// HTTP requests answered.
pub const HTTP_REQUESTS: &str = "wafleet_http_requests_total";
/// HTTP request latency.
pub const HTTP_DURATION: &str = "wafleet_http_request_duration_seconds";

/// The process's recorder, installed on first use; render it for `GET /metrics`.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; metrics then go there instead.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(SESSIONS_HELD, "Device sessions this worker holds");
    describe_counter!(LEASES_CLAIMED, "Device leases claimed");
    describe_counter!(LEASES_LOST, "Leases found taken by another worker");
    describe_counter!(LEASES_HANDED_OFF, "Devices given to other workers");
    describe_counter!(
        WORKERS_BURIED,
        "Workers found dead by their liveness lock, their devices moved before their leases expired"
    );
    describe_gauge!(DEVICES_WANTED, "Devices whose owners want a session");
    describe_gauge!(DEVICES_UNHELD, "Devices that want a session but have no live holder");
    describe_gauge!(WORKERS_LIVE, "Workers with a recent heartbeat");
    describe_counter!(MESSAGES_STORED, "Incoming personal messages stored");
    describe_counter!(JOBS, "Job runs by queue and outcome (done, retried, dead)");
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting per queue");
    describe_counter!(SENDS, "Outbound sends by how they ended");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts by outcome (delivered, retried, dead)"
    );
    describe_histogram!(FLUSH_BATCH_ROWS, "Events written per ingest batch");
    describe_histogram!(FLUSH_SECONDS, metrics::Unit::Seconds, "Time to write one ingest batch");
    describe_counter!(
        READ_CACHE,
        "Reads answered from the read cache (hit) or the database (miss)"
    );
    describe_counter!(
        CALLER_CACHE,
        "Session cookies and API tokens resolved from the cache (hit) or the database (miss)"
    );
    describe_gauge!(READ_CACHE_ENTRIES, "Entries in the read cache after its last cleanup");
    describe_counter!(
        IMAGES,
        "Images given to be sent, by outcome (compressed, too_large, unreadable)"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by status class");
    describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, "HTTP request latency");
}
