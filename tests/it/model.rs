//! The full stack through a fake OpenAI-compatible model on 127.0.0.1: what the model is sent,
//! how its answer is checked, and how its failures reach the client.

use crate::helpers::{
    Behaviour, FakeModel, answer, assert_citations_precede_markers, deltas, markers, spawn_app,
};
use serde_json::json;
use std::time::Duration;

const QUESTION: &str = "What does open weights mean?";

#[tokio::test]
async fn question_outside_the_lesson_is_refused_without_calling_the_model() {
    let model = FakeModel::start(answer("Paris [1].", 3)).await;
    let app = spawn_app(Some(&model)).await;
    for message in [
        "What is the capital of France?",
        "How do I bake sourdough bread?",
        "What does the EU AI Act require?",
    ] {
        let (status, body) = app
            .chat(json!({"lesson_id": "what-open-means", "message": message}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["refused"], true, "{message}: {body}");
        let (status, events) = app
            .chat_stream(json!({"lesson_id": "what-open-means", "message": message}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(events.last().expect("done").1["refused"], true);
    }
    assert_eq!(model.calls(), 0);
}

#[tokio::test]
async fn the_model_gets_fenced_passages_and_the_question_as_the_user_turn() {
    let model = FakeModel::start(answer("Open weights can be downloaded and run [1].", 5)).await;
    let app = spawn_app(Some(&model)).await;
    let history = json!([
        {"role": "user", "content": "What is a closed API?"},
        {"role": "assistant", "content": "Access only through the provider [1]."},
    ]);
    let (status, body) = app
        .chat(json!({"lesson_id": "what-open-means", "message": QUESTION, "history": history}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backend"], "openai:fake-model");
    let sent = model.last();
    assert_eq!(sent["model"], "fake-model");
    assert_eq!(sent["max_tokens"], 300);
    assert_eq!(sent["max_completion_tokens"], 300);
    assert!(sent["temperature"].is_number(), "{sent}");
    assert_eq!(sent["stream"], false);
    let messages = sent["messages"].as_array().expect("messages");
    assert_eq!(
        messages.len(),
        4,
        "system, two turns of history, the question"
    );
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().expect("system");
    assert!(system.contains("<lesson-passages>") && system.contains("</lesson-passages>"));
    assert!(system.contains("[1] (section:"), "{system}");
    assert_eq!(messages[1]["content"], "What is a closed API?");
    assert_eq!(messages[2]["role"], "assistant");
    let last = messages.last().expect("user turn");
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"], QUESTION);
    // The citation is one of the passages in the prompt.
    let cited = &body["citations"][0];
    assert!(system.contains(cited["text"].as_str().expect("text")));
}

#[tokio::test]
async fn shown_citations_count_from_one_in_order_of_appearance() {
    // The model cites its third passage first and its first one second (both verified): the
    // learner sees [1] then [2], on the JSON path and in the stream alike.
    let text = "Open weights means the parameter files can be downloaded and run on your own machines [3]. The Open Source Initiative published an Open Source AI Definition in 2024 [1]. The weights can be downloaded [3].";
    for chunk in [1, 5, 100] {
        let model = FakeModel::start(answer(text, chunk)).await;
        let app = spawn_app(Some(&model)).await;
        let (status, body) = app
            .chat(json!({"lesson_id": "what-open-means", "message": QUESTION}))
            .await;
        assert_eq!(status, 200, "{body}");
        let shown = body["answer"].as_str().expect("answer");
        assert_eq!(markers(shown), [1, 2, 1], "{shown}");
        let citations = body["citations"].as_array().expect("citations");
        let numbered: Vec<(u64, &str)> = citations
            .iter()
            .map(|c| {
                (
                    c["n"].as_u64().expect("n"),
                    c["section_id"].as_str().expect("id"),
                )
            })
            .collect();
        assert_eq!(
            numbered,
            [
                (1, "downloadable-weights"),
                (2, "open-source-versus-open-weights")
            ],
            "{body}"
        );

        let (status, events) = app
            .chat_stream(json!({"lesson_id": "what-open-means", "message": QUESTION}))
            .await;
        assert_eq!(status, 200);
        assert_citations_precede_markers(&events);
        // Nothing is cited before the model writes: the first event is empty, later ones grow.
        assert_eq!(events[0].1["citations"], json!([]), "{events:?}");
        let done = &events.last().expect("done").1;
        assert_eq!(done["answer"], body["answer"], "chunk size {chunk}");
        assert_eq!(done["citations"], body["citations"]);
        assert_eq!(deltas(&events), shown);
    }
}

#[tokio::test]
async fn markers_of_passages_the_model_was_not_given_never_reach_the_learner() {
    // A supported sentence with a marker of a passage it was not given, one the lesson does not
    // say, and one with a valid and an invented marker.
    let text = "Open weights means the parameter files can be downloaded and run on your own machines [9]. Labs love it [1]. You can fine-tune them and shrink them through quantization [1][12].";
    let mut answers = Vec::new();
    for chunk in [1, 2, 3, 7, 100] {
        let model = FakeModel::start(answer(text, chunk)).await;
        let app = spawn_app(Some(&model)).await;
        let (_, body) = app
            .chat(json!({"lesson_id": "what-open-means", "message": QUESTION}))
            .await;
        let json_answer = body["answer"].as_str().expect("answer").to_string();
        assert!(
            !json_answer.contains("[9]") && !json_answer.contains("[12]"),
            "{json_answer}"
        );
        assert!(!json_answer.contains("Labs love it"), "{json_answer}");
        assert!(json_answer.contains("Open weights means the parameter files can be downloaded"));
        assert!(
            json_answer.contains("You can fine-tune them"),
            "{json_answer}"
        );
        assert_eq!(body["verification"]["sentences"], 3, "{body}");
        assert_eq!(body["verification"]["removed"], 1, "{body}");
        // Every marker in the answer names a citation the answer carries.
        let ns: Vec<u64> = body["citations"]
            .as_array()
            .expect("c")
            .iter()
            .map(|c| c["n"].as_u64().expect("n"))
            .collect();
        for n in 1..=9 {
            assert_eq!(
                json_answer.contains(&format!("[{n}]")),
                ns.contains(&n),
                "[{n}] in {json_answer} vs citations {ns:?}"
            );
        }

        let (status, events) = app
            .chat_stream(json!({"lesson_id": "what-open-means", "message": QUESTION}))
            .await;
        assert_eq!(status, 200);
        let streamed: String = events
            .iter()
            .filter(|(n, _)| n == "delta")
            .map(|(_, d)| d["text"].as_str().expect("text"))
            .collect();
        assert_eq!(streamed, json_answer, "chunk size {chunk}");
        let done = &events.last().expect("done").1;
        assert_eq!(done["answer"], json_answer.as_str());
        assert_eq!(done["citations"], body["citations"]);
        assert_eq!(done["verification"], body["verification"]);
        answers.push(json_answer);
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "every chunk size shows the same answer");
}

#[tokio::test]
async fn a_model_that_says_the_passages_do_not_answer_becomes_a_refusal() {
    let model = FakeModel::start(answer("NOT_IN_LESSON", 4)).await;
    let app = spawn_app(Some(&model)).await;
    let (_, body) = app
        .chat(json!({"lesson_id": "what-open-means", "message": QUESTION}))
        .await;
    assert_eq!(body["refused"], true);
    assert_eq!(body["citations"], json!([]));
    let (_, events) = app
        .chat_stream(json!({"lesson_id": "what-open-means", "message": QUESTION}))
        .await;
    let done = &events.last().expect("done").1;
    assert_eq!(done["refused"], true);
    let streamed: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().expect("t"))
        .collect();
    assert!(!streamed.contains("NOT_IN_LESSON"));
    assert_eq!(streamed, done["answer"].as_str().expect("answer"));
}

#[tokio::test]
async fn provider_failures_become_upstream_errors_not_500s() {
    for (behaviour, status, code) in [
        (Behaviour::Status(500), 502, "upstream_error"),
        (Behaviour::Status(401), 502, "upstream_error"),
        (Behaviour::Garbage, 502, "upstream_error"),
        (
            Behaviour::Slow(Duration::from_secs(9)),
            504,
            "upstream_timeout",
        ),
    ] {
        let model = FakeModel::start(behaviour.clone()).await;
        let app = spawn_app(Some(&model)).await;
        let (got, body) = app
            .chat(json!({"lesson_id": "what-open-means", "message": QUESTION}))
            .await;
        assert_eq!(got, status, "{behaviour:?}: {body}");
        assert_eq!(body["error"]["code"], code);
        // A stream that fails before its first word is an HTTP error too.
        let response = app
            .client
            .post(format!("{}/v1/chat", app.base))
            .json(&json!({"lesson_id": "what-open-means", "message": QUESTION, "stream": true}))
            .send()
            .await
            .expect("sent");
        assert_eq!(
            response.status().as_u16(),
            status,
            "{behaviour:?} streaming"
        );
    }
}

/// The embedded answerer: a question only a number answers, on words the lesson has but with no
/// figure in it, is refused (over JSON and SSE) rather than answered with how to work it out; one
/// the lesson's numbers answer is answered with them.
#[tokio::test]
async fn a_question_only_a_number_answers_needs_a_number_in_the_lesson() {
    let app = spawn_app(None).await;
    let lesson = "choosing-a-deployment";
    let priced = "How much do hosting companies charge per million tokens today?";
    let (status, body) = app
        .chat(json!({"lesson_id": lesson, "message": priced}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["refused"], true, "{body}");
    assert_eq!(body["backend"], "extractive", "{body}");
    let (_, events) = app
        .chat_stream(json!({"lesson_id": lesson, "message": priced, "stream": true}))
        .await;
    assert_eq!(
        events.last().expect("done").1["refused"],
        true,
        "{events:?}"
    );
    // The gate alone finds the lesson on topic: the answerer is what says it has no figure.
    let (_, search) = app
        .get_json(&format!(
            "/v1/search?lesson_id={lesson}&q={}",
            priced.replace(' ', "%20").replace('?', "%3F")
        ))
        .await;
    assert!(
        search["hits"].as_array().is_some_and(|h| !h.is_empty()),
        "{search}"
    );
    // "How many" that the lesson's numbers answer (the question's own 2023 answers nothing).
    let counted = "How many operations did the 2023 US order use as its threshold?";
    let (_, body) = app
        .chat(json!({"lesson_id": "the-policy-layer", "message": counted}))
        .await;
    assert_eq!(body["refused"], false, "{body}");
    assert!(
        body["answer"].as_str().is_some_and(|a| a.contains("10^26")),
        "{body}"
    );
}
