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

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
