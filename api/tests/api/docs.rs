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

on_both_backends!(app: health_openapi_and_docs);
