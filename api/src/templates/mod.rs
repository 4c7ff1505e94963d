//! Message templates: texts (with an optional image) a user saves once and starts campaigns from,
//! checked with the same rules of variations as a campaign's message; and the preview that tries
//! a message out. Every handler reaches a template through its owner, so another user's template
//! answers 404 exactly like a missing one.

mod page;
mod preview;

use axum::extract::State;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafleet_core::db::{MessageTemplate, NewTemplate, TemplateChanges};
use wafleet_core::types::TemplateId;

use crate::AppState;
use crate::envelope::{Envelope, created, ok};
use crate::error::{ApiError, ApiResult, OrNotFound};
use crate::extract::{Json, Path};
use crate::sends::image_content;
use crate::session::CurrentUser;

pub(crate) use page::router as page_router;
pub(crate) use preview::message;

/// Longest template name.
const MAX_NAME: usize = 100;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(preview::preview))
        .routes(routes!(get_template, update_template, delete_template))
}

/// A template's fields as a client sends them; on an update, omitted ones stay as they are.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct TemplateBody {
    /// A name for people, unique among your templates.
    #[schema(example = "Spring greeting")]
    pub name: Option<String>,
    /// The text, or the image's caption, with choices (`{Hi|Hello}`) and variables (`{first_name}`).
    #[schema(example = "{Hi|Hello} {first_name}, {greeting}!")]
    pub message: Option<String>,
    /// An image (JPEG, PNG, WebP or GIF), base64-encoded; kept as a JPEG of at most 1200 px.
    /// On an update, `""` removes it.
    pub image_base64: Option<String>,
}

fn name(value: &str) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::Invalid("name: must not be empty".into()));
    }
    if value.chars().count() > MAX_NAME {
        return Err(ApiError::Invalid(format!("name: at most {MAX_NAME} characters")));
    }
    Ok(value.to_owned())
}

/// The image of `body`, compressed: `None` when not given, `Some(None)` to remove it.
async fn image(body: &TemplateBody) -> ApiResult<Option<Option<Vec<u8>>>> {
    match body.image_base64.as_deref() {
        None => Ok(None),
        Some(raw) => {
            let bytes = crate::campaigns::fields::image(raw)?;
            Ok(Some(image_content(bytes).await?))
        }
    }
}

/// Your templates, by name.
#[utoipa::path(get, path = "/api/templates", tag = "templates",
    responses((status = 200, body = Envelope<Vec<MessageTemplate>>)))]
async fn list_templates(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<impl IntoResponse> {
    Ok(ok("templates", state.db.list_templates(user.id).await?))
}

/// Save a template. Its message is checked as a campaign's is: a mistake in its choices or
/// variables answers 422 naming it and its position.
#[utoipa::path(post, path = "/api/templates", tag = "templates", request_body = TemplateBody,
    responses((status = 201, body = Envelope<MessageTemplate>),
              (status = 409, description = "You already have a template of that name"),
              (status = 422, description = "A field is invalid; the message says which and how to fix it")))]
async fn create_template(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<TemplateBody>,
) -> ApiResult<impl IntoResponse> {
    let required =
        |field: &str, v: &Option<String>| v.clone().ok_or_else(|| ApiError::Invalid(format!("{field}: required")));
    let name = name(&required("name", &body.name)?)?;
    let (message, _) = message(&required("message", &body.message)?)?;
    let image = image(&body).await?.flatten();
    let template = state
        .db
        .create_template(user.id, &NewTemplate { name, message, image })
        .await?;
    Ok(created("template saved", template))
}

/// One of your templates.
#[utoipa::path(get, path = "/api/templates/{id}", tag = "templates",
    params(("id" = i64, Path, description = "Template id")),
    responses((status = 200, body = Envelope<MessageTemplate>), (status = 404, description = "No such template of yours")))]
async fn get_template(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<TemplateId>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(
        "template",
        state.db.template(user.id, id).await.or_not_found("template")?,
    ))
}

/// Change a template (campaigns already made from it keep their own copy).
#[utoipa::path(put, path = "/api/templates/{id}", tag = "templates",
    params(("id" = i64, Path, description = "Template id")), request_body = TemplateBody,
    responses((status = 200, body = Envelope<MessageTemplate>), (status = 404, description = "No such template of yours"),
              (status = 409, description = "You already have a template of that name"),
              (status = 422, description = "A field is invalid")))]
async fn update_template(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<TemplateId>,
    Json(body): Json<TemplateBody>,
) -> ApiResult<impl IntoResponse> {
    // Only the owner gets an image decoded.
    state.db.template(user.id, id).await.or_not_found("template")?;
    let changes = TemplateChanges {
        name: body.name.as_deref().map(name).transpose()?,
        message: body.message.as_deref().map(|m| message(m).map(|m| m.0)).transpose()?,
        image: image(&body).await?,
    };
    let template = state
        .db
        .update_template(user.id, id, &changes)
        .await
        .or_not_found("template")?;
    Ok(ok("template saved", template))
}

/// Delete a template (campaigns made from it keep their text).
#[utoipa::path(delete, path = "/api/templates/{id}", tag = "templates",
    params(("id" = i64, Path, description = "Template id")),
    responses((status = 200, body = Envelope<Option<String>>), (status = 404, description = "No such template of yours")))]
async fn delete_template(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<TemplateId>,
) -> ApiResult<impl IntoResponse> {
    state.db.delete_template(user.id, id).await.or_not_found("template")?;
    Ok(ok("template deleted", None::<String>))
}
