//! Nothing unverified leaves the tutor: a stand-in model that streams token by token answers
//! faithfully or with one thing wrong, and the learner sees the same verified text over JSON,
//! `/v1/chat` SSE and the OpenAI-compatible stream.

use crate::helpers::{Behaviour, FakeModel, answer, parse_sse, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use std::time::Duration;
use tutor::config::VerifySettings;

const LESSON: &str = "what-open-means";
const QUESTION: &str = "What does open weights mean?";
/// A sentence of the lesson that answers the question (it is in passage [3] for QUESTION).
const FAITHFUL: &str = "Open weights means the parameter files can be downloaded and run on your own machines or with any hosting company you choose";

/// A fake model streaming its answer a few characters at a time, as providers stream tokens.
fn token_by_token(text: &str) -> Behaviour {
    answer(text, 3)
}

/// What the learner is shown on each path: (JSON answer body, SSE deltas joined, SSE done,
/// OpenAI-compatible stream content joined).
struct Shown {
    json: Value,
    sse: String,
    done: Value,
    compat: String,
}

async fn ask_everywhere(model: &FakeModel, lesson: &str, question: &str) -> Shown {
    let app = spawn_app(Some(model)).await;
    let (status, json) = app
        .chat(json!({"lesson_id": lesson, "message": question}))
        .await;
    assert_eq!(status, 200, "{json}");
    let (status, events) = app
        .chat_stream(json!({"lesson_id": lesson, "message": question, "stream": true}))
        .await;
    assert_eq!(status, 200);
    let sse: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().expect("text").to_string())
        .collect();
    let (name, done) = events.last().expect("events").clone();
    assert_eq!(name, "done", "{events:?}");
    let body = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(&json!({"model": format!("tutor/{lesson}"), "stream": true,
                      "messages": [{"role": "user", "content": question}]}))
        .send()
        .await
        .expect("request sent")
        .text()
        .await
        .expect("body");
    let compat: String = parse_sse(&body)
        .iter()
        .filter_map(|(_, chunk)| chunk["choices"][0]["delta"]["content"].as_str())
        .collect::<String>();
    Shown {
        json,
        sse,
        done,
        compat,
    }
}

/// Every path shows the same text, and the stream never sends what `done` does not hold.
fn assert_same_everywhere(shown: &Shown) -> String {
    let answer = shown.json["answer"].as_str().expect("answer").to_string();
    assert_eq!(shown.sse, answer, "SSE deltas");
    assert_eq!(shown.done["answer"], answer.as_str(), "SSE done");
    assert_eq!(shown.compat, answer, "OpenAI-compatible stream");
    assert_eq!(shown.done["verification"], shown.json["verification"]);
    answer
}

#[tokio::test]
async fn a_faithful_answer_is_shown_whole_on_every_path() {
    let model = FakeModel::start(token_by_token(&format!(
        "Good question! {FAITHFUL} [3]. You can fine-tune them and inspect their internal activations [3]."
    )))
    .await;
    let shown = ask_everywhere(&model, LESSON, QUESTION).await;
    let answer = assert_same_everywhere(&shown);
    assert!(
        answer.starts_with("Good question! Open weights means"),
        "{answer}"
    );
    assert!(
        answer.contains("inspect their internal activations"),
        "{answer}"
    );
    assert_eq!(
        shown.json["verification"],
        json!({"sentences": 3, "removed": 0, "corrected": 0, "fallback": false})
    );
    assert_eq!(shown.json["backend"], "openai:fake-model");
}

#[tokio::test]
async fn a_swapped_number_or_name_never_reaches_the_learner() {
    for (text, wrong) in [
        (
            "Open weights means the parameter files can be downloaded from 500 mirrors [1]. You can fine-tune them and inspect their internal activations [1].",
            "500",
        ),
        (
            "Open weights means Microsoft lets you download the parameter files [1]. You can fine-tune them and inspect their internal activations [1].",
            "Microsoft",
        ),
    ] {
        let model = FakeModel::start(token_by_token(text)).await;
        let shown = ask_everywhere(&model, LESSON, QUESTION).await;
        let answer = assert_same_everywhere(&shown);
        assert!(
            !answer.contains(wrong),
            "{wrong} reached the learner: {answer}"
        );
        assert!(
            answer.contains("inspect their internal activations"),
            "{answer}"
        );
        assert_eq!(shown.json["verification"]["removed"], 1, "{}", shown.json);
    }
}

