//! The OpenAPI document, generated from the handlers' annotations, and a docs page rendered from it
//! on the server (no CDN, so it works offline).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::frame::Frame;
use crate::pages::{asset, page};
use crate::session::CurrentUser;

/// The document's fixed parts; paths are added by each feature router.
#[derive(OpenApi)]
#[openapi(
    info(title = "wafleet", description = "Run a fleet of WhatsApp numbers from one place.\n\n\
        Authenticate with a browser session (cookie, plus the `X-CSRF-Token` header on changes) or an \
        API token (`Authorization: Bearer wft_…`, made on the dashboard). A token carries scopes: `read` for \
        every GET and number checks, `send` for sends and broadcasts, `manage` for every other change; a \
        token without the scope an operation needs is refused with 403. Responses use the envelope \
        `{\"code\", \"message\", \"results\"}`. Every error is that envelope with an upper-case `code`, a \
        `message` that says what to fix and `results` null (schema `ApiError`); each operation lists the \
        statuses it can answer."),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "accounts", description = "Register, log in, log out"),
        (name = "tokens", description = "API tokens for the REST API and MCP, each with its scopes (read, send, manage)"),
        (name = "mcp", description = "AI agents over the Model Context Protocol at `/mcp` (streamable HTTP, API token as \
            bearer): the log of every tool call they made"),
        (name = "devices", description = "Your WhatsApp numbers"),
        (name = "leads", description = "Contacts kept per device: search, filters, CSV import and export. \
            Status is one of new, contacted, replied, interested, converted, lost"),
        (name = "sessions", description = "Linking devices to WhatsApp and number checks"),
        (name = "chats", description = "Read-only view of a device's personal chats: chat list with search, \
            messages with delivered/read ticks (cursor pages, newest first) and a live event stream"),
        (name = "messages", description = "Sending text and images, and following a send's status"),
        (name = "admin", description = "For administrators: accounts, the fleet, jobs the queues gave up on, and the log of what administrators did"),
        (name = "campaigns", description = "Messages to the leads of one niche on chosen devices, at a planned \
            time, paced per device; per-recipient status queued, sent, delivered, read, replied or failed"),
        (name = "templates", description = "Saved messages to start campaigns from, and previews of a message's \
            variations: choices `{Hi|Hello}` (nested too) and variables {name}, {first_name}, {phone}, {niche}, \
            {greeting}, filled per recipient"),
        (name = "sequences", description = "Drip follow-ups: ordered steps sent to each enrolled lead, each a delay \
            after enrolment or the previous step, inside a send window of the sequence's time zone; leads leave on a \
            reply or a status, move on to a next sequence, and each step is a paced send under \
            `sequence:{sequence}:{step}:{lead}`"),
        (name = "analytics", description = "Sends per UTC day from roll-ups refreshed every minute: sent, delivered, \
            read, replied and failed with percentages, a per-day series, and devices online; by range and device"),
        (name = "actions", description = "A device's actions: test sends, number checks per pasted line, broadcasts \
            to pasted lists (all lines checked first; each recipient a paced send under `broadcast:{id}:{phone}`) \
            with their progress, and the device's activity log"),
        (name = "webhooks", description = "Your URL for events (message, message.ack, call.offer, \
            device.connected, device.disconnected, campaign.finished, sequence.step_sent, sequence.completed), signed with HMAC-SHA256 in `X-Hub-Signature-256`; deliveries \
            retried with backoff, dead ones listed and replayable"),
        (name = "compatible", description = "Routes kept from the REST API wafleet grew out of; API tokens only"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wft_…")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("wafleet_session"))),
        );
    }
}

impl ApiDoc {
    /// A router that collects the document as routes are added.
    pub fn router() -> OpenApiRouter<AppState> {
        OpenApiRouter::with_openapi(ApiDoc::openapi())
    }
}

/// `GET /api/openapi.json` and `GET /docs`: an interactive reference (Swagger UI, compiled into
/// the binary, so it works offline) over the document, with the operations listed in the page
/// itself for browsers without JavaScript.
pub(crate) fn router(spec: Arc<utoipa::openapi::OpenApi>) -> Router<AppState> {
    let json = serde_json::to_string_pretty(&*spec).expect("the OpenAPI document serialises");
    // Fixed for the life of the process, so built once.
    let operations = Arc::new(operations(&spec));
    Router::new()
        .route(
            "/api/openapi.json",
            get(move || async move { ([("content-type", "application/json")], json) }),
        )
        .route(
            "/docs",
            get(
                move |state: State<AppState>, user: Option<CurrentUser>, jar: CookieJar| {
                    docs_page(state, user, jar, operations.clone())
                },
            ),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../static/swagger-ui/swagger-ui-bundle.js"),
                )
            }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../static/swagger-ui/swagger-ui.css"),
                )
            }),
        )
        .route(
            "/static/docs.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("../static/docs.js"))),
        )
}

async fn docs_page(
    State(state): State<AppState>,
    user: Option<CurrentUser>,
    jar: CookieJar,
    operations: Arc<Vec<DocOperation>>,
) -> Response {
    let (jar, frame) = match &user {
        Some(CurrentUser(user)) => Frame::new(&state, jar, user, "docs"),
        None => Frame::anonymous(&state, jar, "docs"),
    };
    let view = DocsPage { frame, operations };
    (jar, page(StatusCode::OK, &view)).into_response()
}

/// One operation on the docs page.
struct DocOperation {
    method: &'static str,
    path: String,
    summary: String,
    description: String,
    responses: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "docs.html")]
struct DocsPage {
    frame: Frame,
    operations: Arc<Vec<DocOperation>>,
}

/// The document's operations, in its order.
fn operations(spec: &utoipa::openapi::OpenApi) -> Vec<DocOperation> {
    let mut operations = Vec::new();
    for (path, item) in &spec.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, op) in methods {
            let Some(op) = op else { continue };
            let mut text = op.description.clone().unwrap_or_default();
            let summary = op.summary.clone().unwrap_or_else(|| std::mem::take(&mut text));
            operations.push(DocOperation {
                method,
                path: path.clone(),
                summary,
                description: text,
                responses: op
                    .responses
                    .responses
                    .iter()
                    .map(|(code, r)| (code.clone(), describe(r)))
                    .collect(),
            });
        }
    }
    operations
}

fn describe(response: &utoipa::openapi::RefOr<utoipa::openapi::Response>) -> String {
    match response {
        utoipa::openapi::RefOr::T(r) => r.description.clone(),
        utoipa::openapi::RefOr::Ref(r) => r.ref_location.clone(),
    }
}
