//! Provider faults, fallback and routing, and cancellation: what the learner receives and that
//! nothing is left running.

use crate::helpers::{Behaviour, FakeModel, spawn_app, spawn_app_with};
use serde_json::json;
use std::time::{Duration, Instant};
use tutor::config::{NamedProvider, Routing};

const LESSON: &str = "hybrid-routing";
const QUESTION: &str = "What are fallbacks for?";

fn answer(text: &str) -> Behaviour {
    crate::helpers::answer(text, 4)
}

fn provider(name: &str, model: &FakeModel) -> NamedProvider {
    crate::helpers::chain_provider(
        name,
        model,
        Duration::from_millis(600),
        Duration::from_secs(3),
    )
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_before_the_first_token() {
    let model = FakeModel::start(Behaviour::FailFirst {
        status: 429,
        times: 1,
        retry_after: Some(1),
    })
    .await;
    let app = spawn_app(Some(&model)).await;
    let started = Instant::now();
    let (status, body) = app
        .chat(json!({"lesson_id": LESSON, "message": QUESTION}))
        .await;
    assert_eq!(status, 200, "{body}");
    // The fake cites [1]; the sentence stands on passage [2], and the citation says so.
    assert_eq!(
        body["answer"],
        "Every provider has outages, rate limits and slow days [2]."
    );
    assert_eq!(model.calls(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After was honoured"
    );
}

#[tokio::test]
async fn a_failing_or_silent_provider_falls_back_to_the_next_then_to_the_extractive_answerer() {
    let broken = FakeModel::named("broken", Behaviour::Status(500)).await;
    let silent = FakeModel::named(
        "silent",
        Behaviour::SlowStream {
            chunks: 3,
            delay: Duration::from_secs(5),
        },
    )
    .await;
    let good = FakeModel::named(
        "good",
        answer("When the closed provider is down, fall back to the open model [1]."),
    )
    .await;
    let providers = vec![
        provider("broken", &broken),
        provider("silent", &silent),
        provider("good", &good),
    ];
    let app = spawn_app_with(
        None,
        move |mut c| {
            c.providers = providers;
            c
        },
        |s| s,
    )
    .await;
    let (status, events) = app
        .chat_stream(json!({"lesson_id": LESSON, "message": QUESTION, "stream": true}))
        .await;
    assert_eq!(status, 200);
    let done = &events.last().expect("done").1;
    assert_eq!(done["backend"], "openai:good", "{done}");
    assert_eq!(
        done["answer"],
        "When the closed provider is down, fall back to the open model [2]."
    );

    // Every provider failing: the extractive answerer still gives a grounded, cited answer.
    let broken_too = FakeModel::named("broken-too", Behaviour::Garbage).await;
    let providers = vec![
        provider("broken", &broken),
        provider("broken-too", &broken_too),
    ];
    let app = spawn_app_with(
        None,
        move |mut c| {
            c.providers = providers;
            c
        },
        |s| s,
    )
    .await;
    let (status, body) = app
        .chat(json!({"lesson_id": LESSON, "message": QUESTION}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backend"], "extractive");
    assert!(!body["citations"].as_array().expect("citations").is_empty());
}

#[tokio::test]
async fn routing_sends_easy_questions_to_one_provider_and_the_rest_to_another() {
    let open = FakeModel::named(
        "open",
        answer("Every provider has outages, rate limits and slow days [1]."),
    )
    .await;
    let closed = FakeModel::named(
        "closed",
        answer("A robust router decides in advance what happens when they strike [1]."),
    )
    .await;
    let providers = vec![provider("open", &open), provider("closed", &closed)];
    let routing = Routing {
        easy: Some("open".to_string()),
        hard: Some("closed".to_string()),
        easy_max_words: Some(6),
        extractive_fallback: Some(true),
    };
    let app = spawn_app_with(
        None,
        move |mut c| {
            c.providers = providers;
            c.routing = routing;
            c
        },
        |s| s,
    )
    .await;
    let (_, easy) = app
        .chat(json!({"lesson_id": LESSON, "message": QUESTION}))
        .await;
    assert_eq!(easy["backend"], "openai:open", "{easy}");
    let (_, hard) = app
        .chat(json!({"lesson_id": LESSON, "message": "How should a team evaluate a router and combine fallbacks with cascades when providers fail?"}))
        .await;
    assert_eq!(hard["backend"], "openai:closed", "{hard}");
    assert_eq!((open.calls(), closed.calls()), (1, 1));
}

#[tokio::test]
async fn a_stream_that_breaks_after_it_began_ends_with_one_error_event() {
    let model = FakeModel::start(Behaviour::DropMidStream).await;
    let app = spawn_app(Some(&model)).await;
    let (status, events) = app
        .chat_stream(json!({"lesson_id": LESSON, "message": QUESTION, "stream": true}))
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"citations"));
    assert_eq!(names.last(), Some(&"error"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "error").count(), 1);
    assert!(
        !names.contains(&"done"),
        "a partial answer is never presented as complete"
    );
    assert_eq!(
        events.last().expect("error").1["error"]["code"],
        "upstream_error"
    );
    // The whole, verified sentence was sent; the half sentence never was.
    let streamed: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        streamed,
        "Every provider has outages, rate limits and slow days [2]."
    );
}

#[tokio::test]
async fn a_first_token_that_never_comes_is_a_504() {
    let model = FakeModel::start(Behaviour::SlowStream {
        chunks: 2,
        delay: Duration::from_secs(8),
    })
    .await;
    let app = spawn_app_with(
        Some(&model),
        |mut c| {
            if let Some(settings) = c.openai.as_mut() {
                settings.first_token_timeout = Duration::from_millis(400);
            }
            c
        },
        |s| s,
    )
    .await;
    let response = app
        .client
        .post(format!("{}/v1/chat", app.base))
        .json(&json!({"lesson_id": LESSON, "message": QUESTION, "stream": true}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn when_the_learner_leaves_the_upstream_request_is_dropped_at_once() {
    let model = FakeModel::start(Behaviour::SlowStream {
        chunks: 100,
        delay: Duration::from_millis(100),
    })
    .await;
    let app = spawn_app(Some(&model)).await;
    let mut response = app
        .client
        .post(format!("{}/v1/chat", app.base))
        .header("accept", "text/event-stream")
        .json(&json!({"lesson_id": LESSON, "message": QUESTION}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let first = response
        .chunk()
        .await
        .expect("reads")
        .expect("a first event");
    assert!(!first.is_empty());
    assert_eq!(model.closed(), 0, "the upstream is still streaming");
    drop(response);
    let deadline = Instant::now() + Duration::from_secs(2);
    while model.closed() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        model.closed(),
        1,
        "the upstream stream was dropped when the learner left"
    );
}
