//! Extractors whose rejections are [`ApiError`]s in the JSON envelope, not axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON request body. Wrong content type → 415, bad syntax → 400, wrong fields → 422,
/// too large → 413 naming the limit.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        <axum::Json<T> as FromRequest<AppState>>::from_request(req, state)
            .await
            .map(|axum::Json(value)| Json(value))
            .map_err(|rejection| ApiError::from_json_rejection(rejection, state.settings.max_body_bytes))
    }
}

/// An optional JSON body: absent when the request has no `Content-Type` (an empty POST).
impl<T: DeserializeOwned> OptionalFromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        if !req.headers().contains_key(header::CONTENT_TYPE) {
            return Ok(None);
        }
        <Json<T> as FromRequest<AppState>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// A path parameter; a malformed one (e.g. `/api/devices/abc`) → 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(ApiError::from)
    }
}
