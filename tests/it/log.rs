//! Answer ids, feedback, and the conversation log (SQLite): nothing lost below the queue's
//! capacity, kept across restarts, redacted, pruned, and never slowing an answer.

use crate::helpers::spawn_app_with;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tutor::conversation_log::{AnswerId, LogStore, Logger, Rating, Record, SqliteStore, now};

#[tokio::test]
async fn every_answer_is_logged_under_concurrent_load_ratings_land_and_a_restart_keeps_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("log.sqlite");
    let db_for_config = db.clone();
    let app = spawn_app_with(
        None,
        move |mut c| {
            c.log = Some(tutor::conversation_log::LogTarget::Sqlite(db_for_config));
            // The operator's own pattern, on top of the built-in ones.
            c.log_redact = vec!["(?i)\\bsourdough\\b".to_string()];
            c
        },
        |s| s,
    )
    .await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url) = (app.client.clone(), format!("{}/v1/chat", app.base));
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..125 {
                let message = if i % 5 == 0 {
                    "How do I bake sourdough bread? Mail me at ana@school.example or call 555-123-4567.".to_string()
                } else {
                    "What are fallbacks for?".to_string()
                };
                let body: Value = client
                    .post(&url)
                    .json(&json!({"lesson_id": "hybrid-routing", "message": message, "conversation_id": format!("conv-{worker}")}))
                    .send()
                    .await
                    .expect("sent")
                    .json()
                    .await
                    .expect("json");
                ids.push(body["answer_id"].as_str().expect("an answer id").to_string());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.expect("task"));
    }
    assert_eq!(ids.len(), 1000);

    // Feedback: validated, unknown ids 404, the last rating wins.
    let feedback = |body: Value| {
        app.client
            .post(format!("{}/v1/feedback", app.base))
            .json(&body)
            .send()
    };
    assert_eq!(
        feedback(json!({"answer_id": "nope", "rating": "up"}))
            .await
            .expect("sent")
            .status(),
        404
    );
    // A malformed id is bad input, said as such, before any lookup.
    let response = feedback(json!({"answer_id": "not an id!", "rating": "up"}))
        .await
        .expect("sent");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("answer_id")),
        "{body}"
    );
    assert_eq!(
        feedback(json!({"answer_id": ids[0], "rating": "meh"}))
            .await
            .expect("sent")
            .status(),
        400
    );
    assert_eq!(
        feedback(json!({"answer_id": ids[0], "rating": "up", "comment": "x".repeat(501)}))
            .await
            .expect("sent")
            .status(),
        422
    );
    assert_eq!(
        feedback(json!({"answer_id": ids[0], "rating": "up"}))
            .await
            .expect("sent")
            .status(),
        200
    );
    assert_eq!(
        feedback(
            json!({"answer_id": ids[0], "rating": "down", "comment": "too vague, mail x@y.org"})
        )
        .await
        .expect("sent")
        .status(),
        200
    );

    app.state()
        .tutor()
        .expect("tutor")
        .logger()
        .expect("log on")
        .flush();
    drop(app);
    // A restart: the same file, opened afresh.
    let store = SqliteStore::open(&db).expect("reopens");
    let records = store.records(0, None).expect("records");
    assert_eq!(records.len(), 1000, "every answer is in the log");
    let first = records
        .iter()
        .find(|r| r.answer_id == ids[0])
        .expect("rated record");
    assert_eq!(first.rating, Some(Rating::Down));
    assert_eq!(first.comment.as_deref(), Some("too vague, mail [email]"));
    let refused: Vec<&Record> = records.iter().filter(|r| r.refused).collect();
    assert_eq!(refused.len(), 200);
    for record in &refused {
        assert_eq!(
            record.question,
            "How do I bake [redacted] bread? Mail me at [email] or call [phone]."
        );
        assert!(record.refusal_reason.is_some());
    }
    assert!(records.iter().all(|r| {
        r.conversation_id
            .as_ref()
            .is_some_and(|c| c.as_str().starts_with("conv-"))
    }));
    assert!(
        records
            .iter()
            .filter(|r| !r.refused)
            .all(|r| !r.cited.is_empty() && r.backend == "extractive")
    );
}

#[test]
fn a_flood_past_the_queue_drops_and_counts_records_but_never_blocks() {
    tutor::telemetry::install();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("log.sqlite")).expect("opens"));
    let logger = Logger::with_capacity(store.clone(), Duration::from_secs(86_400), 4);
    let record = |i: usize| Record {
        answer_id: AnswerId::parse(&format!("a{i}")).expect("an id"),
        time: now(),
        lesson_id: "l".to_string(),
        question: "q".to_string(),
        answer: "a".to_string(),
        refused: false,
        refusal_reason: None,
        cited: vec!["l#s-1".to_string()],
        backend: "extractive".to_string(),
        latency_ms: 1,
        conversation_id: None,
        rating: None,
        comment: None,
        verification: None,
        kind: None,
        outcome: None,
    };
    let started = Instant::now();
    for i in 0..5000 {
        logger.append(record(i));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "appending never waits for the disk"
    );
    logger.flush();
    let kept = store.records(0, None).expect("records").len();
    assert!(
        kept < 5000,
        "some records were dropped past the queue's capacity ({kept} kept)"
    );
    assert!(kept >= 4, "{kept}");
    let dropped: f64 = tutor::telemetry::render()
        .lines()
        .find_map(|l| l.strip_prefix("tutor_log_writes_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        dropped >= (5000 - kept) as f64,
        "every drop is counted: {dropped}"
    );
}

#[test]
fn records_past_the_retention_are_pruned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("log.sqlite")).expect("opens"));
    let old = Record {
        answer_id: AnswerId::parse("old").expect("an id"),
        time: now() - 40 * 86_400,
        lesson_id: "l".to_string(),
        question: "q".to_string(),
        answer: "a".to_string(),
        refused: true,
        refusal_reason: Some("not_covered".to_string()),
        cited: Vec::new(),
        backend: "extractive".to_string(),
        latency_ms: 1,
        conversation_id: None,
        rating: None,
        comment: None,
        verification: None,
        kind: None,
        outcome: None,
    };
    let fresh = Record {
        answer_id: AnswerId::parse("fresh").expect("an id"),
        time: now(),
        ..old.clone()
    };
    store.append(&[old, fresh]).expect("append");
    let logger = Logger::start(store.clone(), Duration::from_secs(30 * 86_400));
    logger.flush();
    let ids: Vec<String> = store
        .records(0, None)
        .expect("records")
        .into_iter()
        .map(|r| r.answer_id.to_string())
        .collect();
    assert_eq!(ids, vec!["fresh".to_string()]);
}
