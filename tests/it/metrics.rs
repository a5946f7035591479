//! `/metrics`, read with a real Prometheus text-format parser: counters move as requests are
//! made, and labels stay bounded.

use crate::helpers::{App, spawn_app};
use prometheus_parse::{Scrape, Value};
use serde_json::json;

async fn scrape(app: &App) -> Scrape {
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text")
}

/// The sum of a metric's samples whose labels include all of `labels` (histograms: the count).
fn total(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn counters_move_as_questions_are_asked_and_labels_stay_bounded() {
    let app = spawn_app(None).await;
    let before = scrape(&app).await;
    let questions = ["What are fallbacks for?", "How do I bake zqxjk bread?"];
    for message in questions {
        app.chat(json!({"lesson_id": "hybrid-routing", "message": message}))
            .await;
    }
    app.chat(json!({"lesson_id": "no-such-lesson-zqxjk", "message": "hi"}))
        .await;
    app.client
        .get(format!("{}/nowhere/zqxjk", app.base))
        .send()
        .await
        .expect("sent");
    // Made-up methods do not make new series.
    for method in ["ZQXJKA", "ZQXJKB"] {
        app.client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}/v1/lessons", app.base),
            )
            .send()
            .await
            .expect("sent");
    }
    let after = scrape(&app).await;
    grew_other(&before, &after);

    let grew = |metric: &str, labels: &[(&str, &str)], by: f64| {
        let (a, b) = (
            total(&before, metric, labels),
            total(&after, metric, labels),
        );
        assert!(b - a >= by, "{metric} {labels:?}: {a} -> {b}");
    };
    grew(
        "tutor_http_requests_total",
        &[("route", "/v1/chat"), ("status", "200")],
        2.0,
    );
    grew(
        "tutor_http_requests_total",
        &[("route", "/v1/chat"), ("status", "404")],
        1.0,
    );
    grew(
        "tutor_http_requests_total",
        &[("route", "unmatched"), ("status", "404")],
        1.0,
    );
    grew(
        "tutor_http_request_duration_seconds",
        &[("route", "/v1/chat")],
        3.0,
    );
    grew("tutor_retrieval_seconds", &[], 2.0);
    grew("tutor_gate_decisions_total", &[("decision", "answer")], 1.0);
    grew("tutor_gate_decisions_total", &[("decision", "refuse")], 1.0);
    grew("tutor_refusals_total", &[], 1.0);
    grew(
        "tutor_model_calls_total",
        &[("backend", "extractive"), ("outcome", "ok")],
        1.0,
    );

    for sample in &after.samples {
        for value in sample.labels.values() {
            assert!(
                !value.contains("zqxjk"),
                "user input leaked into a label: {sample:?}"
            );
        }
    }
}

fn grew_other(before: &Scrape, after: &Scrape) {
    let labels = [("route", "/v1/lessons"), ("method", "other")];
    let (a, b) = (
        total(before, "tutor_http_requests_total", &labels),
        total(after, "tutor_http_requests_total", &labels),
    );
    assert!(
        b - a >= 2.0,
        "unknown methods are counted as `other`: {a} -> {b}"
    );
}

#[tokio::test]
async fn metrics_can_live_on_their_own_listener_and_then_leave_the_api_listener() {
    let app =
        crate::helpers::spawn_app_with(None, |c| c, |state| state.with_metrics_elsewhere(true))
            .await;
    let on_api = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(on_api.status(), 404);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        tutor::http::serve_metrics(listener, std::future::pending())
            .await
            .expect("metrics serve")
    });
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(text.contains("tutor_http_requests_total"), "{text}");
}

#[tokio::test]
async fn a_failed_chain_counts_each_provider_once_with_timeouts_as_timeouts() {
    use crate::helpers::{Behaviour, FakeModel};
    let broken = FakeModel::named("zq-broken", Behaviour::Status(400)).await;
    let slow = FakeModel::named(
        "zq-slow",
        Behaviour::Slow(std::time::Duration::from_secs(5)),
    )
    .await;
    let providers: Vec<tutor::config::NamedProvider> = [("broken", &broken), ("slow", &slow)]
        .into_iter()
        .map(|(name, model)| {
            crate::helpers::chain_provider(
                name,
                model,
                std::time::Duration::from_millis(300),
                std::time::Duration::from_millis(600),
            )
        })
        .collect();
    let app = crate::helpers::spawn_app_with(
        None,
        move |mut c| {
            c.providers = providers;
            c.routing.extractive_fallback = Some(false);
            c
        },
        |s| s,
    )
    .await;
    let before = scrape(&app).await;
    let (status, body) = app
        .chat(json!({"lesson_id": "hybrid-routing", "message": "What are fallbacks for?"}))
        .await;
    assert!(status >= 500, "{body}");
    let after = scrape(&app).await;
    let delta = |backend: &str, outcome: &str| {
        let labels = [("backend", backend), ("outcome", outcome)];
        total(&after, "tutor_model_calls_total", &labels)
            - total(&before, "tutor_model_calls_total", &labels)
    };
    let seen: Vec<String> = after
        .samples
        .iter()
        .filter(|s| s.metric == "tutor_model_calls_total")
        .map(|s| format!("{:?}", s.labels))
        .collect();
    assert_eq!(
        delta("openai:zq-broken", "error"),
        1.0,
        "counted once, not again for the chain: {seen:?}"
    );
    assert_eq!(
        delta("openai:zq-slow", "timeout"),
        1.0,
        "a timeout is a timeout"
    );
    assert_eq!(delta("openai:zq-slow", "error"), 0.0);
}
