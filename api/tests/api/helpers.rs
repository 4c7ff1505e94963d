//! `spawn_app()`: the real server on its own port and its own database.

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use wafleet_api::AppState;
use wafleet_core::cache::{Invalidations, ReadCache};
use wafleet_core::link::SimulatedPhones;
use wafleet_core::shutdown::{self, ShutdownTrigger};
use wafleet_core::testing::TestDb;
use wafleet_core::types::DeviceId;
use wafleet_core::{Db, Settings};

pub use wafleet_core::testing::Backend;

/// A running server and what it stands on.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The server's database, for asserting what was (not) stored.
    pub db: Db,
    pub settings: Settings,
    /// Where the server's read cache hears of changes: through Redis on PostgreSQL (as from a
    /// worker process), in-process on SQLite.
    pub invalidations: Invalidations,
    _server: Server,
    _db: TestDb,
}

impl TestApp {
    /// A second API server over the same database and Redis, as another API process of the
    /// deployment behind the same load balancer.
    pub async fn another_server(&self) -> Server {
        Server::start(&self.db, &self.settings, &self._db, None).await
    }

    /// Announces that `device`'s data changed, as a worker does after writing it.
    pub async fn changed(&self, device: DeviceId) {
        self.invalidations.device_changed(device).await;
    }

    /// Refreshes the analytics roll-ups and announces it, as the scheduler's job does.
    pub async fn refresh_analytics(&self) {
        if self.db.refresh_analytics().await.expect("analytics roll-up") > 0 {
            self.invalidations
                .changed(&[wafleet_core::cache::Topic::Analytics])
                .await;
        }
    }
}

/// Starts the app with default settings on `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the app on `backend` after `configure` adjusts the settings.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(backend, configure, None).await
}

/// Starts the app in demo mode on `backend`, linking devices through `phones`.
pub async fn spawn_demo_app(backend: Backend, phones: std::sync::Arc<dyn SimulatedPhones>) -> TestApp {
    spawn(backend, |_| {}, Some(phones)).await
}

async fn spawn(
    backend: Backend,
    configure: impl FnOnce(&mut Settings),
    demo: Option<std::sync::Arc<dyn SimulatedPhones>>,
) -> TestApp {
    let test_db = TestDb::with_settings(backend, |s| {
        // No worker runs beside these tests: requests that wait for one give up quickly.
        s.worker_wait_secs = 1;
        configure(s)
    })
    .await;
    let (db, settings) = (test_db.db.clone(), test_db.settings.clone());
    wafleet_core::accounts::ensure_admin(&db, &settings)
        .await
        .expect("ensure admin");
    let server = Server::start(&db, &settings, &test_db, demo).await;
    TestApp {
        base: server.base.clone(),
        invalidations: server.invalidations.clone(),
        db,
        settings,
        _server: server,
        _db: test_db,
    }
}

/// One API server process's worth: its listener, read cache and invalidations. Stops when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its read cache's announcements (and followers'), as in [`TestApp::invalidations`].
    pub invalidations: Invalidations,
    trigger: ShutdownTrigger,
}

impl Server {
    /// Serves the API on a new port over `db`, with its own read cache, as one API process of a
    /// deployment does.
    async fn start(
        db: &Db,
        settings: &Settings,
        test_db: &TestDb,
        demo: Option<std::sync::Arc<dyn SimulatedPhones>>,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (trigger, shutdown) = shutdown::channel();
        let queues = test_db.queues().await;
        // The read cache as a real API process has it, following Redis on the scale-out backend.
        let cache = ReadCache::from_settings(settings);
        let invalidations = Invalidations::connect(settings, cache.clone())
            .await
            .expect("cache invalidations");
        tokio::spawn(wafleet_core::cache::follow(settings, cache.clone(), shutdown.clone()));
        if settings.redis_url.is_some() {
            wait_until_following(settings, &cache).await;
        }
        let mut state = AppState::new(db.clone(), std::sync::Arc::new(settings.clone()))
            .with_queues(queues)
            .with_cache(cache, invalidations.clone());
        if let Some(phones) = demo {
            state = state.with_demo(phones);
        }
        tokio::spawn(wafleet_api::serve(state, listener, shutdown));
        Server {
            base,
            invalidations,
            trigger,
        }
    }
}

/// Waits until `cache` follows the deployment's announcements. Once subscribed, the follower drops
/// everything cached so far (announcements made meanwhile are lost), so a page a test cached
/// before that would vanish under it. A probe entry changes once the follower has done that drop
/// or applied the probe's announcement, which it does only after the drop.
async fn wait_until_following(settings: &Settings, cache: &ReadCache) {
    let probe = wafleet_core::cache::Topic::Device(DeviceId(-1));
    let loads = std::sync::atomic::AtomicU32::new(0);
    let read = || {
        cache.get_or_load(probe, "following".into(), async {
            let n = loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(n.to_string()))
        })
    };
    let first = read().await.unwrap();
    let announcer = Invalidations::connect(settings, ReadCache::off())
        .await
        .expect("cache announcer");
    announcer.device_changed(DeviceId(-1)).await;
    for _ in 0..500 {
        if read().await.unwrap() != first {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the API's cache never followed the announcements");
}

impl Drop for Server {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

/// A client that keeps cookies and does not follow redirects (so tests see them).
pub fn browser_like_client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A logged-in browser session: cookies plus the CSRF token the dashboard page hands out.
pub struct Session {
    pub client: Client,
    pub base: String,
    pub csrf: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers `email` through the JSON API and opens the dashboard, as a browser would.
    pub async fn session(&self, email: &str) -> Session {
        let client = browser_like_client();
        let response = client
            .post(self.url("/api/register"))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "register {email}: {}",
            response.text().await.unwrap()
        );
        let page = client.get(self.url("/dashboard")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        Session {
            client,
            base: self.base.clone(),
            csrf: csrf_from_html(&html),
        }
    }
}

/// The token of `<meta name="csrf-token">` or of a `csrf_token` form field.
pub fn csrf_from_html(html: &str) -> String {
    let start = html
        .find("name=\"csrf-token\" content=\"")
        .map(|i| i + "name=\"csrf-token\" content=\"".len())
        .or_else(|| {
            html.find("name=\"csrf_token\" value=\"")
                .map(|i| i + "name=\"csrf_token\" value=\"".len())
        })
        .expect("page carries a CSRF token");
    html[start..].split('"').next().unwrap().to_owned()
}

impl Session {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Sends `method path` with a JSON body and the CSRF header.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .header("X-CSRF-Token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Adds a device and returns its id.
    pub async fn add_device(&self, name: &str, phone: Option<&str>) -> i64 {
        let response = self.post("/api/devices", json!({"name": name, "phone": phone})).await;
        let (status, body) = (response.status(), body(response).await);
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["results"]["id"].as_i64().unwrap()
    }

    /// The names of this user's devices.
    pub async fn device_names(&self) -> Vec<String> {
        let body = body(self.get("/api/devices").await).await;
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The JSON body of a response.
pub async fn body(response: Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts the status and that the envelope's message contains `needle`; returns the body.
pub async fn expect_error(response: Response, status: StatusCode, needle: &str) -> Value {
    let actual = response.status();
    let body = body(response).await;
    assert_eq!(actual, status, "unexpected status: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "message {message:?} should contain {needle:?}"
    );
    assert!(
        body["code"].is_string() && body["results"].is_null(),
        "error envelope: {body}"
    );
    body
}