#[tokio::test]
async fn an_added_claim_and_a_negation_are_removed_and_the_rest_stands() {
    let model = FakeModel::start(token_by_token(&format!(
        "{FAITHFUL} [3]. Also, open weights are banned in the EU since 2023 [1]. Open weights never let you fine-tune them [1]."
    )))
    .await;
    let shown = ask_everywhere(&model, LESSON, QUESTION).await;
    let answer = assert_same_everywhere(&shown);
    assert_eq!(answer, format!("{FAITHFUL} [1]."));
    assert_eq!(shown.json["verification"]["removed"], 2);
}

#[tokio::test]
async fn a_wrong_citation_is_corrected_not_dropped() {
    // The answer cites [1]; the sentence stands on passage [3], which the learner sees as [1]
    // (shown numbers count from 1).
    let model = FakeModel::start(token_by_token(&format!("{FAITHFUL} [1]."))).await;
    let shown = ask_everywhere(&model, LESSON, QUESTION).await;
    let answer = assert_same_everywhere(&shown);
    assert_eq!(answer, format!("{FAITHFUL} [1]."));
    assert_eq!(shown.json["verification"]["corrected"], 1);
    let cited: Vec<(u64, &str)> = shown.json["citations"]
        .as_array()
        .expect("citations")
        .iter()
        .map(|c| {
            (
                c["n"].as_u64().expect("n"),
                c["section_id"].as_str().expect("id"),
            )
        })
        .collect();
    assert_eq!(cited, vec![(1, "downloadable-weights")]);
}

#[tokio::test]
async fn when_every_sentence_is_removed_the_lesson_answers_instead() {
    let model = FakeModel::start(token_by_token(
        "Open weights were invented by Google in 2019 [1]. They are banned in Europe [2].",
    ))
    .await;
    let shown = ask_everywhere(&model, LESSON, QUESTION).await;
    let answer = assert_same_everywhere(&shown);
    assert_eq!(shown.json["refused"], false);
    assert_eq!(shown.json["backend"], "extractive");
    assert_eq!(
        shown.json["verification"],
        json!({"sentences": 2, "removed": 2, "corrected": 0, "fallback": true})
    );
    assert!(
        !answer.contains("Google") && !answer.contains("2019"),
        "{answer}"
    );
    assert!(!shown.json["citations"].as_array().expect("c").is_empty());
}

#[tokio::test]
async fn a_prompt_leak_hidden_with_zero_width_spaces_is_never_streamed() {
    let leak = "Use only what the numbered passages below say. Do not add facts, examples or advice from anywhere else."
        .split(' ')
        .collect::<Vec<_>>()
        .join("\u{200b}");
    let model = FakeModel::start(token_by_token(&leak)).await;
    let shown = ask_everywhere(&model, LESSON, QUESTION).await;
    let answer = assert_same_everywhere(&shown);
    assert_eq!(shown.json["refused"], true, "{}", shown.json);
    assert!(!answer.to_lowercase().contains("numbered"), "{answer}");
    assert!(!shown.sse.contains('\u{200b}'));
}

#[tokio::test]
async fn not_in_lesson_after_an_answer_keeps_only_the_verified_part() {
    let model = FakeModel::start(token_by_token(&format!("{FAITHFUL} [3]. NOT_IN_LESSON"))).await;
    let shown = ask_everywhere(&model, LESSON, QUESTION).await;
    let answer = assert_same_everywhere(&shown);
    assert_eq!(answer, format!("{FAITHFUL} [1]."));
    assert_eq!(shown.json["refused"], false);
}

/// A sentence whose numbers and names are in the lesson but only part of whose words are.
const UNDECIDED: &str =
    "Open weights let hobbyists tinker freely at weekends with parameter files and friends [3].";

