//! Who is calling: a browser session cookie or an API token, resolved by extractors.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use wafleet_core::auth;
use wafleet_core::cache::Topic;
use wafleet_core::db::{Caller, User};

use crate::AppState;
use crate::error::ApiError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "wafleet_session";

/// What a browser session with a temporary password may still call: changing it, reading who it
/// is, and logging out.
const UNTIL_PASSWORD_CHANGED: [&str; 3] = ["/api/account/password", "/api/me", "/api/logout"];

/// The authenticated caller of a JSON route: a session cookie or `Authorization: Bearer <token>`.
/// Rejects with 401, or 403 when the token's scopes do not cover the route (see [`crate::scopes`]).
#[derive(Clone, Debug)]
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        CurrentCaller::from_request_parts(parts, state)
            .await
            .map(|CurrentCaller(caller)| CurrentUser(caller.user))
    }
}

/// The API token an `Authorization` header carries: `Bearer <token>`, or Basic with the token as
/// the password (as clients of the upstream REST API send it).
pub(crate) fn presented_token(value: &HeaderValue) -> Option<String> {
    use base64::Engine as _;
    let value = value.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        Some(token.trim().to_owned())
    } else {
        let basic = value.strip_prefix("Basic ")?;
        let pair = base64::engine::general_purpose::STANDARD.decode(basic.trim()).ok()?;
        let pair = String::from_utf8(pair).ok()?;
        pair.split_once(':').map(|(_, password)| password.to_owned())
    }
}

/// [`CurrentUser`] with the API token the call came with, if any (none for a browser session).
#[derive(Clone, Debug)]
pub struct CurrentCaller(pub Caller);

impl FromRequestParts<AppState> for CurrentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = presented_token(value).ok_or_else(|| {
                ApiError::Unauthorized(
                    "the Authorization header must be `Bearer <API token>` (or Basic with the token as password)"
                        .into(),
                )
            })?;
            let caller = token_caller(state, &token).await?;
            crate::scopes::allow(&caller, &parts.method, parts.uri.path())?;
            return Ok(CurrentCaller(caller));
        }
        let user = session_user(parts, state).await?.ok_or_else(|| {
            ApiError::Unauthorized("log in first, or send an API token as `Authorization: Bearer <token>`".into())
        })?;
        if user.must_change_password && !UNTIL_PASSWORD_CHANGED.contains(&parts.uri.path()) {
            return Err(ApiError::Forbidden(
                "an administrator set a temporary password: choose a new one first \
                 (`POST /api/account/password`, or the account page)"
                    .into(),
            ));
        }
        Ok(CurrentCaller(Caller { user, token: None }))
    }
}

impl OptionalFromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        Ok(session_user(parts, state).await?.map(CurrentUser))
    }
}

/// The logged-in user of a page; without a session the browser is sent to the login page, and
/// with a temporary password to the account page to change it.
#[derive(Clone, Debug)]
pub struct PageUser(pub User);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match session_user(parts, state).await {
            Ok(Some(user)) if user.must_change_password && parts.uri.path() != "/account" => {
                Err(Redirect::to("/account").into_response())
            }
            Ok(Some(user)) => Ok(PageUser(user)),
            Ok(None) => Err(Redirect::to("/login").into_response()),
            Err(err) => Err(err.into_response()),
        }
    }
}

/// The owner of the live API token `token` and what the token allows; 401 when it is unknown or
/// revoked. Cached (see [`ReadCache::caller`](wafleet_core::cache::ReadCache::caller)): revoking
/// announces it.
pub(crate) async fn token_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let digest = auth::digest(token.trim());
    state
        .cache
        .caller(&format!("t{digest}"), async {
            state
                .db
                .api_token_caller(&digest)
                .await?
                .ok_or_else(|| ApiError::Unauthorized("the API token is unknown or revoked".into()))
        })
        .await
        .map_err(ApiError::shared)
}

/// The account of the request's session cookie, if it has a live one. Cached like
/// [`token_caller`]: logging out and changing the password announce it.
async fn session_user(parts: &Parts, state: &AppState) -> Result<Option<User>, ApiError> {
    let Some(digest) = cookie_digest(&CookieJar::from_headers(&parts.headers)) else {
        return Ok(None);
    };
    let caller = state
        .cache
        .caller(&format!("s{digest}"), async {
            state
                .db
                .session_user(&digest)
                .await?
                .map(|user| Caller { user, token: None })
                .ok_or_else(|| ApiError::Unauthorized("no live session".into()))
        })
        .await;
    match caller.map_err(ApiError::shared) {
        Ok(caller) => Ok(Some(caller.user)),
        Err(ApiError::Unauthorized(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The stored digest of the session cookie in `jar`, if it has one.
pub(crate) fn cookie_digest(jar: &CookieJar) -> Option<String> {
    jar.get(SESSION_COOKIE).map(|cookie| auth::digest(cookie.value()))
}

/// Starts a session for `user` and returns the jar with its cookie set.
pub async fn start(state: &AppState, jar: CookieJar, user: &User) -> Result<CookieJar, ApiError> {
    let secret = auth::random_secret();
    let ttl_secs = i64::from(state.settings.session_ttl_hours) * 3600;
    let expires = wafleet_core::types::Timestamp::now().plus_secs(ttl_secs);
    state
        .db
        .create_session(user.id, &auth::digest(&secret), expires)
        .await?;
    let cookie = Cookie::build((SESSION_COOKIE, secret))
        .path("/")
        .http_only(true)
        // Lax: sent on top-level navigation (links from mail work) but not on cross-site posts.
        .same_site(SameSite::Lax)
        .secure(state.settings.cookie_secure)
        .max_age(time::Duration::seconds(ttl_secs));
    Ok(jar.add(cookie))
}

/// Ends the session in `jar`, if any, everywhere at once, and returns the jar with the cookie
/// removed.
pub async fn end(state: &AppState, jar: CookieJar) -> Result<CookieJar, ApiError> {
    if let Some(digest) = cookie_digest(&jar) {
        state.db.delete_session(&digest).await?;
        state.invalidations.changed(&[Topic::Callers]).await;
    }
    Ok(jar.remove(Cookie::build(SESSION_COOKIE).path("/")))
}
