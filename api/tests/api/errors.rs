//! Every refusal, whichever layer makes it (a path, query, body or form that does not fit, missing
//! credentials, a route or method that does not exist, a body too large or of the wrong type), is
//! the JSON envelope with a status the OpenAPI document lists and a message that says what to fix.

use reqwest::multipart::{Form, Part};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, body, spawn_app_with};

/// Asserts `response` is the error envelope with `status`, its message holding every one of
/// `needles`, and that the OpenAPI document lists `status` for `method path` with the error schema.
async fn refused(
    spec: &Value,
    (method, path): (&str, &str),
    response: reqwest::Response,
    status: StatusCode,
    needles: &[&str],
) {
    assert_eq!(response.status(), status, "{method} {path}");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{method} {path}: the refusal is JSON, not {content_type:?}: {text}"
    );
    let envelope: Value = serde_json::from_str(&text).unwrap();
    let message = envelope["message"].as_str().unwrap_or_default();
    assert!(
        envelope["code"].is_string() && envelope["results"].is_null(),
        "{method} {path}: the error envelope: {envelope}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "{method} {path}: the message {message:?} should say {needle:?}"
        );
    }
    if path.is_empty() {
        return; // not an operation of the document (an unknown route or method)
    }
    let documented = &spec["paths"][path][method.to_lowercase()]["responses"][status.as_str()];
    assert!(
        documented.is_object(),
        "{method} {path} answers {status}, which the document does not list"
    );
    assert_eq!(
        documented["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ApiError",
        "{method} {path} {status}: documented as the error envelope"
    );
}

/// A user with one linked device and an API token: `(token, device)`.
async fn caller(app: &TestApp) -> (String, i64) {
    let ana = app.session("ana@example.com").await;
    let device = ana.add_device("Sales", Some("+60123456789")).await;
    crate::actions::linked(app, device).await;
    let created = body(ana.post("/api/tokens", json!({"name": "errors"})).await).await;
    (created["results"]["token"].as_str().unwrap().to_owned(), device)
}

/// What each case needs: the API document, a client, and a user's API token and linked device.
struct Case {
    app: TestApp,
    spec: Value,
    client: Client,
    token: String,
    device: i64,
}

impl Case {
    async fn new(app: TestApp) -> Case {
        let (token, device) = caller(&app).await;
        let client = Client::new();
        let spec = body(client.get(app.url("/api/openapi.json")).send().await.unwrap()).await;
        Case {
            app,
            spec,
            client,
            token,
            device,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.app.url(path)).bearer_auth(&self.token)
    }
}

/// A path parameter that does not fit an i64.
async fn path_parameter_out_of_range(app: TestApp) {
    let case = Case::new(app).await;
    let response = case.get("/api/messages/99999999999999999999").await;
    refused(
        &case.spec,
        ("GET", "/api/messages/{id}"),
        response,
        StatusCode::BAD_REQUEST,
        &["99999999999999999999"],
    )
    .await;
    let response = case
        .post("/api/devices/first/send")
        .json(&json!({"to": "+60191000001", "text": "hi"}))
        .send()
        .await
        .unwrap();
    refused(
        &case.spec,
        ("POST", "/api/devices/{id}/send"),
        response,
        StatusCode::BAD_REQUEST,
        &["first"],
    )
    .await;
}

/// A query parameter that does not fit its type is named.
async fn query_parameter_of_the_wrong_type(app: TestApp) {
    let case = Case::new(app).await;
    for path in ["/api/webhook/deliveries", "/api/admin/dead-letters"] {
        let response = case.get(&format!("{path}?limit=1.9")).await;
        refused(
            &case.spec,
            ("GET", path),
            response,
            StatusCode::BAD_REQUEST,
            &["query parameter `limit`"],
        )
        .await;
    }
}

/// A send whose body is not of the type the route takes.
async fn send_body_of_the_wrong_type(app: TestApp) {
    let case = Case::new(app).await;
    let response = case
        .post(&format!("/api/devices/{}/send", case.device))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("to=%2B60191000001&text=hi")
        .send()
        .await
        .unwrap();
    refused(
        &case.spec,
        ("POST", "/api/devices/{id}/send"),
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &["application/json"],
    )
    .await;
    let response = case
        .post(&format!("/api/devices/{}/send", case.device))
        .header("content-type", "application/xml")
        .body("<send/>")
        .send()
        .await
        .unwrap();
    refused(
        &case.spec,
        ("POST", "/api/devices/{id}/send"),
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &["application/json"],
    )
    .await;
    let response = case
        .post("/send/image")
        .json(&json!({"phone": "60191000001", "image": "not a file"}))
        .send()
        .await
        .unwrap();
    refused(
        &case.spec,
        ("POST", "/send/image"),
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &["multipart/form-data"],
    )
    .await;
}

