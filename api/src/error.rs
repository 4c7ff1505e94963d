//! The API's one error type. Each variant documents its status code; internal causes are logged
//! and answered with an opaque 500.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::envelope::Envelope;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON syntax, bad path or query).
    #[error("{0}")]
    BadRequest(String),
    /// 400 with code `ALREADY_LOGGED_IN`: pairing asked of a device whose session is linked and
    /// online, answered as the compatible API's clients expect.
    #[error("{0}")]
    AlreadyLoggedIn(String),
    /// 401: no valid session or API token, or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed (CSRF failure, registration closed).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing, or it belongs to someone else (never told apart).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 404 saying why: the thing existed but is no more (where a client expects 404 for it).
    #[error("{0}")]
    Missing(String),
    /// 405: the route exists but does not answer this method; the message lists those it does.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: clashes with existing data.
    #[error("{0}")]
    Conflict(String),
    /// 410: the thing existed and is gone for good; the message says why.
    #[error("{0}")]
    Gone(String),
    /// 413: the body is larger than the configured limit.
    #[error("request body is too large: the limit is {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: the body is not in the expected format.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid input; the message names the field and what to fix.
    #[error("{0}")]
    Invalid(String),
    /// 429: too many failed logins; retry after the given seconds.
    #[error("too many failed logins: try again in {0} seconds")]
    TooManyRequests(i64),
    /// 503: a dependency (the worker holding a device, WhatsApp) did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a fault on our side; details go to the log only.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// `Result` with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::AlreadyLoggedIn(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error of a load several requests shared (the read cache's): the same status and
    /// message for each of them.
    pub fn shared(err: std::sync::Arc<ApiError>) -> Self {
        std::sync::Arc::try_unwrap(err).unwrap_or_else(|shared| match &*shared {
            ApiError::BadRequest(m) => ApiError::BadRequest(m.clone()),
            ApiError::AlreadyLoggedIn(m) => ApiError::AlreadyLoggedIn(m.clone()),
            ApiError::Unauthorized(m) => ApiError::Unauthorized(m.clone()),
            ApiError::Forbidden(m) => ApiError::Forbidden(m.clone()),
            ApiError::NotFound(what) => ApiError::NotFound(what),
            ApiError::Missing(m) => ApiError::Missing(m.clone()),
            ApiError::Gone(m) => ApiError::Gone(m.clone()),
            ApiError::MethodNotAllowed(m) => ApiError::MethodNotAllowed(m.clone()),
            ApiError::Conflict(m) => ApiError::Conflict(m.clone()),
            ApiError::PayloadTooLarge(n) => ApiError::PayloadTooLarge(*n),
            ApiError::UnsupportedMediaType(m) => ApiError::UnsupportedMediaType(m.clone()),
            ApiError::Invalid(m) => ApiError::Invalid(m.clone()),
            ApiError::TooManyRequests(s) => ApiError::TooManyRequests(*s),
            ApiError::Unavailable(m) => ApiError::Unavailable(m.clone()),
            ApiError::Internal(e) => ApiError::Internal(anyhow::anyhow!("{e:#}")),
        })
    }

    /// Maps a storage error, naming what was not found.
    pub fn from_core(err: wafleet_core::Error, what: &'static str) -> Self {
        use wafleet_core::Error as E;
        match err {
            E::NotFound => ApiError::NotFound(what),
            E::Conflict(msg) => ApiError::Conflict(msg),
            E::Invalid(msg) => ApiError::Invalid(msg),
            E::Fenced => ApiError::Internal(anyhow::anyhow!("a stale lease holder's write reached the API")),
            E::Database(e) => ApiError::Internal(anyhow::Error::new(e).context("database query")),
            E::Other(e) => ApiError::Internal(e),
        }
    }
}

impl From<wafleet_core::Error> for ApiError {
    fn from(err: wafleet_core::Error) -> Self {
        ApiError::from_core(err, "resource")
    }
}

/// Adds the name of what was looked up to a storage `NotFound`.
pub trait OrNotFound<T> {
    /// `NotFound` becomes a 404 naming `what`; other errors map as usual.
    fn or_not_found(self, what: &'static str) -> ApiResult<T>;
}

impl<T> OrNotFound<T> for wafleet_core::Result<T> {
    fn or_not_found(self, what: &'static str) -> ApiResult<T> {
        self.map_err(|e| ApiError::from_core(e, what))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = ?cause, "request failed");
        }
        let code = match &self {
            ApiError::AlreadyLoggedIn(_) => "ALREADY_LOGGED_IN".into(),
            _ => status
                .canonical_reason()
                .unwrap_or("ERROR")
                .to_uppercase()
                .replace([' ', '-'], "_"),
        };
        let message = self.to_string();
        let body = Envelope {
            code,
            message: message.clone(),
            results: serde_json::Value::Null,
        };
        let mut response = (status, Json(body)).into_response();
        // Kept beside the body so a layer can answer the same refusal with another status (the
        // compatible routes answer 400 where wafleet's own answer 422) without parsing JSON.
        response.extensions_mut().insert(ErrorMessage(message));
        if let ApiError::TooManyRequests(secs) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The message of an error response, in its extensions.
#[derive(Clone, Debug)]
pub(crate) struct ErrorMessage(pub String);

/// Rejections of axum's extractors keep their status; the text says what to fix.
fn rejected(status: StatusCode, text: String, limit_hint: Option<usize>) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(limit_hint.unwrap_or_default()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("send the body as JSON with `Content-Type: application/json`".into())
        }
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Invalid(text),
        _ => ApiError::BadRequest(text),
    }
}

impl ApiError {
    /// Maps a JSON body rejection; `limit` is the body limit, named in 413 answers.
    pub fn from_json_rejection(rejection: JsonRejection, limit: usize) -> Self {
        rejected(rejection.status(), rejection.body_text(), Some(limit))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        rejected(rejection.status(), rejection.body_text(), None)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        rejected(rejection.status(), rejection.body_text(), None)
    }
}

/// The fallback for unknown routes.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    tracing::debug!(%method, %uri, "no route");
    ApiError::NotFound(if uri.path().starts_with("/api/") {
        "API route"
    } else {
        "page"
    })
}

/// Answers the router's 405 (empty, with the `Allow` header) as the envelope naming the methods
/// the route does answer, keeping `Allow`. It must wrap the whole router: the router adds `Allow`
/// outside every layer it was given.
pub async fn method_not_allowed(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let methods = response
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .replace(',', ", ");
    let mut answer = ApiError::MethodNotAllowed(format!("{path} answers {methods} only, not {method}")).into_response();
    // `Allow` and the security headers stay; the body is the envelope's.
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}
