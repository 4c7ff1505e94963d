//! Which scope an API token needs for a REST route: reading needs `read`, sending needs `send`,
//! every other change needs `manage`. Browser sessions are not limited by scopes.
//!
//! A token limited to some devices is also held to their routes: `/api/devices/{id}/…` of one of
//! them, the device list (which shows only them), a send's status (of theirs only) and `/api/me`.
//! Everything else spans the account (leads, campaigns, analytics, tokens, webhooks) or names its
//! device in ways a path does not show (the compatible API) and is refused, so a route added
//! later is closed to such tokens until it is opened here on purpose.

use axum::http::Method;
use wafleet_core::db::{Caller, TokenGrant};
use wafleet_core::types::{DeviceId, Scope};

use crate::error::ApiError;

/// The scope a token needs to call `method path`.
pub(crate) fn required(method: &Method, path: &str) -> Scope {
    let path = path.trim_end_matches('/');
    // The compatible API changes a device's link with GET requests.
    if ["/app/login", "/app/login-with-code", "/app/logout", "/app/reconnect"].contains(&path) {
        return Scope::Manage;
    }
    // The compatible API shows a device webhook's signing secret on GET, as the upstream does,
    // and starts pairing a device with `GET /devices/{id}/login`.
    if path.starts_with("/devices/") && (path.ends_with("/webhook") || path.ends_with("/login")) {
        return Scope::Manage;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Scope::Read;
    }
    // Acting on a message, a chat or a call (marking it read, starring, pinning, archiving, its
    // disappearing timer, declining a call) is the day-to-day work of whoever sends from the
    // device, as a send is.
    let sends = path.ends_with("/send")
        || path.ends_with("/actions/test-send")
        || path.ends_with("/broadcasts")
        || path.starts_with("/send/")
        || path.starts_with("/message/")
        || path.starts_with("/chat/")
        || path == "/call/reject";
    // A number check asks WhatsApp and changes nothing; nor does a preview of a message.
    let checks = path.ends_with("/check") || path.ends_with("/preview");
    if sends {
        Scope::Send
    } else if checks {
        Scope::Read
    } else {
        Scope::Manage
    }
}

/// Refuses (403, naming the scope) a token call its scopes do not cover; sessions pass.
pub(crate) fn allow(caller: &Caller, method: &Method, path: &str) -> Result<(), ApiError> {
    let Some(token) = &caller.token else {
        return Ok(());
    };
    let needed = required(method, path);
    if !token.scopes.has(needed) {
        return Err(ApiError::Forbidden(format!(
            "the API token `{}` lacks the `{}` scope this request needs (it has: {}); \
             create a token with that scope on the dashboard",
            token.name,
            needed.as_str(),
            scope_list(token.scopes)
        )));
    }
    allow_devices(token, method, path)
}

/// Refuses a device-limited token whatever is not one of its devices' routes (see the module's
/// documentation); the device list and a send's status filter by the limit themselves.
fn allow_devices(token: &TokenGrant, method: &Method, path: &str) -> Result<(), ApiError> {
    let Some(devices) = token.devices.devices() else {
        return Ok(());
    };
    let path = path.trim_end_matches('/');
    let reads = matches!(*method, Method::GET | Method::HEAD);
    let device = path
        .strip_prefix("/api/devices/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse().ok())
        .map(DeviceId);
    let allowed = match device {
        Some(device) => token.devices.allows(device),
        None => (reads && (path == "/api/devices" || path.starts_with("/api/messages/"))) || path == "/api/me",
    };
    if allowed {
        return Ok(());
    }
    let list = devices.iter().map(|d| d.0.to_string()).collect::<Vec<_>>().join(", ");
    Err(ApiError::Forbidden(match device {
        Some(device) => format!(
            "the API token `{}` is limited to devices {list}, not device {device}",
            token.name
        ),
        None => format!(
            "the API token `{}` is limited to devices {list}: it may use their routes \
             (`/api/devices/{{id}}/…`) only; this route needs a token for every device",
            token.name
        ),
    }))
}

/// `read, send` or `none`, for messages.
pub(crate) fn scope_list(scopes: wafleet_core::types::Scopes) -> String {
    if scopes.is_empty() {
        return "none".into();
    }
    scopes.iter().map(Scope::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_the_scope_they_need() {
        assert_eq!(required(&Method::GET, "/api/devices"), Scope::Read);
        assert_eq!(required(&Method::POST, "/api/devices/3/send"), Scope::Send);
        assert_eq!(required(&Method::POST, "/api/devices/3/actions/test-send"), Scope::Send);
        assert_eq!(required(&Method::POST, "/api/devices/3/broadcasts"), Scope::Send);
        assert_eq!(required(&Method::POST, "/send/message"), Scope::Send);
        assert_eq!(required(&Method::POST, "/message/3EB0AB/read"), Scope::Send);
        assert_eq!(
            required(&Method::POST, "/chat/60191000001@s.whatsapp.net/archive"),
            Scope::Send
        );
        assert_eq!(
            required(&Method::GET, "/chat/60191000001@s.whatsapp.net/messages"),
            Scope::Read
        );
        assert_eq!(required(&Method::POST, "/call/reject"), Scope::Send);
        assert_eq!(required(&Method::POST, "/api/devices/3/check"), Scope::Read);
        assert_eq!(required(&Method::POST, "/api/devices/3/actions/check"), Scope::Read);
        assert_eq!(required(&Method::POST, "/api/templates/preview"), Scope::Read);
        assert_eq!(required(&Method::POST, "/api/templates"), Scope::Manage);
        assert_eq!(required(&Method::POST, "/api/leads"), Scope::Manage);
        assert_eq!(required(&Method::DELETE, "/api/devices/3"), Scope::Manage);
        assert_eq!(required(&Method::GET, "/app/logout"), Scope::Manage);
        assert_eq!(required(&Method::GET, "/devices/3/webhook"), Scope::Manage);
        assert_eq!(required(&Method::GET, "/devices/shop/login"), Scope::Manage);
        assert_eq!(required(&Method::GET, "/devices/shop/status"), Scope::Read);
        assert_eq!(required(&Method::GET, "/api/devices/3/webhook"), Scope::Read);
    }
}
