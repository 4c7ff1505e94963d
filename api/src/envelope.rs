//! The response envelope shared with the REST API wafleet is compatible with:
//! `{"code": "SUCCESS", "message": "…", "results": …}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A JSON response in the compatible envelope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Envelope<T> {
    /// `SUCCESS`, or an upper-case error code such as `NOT_FOUND`.
    #[schema(example = "SUCCESS")]
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// The payload (`null` on errors).
    pub results: T,
}

/// A successful response with `status`.
pub struct Reply<T> {
    status: StatusCode,
    body: Envelope<T>,
}

/// 200 with `results`.
pub fn ok<T: Serialize>(message: impl Into<String>, results: T) -> Reply<T> {
    Reply {
        status: StatusCode::OK,
        body: Envelope {
            code: "SUCCESS".into(),
            message: message.into(),
            results,
        },
    }
}

/// 201 with the created `results`.
pub fn created<T: Serialize>(message: impl Into<String>, results: T) -> Reply<T> {
    Reply {
        status: StatusCode::CREATED,
        ..ok(message, results)
    }
}

/// 202 with `results`: accepted, carried out in the background.
pub fn accepted<T: Serialize>(message: impl Into<String>, results: T) -> Reply<T> {
    Reply {
        status: StatusCode::ACCEPTED,
        ..ok(message, results)
    }
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// 200 with `results`, served from the read cache while nothing of `topic` has changed since it
/// was stored. `what` names everything else the response depends on (the caller, the route, its
/// parameters); `load` runs on a miss, and its errors are never cached.
pub async fn cached_ok<T, F>(
    state: &crate::AppState,
    topic: wafleet_core::cache::Topic,
    what: String,
    message: impl Into<String>,
    load: F,
) -> crate::error::ApiResult<Response>
where
    T: Serialize,
    F: std::future::Future<Output = crate::error::ApiResult<T>>,
{
    let message = message.into();
    let body = state
        .cache
        .get_or_load(topic, what, async {
            let reply = ok(message, load.await?);
            let json = serde_json::to_vec(&reply.body).map_err(anyhow::Error::from)?;
            Ok::<_, crate::error::ApiError>(bytes::Bytes::from(json))
        })
        .await
        .map_err(crate::error::ApiError::shared)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A cache key from the parts a response depends on; lengths keep `("a,b", "c")` apart from
/// `("a", "b,c")`.
pub fn cache_key(parts: &[&str]) -> String {
    parts.iter().map(|p| format!("{}:{p}", p.len())).collect()
}
