//! Quizzes over HTTP: "quiz me", graded replies and hints on `/v1/chat` (JSON and SSE) and the
//! OpenAI-compatible facade; quiz integrity with the embedded answerer and with a model; bad
//! requests; `tutor check` on a broken quiz file.

use crate::helpers::{FakeModel, answer, config, parse_sse, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use std::process::Command;
use tutor::conversation_log::LogStore;

/// The sample course's `hybrid-routing.quiz.toml` and its cascade item.
const LESSON: &str = "hybrid-routing";
const CASCADE_ITEM: &str = "unreliable-signal";

/// The id of the quiz's first item, which "quiz me" asks first.
fn first_item() -> String {
    quiz_file()["items"][0]["id"]
        .as_str()
        .expect("an id")
        .to_string()
}

fn quiz_file() -> toml::Table {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/lessons/hybrid-routing.quiz.toml"
    );
    toml::from_str(&std::fs::read_to_string(path).expect("quiz file")).expect("TOML")
}

/// (question, answer, section) of a quiz item of the sample lesson.
fn item(id: &str) -> (String, String, String) {
    let file = quiz_file();
    let items = file["items"].as_array().expect("items");
    let item = items
        .iter()
        .find(|i| i["id"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("no item {id}"));
    let field = |name: &str| item[name].as_str().expect("a string").to_string();
    (field("question"), field("answer"), field("section"))
}

fn plain(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn says(text: &Value, phrase: &str) -> bool {
    plain(text.as_str().unwrap_or("")).contains(&plain(phrase))
}

#[tokio::test]
async fn quiz_me_asks_an_item_and_grades_the_reply_over_json_and_sse() {
    let app = spawn_app(None).await;
    let first = first_item();
    let (question, answer, section) = item(&first);

    let (status, asked) = app.chat(json!({"lesson_id": LESSON, "mode": "quiz"})).await;
    assert_eq!(status, 200, "{asked}");
    assert_eq!(asked["kind"], "quiz_question");
    assert_eq!(asked["quiz"]["item_id"], first.as_str());
    assert_eq!(asked["quiz"]["question"], question.as_str());
    assert_eq!(asked["quiz"]["section_id"], section.as_str());
    assert!(says(&asked["answer"], &question), "{asked}");
    assert!(
        !asked.to_string().contains(&answer),
        "the expected answer is never sent: {asked}"
    );

    // The items already asked are skipped.
    let (_, next) = app
        .chat(json!({"lesson_id": LESSON, "mode": "quiz", "quiz_asked": [first]}))
        .await;
    assert_ne!(next["quiz"]["item_id"], first.as_str(), "{next}");

    let grade = |reply: &str| json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": first, "message": reply});
    // Right, written otherwise: upper case, punctuation, extra words.
    let (status, graded) = app
        .chat(grade(&format!("I think: {}!", answer.to_uppercase())))
        .await;
    assert_eq!(status, 200, "{graded}");
    assert_eq!(graded["kind"], "grade");
    assert_eq!(graded["grade"], "correct");
    assert_eq!(graded["citations"][0]["section_id"], section.as_str());
    assert!(says(&graded["answer"], "That's right"), "{graded}");
    assert_eq!(graded["quiz"]["attempt"], 1, "{graded}");
    assert_eq!(graded["quiz"]["tries_left"], 0, "{graded}");
    // Not yet right on the first try: a hint toward the section and the question again, with
    // the answer kept back, and one more try.
    let (_, graded) = app.chat(grade("a bigger GPU budget")).await;
    assert_eq!(graded["grade"], "not_yet", "{graded}");
    assert_eq!(graded["quiz"]["attempt"], 1, "{graded}");
    assert_eq!(graded["quiz"]["tries_left"], 1, "{graded}");
    assert!(
        !says(&graded["answer"], &answer) && !graded.to_string().contains(&answer),
        "the answer waits for the last try: {graded}"
    );
    assert!(says(&graded["answer"], "another go"), "{graded}");
    assert!(
        says(&graded["answer"], &question),
        "the question again: {graded}"
    );
    assert_eq!(graded["citations"][0]["section_id"], section.as_str());
    // The second try, still not right: the lesson's sentence is quoted.
    let mut second = grade("a bigger GPU budget");
    second["quiz_attempt"] = json!(2);
    let (_, graded) = app.chat(second.clone()).await;
    assert_eq!(graded["grade"], "not_yet", "{graded}");
    assert_eq!(graded["quiz"]["tries_left"], 0, "{graded}");
    assert!(
        says(&graded["answer"], &answer),
        "after the last try the lesson's sentence is quoted: {graded}"
    );
    assert!(!says(&graded["answer"], "another go"), "{graded}");
    // Right on the second try.
    second["message"] = json!(answer);
    let (_, graded) = app.chat(second).await;
    assert_eq!(graded["grade"], "correct", "{graded}");
    assert_eq!(graded["quiz"]["attempt"], 2, "{graded}");

    // The same over SSE: the citations, the text as deltas, then done with the grade.
    let mut body = grade(&answer);
    body["stream"] = json!(true);
    let (status, events) = app.chat_stream(body).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["citations", "delta", "done"], "{events:?}");
    assert_eq!(events[0].1["citations"][0]["section_id"], section.as_str());
    assert_eq!(events[2].1["grade"], "correct");
    assert_eq!(events[1].1["text"], events[2].1["answer"]);

    let (_, events) = app
        .chat_stream(json!({"lesson_id": LESSON, "mode": "quiz", "stream": true}))
        .await;
    assert_eq!(events.last().expect("done").1["kind"], "quiz_question");
}

#[tokio::test]
async fn a_multiple_choice_question_lists_each_choice_on_a_line_of_its_own() {
    let app = spawn_app(None).await;
    let file = quiz_file();
    let items = file["items"].as_array().expect("items");
    let at = items
        .iter()
        .position(|i| i.get("choices").is_some())
        .expect("an item with choices");
    let before: Vec<&str> = items[..at]
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    let choices: Vec<&str> = items[at]["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    let (status, asked) = app
        .chat(json!({"lesson_id": LESSON, "mode": "quiz", "quiz_asked": before}))
        .await;
    assert_eq!(status, 200, "{asked}");
    assert_eq!(
        asked["quiz"]["choices"],
        json!(choices),
        "structured: {asked}"
    );
    let text = asked["answer"].as_str().expect("text");
    let lines: Vec<&str> = text.lines().collect();
    for (i, choice) in choices.iter().enumerate() {
        let letter = char::from(b'a' + i as u8);
        let line = format!("{letter}) {choice}");
        assert!(
            lines.contains(&line.as_str()),
            "{line:?} on its own line: {text:?}"
        );
    }
}

#[tokio::test]
async fn a_hint_points_to_the_section_without_the_answer_over_json_and_sse() {
    let app = spawn_app(None).await;
    // Not a quiz question: the hint is the one asked for.
    let question = "How does a cascade decide when to escalate a request?";
    let (_, answered) = app
        .chat(json!({"lesson_id": LESSON, "message": question}))
        .await;
    let best = answered["citations"][0].clone();
    for stream in [false, true] {
        let body =
            json!({"lesson_id": LESSON, "message": question, "mode": "hint", "stream": stream});
        let hint = if stream {
            let (status, events) = app.chat_stream(body).await;
            assert_eq!(status, 200);
            let (name, done) = events.last().expect("events").clone();
            assert_eq!(name, "done");
            let deltas: String = crate::helpers::deltas(&events);
            assert_eq!(deltas, done["answer"].as_str().expect("answer"));
            done
        } else {
            let (status, hint) = app.chat(body).await;
            assert_eq!(status, 200, "{hint}");
            hint
        };
        assert_eq!(hint["kind"], "hint", "{hint}");
        assert_eq!(hint["hint"], "requested");
        assert_eq!(hint["citations"][0]["section_id"], best["section_id"]);
        assert!(hint["answer"].as_str().expect("a").contains("[1]"));
        // No sentence of the passage it points to is quoted.
        for sentence in best["text"].as_str().expect("text").split(". ") {
            if sentence.split_whitespace().count() >= 4 {
                assert!(!says(&hint["answer"], sentence), "{hint} quotes {sentence}");
            }
        }
    }
    // A quiz question in hint mode says it is one.
    let (question, answer, section) = item(CASCADE_ITEM);
    let (_, hint) = app
        .chat(json!({"lesson_id": LESSON, "message": question, "mode": "hint"}))
        .await;
    assert_eq!(
        (hint["kind"].as_str(), hint["hint"].as_str()),
        (Some("hint"), Some("quiz_item"))
    );
    assert_eq!(hint["citations"][0]["section_id"], section.as_str());
    assert!(!says(&hint["answer"], &answer), "{hint}");
    // A question the lesson does not cover is refused in hint mode too.
    let (_, refused) = app
        .chat(json!({"lesson_id": LESSON, "message": "How do I bake sourdough bread?", "mode": "hint"}))
        .await;
    assert_eq!(refused["kind"], "refusal", "{refused}");
}

#[tokio::test]
async fn asking_a_quiz_question_gets_a_hint_and_another_question_an_answer() {
    let model = FakeModel::start(answer("This reply is never used [1].", 5)).await;
    for backend in [None, Some(&model)] {
        let app = spawn_app(backend).await;
        let (question, answer, section) = item(CASCADE_ITEM);
        let (status, hint) = app
            .chat(json!({"lesson_id": LESSON, "message": question}))
            .await;
        assert_eq!(status, 200, "{hint}");
        assert_eq!(hint["kind"], "hint", "{hint}");
        assert_eq!(hint["hint"], "quiz_item");
        assert_eq!(hint["quiz"]["item_id"], CASCADE_ITEM);
        assert_eq!(hint["citations"][0]["section_id"], section.as_str());
        assert!(says(&hint["answer"], "quiz questions"), "{hint}");
        assert!(!says(&hint["answer"], &answer), "{hint}");

        // Same topic, another question: answered.
        let (_, other) = app
            .chat(json!({"lesson_id": LESSON, "message": "How does a cascade decide when to escalate?"}))
            .await;
        assert_eq!(other["kind"], "answer", "{other}");
    }
    assert_eq!(
        model.calls(),
        1,
        "the quiz question never reached the model"
    );
}

#[tokio::test]
async fn a_model_sentence_giving_a_nearby_quiz_answer_away_is_removed_on_every_path() {
    // A question near the quiz item (not the item itself): the model's second sentence hands the
    // quiz's answer over and is removed, in JSON and in the stream alike.
    let (_, answer, _) = item(CASCADE_ITEM);
    let said = format!(
        "A cascade tries the cheap model first and escalates if a check fails [1]. {} is an unreliable signal on its own [1].",
        capitalised(&answer)
    );
    let model = FakeModel::start(crate::helpers::answer(&said, 4)).await;
    let app = spawn_app(Some(&model)).await;
    let question = "In a cascade, which check is unreliable by itself?";
    let (status, json_answer) = app
        .chat(json!({"lesson_id": LESSON, "message": question}))
        .await;
    assert_eq!(status, 200, "{json_answer}");
    assert!(!says(&json_answer["answer"], &answer), "{json_answer}");
    let (_, events) = app
        .chat_stream(json!({"lesson_id": LESSON, "message": question, "stream": true}))
        .await;
    let streamed: String = crate::helpers::deltas(&events);
    assert!(
        !plain(&streamed).contains(&plain(&answer)),
        "never streamed: {streamed}"
    );
    assert_eq!(
        streamed,
        events.last().expect("done").1["answer"]
            .as_str()
            .expect("a")
    );
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn quiz_integrity_off_answers_quiz_questions() {
    let lessons = tempfile::tempdir().expect("lessons");
    for name in ["hybrid-routing.md", "hybrid-routing.questions.toml"] {
        std::fs::copy(
            crate::helpers::sample_lessons().join(name),
            lessons.path().join(name),
        )
        .expect("copy");
    }
    let quiz =
        std::fs::read_to_string(crate::helpers::sample_lessons().join("hybrid-routing.quiz.toml"))
            .expect("quiz")
            .replace("quiz_integrity = \"hint\"", "quiz_integrity = \"off\"");
    std::fs::write(lessons.path().join("hybrid-routing.quiz.toml"), quiz).expect("write");
    let dir = lessons.path().to_path_buf();
    let app = spawn_app_with(
        None,
        move |mut c| {
            c.lessons_dir = dir;
            c
        },
        |s| s,
    )
    .await;
    let (question, _, _) = item(CASCADE_ITEM);
    let (_, reply) = app
        .chat(json!({"lesson_id": LESSON, "message": question}))
        .await;
    assert_eq!(reply["kind"], "answer", "{reply}");
    // Hints and quizzes still work on request.
    let (_, hint) = app
        .chat(json!({"lesson_id": LESSON, "message": question, "mode": "hint"}))
        .await;
    assert_eq!(hint["kind"], "hint", "{hint}");
}

#[tokio::test]
async fn bad_quiz_requests_get_clear_errors() {
    let app = spawn_app(None).await;
    let cases = [
        json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": "no-such-item", "message": "x"}),
        json!({"lesson_id": LESSON, "message": "x", "quiz_item": "rules-baseline"}),
        json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": "bad id!", "message": "x"}),
        json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": "rules-baseline"}),
        json!({"lesson_id": LESSON, "mode": "hint"}),
        json!({"lesson_id": LESSON, "mode": "teach", "message": "x"}),
        json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": "rules-baseline", "message": "x", "quiz_attempt": 0}),
        json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": "rules-baseline", "message": "x", "quiz_attempt": -1}),
        json!({"lesson_id": LESSON, "message": "x", "quiz_attempt": 2}),
        json!({"lesson_id": LESSON, "mode": "quiz", "quiz_attempt": 2}),
    ];
    for body in cases {
        let (status, error) = app.chat(body.clone()).await;
        assert!(status == 400 || status == 422, "{body} -> {status} {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{error}"
        );
    }
}

#[tokio::test]
async fn the_facade_lists_hint_and_quiz_models_and_serves_them() {
    let app = spawn_app(None).await;
    let (status, models) = app.get_json("/v1/models").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for suffix in ["", ":hint", ":quiz"] {
        let id = format!("tutor/{LESSON}{suffix}");
        assert!(ids.contains(&id.as_str()), "{id} listed");
        let (status, one) = app.get_json(&format!("/v1/models/{id}")).await;
        assert_eq!((status, one["id"].as_str()), (200, Some(id.as_str())));
    }
    let (status, _) = app
        .get_json(&format!("/v1/models/tutor/{LESSON}:teach"))
        .await;
    assert_eq!(status, 404);

    let complete = |model: String, messages: Value, stream: bool| {
        let client = app.client.clone();
        let url = format!("{}/v1/chat/completions", app.base);
        async move {
            let response = client
                .post(url)
                .json(&json!({"model": model, "messages": messages, "stream": stream}))
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status().as_u16(), 200);
            let text = response.text().await.expect("body");
            if stream {
                parse_sse(&text)
                    .iter()
                    .filter_map(|(_, c)| c["choices"][0]["delta"]["content"].as_str())
                    .collect::<String>()
            } else {
                let body: Value = serde_json::from_str(&text).expect("JSON");
                body["choices"][0]["message"]["content"]
                    .as_str()
                    .expect("content")
                    .to_string()
            }
        }
    };
    let (question, answer, _) = item(&first_item());
    for stream in [false, true] {
        // :quiz asks; the reply to the question it asked is graded.
        let asked = complete(
            format!("tutor/{LESSON}:quiz"),
            json!([{"role": "user", "content": "quiz me"}]),
            stream,
        )
        .await;
        assert!(asked.contains(&question), "{asked}");
        let graded = complete(
            format!("tutor/{LESSON}:quiz"),
            json!([
                {"role": "user", "content": "quiz me"},
                {"role": "assistant", "content": asked},
                {"role": "user", "content": answer},
            ]),
            stream,
        )
        .await;
        assert!(graded.starts_with("That's right!"), "{graded}");
        // A wrong reply gets another go (the question again), then the answer.
        let mut turns = vec![
            json!({"role": "user", "content": "quiz me"}),
            json!({"role": "assistant", "content": asked}),
            json!({"role": "user", "content": "a bigger GPU budget"}),
        ];
        let again = complete(format!("tutor/{LESSON}:quiz"), json!(turns), stream).await;
        assert!(again.starts_with("Not yet."), "{again}");
        assert!(
            again.contains(&question) && !says(&json!(again), &answer),
            "{again}"
        );
        turns.push(json!({"role": "assistant", "content": again}));
        turns.push(json!({"role": "user", "content": "still a bigger GPU budget"}));
        let last = complete(format!("tutor/{LESSON}:quiz"), json!(turns), stream).await;
        assert!(
            last.starts_with("Not yet.") && says(&json!(last), &answer),
            "the second try gets the answer: {last}"
        );
        // :hint gives a hint, never the answer.
        let hint = complete(
            format!("tutor/{LESSON}:hint"),
            json!([{"role": "user", "content": question}]),
            stream,
        )
        .await;
        assert!(says(&json!(hint), "hint"), "{hint}");
        assert!(!says(&json!(hint), &answer), "{hint}");
    }
}

#[test]
fn tutor_check_reports_bad_quiz_items_by_line_and_checks_the_rest() {
    let lessons = tempfile::tempdir().expect("lessons");
    std::fs::copy(
        crate::helpers::sample_lessons().join("hybrid-routing.md"),
        lessons.path().join("hybrid-routing.md"),
    )
    .expect("copy");
    std::fs::write(
        lessons.path().join("hybrid-routing.quiz.toml"),
        r#"[[items]]
id = "good"
question = "What does a cascade try first?"
answer = "the cheap model"
section = "routing-strategies"

[[items]]
id = "wrong-fact"
question = "What does a cascade try first?"
answer = "the most expensive model from Globex"
section = "routing-strategies"

[[items]]
id = "lost"
question = "Where?"
answer = "nowhere"
section = "no-such-section"
"#,
    )
    .expect("write");
    let index = tempfile::tempdir().expect("index");
    let _ = config(&index);
    let output = Command::new(env!("CARGO_BIN_EXE_tutor"))
        .arg("--lessons")
        .arg(lessons.path())
        .arg("--index")
        .arg(index.path())
        .arg("check")
        .env_remove("OPENAI_API_KEY")
        .env_remove("TUTOR_MODEL")
        .output()
        .expect("tutor check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("hybrid-routing.quiz.toml:13:") && stdout.contains("no-such-section"),
        "the broken item is named with its line: {stdout}"
    );
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!("quiz {id}:")))
            .unwrap_or_else(|| panic!("no row for {id}: {stdout}"))
            .to_string()
    };
    assert!(line("good").starts_with("ok"), "{stdout}");
    let wrong = line("wrong-fact");
    assert!(
        wrong.starts_with("FAIL") && wrong.contains("not supported"),
        "{wrong}"
    );
}

