//! The OpenAPI document matches what the server really does.

use crate::helpers::spawn_app;
use std::collections::BTreeSet;

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_every_documented_route_is_served() {
    let app = spawn_app(None).await;
    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        spec["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.1")
    );
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let served: BTreeSet<String> = [
        "GET /",
        "GET /docs",
        "GET /healthz",
        "GET /lessons/{id}",
        "GET /metrics",
        "POST /v1/feedback",
        "GET /openapi.json",
        "GET /page.css",
        "GET /favicon.svg",
        "GET /readyz",
        "GET /v1/lessons",
        "GET /v1/lessons/{id}",
        "GET /v1/models",
        "GET /v1/models/tutor/{lesson}",
        "GET /v1/search",
        "GET /widget.js",
        "POST /v1/chat",
        "POST /v1/chat/completions",
        "GET /lti/login",
        "POST /lti/login",
        "POST /lti/launch",
        "GET /lti/launch",
        "GET /lti/lessons/{id}",
        "POST /lti/deep-link",
        "GET /.well-known/jwks.json",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(documented, served);
    // Every documented operation is routed: nothing falls through to "no such endpoint" or 405.
    for operation in &documented {
        let (method, path) = operation.split_once(' ').expect("method and path");
        let url = format!(
            "{}{}",
            app.base,
            path.replace("{id}", "hybrid-routing")
                .replace("{lesson}", "hybrid-routing")
        );
        let response = match method {
            "GET" => {
                app.client
                    .get(&url)
                    .query(&[("q", "fallbacks")])
                    .send()
                    .await
            }
            _ => {
                app.client
                    .post(&url)
                    .body("{}")
                    .header("content-type", "application/json")
                    .send()
                    .await
            }
        }
        .expect("sent");
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        assert_ne!(status, 405, "{operation}");
        assert!(
            !body.contains("no such endpoint"),
            "{operation} is not routed"
        );
    }
    let docs = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(docs.status(), 200);
}
