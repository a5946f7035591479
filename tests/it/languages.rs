//! Questions in another language than the lesson's, with a model configured: translated for
//! retrieval and the gate, answered and verified in the lesson's language, rendered back in the
//! learner's, and the rendering checked before anything is sent.

use crate::helpers::{Behaviour, FakeModel, spawn_app};
use serde_json::json;

const ASKED: &str = "¿Cuál es la debilidad de una cascada?";
const OFF_TOPIC: &str = "¿Cómo se cocina un risotto?";
const ROW: &str = "escalated requests take longer";

/// The number of the passage in the system prompt that holds `text`.
fn passage_with(system: &str, text: &str) -> usize {
    let mut current = 0;
    for line in system.lines() {
        if let Some(rest) = line.strip_prefix('[')
            && let Some((n, _)) = rest.split_once(']')
            && let Ok(n) = n.parse()
        {
            current = n;
        }
        if line.to_lowercase().contains(text) {
            return current;
        }
    }
    panic!("no passage holds {text:?}")
}

/// The citation marker of an answer (`[n]`).
fn marker(text: &str) -> String {
    let (_, from) = text.split_once('[').expect("a citation");
    let (number, _) = from.split_once(']').expect("closed");
    format!("[{number}]")
}

/// A model that translates as asked and answers from the passage holding the cascade's row.
fn model_reply(system: &str, user: &str, rendering: &str) -> String {
    if system.contains("Translate the learner's message") {
        return match user {
            ASKED => "What is the weakness of a cascade?",
            OFF_TOPIC => "How do you cook risotto?",
            _ => "What is this?",
        }
        .to_string();
    }
    if system.contains("Translate the tutor's answer") {
        return rendering.replace("[n]", &marker(user));
    }
    format!(
        "A cascade's weakness is that escalated requests take longer [{}].",
        passage_with(system, ROW)
    )
}

fn faithful_translator(system: &str, user: &str) -> String {
    model_reply(
        system,
        user,
        "La debilidad de una cascada es que las solicitudes escaladas tardan más [n].",
    )
}

fn negating_translator(system: &str, user: &str) -> String {
    model_reply(
        system,
        user,
        "La debilidad de una cascada es que las solicitudes escaladas no tardan más [n].",
    )
}

#[tokio::test]
async fn a_spanish_question_is_answered_in_spanish_from_the_right_section_and_verified_in_english()
{
    let model = FakeModel::start(Behaviour::Script(faithful_translator)).await;
    let app = spawn_app(Some(&model)).await;
    let (status, body) = app
        .chat(json!({"lesson_id": "hybrid-routing", "message": ASKED}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refused"], false, "{body}");
    assert_eq!(body["kind"], "answer");
    assert_eq!(body["language"], "es", "{body}");
    let answer = body["answer"].as_str().expect("answer");
    assert!(
        answer.starts_with("La debilidad de una cascada"),
        "{answer}"
    );
    assert_eq!(
        body["citations"][0]["section_id"], "routing-strategies",
        "{body}"
    );
    // The draft was verified in English: one sentence, kept.
    assert_eq!(body["verification"]["sentences"], 1, "{body}");
    assert_eq!(body["verification"]["removed"], 0, "{body}");
    // Three calls: the question translated, the answer in English, the answer rendered.
    assert_eq!(model.calls(), 3);

    // The same question again: its translation comes from the cache.
    let (_, again) = app
        .chat(json!({"lesson_id": "hybrid-routing", "message": ASKED}))
        .await;
    assert_eq!(again["answer"], body["answer"]);
    assert_eq!(model.calls(), 5);

    // Streamed: the checked rendering arrives whole, and `done` agrees with it.
    let (status, events) = app
        .chat_stream(json!({"lesson_id": "hybrid-routing", "message": ASKED, "stream": true}))
        .await;
    assert_eq!(status, 200);
    let streamed: String = events
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["text"].as_str().expect("text"))
        .collect();
    let done = &events.last().expect("done").1;
    assert_eq!(streamed, done["answer"].as_str().expect("answer"));
    assert_eq!(done["language"], "es", "{done}");

    // Through the OpenAI-compatible facade, streamed: the same checked rendering.
    let response = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(&json!({
            "model": "tutor/hybrid-routing",
            "messages": [{"role": "user", "content": ASKED}],
            "stream": true,
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let sse = response.text().await.expect("body");
    let facade: String = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(facade, streamed);
}

#[tokio::test]
async fn a_rendering_that_changes_the_meaning_is_not_sent() {
    let model = FakeModel::start(Behaviour::Script(negating_translator)).await;
    let app = spawn_app(Some(&model)).await;
    let (status, body) = app
        .chat(json!({"lesson_id": "hybrid-routing", "message": ASKED}))
        .await;
    assert_eq!(status, 200, "{body}");
    // The verified English answer is sent instead of a Spanish one that lost its meaning.
    let answer = body["answer"].as_str().expect("answer");
    assert!(answer.starts_with("A cascade's weakness"), "{answer}");
    assert!(body.get("language").is_none(), "{body}");
}

#[tokio::test]
async fn an_off_topic_question_in_spanish_is_refused_in_spanish() {
    let model = FakeModel::start(Behaviour::Script(faithful_translator)).await;
    let app = spawn_app(Some(&model)).await;
    let (status, body) = app
        .chat(json!({"lesson_id": "hybrid-routing", "message": OFF_TOPIC}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refused"], true, "{body}");
    assert_eq!(body["language"], "es", "{body}");
    assert!(
        body["answer"]
            .as_str()
            .expect("answer")
            .starts_with("Buena pregunta"),
        "{body}"
    );
    // Only the translation was asked for: the gate refused before any answer was written.
    assert_eq!(model.calls(), 1);
}

#[tokio::test]
async fn when_the_model_cannot_translate_the_learner_is_asked_for_the_lesson_language() {
    let model = FakeModel::start(Behaviour::Status(500)).await;
    let app = spawn_app(Some(&model)).await;
    let (status, body) = app
        .chat(json!({"lesson_id": "hybrid-routing", "message": ASKED}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "other_language", "{body}");
    assert_eq!(body["refused"], false);
    assert!(
        body["answer"].as_str().expect("answer").contains("inglés"),
        "{body}"
    );
}
