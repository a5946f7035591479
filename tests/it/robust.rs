//! Random request bodies never make the server panic or answer 5xx.

use crate::helpers::config;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        "\\PC{0,40}".prop_map(Value::String),
        Just(Value::String("x".repeat(5000))),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map("[a-z_]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies shaped like chat requests, with each field replaced by anything.
fn chat_like() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("hybrid-routing")), Just(json!("nope")), json_value()],
        prop_oneof!["\\PC{0,200}".prop_map(Value::String), json_value()],
        prop_oneof![Just(Value::Null), json_value()],
        prop_oneof![Just(json!(true)), Just(json!(false)), json_value()],
    )
        .prop_map(|(lesson, message, history, stream)| {
            json!({"lesson_id": lesson, "message": message, "history": history, "stream": stream})
        })
}

#[test]
fn random_bodies_never_cause_a_5xx_or_a_panic() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(&dir);
    let loaded = tutor::app::load(&config).expect("loads");
    let state = tutor::http::AppState::with_tutor(loaded.tutor, Vec::new());
    let router = tutor::http::router(state);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 300,
        ..Default::default()
    });
    let bodies = prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        chat_like().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
        Just(format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes()),
    ];
    let paths = prop_oneof![
        Just("/v1/chat"),
        Just("/v1/chat/completions"),
        Just("/v1/search?q=%FF%FE&k=99999999999999999999"),
    ];
    runner
        .run(&(bodies, paths), |(body, path)| {
            let method = if path.starts_with("/v1/search") {
                "GET"
            } else {
                "POST"
            };
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request");
            let response = runtime
                .block_on(router.clone().oneshot(request))
                .expect("the router always answers");
            prop_assert!(
                response.status() < StatusCode::INTERNAL_SERVER_ERROR,
                "{path}: {}",
                response.status()
            );
            Ok(())
        })
        .expect("no 5xx for any body");
}