#[tokio::test]
async fn a_model_hint_is_verified_and_never_states_the_answer() {
    let question = "How does a cascade decide when to escalate a request?";
    let extractive = spawn_app(None).await;
    let (_, answered) = extractive
        .chat(json!({"lesson_id": LESSON, "message": question}))
        .await;
    // The answer the lesson gives, as the embedded answerer quotes it.
    let answer = answered["answer"].as_str().expect("answer").to_string();
    let first_sentence = answer.split(" [").next().expect("a sentence").to_string();

    // A hint that points the way, then the answer itself: the answer is removed.
    let hinting = FakeModel::start(crate::helpers::answer(
        &format!(
            "Look at what the lesson says about the check on the cheap model's draft [1]. {first_sentence} [1]."
        ),
        4,
    ))
    .await;
    let app = spawn_app(Some(&hinting)).await;
    for stream in [false, true] {
        let body =
            json!({"lesson_id": LESSON, "message": question, "mode": "hint", "stream": stream});
        let hint = if stream {
            let (_, events) = app.chat_stream(body).await;
            let done = events.last().expect("done").1.clone();
            let deltas: String = crate::helpers::deltas(&events);
            assert_eq!(deltas, done["answer"].as_str().expect("a"));
            done
        } else {
            app.chat(body).await.1
        };
        assert_eq!(hint["kind"], "hint", "{hint}");
        assert_eq!(hint["hint"], "requested");
        assert!(!says(&hint["answer"], &first_sentence), "{hint}");
        assert!(says(&hint["answer"], "check on the cheap model"), "{hint}");
        assert!(
            hint["verification"]["removed"].as_u64() >= Some(1),
            "{hint}"
        );
    }
    let sent = hinting.last();
    let system = sent["messages"][0]["content"].as_str().expect("system");
    assert!(
        system.contains("asked for a hint"),
        "the hint prompt: {system}"
    );

    // A model that only states the answer: the tutor's own hint instead.
    let telling =
        FakeModel::start(crate::helpers::answer(&format!("{first_sentence} [1]."), 4)).await;
    let app = spawn_app(Some(&telling)).await;
    let (_, hint) = app
        .chat(json!({"lesson_id": LESSON, "message": question, "mode": "hint"}))
        .await;
    assert_eq!(
        (hint["kind"].as_str(), hint["backend"].as_str()),
        (Some("hint"), Some("tutor")),
        "{hint}"
    );
    assert!(!says(&hint["answer"], &first_sentence), "{hint}");
}

