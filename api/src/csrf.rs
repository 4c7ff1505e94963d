//! CSRF protection for browser requests, by the double-submit pattern.
//!
//! Pages set a random `wafleet_csrf` cookie and embed the same value in their forms (`csrf_token`
//! field) and in a `<meta>` tag that the dashboard's script sends back as `X-CSRF-Token`. Another
//! site can make a browser send our cookies but cannot read them, so it cannot echo the token.
//!
//! A state-changing request must carry the token when a browser could have sent it on its own:
//! it carries our session cookie, or its body is a form (the only bodies a cross-site page can post
//! without a CORS preflight, which we never grant). JSON clients without cookies, and clients that
//! authenticate by `Authorization: Bearer` or `Basic` without our session cookie (the compatible
//! API's clients post multipart forms with Basic credentials), are not exposed to CSRF and pass. A request that carries the session cookie always needs the token, whatever other headers
//! it has: the cookie is what a forged request rides on, and the page routes act on it alone.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use wafleet_core::auth;

use crate::AppState;
use crate::error::ApiError;
use crate::session::SESSION_COOKIE;

/// Name of the CSRF cookie.
pub const CSRF_COOKIE: &str = "wafleet_csrf";
/// Header that carries the token on script requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Form field that carries the token on form posts.
pub const CSRF_FIELD: &str = "csrf_token";

/// Middleware that refuses unsafe requests without a matching CSRF token (403).
pub async fn protect(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(next.run(request).await);
    }
    let headers = request.headers();
    let jar = CookieJar::from_headers(headers);
    if jar.get(SESSION_COOKIE).is_none() {
        let credentials = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer ") || v.starts_with("Basic "));
        let form = content_type(headers).is_some_and(|ct| {
            ct.starts_with("application/x-www-form-urlencoded")
                || ct.starts_with("multipart/form-data")
                || ct.starts_with("text/plain")
        });
        // Without the cookie, a request with credentials is authenticated by them alone (or not
        // at all), and a cross-site page cannot make a browser send them: a browser only replays
        // Basic credentials the user typed into its own prompt, which wafleet never asks for.
        if credentials || !form {
            return Ok(next.run(request).await);
        }
    }
    let expected = jar
        .get(CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .ok_or_else(|| ApiError::Forbidden("missing CSRF cookie: reload the page and submit again".into()))?;
    let (provided, request) = match headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        Some(token) => (Some(token.to_owned()), request),
        None => token_from_form(request, state.settings.max_body_bytes).await?,
    };
    let provided = provided.ok_or_else(|| {
        ApiError::Forbidden(format!(
            "missing CSRF token: send the `X-CSRF-Token` header (or the `{CSRF_FIELD}` form field) with the value the page gave you"
        ))
    })?;
    if !auth::constant_time_eq(&provided, &expected) {
        return Err(ApiError::Forbidden(
            "CSRF token does not match: reload the page and submit again".into(),
        ));
    }
    Ok(next.run(request).await)
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// Reads `csrf_token` from a URL-encoded body and puts the body back for the handler.
async fn token_from_form(request: Request, limit: usize) -> Result<(Option<String>, Request), ApiError> {
    if !content_type(request.headers()).is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded")) {
        return Ok((None, request));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    Ok((token, Request::from_parts(parts, Body::from(bytes))))
}

/// The CSRF token for a page: the browser's existing one, or a new one set on `jar`.
pub fn token(jar: CookieJar, secure: bool) -> (CookieJar, String) {
    if let Some(existing) = jar.get(CSRF_COOKIE) {
        let value = existing.value().to_owned();
        return (jar, value);
    }
    let value = auth::random_secret();
    let cookie = Cookie::build((CSRF_COOKIE, value.clone()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure);
    (jar.add(cookie), value)
}
