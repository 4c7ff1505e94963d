//! Accounts: register, log in, log out, and who am I. The JSON routes live here; the form pages
//! in `pages` call the same [`register`] and [`login`].

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::auth;
use wafleet_core::db::{NewUserRole, User};
use wafleet_core::types::Email;

use crate::AppState;
use crate::envelope::{Envelope, created, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::session::{self, CurrentUser};

/// Email and password, for registering or logging in.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    /// Account email.
    #[schema(example = "ana@example.com")]
    pub email: String,
    /// Password (8 to 256 characters when registering).
    #[schema(example = "correct horse battery")]
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_json))
        .routes(routes!(login_json))
        .routes(routes!(logout_json))
        .routes(routes!(me))
}

/// The caller's address, from the socket or, when configured, from `X-Forwarded-For`.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.settings.trust_proxy_headers {
            // The right-most entry is the one our own proxy appended; earlier ones are client-supplied.
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok());
            if forwarded.is_some() {
                return Ok(ClientIp(forwarded));
            }
        }
        Ok(ClientIp(
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
        ))
    }
}

/// Creates an account; the first account of the instance becomes administrator.
pub(crate) async fn register(state: &AppState, creds: &Credentials) -> ApiResult<User> {
    if !state.settings.allow_registration {
        return Err(ApiError::Forbidden(
            "registration is closed on this instance: ask an administrator".into(),
        ));
    }
    let email = Email::parse(&creds.email).map_err(|e| ApiError::Invalid(format!("email: {e}")))?;
    auth::validate_password(&creds.password).map_err(|e| ApiError::Invalid(format!("password: {e}")))?;
    if state.db.user_by_email(&email).await?.is_some() {
        return Err(ApiError::Conflict(
            "an account with this email already exists: log in instead".into(),
        ));
    }
    let password = creds.password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| anyhow::anyhow!("hashing task: {e}"))??;
    let user = state
        .db
        .create_user(&email, &hash, NewUserRole::FirstBecomesAdmin)
        .await?;
    tracing::info!(user = %user.id, admin = user.is_admin, "account registered");
    Ok(user)
}

/// Checks credentials, with per-account and per-address limits on failures.
pub(crate) async fn login(state: &AppState, creds: &Credentials, ip: ClientIp) -> ApiResult<User> {
    let email = Email::parse(&creds.email).map_err(|e| ApiError::Invalid(format!("email: {e}")))?;
    let window = i64::try_from(state.settings.login_lockout_secs).unwrap_or(i64::MAX);
    let max = state.settings.login_max_failures;
    let email_key = format!("email:{email}");
    let ip_key = ip.0.map(|ip| format!("ip:{ip}"));
    for (key, limit) in std::iter::once((&email_key, max)).chain(ip_key.as_ref().map(|k| (k, max.saturating_mul(4)))) {
        if let Some(secs) = state.db.login_blocked_for(key, limit, window).await? {
            return Err(ApiError::TooManyRequests(secs));
        }
    }
    let user = state.db.user_by_email(&email).await?;
    let password = creds.password.clone();
    // Unknown accounts are checked against a dummy hash so timing does not tell which emails exist.
    let hash = user
        .as_ref()
        .map_or_else(|| auth::dummy_hash().to_owned(), |u| u.password_hash.clone());
    let matches = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .map_err(|e| anyhow::anyhow!("password check task: {e}"))?;
    match user {
        Some(user) if matches => {
            state.db.clear_login_failures(&email_key).await?;
            Ok(user)
        }
        _ => {
            for key in std::iter::once(&email_key).chain(ip_key.as_ref()) {
                state.db.record_login_failure(key, window).await?;
            }
            Err(ApiError::Unauthorized("wrong email or password".into()))
        }
    }
}

/// Register an account and start a session (cookie).
#[utoipa::path(post, path = "/api/register", tag = "accounts", request_body = Credentials,
    responses(
        (status = 201, description = "Account created and logged in", body = Envelope<User>),
        (status = 403, description = "Registration is closed"),
        (status = 409, description = "Email already registered"),
        (status = 422, description = "Invalid email or password"),
    ))]
async fn register_json(
    State(state): State<AppState>,
    jar: CookieJar,
    Json(creds): Json<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let user = register(&state, &creds).await?;
    let jar = session::start(&state, jar, &user).await?;
    Ok((jar, created("account created", user)))
}

/// Log in and start a session (cookie).
#[utoipa::path(post, path = "/api/login", tag = "accounts", request_body = Credentials,
    responses(
        (status = 200, description = "Logged in", body = Envelope<User>),
        (status = 401, description = "Wrong email or password"),
        (status = 429, description = "Too many failed logins; see Retry-After"),
    ))]
async fn login_json(
    State(state): State<AppState>,
    ip: ClientIp,
    jar: CookieJar,
    Json(creds): Json<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let user = login(&state, &creds, ip).await?;
    let jar = session::start(&state, jar, &user).await?;
    Ok((jar, ok("logged in", user)))
}

/// End the current session.
#[utoipa::path(post, path = "/api/logout", tag = "accounts", responses((status = 200, description = "Logged out")))]
async fn logout_json(State(state): State<AppState>, jar: CookieJar) -> ApiResult<impl IntoResponse> {
    let jar = session::end(&state, jar).await?;
    Ok((jar, ok("logged out", ())))
}

/// The current account.
#[utoipa::path(get, path = "/api/me", tag = "accounts",
    responses((status = 200, body = Envelope<User>), (status = 401, description = "Not logged in")))]
async fn me(CurrentUser(user): CurrentUser) -> impl IntoResponse {
    ok("current account", user)
}
