//! `tutor report` on a seeded log: per-section figures, and clusters of unanswered questions
//! with the nearest section, snapshot-tested.

use crate::helpers::{config, sample_lessons};
use std::process::Command;
use tutor::conversation_log::{AnswerId, ConversationId, LogStore, Rating, Record, SqliteStore};

fn record(
    i: usize,
    question: &str,
    refused: bool,
    cited: &[&str],
    rating: Option<Rating>,
) -> Record {
    Record {
        answer_id: AnswerId::parse(&format!("a{i:03}")).expect("an id"),
        time: 1_790_000_000 + i as u64,
        lesson_id: "hybrid-routing".to_string(),
        question: question.to_string(),
        answer: "…".to_string(),
        refused,
        refusal_reason: refused.then(|| "not_covered".to_string()),
        cited: cited.iter().map(|c| c.to_string()).collect(),
        backend: "extractive".to_string(),
        latency_ms: 3,
        conversation_id: ConversationId::parse("c1").ok(),
        rating,
        comment: None,
        verification: None,
        kind: None,
        outcome: None,
    }
}

fn seeded() -> Vec<Record> {
    vec![
        record(
            1,
            "What are fallbacks for?",
            false,
            &["hybrid-routing#fallbacks-and-failover-1"],
            Some(Rating::Up),
        ),
        record(
            2,
            "How do fallbacks work?",
            false,
            &[
                "hybrid-routing#fallbacks-and-failover-1",
                "hybrid-routing#fallbacks-and-failover-2",
            ],
            Some(Rating::Down),
        ),
        record(
            3,
            "What is a cascade?",
            false,
            &["hybrid-routing#cascades-and-escalation-1"],
            None,
        ),
        record(
            4,
            "What is a learned router?",
            false,
            &["hybrid-routing#learned-routers-1"],
            Some(Rating::Down),
        ),
        record(5, "How much do GPUs cost per hour?", true, &[], None),
        record(
            6,
            "What does a GPU hour cost on the cloud?",
            true,
            &[],
            None,
        ),
        record(
            7,
            "Is GPU cost per hour higher for bigger models?",
            true,
            &[],
            None,
        ),
        record(8, "How do I cache prompts to save tokens?", true, &[], None),
        record(9, "Can prompt caching cut token bills?", true, &[], None),
        record(10, "Who painted the Mona Lisa?", true, &[], None),
    ]
}

#[test]
fn the_report_groups_unanswered_questions_and_names_the_nearest_sections() {
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = tutor::app::load(&config(&dir)).expect("loads");
    let report = tutor::report::build(&seeded(), loaded.tutor.retriever());
    let lesson = &report.lessons[0];
    assert_eq!(
        (lesson.asked, lesson.refused, lesson.thumbs_down),
        (10, 6, 2)
    );
    let sizes: Vec<usize> = lesson.gaps.iter().map(|g| g.questions.len()).collect();
    assert_eq!(sizes, vec![3, 2, 1], "{:#?}", lesson.gaps);
    insta::assert_snapshot!(tutor::report::markdown(&report));
    insta::assert_snapshot!(tutor::report::csv(&report));
}

#[test]
fn tutor_report_reads_the_log_file_and_filters_by_date_and_lesson() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("log.sqlite");
    SqliteStore::open(&db)
        .expect("opens")
        .append(&seeded())
        .expect("seeded");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tutor"))
            .current_dir(dir.path())
            .args([
                "--lessons",
                sample_lessons().to_str().expect("path"),
                "--index",
                "idx",
                "report",
                "--log",
            ])
            .arg(&db)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json: serde_json::Value = serde_json::from_str(&run(&["--format", "json"])).expect("JSON");
    assert_eq!(json["lessons"][0]["asked"], 10);
    // The records were made at 1,790,000,000 s: 2026-09-21 14:13 UTC. A day starts at
    // midnight UTC, so the 21st includes them all and the 22nd none.
    let same_day: serde_json::Value =
        serde_json::from_str(&run(&["--since", "2026-09-21", "--format", "json"])).expect("JSON");
    assert_eq!(same_day["lessons"][0]["asked"], 10);
    let later = run(&["--since", "2026-09-22"]);
    assert!(later.contains("No questions"), "{later}");
    let other = run(&["--lesson", "the-policy-layer"]);
    assert!(other.contains("No questions"), "{other}");
    assert!(run(&[]).contains("- [ ] 3 questions asked about"));
}

#[test]
fn the_report_counts_hints_quiz_questions_and_grades_per_section_through_the_log() {
    let quiz = |i: usize, kind: &str, outcome: &str, cited: &[&str]| Record {
        kind: Some(kind.to_string()),
        outcome: Some(outcome.to_string()),
        ..record(i, "…", false, cited, None)
    };
    let cascade = &["hybrid-routing#cascades-and-escalation-1"][..];
    let records = vec![
        quiz(19, "grade", "retry", cascade),
        quiz(20, "hint", "quiz_item", cascade),
        quiz(21, "hint", "requested", cascade),
        quiz(22, "quiz_question", "cascades-and-escalation", &[]),
        quiz(23, "quiz_question", "cascades-and-escalation", &[]),
        quiz(24, "grade", "correct", cascade),
        quiz(25, "grade", "not_yet", cascade),
        quiz(26, "grade", "partly", cascade),
        record(27, "What is a cascade?", false, cascade, None),
    ];
    // Through the log's SQLite store, so the new columns are written and read back.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("log.sqlite")).expect("opens");
    store.append(&records).expect("appended");
    let read = store.records(0, None).expect("read");
    assert_eq!(read, records);

    let loaded = tutor::app::load(&config(&dir)).expect("loads");
    let report = tutor::report::build(&read, loaded.tutor.retriever());
    let section = report.lessons[0]
        .sections
        .iter()
        .find(|s| s.id == "cascades-and-escalation")
        .expect("the section");
    assert_eq!(section.answered, 1, "hints and quizzes are not answers");
    let q = &section.quiz;
    assert_eq!(
        (q.hints, q.asked, q.retried, q.correct, q.partly, q.not_yet),
        (2, 2, 1, 1, 1, 1)
    );
    let markdown = tutor::report::markdown(&report);
    assert!(
        markdown.contains(
            "| Cascades and escalation (`cascades-and-escalation`) | 2 | 2 | 1 | 1 | 1 | 1 |"
        ),
        "{markdown}"
    );
    assert!(
        tutor::report::csv(&report)
            .contains("hints=2 asked=2 retried=1 correct=1 partly=1 not_yet=1")
    );
}
