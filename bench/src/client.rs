//! The cluster's HTTP API as a user sees it: an API token, and JSON in the response envelope.

use anyhow::{Context, ensure};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wafleet_core::Db;
use wafleet_core::auth;
use wafleet_core::types::UserId;

/// A user's API token and the API process it talks to.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    /// `Bearer …`, for load generators that build their own requests.
    pub authorization: String,
}

/// The response envelope's payload.
#[derive(serde::Deserialize)]
struct Envelope<T> {
    results: T,
}

impl ApiClient {
    /// A new API token for `user`, used against the API on `port`.
    pub async fn new(db: &Db, user: UserId, port: u16) -> anyhow::Result<ApiClient> {
        let token = format!("{}{}", auth::API_TOKEN_PREFIX, auth::random_secret());
        db.create_api_token(user, &format!("bench {port}"), &auth::digest(&token), "bench")
            .await
            .context("creating an API token")?;
        Ok(ApiClient {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            authorization: format!("Bearer {token}"),
        })
    }

    /// `method path` with `body` as JSON; the envelope's `results`, or an error naming the
    /// status and the API's message.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.authorization);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "{method} {path}: {status}: {text}");
        let envelope: Envelope<T> =
            serde_json::from_str(&text).with_context(|| format!("{method} {path}: unexpected answer {text}"))?;
        Ok(envelope.results)
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call::<(), T>(reqwest::Method::GET, path, None).await
    }
}
