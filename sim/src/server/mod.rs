//! The simulator server: device WebSockets at `/ws` (see [`crate::protocol`]) and the control
//! API at `/control` (see [`crate::control`]), on one port, plus a small live page at `/`.

mod conn;
mod control;
mod flood;
mod page;
mod sessions;
mod traffic;
mod waweb_control;
mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wafleet_core::shutdown::Shutdown;
use wafleet_core::sync;

use crate::SimConfig;
use world::World;
pub(crate) use world::message_id;

/// The simulator's shared state.
pub(crate) struct Sim {
    /// Settings, fixed at start.
    pub config: SimConfig,
    /// The network.
    world: Mutex<World>,
    /// The WhatsApp Web front end beside it, once attached (`--waweb-port`).
    pub(crate) waweb: std::sync::OnceLock<Arc<crate::waweb::WaWebHandle>>,
    /// The address it listens on (profile pictures are served there).
    pub(crate) addr: SocketAddr,
}

impl Sim {
    /// The network, locked (a panic elsewhere leaves the model usable: every change is small).
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        sync::lock(&self.world)
    }
}

/// A control request that cannot be done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// 404: no such account, code or device.
    #[error("{0}")]
    NotFound(String),
    /// 409: not in this state (e.g. banned).
    #[error("{0}")]
    Conflict(String),
    /// 422: a malformed request.
    #[error("{0}")]
    Invalid(String),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self {
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        (status, axum::Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

/// A running simulator; stops when dropped or on [`SimHandle::stop`].
pub struct SimHandle {
    /// Where it listens.
    addr: SocketAddr,
    /// The model, to close every session on stop.
    sim: Arc<Sim>,
    /// Ends the HTTP server.
    stop: Option<oneshot::Sender<()>>,
    /// The HTTP server's task.
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The device WebSocket URL, for [`crate::SimLink::new`].
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The control API's base URL, for [`crate::ControlClient::new`].
    pub fn control_url(&self) -> String {
        format!("http://{}/control", self.addr)
    }

    /// Serves the phones of `waweb` under `/control/waweb` (once; later calls are ignored).
    pub fn attach_waweb(&self, waweb: Arc<crate::waweb::WaWebHandle>) {
        let _ = self.sim.waweb.set(waweb);
    }

    /// A client of this simulator's control API.
    pub fn control(&self) -> crate::ControlClient {
        crate::ControlClient::new(self.control_url())
    }

    /// Drops every session and stops listening; returns once the server has stopped.
    pub async fn stop(mut self) {
        self.shut();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn shut(&mut self) {
        let mut w = self.sim.lock();
        w.closed = true;
        for conn in w.conns.keys() {
            w.close(*conn);
        }
        drop(w);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shut();
    }
}

/// The simulator's routes.
fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/ws", axum::routing::get(conn::upgrade))
        .route("/", axum::routing::get(page::page))
        .route("/v/pps/{file}", axum::routing::get(profile_picture))
        .route("/v/m/{id}", axum::routing::get(media))
        .nest("/control", control::router())
        .nest("/control/waweb", waweb_control::router())
        .with_state(sim)
}

/// `GET /v/pps/{digits}_{id}.jpg`: the profile picture `id` of the account of `digits`, while it
/// is its picture (404 otherwise, as WhatsApp's expired links are).
async fn profile_picture(
    axum::extract::State(sim): axum::extract::State<Arc<Sim>>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    let picture = file
        .strip_suffix(".jpg")
        .and_then(|name| name.split_once('_'))
        .and_then(|(digits, id)| {
            let w = sim.lock();
            let current = w
                .numbers
                .get(digits)
                .and_then(|rule| rule.profile.picture_id.as_deref())
                == Some(id);
            current.then(|| {
                w.pictures
                    .get(digits)
                    .cloned()
                    .unwrap_or_else(|| crate::control::PROFILE_PICTURE.to_vec())
            })
        });
    match picture {
        Some(jpeg) => ([(axum::http::header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /v/m/{id}`: a file a person sent in a message (404 for an unknown id).
async fn media(
    axum::extract::State(sim): axum::extract::State<Arc<Sim>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match sim.lock().media.get(&id).cloned() {
        Some((mime, bytes)) => ([(axum::http::header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts a simulator in this process (port 0 picks a free one).
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("binding the simulator to {}:{}", config.host, config.port))?;
    let addr = listener.local_addr().context("reading the simulator's address")?;
    let world = World {
        history_chats: config.history_chats,
        ..World::default()
    };
    let sim = Arc::new(Sim {
        config,
        world: Mutex::new(world),
        waweb: std::sync::OnceLock::new(),
        addr,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(Arc::clone(&sim));
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(err) = serve.await {
            tracing::error!(%err, "the simulator's server failed");
        }
    });
    tracing::info!(%addr, "WhatsApp network simulator listening");
    Ok(SimHandle {
        addr,
        sim,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Runs a simulator until `shutdown` (the `wafleet sim` role).
pub async fn run(config: SimConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let waweb = match config.waweb_port {
        Some(port) => Some(Arc::new(
            crate::waweb::start(crate::waweb::WaWebConfig::from_sim(&config, port)).await?,
        )),
        None => None,
    };
    let handle = start(config).await?;
    if let Some(waweb) = &waweb {
        handle.attach_waweb(Arc::clone(waweb));
    }
    tracing::info!(ws = %handle.ws_url(), control = %handle.control_url(), "simulator ready");
    if let Some(waweb) = &waweb {
        tracing::info!(url = %waweb.url(), "WhatsApp Web front end ready (WA_SERVER_URL)");
    }
    shutdown.wait().await;
    handle.stop().await;
    // The simulator's state held the other reference; dropping a handle stops it too.
    if let Some(waweb) = waweb.and_then(|w| Arc::try_unwrap(w).ok()) {
        waweb.stop().await;
    }
    Ok(())
}