#[tokio::test]
async fn a_model_grade_is_taken_when_it_does_not_contradict_and_its_explanation_is_verified() {
    let (_, answer, _) = item(CASCADE_ITEM);
    let grade = |app: &crate::helpers::App, reply: &'static str| {
        let body = json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": CASCADE_ITEM, "message": reply});
        let client = app.client.clone();
        let url = format!("{}/v1/chat", app.base);
        async move {
            let response = client.post(url).json(&body).send().await.expect("sent");
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.expect("JSON")
        }
    };
    // The reply says it in other words: the lexical grade is not_yet, the model's correct.
    let model = FakeModel::start(crate::helpers::answer(
        "GRADE: correct\nSelf-reported confidence is an unreliable signal on its own [1]. Confidence scores were invented by Globex in 1999 [1].",
        6,
    ))
    .await;
    let app = spawn_app(Some(&model)).await;
    let graded = grade(&app, "how sure the cheap model claims to be").await;
    assert_eq!(graded["grade"], "correct", "{graded}");
    assert_eq!(graded["backend"], "openai:fake-model");
    let text = graded["answer"].as_str().expect("answer");
    assert!(text.starts_with("That's right!"), "{text}");
    assert!(says(&graded["answer"], &answer), "{text}");
    assert!(
        !text.contains("Globex"),
        "the unverified sentence is removed: {text}"
    );
    assert_eq!(graded["verification"]["removed"], 1, "{graded}");
    // The learner's reply is what the model judges, inside its own grading prompt.
    let sent = model.last();
    assert_eq!(
        sent["messages"][1]["content"],
        "how sure the cheap model claims to be"
    );
    assert!(
        sent["messages"][0]["content"]
            .as_str()
            .is_some_and(|s| s.contains(&answer) && s.contains("GRADE:")),
        "{sent}"
    );
    // Over SSE: the whole grade in one delta, the same as done.
    let (_, events) = app
        .chat_stream(json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": CASCADE_ITEM, "message": "how sure the cheap model claims to be", "stream": true}))
        .await;
    let done = events.last().expect("done").1.clone();
    assert_eq!(done["grade"], "correct");
    assert_eq!(events[1].1["text"], done["answer"]);

    // A model that finds the reply not yet right on the first try: its explanation must not
    // give the answer either, and the learner gets another go.
    let strict = FakeModel::start(crate::helpers::answer(
        "GRADE: not_yet\nSelf-reported confidence is an unreliable signal on its own [1].",
        6,
    ))
    .await;
    let strict_app = spawn_app(Some(&strict)).await;
    let graded = grade(&strict_app, "Self-reported confidence.").await;
    assert_eq!(graded["grade"], "not_yet", "{graded}");
    assert_eq!(graded["quiz"]["tries_left"], 1, "{graded}");
    assert!(!says(&graded["answer"], &answer), "{graded}");
    assert!(says(&graded["answer"], "another go"), "{graded}");

    // A reply that negates the answer keeps its lexical grade, whatever the model says.
    let negated = grade(&app, "not the self-reported confidence").await;
    assert_eq!(negated["grade"], "not_yet", "{negated}");

    // A model that fails: the lexical grade, written by the tutor.
    let broken = FakeModel::start(crate::helpers::Behaviour::Status(500)).await;
    let app = spawn_app(Some(&broken)).await;
    let graded = grade(&app, "Self-reported confidence.").await;
    assert_eq!(
        (graded["grade"].as_str(), graded["backend"].as_str()),
        (Some("correct"), Some("tutor")),
        "{graded}"
    );
}

