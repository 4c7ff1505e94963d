//! Who calls `/mcp`: an API token as `Authorization: Bearer`, resolved before the MCP service
//! sees the request and handed to it in the request's extensions.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::session::token_caller;

/// Middleware: resolves the bearer token to its [`Caller`](wafleet_core::db::Caller) or answers
/// 401 with `WWW-Authenticate: Bearer` (a browser session is not enough: agents use tokens).
pub(crate) async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(token) = token else {
        return refuse(ApiError::Unauthorized(
            "MCP needs an API token: send `Authorization: Bearer <token>` (create one on the dashboard)".into(),
        ));
    };
    match token_caller(&state, &token).await {
        Ok(caller) if caller.token.as_ref().is_some_and(|t| t.devices.devices().is_some()) => {
            refuse(ApiError::Forbidden(
                "MCP needs a token for every device: its tools reach across the account; \
                 a token limited to some devices works on their REST routes (`/api/devices/{id}/…`)"
                    .into(),
            ))
        }
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(err) => refuse(err),
    }
}

fn refuse(err: ApiError) -> Response {
    let unauthorized = matches!(err, ApiError::Unauthorized(_));
    let mut response = err.into_response();
    if unauthorized {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"wafleet\""),
        );
    }
    response
}
