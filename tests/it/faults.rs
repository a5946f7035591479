//! Provider faults, fallback and routing, and cancellation: what the learner receives and that
//! nothing is left running.

use crate::helpers::{Behaviour, FakeModel, PATIENCE, eventually_true, spawn_app, spawn_app_with};
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
    // The fake cites [1]; the sentence stands on passage [2], which the citation names (shown
    // as [1], the first the answer cites).
    assert_eq!(
        body["answer"],
        "Every provider has outages, rate limits and slow days [1]."
    );
    assert_eq!(
        body["citations"][0]["passage_id"],
        format!("{LESSON}#fallbacks-and-failover-1"),
        "{body}"
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
        "When the closed provider is down, fall back to the open model [1]."
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
        "Every provider has outages, rate limits and slow days [1]."
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
    eventually_true(PATIENCE, async || model.closed() > 0).await;
    assert_eq!(
        model.closed(),
        1,
        "the upstream stream was dropped when the learner left"
    );
}

/// A model client that panics: in the middle of a whole answer, and after the first piece of
/// a streamed one (a bug anywhere below the request, as the learner would meet it).
struct PanickingModel;

impl tutor::llm::ChatModel for PanickingModel {
    fn name(&self) -> String {
        "openai:panicking".to_string()
    }

    fn complete<'a>(
        &'a self,
        _request: &'a tutor::llm::ModelRequest,
    ) -> futures::future::BoxFuture<'a, Result<tutor::llm::Reply, tutor::llm::ModelError>> {
        Box::pin(async { panic!("a bug in the model client: Möngke") })
    }

    fn stream<'a>(
        &'a self,
        _request: &'a tutor::llm::ModelRequest,
    ) -> futures::future::BoxFuture<'a, Result<tutor::llm::ReplyStream, tutor::llm::ModelError>>
    {
        use futures::StreamExt;
        Box::pin(async {
            let pieces = futures::stream::iter(0..2).map(|n| {
                assert!(n == 0, "a bug in the model's stream");
                Ok("A fallback answers when the first model fails [1]. ".to_string())
            });
            Ok(tutor::llm::ReplyStream {
                backend: "openai:panicking".to_string(),
                text: pieces.boxed(),
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_answers_internal_or_an_error_event_and_logs_the_turn_as_failed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = crate::helpers::config(&dir);
    let loaded = tokio::task::spawn_blocking(move || tutor::app::load(&config).expect("loads"))
        .await
        .expect("load task");
    let store: std::sync::Arc<dyn tutor::conversation_log::LogStore> = std::sync::Arc::new(
        tutor::conversation_log::SqliteStore::open(&dir.path().join("log.sqlite")).expect("log"),
    );
    let logger = tutor::conversation_log::Logger::start(store.clone(), Duration::from_secs(3600));
    let tutor = tutor::chat::Tutor::new(
        loaded.tutor.retriever().clone(),
        std::sync::Arc::new(tutor::prompts::Prompts::built_in()),
        std::sync::Arc::new(PanickingModel),
    )
    .with_logger(logger);
    let state = tutor::http::AppState::with_tutor(tutor, Vec::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let serving = state.clone();
    tokio::spawn(async move {
        tutor::http::serve(listener, serving, std::future::pending())
            .await
            .expect("serves")
    });
    let client = reqwest::Client::new();
    let body = json!({"lesson_id": LESSON, "message": QUESTION, "conversation_id": "c-panic"});

    // JSON: 500 in the API's error shape, with the request's id.
    let response = client
        .post(format!("{base}/v1/chat"))
        .json(&body)
        .send()
        .await
        .expect("an answer, not a closed connection");
    assert_eq!(response.status(), 500);
    assert!(response.headers().contains_key("x-request-id"));
    let error: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "internal", "{error}");

    // SSE: what was shown stays, then one `error` event, and the stream ends.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = client
        .post(format!("{base}/v1/chat"))
        .header("accept", "text/event-stream")
        .json(&streamed)
        .send()
        .await
        .expect("a stream")
        .text()
        .await
        .expect("the stream ends cleanly");
    let events = crate::helpers::parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"error"), "{events:?}");
    assert_eq!(names.iter().filter(|n| **n == "error").count(), 1);
    assert!(!names.contains(&"done"), "{events:?}");
    assert_eq!(events.last().expect("error").1["error"]["code"], "internal");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for at in ["answer", "stream"] {
        assert!(
            metrics.contains(&format!("tutor_panics_total{{at=\"{at}\"}} 1")),
            "{at}: {metrics}"
        );
    }

    // Both turns are in the log, as failed, with the conversation.
    let logger = state.tutor().expect("tutor");
    let flushed = tokio::task::spawn_blocking(move || {
        logger
            .logger()
            .expect("a logger")
            .flush_within(Duration::from_secs(10))
    })
    .await
    .expect("flush task");
    assert!(flushed);
    let records = store.records(0, None).expect("records");
    let failed: Vec<_> = records
        .iter()
        .filter(|r| r.kind.as_deref() == Some("failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{records:?}");
    for record in failed {
        assert_eq!(record.lesson_id, LESSON);
        assert_eq!(record.question, QUESTION);
        assert_eq!(
            record.conversation_id.as_ref().map(|c| c.as_str()),
            Some("c-panic")
        );
        assert!(
            record
                .outcome
                .as_deref()
                .is_some_and(|o| o.contains("a bug")),
            "{record:?}"
        );
    }
}
