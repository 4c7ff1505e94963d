//! Accounts: register, log in, log out, who am I, and changing the password. The JSON routes live
//! here; the form pages in `pages` call the same [`register`], [`login`] and [`change_password`].

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::auth;
use wafleet_core::cache::Topic;
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
        .routes(routes!(change_password_json))
}

/// The current password and the one to replace it.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    /// The password in use now.
    pub current_password: String,
    /// The new password (8 to 256 characters, not the current one).
    pub new_password: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChange").finish_non_exhaustive()
    }
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

/// Checks credentials, with per-account and per-address limits on failures. Each attempt is
/// counted before its password is checked (see [`reserve_attempt`]), so parallel guesses cannot
/// slip past the limit between a check and a count.
pub(crate) async fn login(state: &AppState, creds: &Credentials, ip: ClientIp) -> ApiResult<User> {
    let email = Email::parse(&creds.email).map_err(|e| ApiError::Invalid(format!("email: {e}")))?;
    let max = state.settings.login_max_failures;
    let email_key = format!("email:{email}");
    let ip_key = ip.0.map(|ip| format!("ip:{ip}"));
    reserve_attempt(state, &email_key, max).await?;
    if let Some(ip_key) = &ip_key
        && let Err(refused) = reserve_attempt(state, ip_key, max.saturating_mul(4)).await
    {
        // This attempt is never checked, so it is not the account's failure.
        state.db.refund_login_attempt(&email_key).await?;
        return Err(refused);
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
            // The address keeps its count of failures; this attempt was not one.
            if let Some(ip_key) = &ip_key {
                state.db.refund_login_attempt(ip_key).await?;
            }
            // Told only to whoever knows the password: the account exists but may not log in.
            if user.disabled_at.is_some() {
                return Err(ApiError::Forbidden(
                    "this account is disabled: ask an administrator of this wafleet to enable it".into(),
                ));
            }
            Ok(user)
        }
        // The attempts counted above stay counted: they are this failure.
        _ => Err(ApiError::Unauthorized("wrong email or password".into())),
    }
}

/// Counts an attempt under `key` and refuses it (429) when it is over `limit` in the window.
async fn reserve_attempt(state: &AppState, key: &str, limit: u32) -> ApiResult<()> {
    let window = i64::try_from(state.settings.login_lockout_secs).unwrap_or(i64::MAX);
    let attempt = state.db.reserve_login_attempt(key, window).await?;
    match attempt.blocked_for(limit) {
        Some(secs) => Err(ApiError::TooManyRequests(secs)),
        None => Ok(()),
    }
}

/// Changes `user`'s password after checking the current one (a wrong one counts as a failed login,
/// so a stolen session cannot guess it), then ends every other session of theirs; `keep` is the
/// digest of the session making the change. Returns how many sessions were ended.
pub(crate) async fn change_password(
    state: &AppState,
    user: &User,
    change: &PasswordChange,
    ip: ClientIp,
    keep: Option<&str>,
) -> ApiResult<u64> {
    auth::validate_password(&change.new_password).map_err(|e| ApiError::Invalid(format!("new_password: {e}")))?;
    if change.new_password == change.current_password {
        return Err(ApiError::Invalid(
            "new_password: is the current password; choose another".into(),
        ));
    }
    let creds = Credentials {
        email: user.email.to_string(),
        password: change.current_password.clone(),
    };
    match login(state, &creds, ip).await {
        Ok(_) => {}
        // Not 401: that would read as "logged out" to the pages.
        Err(ApiError::Unauthorized(_)) => {
            return Err(ApiError::Invalid("current_password: is not your password".into()));
        }
        Err(e) => return Err(e),
    }
    let password = change.new_password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| anyhow::anyhow!("hashing task: {e}"))??;
    let ended = state.db.set_password(user.id, &hash, keep).await?;
    state.invalidations.changed(&[Topic::Callers]).await;
    tracing::info!(user = %user.id, sessions_ended = ended, "password changed");
    Ok(ended)
}

/// Register an account and start a session (cookie).
#[utoipa::path(post, path = "/api/register", tag = "accounts", request_body = Credentials, security(()),
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
#[utoipa::path(post, path = "/api/login", tag = "accounts", request_body = Credentials, security(()),
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
#[utoipa::path(post, path = "/api/logout", tag = "accounts", security(()), responses((status = 200, description = "Logged out")))]
async fn logout_json(State(state): State<AppState>, jar: CookieJar) -> ApiResult<impl IntoResponse> {
    let jar = session::end(&state, jar).await?;
    Ok((jar, ok("logged out", ())))
}

/// Change the password. Every other browser session of the account is logged out; the one making
/// the change stays logged in. API tokens keep working (revoke them on the dashboard).
#[utoipa::path(post, path = "/api/account/password", tag = "accounts", request_body = PasswordChange,
    responses(
        (status = 200, description = "Password changed; `results.sessions_ended` other sessions logged out"),
        (status = 401, description = "Not logged in"),
        (status = 422, description = "The current password is wrong, or the new one is too short or unchanged"),
        (status = 429, description = "Too many wrong passwords; see Retry-After"),
    ))]
async fn change_password_json(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ip: ClientIp,
    jar: CookieJar,
    Json(change): Json<PasswordChange>,
) -> ApiResult<impl IntoResponse> {
    let keep = session::cookie_digest(&jar);
    let ended = change_password(&state, &user, &change, ip, keep.as_deref()).await?;
    Ok(ok("password changed", serde_json::json!({ "sessions_ended": ended })))
}

/// The current account.
#[utoipa::path(get, path = "/api/me", tag = "accounts",
    responses((status = 200, body = Envelope<User>), (status = 401, description = "Not logged in")))]
async fn me(CurrentUser(user): CurrentUser) -> impl IntoResponse {
    ok("current account", user)
}