#[tokio::test]
async fn an_answer_near_two_quiz_items_keeps_what_is_not_their_answers_on_every_path() {
    // "the-case-for-caution" has quiz items answered by "editing internal activations" and by
    // "stolen weights or a working jailbreak"; the two passage sentences that answer this
    // question each hold one of them beside what the learner asked about.
    let app = spawn_app(None).await;
    let lesson = "the-case-for-caution";
    let question = "Can someone remove the safety training from a downloaded model?";
    let (status, reply) = app
        .chat(json!({"lesson_id": lesson, "message": question}))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["kind"], "answer", "{reply}");
    assert!(says(&reply["answer"], "fine-tuning"), "{reply}");
    for quiz_answer in ["editing internal activations", "stolen weights"] {
        assert!(!says(&reply["answer"], quiz_answer), "{reply}");
    }
    // The shortened sentence is still the lesson's own words, cited.
    let kept = "a modest amount of fine-tuning can largely remove a model's tendency to refuse harmful requests";
    assert!(says(&reply["answer"], kept), "{reply}");
    let citations = reply["citations"].as_array().expect("citations");
    assert!(citations.iter().any(|c| says(&c["text"], kept)), "{reply}");
    let (_, events) = app
        .chat_stream(json!({"lesson_id": lesson, "message": question, "stream": true}))
        .await;
    let streamed = crate::helpers::deltas(&events);
    assert_eq!(streamed, reply["answer"].as_str().expect("answer"));
}

