//! Extractors whose rejections are [`ApiError`]s in the JSON envelope, not axum's plain text, and
//! which refuse text holding NUL characters (see [`crate::text`]).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;
use crate::text::{refuse_nul, refuse_nul_in_json};

/// A JSON request body. Wrong content type → 415, bad syntax → 400, wrong fields or a NUL
/// character in any string → 422, too large → 413 naming the limit.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // Read as a document first, so every string is checked whatever `T` makes of it.
        let axum::Json(document) = <axum::Json<serde_json::Value> as FromRequest<AppState>>::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::from_json_rejection(rejection, state.settings.max_body_bytes))?;
        refuse_nul_in_json(&document)?;
        serde_path_to_error::deserialize(document).map(Json).map_err(|err| {
            ApiError::Invalid(format!(
                "Failed to deserialize the JSON body into the target type: {err}"
            ))
        })
    }
}

/// A URL-encoded form body (the pages' forms). Wrong content type → 415, a field that does not
/// fit or holds a NUL character → 422.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Form<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(ApiError::UnsupportedMediaType(
                "send the form as `application/x-www-form-urlencoded`".into(),
            ));
        }
        let limit = state.settings.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
        for (name, value) in form_urlencoded::parse(&bytes) {
            refuse_nul(&name, &value)?;
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(Form)
            .map_err(|e| ApiError::Invalid(format!("the form does not fit: {e}")))
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

/// A query string; one that does not fit (an unknown value, `limit=1.9`, a missing required
/// parameter) → 400 naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> Query<T> {
    /// Parses the query string of `uri` (none is the same as an empty one).
    pub fn from_uri(uri: &axum::http::Uri) -> Result<Self, ApiError> {
        let raw = uri.query().unwrap_or_default();
        let parser = form_urlencoded::parse(raw.as_bytes());
        serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(parser))
            .map(Query)
            .map_err(|err| {
                let at = err.path().to_string();
                let inner = err.into_inner();
                if at == "." {
                    ApiError::BadRequest(format!("the query string does not fit: {inner}"))
                } else {
                    ApiError::BadRequest(format!("query parameter `{at}`: {inner}"))
                }
            })
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::from_uri(&parts.uri)
    }
}

/// A list's `limit` query parameter: `default` when left out, refused (422) outside 1 to `max`.
pub(crate) fn limit(asked: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = asked.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::Invalid(format!("limit: give 1 to {max}")))
    }
}

/// A `multipart/form-data` body. Another content type → 415; too large → 413 naming the limit.
pub struct Multipart(pub axum::extract::Multipart);

impl FromRequest<AppState> for Multipart {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        <axum::extract::Multipart as FromRequest<AppState>>::from_request(req, state)
            .await
            .map(Multipart)
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(state.settings.max_body_bytes)
                } else {
                    // The only other rejection: no `multipart/form-data` content type with a boundary.
                    ApiError::UnsupportedMediaType("send the body as `multipart/form-data` (with its boundary)".into())
                }
            })
    }
}
