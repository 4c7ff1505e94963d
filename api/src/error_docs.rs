//! The error answers of the OpenAPI document. Handlers document the errors that are theirs (a
//! 409 for a clash, a 503 when a worker does not answer); the ones every route of a kind can give
//! come from the extractors and middleware it passes through, so they are added here, from what
//! the document already says about each operation: anything with parameters or a body can be
//! malformed (400), a secured operation can be refused its caller (401), a change can miss its
//! CSRF token or a token its scope (403), a path names something that may not exist (404), a body can be too large
//! (413) or of the wrong type (415). Every error answer is the envelope of [`ERROR_SCHEMA`].

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// The name of the error envelope's schema in `components.schemas`.
pub(crate) const ERROR_SCHEMA: &str = "ApiError";

/// What each status added here means, for people reading the document.
const MEANINGS: [(&str, &str); 7] = [
    (
        "400",
        "Malformed request: a path or query parameter, a header or the body's syntax; the message says which",
    ),
    ("401", "No valid session or API token, or the wrong kind for this route"),
    (
        "403",
        "Refused: a browser request without its CSRF token, an API token without the scope the operation \
         needs (`read`, `send` or `manage`), or an action your account may not take",
    ),
    ("404", "Nothing of yours by that id"),
    ("413", "The body is larger than the limit (`MAX_BODY_BYTES`)"),
    ("415", "The body is not of a content type this operation takes"),
    (
        "422",
        "Well-formed but invalid (including a NUL character anywhere in the URL or body); the message names the field and what to fix",
    ),
];

/// Adds the error envelope schema and, to every operation, the error answers it can give.
pub(crate) fn document(spec: &mut OpenApi) {
    let global_security = spec.security.clone().unwrap_or_default();
    spec.components
        .get_or_insert_with(Default::default)
        .schemas
        .insert(ERROR_SCHEMA.into(), error_schema());
    for item in spec.paths.paths.values_mut() {
        let operations = [
            (false, &mut item.get),
            (true, &mut item.post),
            (true, &mut item.put),
            (true, &mut item.patch),
            (true, &mut item.delete),
        ];
        for (changes, operation) in operations {
            if let Some(operation) = operation {
                add_errors(operation, changes, &global_security);
            }
        }
    }
}

/// The statuses `operation` can answer beyond those its handler documents.
fn implied(
    operation: &Operation,
    changes: bool,
    global_security: &[utoipa::openapi::security::SecurityRequirement],
) -> Vec<&'static str> {
    let params = operation.parameters.as_deref().unwrap_or_default();
    let has_body = operation.request_body.is_some();
    let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
    // An empty requirement makes authentication optional: such a route never asks for it.
    let security = operation.security.as_deref().unwrap_or(global_security);
    let secured = !security.is_empty() && !security.iter().any(|r| *r == Default::default());
    let mut statuses = vec!["422"];
    if has_body || !params.is_empty() {
        statuses.push("400");
    }
    if secured {
        statuses.push("401");
    }
    // Changes can miss their CSRF token; any secured operation can meet a token without its scope.
    if changes || secured {
        statuses.push("403");
    }
    if has_path {
        statuses.push("404");
    }
    if has_body {
        statuses.extend(["413", "415"]);
    }
    statuses
}

fn add_errors(
    operation: &mut Operation,
    changes: bool,
    global_security: &[utoipa::openapi::security::SecurityRequirement],
) {
    for status in implied(operation, changes, global_security) {
        let meaning = MEANINGS.iter().find(|(s, _)| *s == status).map_or("Error", |(_, m)| m);
        operation
            .responses
            .responses
            .entry(status.into())
            .or_insert_with(|| ResponseBuilder::new().description(meaning).build().into());
    }
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if status.as_str() >= "400" && response.content.is_empty() {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ERROR_SCHEMA)))
                .build();
            response.content.insert("application/json".into(), content);
        }
    }
}

/// `{"code": "NOT_FOUND", "message": "device not found", "results": null}`.
fn error_schema() -> RefOr<utoipa::openapi::schema::Schema> {
    ObjectBuilder::new()
        .description(Some("An error: what went wrong, for people, and no results"))
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "The status in upper case, e.g. `NOT_FOUND` or `UNPROCESSABLE_ENTITY`",
                ))
                .examples(["NOT_FOUND"]),
        )
        .property(
            "message",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("What is wrong and how to fix it")),
        )
        .property(
            "results",
            ObjectBuilder::new()
                .schema_type(Type::Null)
                .description(Some("Always null on errors")),
        )
        .required("code")
        .required("message")
        .required("results")
        .into()
}