#[tokio::test]
async fn a_question_answered_on_its_second_try_is_graded_once_in_the_log_and_the_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("log.sqlite");
    let db_for_config = db.clone();
    let app = spawn_app_with(
        None,
        move |mut c| {
            c.log = Some(tutor::conversation_log::LogTarget::Sqlite(db_for_config));
            c
        },
        |s| s,
    )
    .await;
    let first = first_item();
    let (_, answer, section) = item(&first);
    let reply = |message: &str, attempt: u8| {
        json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": first, "message": message,
               "quiz_attempt": attempt, "conversation_id": "learner-1"})
    };
    let (_, graded) = app.chat(reply("a bigger GPU budget", 1)).await;
    assert_eq!(graded["quiz"]["tries_left"], 1, "{graded}");
    let (_, graded) = app.chat(reply(&answer, 2)).await;
    assert_eq!(graded["grade"], "correct", "{graded}");

    let tutor = app.state().tutor().expect("tutor");
    tutor.logger().expect("log on").flush();
    let records = tutor::conversation_log::SqliteStore::open(&db)
        .expect("opens")
        .records(0, None)
        .expect("records");
    // Records of the same second come back in either order.
    let mut outcomes: Vec<(Option<&str>, Option<&str>)> = records
        .iter()
        .map(|r| (r.kind.as_deref(), r.outcome.as_deref()))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            (Some("grade"), Some("correct")),
            (Some("grade"), Some("retry"))
        ]
    );
    let report = tutor::report::build(&records, tutor.retriever());
    let q = &report.lessons[0]
        .sections
        .iter()
        .find(|s| s.id == section)
        .expect("the item's section")
        .quiz;
    assert_eq!(
        (q.retried, q.correct, q.partly, q.not_yet),
        (1, 1, 0, 0),
        "one question, one grade: {q:?}"
    );
}
