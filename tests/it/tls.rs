//! A model server over HTTPS behind a private certificate authority: trusted through
//! `model.ca_file` (`OpenAiSettings::extra_roots`), and, since it speaks HTTP/2, the answers of
//! many learners at once share a few connections to it (at most four).

pub mod server;

use crate::helpers::{FakeModel, answer, spawn_app, test_ca};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

const LESSON: &str = "hybrid-routing";
const QUESTION: &str = "What are fallbacks for?";
const SENTENCE: &str = "Every provider has outages, rate limits and slow days [1].";

#[tokio::test]
async fn answers_through_an_https_model_share_a_few_http2_connections() {
    let (mut model, stats) =
        FakeModel::over_tls(answer(SENTENCE, 6), Duration::from_millis(200)).await;
    let mut settings = model.settings();
    settings.extra_roots = Some(test_ca().into());
    model.name = settings.model.clone();
    let app = crate::helpers::spawn_app_with(
        Some(&model),
        move |mut config| {
            config.openai = Some(settings);
            config
        },
        |state| state,
    )
    .await;

    // One answer after another opens the connections (the clients take turns; until a
    // connection has told a client the server speaks HTTP/2, answers sent together would each
    // open one).
    for _ in 0..4 {
        let (status, body) = app
            .chat(json!({"lesson_id": LESSON, "message": QUESTION}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["backend"], "openai:tls-model", "{body}");
        assert!(
            body["answer"]
                .as_str()
                .is_some_and(|a| a.starts_with("Every provider has outages")),
            "{body}"
        );
    }

    // Then twelve learners stream at once.
    let streams = (0..12).map(|_| {
        app.chat_stream(json!({"lesson_id": LESSON, "message": QUESTION, "stream": true}))
    });
    for (status, events) in futures::future::join_all(streams).await {
        assert_eq!(status, 200);
        let (name, done) = events.last().expect("events");
        assert_eq!(name, "done", "{events:?}");
        assert_eq!(done["backend"], "openai:tls-model", "{done}");
    }

    let versions = stats.versions.lock().expect("lock").clone();
    assert_eq!(versions.len(), 16);
    assert!(
        versions.iter().all(|v| *v == axum::http::Version::HTTP_2),
        "{versions:?}"
    );
    // Sixteen answers over four connections, twelve of them in flight at once: they shared.
    let connections = stats.connections.load(Ordering::SeqCst);
    let at_once = stats.most_at_once.load(Ordering::SeqCst);
    assert_eq!(connections, 4, "one connection per client");
    assert!(
        at_once > connections,
        "{at_once} at once over {connections}"
    );
}

#[tokio::test]
async fn an_https_model_whose_certificate_is_not_trusted_is_never_used() {
    // The same server without its certificate authority configured: the TLS handshake fails,
    // and no question reaches it.
    let (model, stats) = FakeModel::over_tls(answer(SENTENCE, 6), Duration::ZERO).await;
    let app = spawn_app(Some(&model)).await;
    let (status, body) = app
        .chat(json!({"lesson_id": LESSON, "message": QUESTION}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_error", "{body}");
    assert!(stats.connections.load(Ordering::SeqCst) >= 1);
    assert!(stats.versions.lock().expect("lock").is_empty());
    assert_eq!(model.calls(), 0);
}