async fn with_second_opinion(verifier: &FakeModel, timeout: Duration) -> Value {
    judged_by(verifier, timeout, &format!("{FAITHFUL} [3]. {UNDECIDED}")).await
}

/// Asks over JSON and SSE, with `verifier` as the second opinion, while the model says `said`.
async fn judged_by(verifier: &FakeModel, timeout: Duration, said: &str) -> Value {
    let model = FakeModel::start(token_by_token(said)).await;
    let mut settings = verifier.settings();
    settings.model = "judge".to_string();
    let app = spawn_app_with(
        Some(&model),
        move |mut c| {
            c.verify = Some(VerifySettings { settings, timeout });
            c
        },
        |s| s,
    )
    .await;
    let (status, body) = app
        .chat(json!({"lesson_id": LESSON, "message": QUESTION}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, events) = app
        .chat_stream(json!({"lesson_id": LESSON, "message": QUESTION, "stream": true}))
        .await;
    let streamed: String = crate::helpers::deltas(&events);
    assert_eq!(streamed, body["answer"].as_str().expect("answer"));
    body
}

#[tokio::test]
async fn undecided_sentences_go_to_the_second_opinion_in_one_call() {
    let yes = FakeModel::start(token_by_token("1: SUPPORTED")).await;
    let body = with_second_opinion(&yes, Duration::from_secs(5)).await;
    assert!(
        body["answer"].as_str().expect("a").contains("hobbyists"),
        "{body}"
    );
    assert_eq!(
        yes.calls(),
        2,
        "one call per answer (JSON, then the stream)"
    );
    let sent = yes.last();
    assert_eq!(sent["model"], "judge");
    let system = sent["messages"][0]["content"].as_str().expect("system");
    assert!(
        system.contains("1. Open weights let hobbyists tinker"),
        "{system}"
    );
    assert!(system.contains("<lesson-passages>"), "{system}");

    let no = FakeModel::start(token_by_token("1: UNSUPPORTED")).await;
    let body = with_second_opinion(&no, Duration::from_secs(5)).await;
    assert_eq!(body["answer"], format!("{FAITHFUL} [1]."));
    assert_eq!(body["verification"]["removed"], 1);
}

#[tokio::test]
async fn a_failing_or_slow_second_opinion_keeps_the_lexical_verdict() {
    tutor::telemetry::install();
    let broken = FakeModel::start(Behaviour::Status(500)).await;
    let body = with_second_opinion(&broken, Duration::from_secs(5)).await;
    assert_eq!(body["answer"], format!("{FAITHFUL} [1]."));
    let slow = FakeModel::start(Behaviour::Slow(Duration::from_secs(3))).await;
    let body = with_second_opinion(&slow, Duration::from_millis(300)).await;
    assert_eq!(body["answer"], format!("{FAITHFUL} [1]."));
    let metrics = tutor::telemetry::render();
    for outcome in ["error", "timeout"] {
        assert!(
            metrics.contains(&format!(
                "tutor_second_opinions_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome} not counted: {metrics}"
        );
    }
}

#[tokio::test]
async fn a_swapped_ordinary_word_is_a_doubt_the_second_opinion_settles() {
    // "parameter files" swapped for "training logs": every word is somewhere in the lesson, so
    // the lexical checks alone let it through; it is a close restatement with a word put in,
    // which goes to the second opinion when there is one.
    let swapped = FAITHFUL.replace("parameter files", "training logs");
    let said = format!("{FAITHFUL} [3]. In other words, {swapped} [3].");
    let lexical = FakeModel::start(token_by_token(&said)).await;
    let shown = ask_everywhere(&lexical, LESSON, QUESTION).await;
    let answer = assert_same_everywhere(&shown);
    assert!(answer.contains("training logs"), "{answer}");

    let no = FakeModel::start(token_by_token("1: UNSUPPORTED")).await;
    let body = judged_by(&no, Duration::from_secs(5), &said).await;
    assert_eq!(body["answer"], format!("{FAITHFUL} [1]."), "{body}");
    assert_eq!(body["verification"]["removed"], 1);
    let system = no.last()["messages"][0]["content"]
        .as_str()
        .expect("system")
        .to_string();
    assert!(system.contains("training logs"), "{system}");
}
