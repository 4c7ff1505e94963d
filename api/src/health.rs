//! Liveness and readiness probes and Prometheus metrics, mounted by every role.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use wafleet_core::Db;

use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(|State(state): State<AppState>| ready(state.db.clone())))
        .route("/metrics", get(metrics))
}

/// The probes and metrics alone, for roles that serve no API (worker, scheduler).
pub fn probes(db: Db) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(move || ready(db.clone())))
        .route("/metrics", get(metrics))
}

/// Prometheus text format.
async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        wafleet_core::metrics::handle().render(),
    )
}

/// Liveness: the process answers. Plain `OK`, as the compatible API does.
async fn health() -> &'static str {
    "OK"
}

/// Readiness: the database answers.
async fn ready(db: Db) -> (StatusCode, &'static str) {
    match db.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(err) => {
            tracing::warn!(error = ?err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
