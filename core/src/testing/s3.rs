//! An S3-compatible server for the tests: moto's (`moto[server]` from PyPI, pinned), a widely
//! used implementation of the S3 API, on a loopback port of its own, stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::config::Secret;

/// The pinned server: `moto` on PyPI.
pub const MOTO_VERSION: &str = "5.2.6";

/// A running S3 server; stopped when dropped.
pub struct S3Server {
    child: Child,
    /// Its address, `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts a server (installing it on first use) and waits until it answers.
    pub async fn start() -> S3Server {
        let python = tokio::task::spawn_blocking(|| {
            super::python::virtualenv(
                &format!("moto-{MOTO_VERSION}"),
                "WAFLEET_MOTO_VENV",
                &format!("moto[server]=={MOTO_VERSION}"),
                "moto.server",
            )
        })
        .await
        .expect("installing the S3 server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the S3 server");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let up = super::poll_for(Duration::from_secs(30), async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()
        })
        .await;
        assert!(
            up.is_some(),
            "the S3 server did not listen on {} within 30 s",
            server.endpoint
        );
        server
    }

    /// Creates the bucket `name`.
    pub async fn create_bucket(&self, name: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("the S3 server answers");
        assert!(
            response.status().is_success(),
            "creating bucket {name}: {}",
            response.status()
        );
    }

    /// The options that point a media store at this server (`Settings::media_options`).
    pub fn options(&self) -> Vec<(String, Secret)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "wafleet-test"),
            ("aws_secret_access_key", "wafleet-test-secret"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.parse().expect("infallible")))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
