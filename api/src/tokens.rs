//! API tokens for the REST API and MCP: create (the secret is shown once) with the scopes it
//! may use, list, revoke.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::auth;
use wafleet_core::cache::Topic;
use wafleet_core::db::ApiToken;
use wafleet_core::types::{ApiTokenId, DeviceId, DeviceLimit, Scopes};

use crate::AppState;
use crate::envelope::{Envelope, created, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::session::{CurrentCaller, CurrentUser};

/// Longest token name accepted.
const MAX_NAME_LEN: usize = 64;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// A request for a new token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    /// A label such as the name of the integration that will use it.
    #[schema(example = "crm-sync")]
    pub name: String,
    /// What it may do: `read` (see everything, check numbers), `send` (send messages), `manage`
    /// (change devices, leads, campaigns, webhooks, tokens). Default: all three.
    #[schema(example = json!(["read", "send"]))]
    pub scopes: Option<Scopes>,
    /// Limit it to these devices of yours: it may then use only their routes
    /// (`/api/devices/{id}/…`), sees only them in `GET /api/devices`, and cannot use MCP, the
    /// compatible API or account-wide routes. Default: every device.
    #[schema(example = json!([3, 5]))]
    pub device_ids: Option<Vec<DeviceId>>,
}

/// A token just made: the only time its secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Send as `Authorization: Bearer <token>`. Store it now: it cannot be shown again.
    pub token: String,
    /// The stored description of the token.
    #[serde(flatten)]
    pub info: ApiToken,
}

/// List your live API tokens (their secrets are never shown again).
#[utoipa::path(get, path = "/api/tokens", tag = "tokens", responses((status = 200, body = Envelope<Vec<ApiToken>>)))]
async fn list_tokens(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    Ok(ok("API tokens", state.db.list_api_tokens(user.id).await?))
}

/// Create an API token. The response holds the token; it is not stored and cannot be shown again.
/// A token may only make tokens that can do no more than itself.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = Envelope<CreatedToken>),
              (status = 403, description = "A token asked for a scope it does not have itself"),
              (status = 404, description = "A device in `device_ids` is not yours"),
              (status = 409, description = "Name in use"), (status = 422, description = "Invalid name, no scope or no device")))]
async fn create_token(
    State(state): State<AppState>,
    CurrentCaller(caller): CurrentCaller,
    Json(body): Json<NewToken>,
) -> ApiResult<impl IntoResponse> {
    let user = caller.user;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::Invalid(format!(
            "name: must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    let scopes = body.scopes.unwrap_or_else(Scopes::all);
    if scopes.is_empty() {
        return Err(ApiError::Invalid(
            "scopes: choose at least one of read, send, manage".into(),
        ));
    }
    if let Some(grant) = &caller.token
        && !grant.scopes.covers(scopes)
    {
        return Err(ApiError::Forbidden(format!(
            "scopes: this token has {} and cannot make a token with more",
            crate::scopes::scope_list(grant.scopes)
        )));
    }
    let devices = match &body.device_ids {
        None => DeviceLimit::default(),
        Some(ids) if ids.is_empty() => {
            return Err(ApiError::Invalid(
                "device_ids: name at least one device, or leave it out for every device".into(),
            ));
        }
        Some(ids) => {
            for id in ids {
                state.db.device(user.id, *id).await.or_not_found("device")?;
            }
            DeviceLimit::only(ids)
        }
    };
    if let Some(grant) = &caller.token
        && !devices.within(&grant.devices)
    {
        return Err(ApiError::Forbidden(
            "device_ids: this token is limited to some devices and cannot make a token for others".into(),
        ));
    }
    let token = format!("{}{}", auth::API_TOKEN_PREFIX, auth::random_secret());
    let hint = token[token.len() - 4..].to_owned();
    let info = state
        .db
        .create_scoped_api_token(user.id, name, &auth::digest(&token), &hint, scopes, &devices)
        .await?;
    tracing::info!(user = %user.id, token = %info.id, "API token created");
    Ok(created(
        "API token created: copy it now, it will not be shown again",
        CreatedToken { token, info },
    ))
}

/// Revoke one of your API tokens.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens", params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, description = "Revoked"), (status = 404, description = "No such token of yours")))]
async fn revoke_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<ApiTokenId>,
) -> ApiResult<impl IntoResponse> {
    state.db.revoke_api_token(user.id, id).await.or_not_found("API token")?;
    state.invalidations.changed(&[Topic::Callers]).await;
    tracing::info!(user = %user.id, token = %id, "API token revoked");
    Ok(ok("API token revoked", ()))
}
