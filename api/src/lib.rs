//! The stateless HTTP API and web dashboard.
//!
//! Each feature is a module with its own `router()`; [`app`] merges them, adds the OpenAPI
//! document, CSRF protection, body limits and tracing. Nothing here holds state between
//! requests except the database pool, so any number of replicas can run behind a load balancer.

mod accounts;
mod actions;
mod admin;
mod analytics;
mod campaigns;
mod chat_view;
mod compat;
mod compat_call;
mod compat_chats;
mod compat_devices;
mod compat_message;
mod compat_send;
mod compat_structured;
mod compat_user;
mod csrf;
mod demo;
mod device_webhooks;
mod devices;
mod envelope;
pub mod error;
mod error_docs;
mod extract;
mod frame;
mod headers;
pub mod health;
mod leads;
mod live;
mod mcp;
mod media_url;
mod openapi;
mod pages;
mod received_media;
mod retention;
mod scopes;
mod sends;
mod sequences;
mod session;
mod sessions;
mod templates;
mod text;
mod tokens;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use wafleet_core::cache::{Invalidations, ReadCache};
use wafleet_core::link::SimulatedPhones;
use wafleet_core::queue::Queues;
use wafleet_core::shutdown::Shutdown;
use wafleet_core::{Db, Settings};

pub use demo::Demo;
pub use error::ApiError;
pub use mcp::tool_table as mcp_tool_table;

/// What every handler can reach: one shared allocation, so the clone that routing makes for
/// every request is a reference count, not a copy of each part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct Shared {
    /// The database pool.
    pub db: Db,
    /// Settings of this process.
    pub settings: Arc<Settings>,
    /// In demo mode, the simulated phones the dashboard can use to link devices.
    pub demo: Option<demo::Demo>,
    /// The job queues; without them, accepted sends wait for the holder's next sweep.
    pub queues: Option<Queues>,
    /// The read cache in front of chat lists, messages pages and devices.
    pub cache: ReadCache,
    /// Where this process announces the devices it changes (to its own cache and, in scale-out
    /// mode, to every other API process's).
    pub invalidations: Invalidations,
    /// Where received files are kept (`MEDIA_DIR`), opened at first use ([`AppState::media`]).
    media: std::sync::OnceLock<wafleet_core::media_store::MediaStore>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State for a normal (non-demo) process, with a read cache of its own as `settings` ask.
    pub fn new(db: Db, settings: Arc<Settings>) -> Self {
        let cache = ReadCache::from_settings(&settings);
        AppState(Arc::new(Shared {
            db,
            settings,
            demo: None,
            queues: None,
            invalidations: Invalidations::Local(cache.clone()),
            cache,
            media: std::sync::OnceLock::new(),
        }))
    }

    /// The store of received files, opened (its directory made) once per process.
    pub fn media(&self) -> anyhow::Result<&wafleet_core::media_store::MediaStore> {
        if let Some(store) = self.0.media.get() {
            return Ok(store);
        }
        let store = wafleet_core::media_store::MediaStore::from_settings(&self.settings)?;
        Ok(self.0.media.get_or_init(|| store))
    }

    /// Uses `cache`, with writes announced to `invalidations` (which must reach `cache` too).
    pub fn with_cache(mut self, cache: ReadCache, invalidations: Invalidations) -> Self {
        let shared = Arc::make_mut(&mut self.0);
        shared.cache = cache;
        shared.invalidations = invalidations;
        self
    }

    /// Adds the job queues (every real process has them).
    pub fn with_queues(mut self, queues: Queues) -> Self {
        Arc::make_mut(&mut self.0).queues = Some(queues);
        self
    }

    /// Lets the dashboard link devices to `phones` (demo mode).
    pub fn with_demo(mut self, phones: Arc<dyn SimulatedPhones>) -> Self {
        Arc::make_mut(&mut self.0).demo = Some(demo::Demo::new(phones));
        self
    }
}

/// The whole HTTP application: pages, JSON API, OpenAPI document and health probes.
pub fn app(state: AppState) -> Router {
    // Installs the metrics recorder before the first request is counted.
    let _ = wafleet_core::metrics::handle();
    let (api, mut spec) = openapi::ApiDoc::router()
        .merge(accounts::router())
        .merge(tokens::router())
        .merge(devices::router())
        .merge(leads::router())
        .merge(campaigns::router())
        .merge(templates::router())
        .merge(sequences::router())
        .merge(analytics::router())
        .merge(retention::router())
        .merge(sessions::router())
        .merge(chat_view::router())
        .merge(received_media::router())
        .merge(compat::router())
        .merge(compat_devices::router())
        .merge(compat_chats::router())
        .merge(compat_user::router(state.settings.max_media_bytes))
        .merge(compat_message::router())
        .merge(compat_call::router())
        .merge(received_media::compat_router())
        .merge(compat_send::router(state.settings.max_media_bytes))
        .merge(compat_structured::router())
        .merge(sends::router())
        .merge(admin::router())
        .merge(actions::router())
        .merge(webhooks::router())
        .merge(device_webhooks::router())
        .merge(device_webhooks::compat_router())
        .merge(mcp::api_router())
        .split_for_parts();
    error_docs::document(&mut spec);
    let spec = Arc::new(spec);
    let router = Router::new()
        .merge(api)
        .merge(openapi::router(spec))
        .merge(pages::router())
        .merge(leads::page_router())
        .merge(chat_view::page_router())
        .merge(campaigns::page_router())
        .merge(templates::page_router())
        .merge(sequences::page_router())
        .merge(actions::page_router())
        .merge(admin::page_router())
        .merge(live::router())
        .merge(demo::router())
        .merge(health::router())
        .merge(mcp::router(state.clone()))
        .fallback(error::no_route)
        .layer(axum::middleware::from_fn_with_state(state.clone(), csrf::protect))
        .layer(axum::middleware::from_fn(text::refuse_nul_in_uri))
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes));
    let app = headers::add(router)
        .layer(axum::middleware::from_fn(count_requests))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    // A router of its own around the whole application: see `error::method_not_allowed`.
    Router::new()
        .fallback_service(app)
        .layer(axum::middleware::from_fn(error::method_not_allowed))
}

/// Counts requests by status class and records their latency.
async fn count_requests(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let class = match response.status().as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(wafleet_core::metrics::HTTP_REQUESTS, "status" => class).increment(1);
    metrics::histogram!(wafleet_core::metrics::HTTP_DURATION).record(started.elapsed().as_secs_f64());
    response
}

/// Binds `settings.host:settings.port`, with a message that says what to do when it is taken.
pub async fn bind(settings: &Settings) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(settings.host, settings.port);
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (is the port in use? set PORT to another)"))
}

/// Serves [`app`] on `listener` until `shutdown`, then lets in-flight requests finish for up to
/// the configured shutdown timeout.
pub async fn serve(state: AppState, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let deadline = Duration::from_secs(state.settings.shutdown_timeout_secs);
    tracing::info!(addr = %listener.local_addr()?, "HTTP server listening");
    let router = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let draining = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown.wait());
    tokio::select! {
        result = server => result.context("HTTP server failed"),
        () = async { draining.wait().await; tokio::time::sleep(deadline).await } => {
            tracing::warn!(?deadline, "requests still running at the shutdown deadline; closing");
            Ok(())
        }
    }
}
