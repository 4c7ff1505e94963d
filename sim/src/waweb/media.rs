//! The simulated media host: linked devices and phones upload encrypted media (`POST
//! /mms/{type}/{token}`) and fetch it by its direct path (`GET /v/…`). It speaks plain HTTP on
//! loopback; wa-rs always builds `https://` URLs, so the adapter is told to use plain HTTP for
//! the simulator (`WaLinkConfig::plain_http_media`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use rand::Rng;
use wa_rs_binary::builder::NodeBuilder;
use wa_rs_binary::node::Node;
use wafleet_core::sync;

/// Uploaded blobs by direct path.
#[derive(Default)]
pub(crate) struct MediaStore {
    /// Encrypted blobs.
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    /// `host:port` of the HTTP listener, once started.
    host: Mutex<String>,
}

impl MediaStore {
    /// The blob at `direct_path`.
    pub fn get(&self, direct_path: &str) -> Option<Vec<u8>> {
        let blobs = sync::lock(&self.blobs);
        blobs.get(direct_path).cloned()
    }

    /// Stores a blob; returns its direct path.
    pub fn put(&self, data: Vec<u8>) -> String {
        let id: [u8; 12] = rand::rng().random();
        let path = format!(
            "/v/t62.7118-24/{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let mut blobs = sync::lock(&self.blobs);
        blobs.insert(path.clone(), data);
        path
    }

    /// Stores `data` at `direct_path` (replacing what was there).
    pub fn put_at(&self, direct_path: &str, data: Vec<u8>) {
        sync::lock(&self.blobs).insert(direct_path.to_owned(), data);
    }

    /// `host:port` devices upload to.
    pub fn host(&self) -> String {
        sync::lock(&self.host).clone()
    }

    /// The `media_conn` answer: where to upload and with what auth.
    pub fn media_conn(&self) -> Node {
        NodeBuilder::new("media_conn")
            .attr("auth", "sim-media-auth")
            .attr("ttl", "3600")
            .attr("max_buckets", "12")
            .children([NodeBuilder::new("host").attr("hostname", self.host()).build()])
            .build()
    }
}

/// The largest file the media host takes: WhatsApp's own limit for documents.
const MAX_UPLOAD_BYTES: usize = 2 << 30;

/// Starts the media host on `host` (port 0: a free one).
pub(crate) async fn start(store: Arc<MediaStore>, host: &str) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind((host, 0))
        .await
        .context("binding the media host")?;
    let addr = listener.local_addr().context("reading the media host's address")?;
    *sync::lock(&store.host) = addr.to_string();
    let app = Router::new()
        .route("/mms/{kind}/{token}", post(upload))
        .route("/v/{*rest}", get(download))
        // WhatsApp takes videos and documents far over axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .with_state(store);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::warn!(%err, "the media host stopped");
        }
    });
    Ok(addr)
}

async fn upload(
    State(store): State<Arc<MediaStore>>,
    Path((_kind, _token)): Path<(String, String)>,
    body: Bytes,
) -> axum::Json<serde_json::Value> {
    let direct_path = store.put(body.to_vec());
    let url = format!("https://{}{direct_path}", store.host());
    axum::Json(serde_json::json!({ "url": url, "direct_path": direct_path }))
}

async fn download(State(store): State<Arc<MediaStore>>, uri: Uri) -> Result<Vec<u8>, StatusCode> {
    store.get(uri.path()).ok_or(StatusCode::NOT_FOUND)
}
