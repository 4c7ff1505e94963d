//! The upstream REST API's `user` reads that wafleet answers from what it stores:
//! `GET /user/my/contacts`. (`GET /user/check` asks WhatsApp, with the sends in `compat_send`.)

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::Contact;

use crate::AppState;
use crate::compat::{Caller, upstream_statuses};
use crate::envelope::{Envelope, ok};
use crate::error::ApiResult;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_contacts))
        .route_layer(axum::middleware::from_fn(upstream_statuses))
}

/// `results` of `GET /user/my/contacts`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactList {
    /// By name, then JID.
    pub data: Vec<Contact>,
}

/// The people the device knows (upstream `userMyContacts`): its phone's address book, with the
/// names saved there, and everyone it has a personal chat with, under their own push name when
/// the phone saved none.
#[utoipa::path(get, path = "/user/my/contacts", tag = "compatible",
    params(("X-Device-Id" = Option<String>, Header, description = "Device id or name")),
    responses((status = 200, body = Envelope<ContactList>),
              (status = 400, description = "Several devices and none named"),
              (status = 404, description = "No such device of yours, or no device at all")),
    security(("bearer" = [])))]
async fn my_contacts(State(state): State<AppState>, Caller(user, device): Caller) -> ApiResult<Response> {
    let data = state.db.contacts(user.id, device).await?;
    Ok(ok("Success get list contacts", ContactList { data }).into_response())
}