/// `/send/message` without its `message` field.
async fn compatible_send_without_message(app: TestApp) {
    let case = Case::new(app).await;
    let response = case
        .post("/send/message")
        .json(&json!({"phone": "60191000001"}))
        .send()
        .await
        .unwrap();
    refused(
        &case.spec,
        ("POST", "/send/message"),
        response,
        StatusCode::BAD_REQUEST,
        &["missing field `message`"],
    )
    .await;
}

/// `/app/login-with-code` without its `phone` parameter.
async fn compatible_pair_code_without_phone(app: TestApp) {
    let case = Case::new(app).await;
    let response = case.get("/app/login-with-code").await;
    refused(
        &case.spec,
        ("GET", "/app/login-with-code"),
        response,
        StatusCode::BAD_REQUEST,
        &["missing field `phone`"],
    )
    .await;
}

/// Missing credentials, on the dashboard's routes and on the compatible ones.
async fn missing_credentials(app: TestApp) {
    let case = Case::new(app).await;
    let response = case.client.get(case.app.url("/api/me")).send().await.unwrap();
    refused(
        &case.spec,
        ("GET", "/api/me"),
        response,
        StatusCode::UNAUTHORIZED,
        &["log in"],
    )
    .await;
    let response = case.client.get(case.app.url("/app/devices")).send().await.unwrap();
    refused(
        &case.spec,
        ("GET", "/app/devices"),
        response,
        StatusCode::UNAUTHORIZED,
        &["API token"],
    )
    .await;
}

/// A route that does not exist, and a method a route does not answer.
async fn unknown_route_and_method(app: TestApp) {
    let case = Case::new(app).await;
    let response = case.get("/api/devices/1/nothing-here").await;
    refused(&case.spec, ("GET", ""), response, StatusCode::NOT_FOUND, &["API route"]).await;
    let response = case
        .client
        .request(Method::PATCH, case.app.url("/api/me"))
        .bearer_auth(&case.token)
        .send()
        .await
        .unwrap();
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
    refused(
        &case.spec,
        ("PATCH", ""),
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        &["answers GET, HEAD only"],
    )
    .await;
    assert_eq!(allow.as_deref(), Some("GET,HEAD"), "the methods it answers");
}

/// Bodies over the limit are refused with 413 naming it, whatever their content type.
async fn too_large_bodies_name_the_limit(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.max_body_bytes = 4096;
        s.max_media_bytes = 4096;
    })
    .await;
    let (token, device) = caller(&app).await;
    let client = Client::new();
    let spec = body(client.get(app.url("/api/openapi.json")).send().await.unwrap()).await;
    let limit = "the limit is 4096 bytes";

    let response = client
        .post(app.url(&format!("/api/devices/{device}/send")))
        .bearer_auth(&token)
        .json(&json!({"to": "+60191000001", "text": "a".repeat(8000)}))
        .send()
        .await
        .unwrap();
    refused(
        &spec,
        ("POST", "/api/devices/{id}/send"),
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        &[limit],
    )
    .await;
    for (route, field) in [
        ("/send/image", "image"),
        ("/send/video", "video"),
        ("/send/audio", "audio"),
        ("/send/file", "file"),
        ("/send/sticker", "sticker"),
    ] {
        let form = Form::new()
            .text("phone", "60191000001")
            .part(field, Part::bytes(vec![7; 8000]).file_name("big.bin"));
        let response = client
            .post(app.url(route))
            .bearer_auth(&token)
            .header("X-Device-Id", device.to_string())
            .multipart(form)
            .send()
            .await
            .unwrap();
        refused(
            &spec,
            ("POST", route),
            response,
            StatusCode::PAYLOAD_TOO_LARGE,
            &[limit],
        )
        .await;
    }
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => path_parameter_out_of_range, query_parameter_of_the_wrong_type, send_body_of_the_wrong_type, compatible_send_without_message, compatible_pair_code_without_phone, missing_credentials, unknown_route_and_method; too_large_bodies_name_the_limit);
