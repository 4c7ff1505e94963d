//! Pages, assets and API answers carry headers that keep browsers from framing, sniffing or
//! running anything but our own scripts (the browser tests show the pages still work under them).

use reqwest::StatusCode;

use crate::helpers::TestApp;

async fn every_answer_carries_the_security_headers(app: TestApp) {
    let ana = app.session("ana@example.com").await;
    for path in [
        "/login",
        "/dashboard",
        "/static/app.js",
        "/api/me",
        "/api/no-such-route",
    ] {
        let response = ana.get(path).await;
        assert!(response.status() != StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let csp = header("content-security-policy");
        for directive in [
            "script-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp:?} lacks {directive}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
    }
    // No page has an inline script or style the policy would block.
    let device = ana.add_device("Sales", None).await;
    let devices = [
        format!("/device/{device}/leads"),
        format!("/device/{device}/actions"),
        format!("/device/{device}/whatsapp-web"),
    ];
    let pages = ["/dashboard", "/campaigns", "/account", "/docs", "/logout"];
    for path in pages.iter().map(|p| p.to_string()).chain(devices) {
        let path = path.as_str();
        let response = ana.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains("<script src=\"/static/") || !html.contains("<script"),
            "{path}"
        );
        assert!(
            !html.contains("<script>") && !html.contains("<style") && !html.contains(" style=\""),
            "{path}"
        );
        assert!(!html.contains(" onclick=") && !html.contains(" onsubmit="), "{path}");
    }
}

wafleet_core::testing::on_both_backends!(given crate::helpers::spawn_app => every_answer_carries_the_security_headers);
