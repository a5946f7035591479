//! Conversations as learners have them, over `POST /v1/chat`: every turn gated on its own
//! words, follow-ups resolved against what was said, small talk, other languages.

use crate::helpers::spawn_app;
use serde_json::{Value, json};

/// Asks `turns` in order, each answer becoming history for the next, and returns every reply.
async fn converse(app: &crate::helpers::App, lesson: &str, turns: &[&str]) -> Vec<Value> {
    let mut history: Vec<Value> = Vec::new();
    let mut replies = Vec::new();
    for turn in turns {
        let (status, body) = app
            .chat(json!({"lesson_id": lesson, "message": turn, "history": history}))
            .await;
        assert_eq!(status, 200, "{turn}: {body}");
        history.push(json!({"role": "user", "content": turn}));
        history.push(json!({"role": "assistant", "content": body["answer"]}));
        replies.push(body);
    }
    replies
}

fn cited_sections(body: &Value) -> Vec<String> {
    body["citations"]
        .as_array()
        .expect("citations")
        .iter()
        .map(|c| c["section_id"].as_str().expect("section_id").to_string())
        .collect()
}

#[tokio::test]
async fn off_topic_follow_ups_are_refused_as_first_questions_are() {
    let app = spawn_app(None).await;
    for off_topic in [
        "How do I cook risotto?",
        "What about pizza?",
        "What is 2+2?",
    ] {
        let replies = converse(
            &app,
            "choosing-a-deployment",
            &["What is the trade-off of self-hosting a model?", off_topic],
        )
        .await;
        assert_eq!(replies[0]["refused"], false, "{}", replies[0]);
        assert_eq!(replies[1]["refused"], true, "{off_topic}: {}", replies[1]);
        assert_eq!(replies[1]["kind"], "refusal");
        assert!(cited_sections(&replies[1]).is_empty());
        // Asked fresh, the same message is refused too.
        let (_, fresh) = app
            .chat(json!({"lesson_id": "choosing-a-deployment", "message": off_topic}))
            .await;
        assert_eq!(fresh["refused"], true, "{off_topic}: {fresh}");
    }
}

#[tokio::test]
async fn an_ordinal_follow_up_reads_the_item_of_the_list_just_given() {
    let app = spawn_app(None).await;
    let replies = converse(
        &app,
        "choosing-a-deployment",
        &[
            "Which questions should I work through to choose a deployment?",
            "and the second one?",
        ],
    )
    .await;
    assert_eq!(cited_sections(&replies[0]), vec!["a-decision-guide"]);
    let second = &replies[1];
    assert_eq!(second["refused"], false, "{second}");
    assert_eq!(cited_sections(second), vec!["a-decision-guide"]);
    let text = second["answer"].as_str().expect("answer");
    assert!(text.contains("very best reasoning"), "{text}");
    assert!(!text.contains("May the data leave"), "{text}");
}

#[tokio::test]
async fn a_follow_up_naming_only_what_it_wants_stays_on_the_last_topic() {
    let app = spawn_app(None).await;
    let replies = converse(
        &app,
        "hybrid-routing",
        &["What is a cascade?", "What are its weaknesses?"],
    )
    .await;
    let last = &replies[1];
    assert_eq!(last["refused"], false, "{last}");
    let text = last["answer"].as_str().expect("answer");
    assert!(
        text.contains("Escalated requests") || text.contains("escalated requests"),
        "{text}"
    );
}

#[tokio::test]
async fn small_talk_gets_a_friendly_reply_and_no_citations() {
    let app = spawn_app(None).await;
    for (message, needle) in [
        ("hi", "I answer questions about this lesson"),
        ("thanks!", "welcome"),
        ("What can you do?", "I answer questions about this lesson"),
    ] {
        let (status, body) = app
            .chat(json!({"lesson_id": "hybrid-routing", "message": message}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["kind"], "small_talk", "{message}: {body}");
        assert_eq!(body["refused"], false);
        assert!(cited_sections(&body).is_empty());
        let text = body["answer"].as_str().expect("answer");
        assert!(text.contains(needle), "{message}: {text}");
        assert!(text.contains("Hybrid Routing"), "{text}");
    }
}

#[tokio::test]
async fn a_question_in_another_language_is_never_told_the_lesson_does_not_cover_it() {
    let app = spawn_app(None).await;
    for (message, needle) in [
        ("¿Qué es un token?", "inglés"),
        ("Qu'est-ce qu'un routeur ?", "anglais"),
        ("Was ist eine Kaskade?", "Englisch"),
        ("O que é um roteador?", "inglês"),
        ("Cos'è un router?", "inglese"),
    ] {
        let (status, body) = app
            .chat(json!({"lesson_id": "hybrid-routing", "message": message}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["kind"], "other_language", "{message}: {body}");
        assert_eq!(body["refused"], false);
        let text = body["answer"].as_str().expect("answer");
        assert!(text.contains(needle), "{message}: {text}");
        assert!(!text.contains("doesn't cover"), "{text}");
    }
    // Streamed, the same reply.
    let (status, events) = app
        .chat_stream(
            json!({"lesson_id": "hybrid-routing", "message": "¿Qué es un token?", "stream": true}),
        )
        .await;
    assert_eq!(status, 200);
    let done = events.iter().find(|(e, _)| e == "done").expect("done");
    assert_eq!(done.1["kind"], "other_language");
    let deltas: String = events
        .iter()
        .filter(|(e, _)| e == "delta")
        .map(|(_, d)| d["text"].as_str().expect("text"))
        .collect();
    assert_eq!(deltas, done.1["answer"].as_str().expect("answer"));
}
