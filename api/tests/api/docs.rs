//! Health probes, the OpenAPI document and the docs page.

use reqwest::StatusCode;

use crate::helpers::{TestApp, body};

async fn health_openapi_and_docs(app: TestApp) {
    let client = reqwest::Client::new();
    let health = client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "OK");
    let ready = client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let spec = body(client.get(app.url("/api/openapi.json")).send().await.unwrap()).await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/register",
        "/api/login",
        "/api/devices",
        "/api/devices/{id}",
        "/api/tokens",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is documented");
    }
    assert!(spec["paths"]["/api/devices/{id}"]["delete"].is_object());
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    assert!(
        spec["components"]["schemas"]["Device"].is_object(),
        "schemas come from the types"
    );

    let docs = client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.unwrap();
    assert!(
        html.contains("/api/devices/{id}") && html.contains("Delete a device"),
        "docs list the operations"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets: works offline"
    );

    let metrics = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("wafleet_http_requests_total{status=\"2xx\"}"),
        "requests are counted: {text}"
    );

    let missing = client.get(app.url("/api/nope")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(missing).await["message"], "API route not found");
}

/// Every operation lists the errors its extractors and middleware can give, each as the error
/// envelope (the two that list bad lines or rows in `results` say so in their own schema).
async fn every_operation_documents_its_errors(app: TestApp) {
    let spec = body(reqwest::get(app.url("/api/openapi.json")).await.unwrap()).await;
    let error = &spec["components"]["schemas"]["ApiError"];
    assert_eq!(error["required"], serde_json::json!(["code", "message", "results"]));
    assert_eq!(error["properties"]["results"]["type"], "null");
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let what = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            let listed = |status: &str| responses.contains_key(status);
            let params = op["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
            let public = op["security"] == serde_json::json!([{}]);
            let has_body = op["requestBody"].is_object();
            assert!(listed("422"), "{what}: 422 (a NUL in the URL, invalid input)");
            if has_body || !params.is_empty() {
                assert!(listed("400"), "{what}: 400 (malformed parameters or body)");
            }
            if !public {
                assert!(listed("401"), "{what}: 401");
                assert!(listed("403"), "{what}: 403 (an API token without the scope)");
            }
            if method != "get" {
                assert!(listed("403"), "{what}: 403 (CSRF)");
            }
            if params.iter().any(|p| p["in"] == "path") {
                assert!(listed("404"), "{what}: 404");
            }
            if has_body {
                assert!(listed("413") && listed("415"), "{what}: 413 and 415");
            }
            for (status, response) in responses {
                if status.as_str() < "400" {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"];
                let own = schema["$ref"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("#/components/schemas/Envelope"));
                assert!(
                    schema["$ref"] == "#/components/schemas/ApiError" || (status == "422" && own),
                    "{what} {status}: the error envelope, not {schema}"
                );
            }
        }
    }
    assert!(operations > 60, "every operation was looked at ({operations})");

    // The broadcast's 422 lists bad lines in `results`, and is null for its other refusals.
    let refused = &spec["paths"]["/api/devices/{id}/broadcasts"]["post"]["responses"]["422"];
    let schema = refused["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    let name = schema.trim_start_matches("#/components/schemas/");
    let results = &spec["components"]["schemas"][name]["properties"]["results"];
    let text = results.to_string();
    assert!(
        text.contains(r#"{"type":"null"}"#) && text.contains("error_count"),
        "results: the bad lines or null: {results}"
    );
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => health_openapi_and_docs, every_operation_documents_its_errors);
