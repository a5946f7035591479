//! Micro-benchmarks over the 2,116-lesson scale catalog (generated at start, not committed):
//! parsing one lesson, building the index cold and refreshing it warm, one retrieval, the gate
//! plus the extractive answer, prompt rendering, and signing and verifying an LTI session token.
//! After criterion's figures, prints the retrieval latency distribution (p50/p99), which
//! criterion does not report.
//!
//! `cargo bench --bench core` (`LESSONS_N` overrides 2116).

#[path = "support/catalog.rs"]
mod catalog;

use criterion::{BatchSize, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tutor::chat::{Question, Tutor};
use tutor::lessons::{Catalog, load_catalog, parse_lesson};
use tutor::llm::extractive::Extractive;
use tutor::prompts::{PromptLesson, PromptPassage, Prompts};
use tutor::retrieve::{Earlier, RetrievalSettings, Retriever};

struct Fixture {
    _dir: tempfile::TempDir,
    lessons_dir: std::path::PathBuf,
    index_dir: std::path::PathBuf,
    catalog: Arc<Catalog>,
    one_lesson: String,
    questions: Vec<(String, String)>,
}

fn fixture() -> Fixture {
    let n: usize = std::env::var("LESSONS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2116);
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons_dir = dir.path().join("lessons");
    let source = catalog::Source::read(&catalog::default_source_dir()).expect("sentence source");
    catalog::write(&source, n, &lessons_dir).expect("catalog written");
    let catalog = Arc::new(load_catalog(&lessons_dir).expect("catalog loads"));
    assert_eq!(catalog.lessons.len(), n, "{:?}", catalog.problems.first());
    let index_dir = dir.path().join("index");
    tutor::index::refresh(&index_dir, &catalog).expect("index builds");
    let one_lesson = catalog::lesson(&source, 7, n).markdown;
    let questions = catalog
        .lessons
        .iter()
        .step_by(7)
        .flat_map(|l| l.questions.iter().map(move |q| (l.id.clone(), q.q.clone())))
        .collect();
    Fixture {
        _dir: dir,
        lessons_dir,
        index_dir,
        catalog,
        one_lesson,
        questions,
    }
}

fn main() {
    let fixture = fixture();
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));

    c.bench_function("parse one lesson", |b| {
        b.iter(|| parse_lesson(black_box(&fixture.one_lesson), "x").expect("parses"))
    });
    c.bench_function("load and hash the catalog", |b| {
        b.iter(|| load_catalog(&fixture.lessons_dir).expect("loads"))
    });
    {
        let mut group = c.benchmark_group("index");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(20));
        group.bench_function("build from scratch", |b| {
            b.iter_batched(
                || tempfile::tempdir().expect("temp dir"),
                |dir| tutor::index::refresh(dir.path(), &fixture.catalog).expect("builds"),
                BatchSize::PerIteration,
            )
        });
        group.bench_function("refresh with nothing changed", |b| {
            b.iter(|| {
                let report =
                    tutor::index::refresh(&fixture.index_dir, &fixture.catalog).expect("refreshes");
                assert!(report.is_noop());
            })
        });
        group.finish();
    }

    let retriever = Arc::new(
        Retriever::open(
            fixture.catalog.clone(),
            &fixture.index_dir,
            RetrievalSettings::default(),
        )
        .expect("index opens"),
    );
    let mut i = 0;
    c.bench_function("retrieve (one lesson, gate included)", |b| {
        b.iter(|| {
            let (lesson, q) = &fixture.questions[i % fixture.questions.len()];
            i += 1;
            retriever
                .retrieve(lesson, q, &Earlier::NONE)
                .expect("retrieval")
        })
    });
    // A follow-up: the history's terms join, the previous answer's passage is searched for,
    // and the message's own words are judged alone.
    let follow_ups: Vec<(String, Vec<String>, String)> = fixture
        .questions
        .iter()
        .map(|(lesson, q)| {
            let lesson_ref = fixture.catalog.get(lesson).expect("lesson");
            let previous = lesson_ref.passages[0].text.clone();
            (lesson.clone(), vec![q.clone()], previous)
        })
        .collect();
    let mut f = 0;
    c.bench_function("retrieve a follow-up (history and anchor)", |b| {
        b.iter(|| {
            let (lesson, earlier, previous) = &follow_ups[f % follow_ups.len()];
            f += 1;
            let earlier = Earlier {
                questions: earlier,
                previous_answer: Some(previous),
            };
            retriever
                .retrieve(lesson, "And why is that the case?", &earlier)
                .expect("retrieval")
        })
    });
    // Longer messages, up to the longest the API takes: a lesson's own text, cut.
    let long_lesson = &fixture.catalog.lessons[0];
    let text: String = long_lesson
        .passages
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    // Words no lesson of this kind covers: the gate is in doubt, so every lesson is searched
    // for a better one.
    c.bench_function(
        "retrieve an off-topic question (other lessons searched)",
        |b| {
            b.iter(|| {
                retriever
                    .retrieve(
                        &long_lesson.id,
                        "How does the referee decide the penalty after a handball in the final?",
                        &Earlier::NONE,
                    )
                    .expect("retrieval")
            })
        },
    );
    let mut group = c.benchmark_group("retrieve a long question");
    for chars in [150, 200, 300, 600, 4000] {
        let message: String = text.chars().take(chars).collect();
        let message = message.as_str();
        group.bench_function(format!("{chars} characters"), |b| {
            b.iter(|| {
                retriever
                    .retrieve(&long_lesson.id, message, &Earlier::NONE)
                    .expect("retrieval")
            })
        });
    }
    group.finish();
    let tutor = Tutor::new(
        retriever.clone(),
        Arc::new(Prompts::built_in()),
        Arc::new(Extractive::new()),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut j = 0;
    c.bench_function("gate + extractive answer (Tutor::ask)", |b| {
        b.iter(|| {
            let (lesson, q) = &fixture.questions[j % fixture.questions.len()];
            j += 1;
            let question = Question::parse(lesson.clone(), q.clone(), Vec::new()).expect("valid");
            runtime.block_on(async { tutor.plan(&question).expect("plans") })
        })
    });
    let prompts = Prompts::built_in();
    let lesson = &fixture.catalog.lessons[0];
    let passages: Vec<PromptPassage<'_>> = lesson
        .passages
        .iter()
        .take(4)
        .enumerate()
        .map(|(n, p)| PromptPassage {
            n: n + 1,
            section: &lesson.section_of(p).title,
            text: &p.text,
        })
        .collect();
    let prompt_lesson = PromptLesson {
        id: &lesson.id,
        title: &lesson.title,
        summary: &lesson.summary,
    };
    c.bench_function("render the system prompt (4 passages)", |b| {
        b.iter(|| prompts.system(&prompt_lesson, &passages).expect("renders"))
    });

    // Verifying a model's four-sentence answer: each sentence reworded a little, so none is a
    // word-for-word quote and every one goes through the lexical checks.
    let analysis = tutor::chat::check::Analysis::new();
    let shared_prompts = Arc::new(Prompts::built_in());
    let sources: Vec<(&str, &str, &str)> = lesson
        .passages
        .iter()
        .take(4)
        .map(|p| {
            (
                p.id.as_str(),
                lesson.section_of(p).title.as_str(),
                p.text.as_str(),
            )
        })
        .collect();
    let answer: String = sources
        .iter()
        .enumerate()
        .map(|(i, (_, _, text))| {
            let first = tutor::text::split_sentences(text)
                .into_iter()
                .next()
                .unwrap_or("");
            format!("Put simply, {} [{}]. ", first.trim_end_matches('.'), i + 1)
        })
        .collect();
    eprintln!(
        "four-sentence answer: {} words",
        answer.split_whitespace().count()
    );
    let release = |checker: &tutor::chat::check::Checker| {
        let mut release = tutor::chat::release::Release::new(false);
        release.push(&answer, checker);
        release.finish(checker);
        black_box(release.shown().len())
    };
    let question = "What does this part of the lesson say?";
    // A fresh cache each time: the passages are analysed for this answer.
    let checker_for_answer = || {
        tutor::chat::check::Checker::new(
            &analysis.for_new_catalog(),
            shared_prompts.clone(),
            &sources,
            question,
            &lesson.title,
            &lesson.language,
        )
    };
    c.bench_function(
        "verify a four-sentence answer (passages analysed too)",
        |b| b.iter(|| release(&checker_for_answer())),
    );
    let checker = checker_for_answer();
    release(&checker);
    c.bench_function("verify a four-sentence answer (sentences only)", |b| {
        b.iter(|| release(&checker))
    });

    // The same for an answer as the tutor's prompt asks for (short sentences, ~60 words), on a
    // lesson of the sample course: a model's paraphrase, nothing quoted word for word.
    let course = load_catalog(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons"))
        .expect("sample course loads");
    let routing = course.get("hybrid-routing").expect("sample lesson");
    let course_sources: Vec<(&str, &str, &str)> =
        ["Escalated requests take longer", "Self-reported confidence"]
            .iter()
            .filter_map(|words| routing.passages.iter().find(|p| p.text.contains(words)))
            .map(|p| {
                let section = routing.section_of(p).title.as_str();
                (p.id.as_str(), section, p.text.as_str())
            })
            .collect();
    let short_answer = "A cascade tries the cheap model first and escalates when a check fails [1]. \
        The catch is that escalated requests take longer [1]. Useful checks include validating \
        output against a schema or running unit tests on generated code [2]. Self-reported \
        confidence is an unreliable signal on its own [2].";
    let course_checker = tutor::chat::check::Checker::new(
        &analysis,
        shared_prompts.clone(),
        &course_sources,
        "What is the weakness of a cascade?",
        &routing.title,
        &routing.language,
    );
    let short = |checker: &tutor::chat::check::Checker| {
        let mut release = tutor::chat::release::Release::new(false);
        release.push(short_answer, checker);
        release.finish(checker);
        black_box(release.shown().to_string())
    };
    assert_eq!(
        short(&course_checker),
        short_answer,
        "every sentence stands"
    );
    c.bench_function(
        "verify a four-sentence tutor answer, 60 words (sentences only)",
        |b| b.iter(|| short(&course_checker)),
    );

    // What an LTI learner's every request adds: verifying the session token (HS256).
    let keys_dir = tempfile::tempdir().expect("keys dir");
    let lti = tutor::lti::Lti::new(tutor::lti::LtiSettings {
        url: "https://tutor.example.edu".to_string(),
        keys_dir: keys_dir.path().to_path_buf(),
        session_minutes: 60,
        platforms: Vec::new(),
    })
    .expect("LTI tool");
    let launch = tutor::lti::ResourceLaunch {
        lesson_id: Some(lesson.id.clone()),
        subject: Some("learner-42".to_string()),
        issuer: "https://lms.example".to_string(),
        platform: "lms".to_string(),
        context_title: None,
        hint_only: false,
    };
    c.bench_function("sign an LTI session token (HS256)", |b| {
        b.iter(|| lti.session_token(&launch, &lesson.id).expect("signed"))
    });
    let token = lti.session_token(&launch, &lesson.id).expect("signed");
    c.bench_function("verify an LTI session token (HS256)", |b| {
        b.iter(|| lti.session(black_box(&token)).expect("valid"))
    });
    c.final_summary();

    // Latency distribution of one retrieval, which criterion's mean does not show.
    let mut samples = Vec::with_capacity(20_000);
    for k in 0..20_000 {
        let (lesson, q) = &fixture.questions[k % fixture.questions.len()];
        let started = Instant::now();
        black_box(
            retriever
                .retrieve(lesson, q, &Earlier::NONE)
                .expect("retrieval"),
        );
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "retrieval over {} lessons ({} passages), {} queries: p50 {:?}, p99 {:?}, max {:?}",
        fixture.catalog.lessons.len(),
        fixture.catalog.passage_count(),
        samples.len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );

    // The same questions as follow-ups: history and the previous answer (the passage the last
    // question found) go through the follow-up reading, the anchor search and the gate.
    let mut samples = Vec::with_capacity(20_000);
    for k in 0..20_000 {
        let (lesson, q) = &fixture.questions[k % fixture.questions.len()];
        let (_, before) = &fixture.questions[(k + 1) % fixture.questions.len()];
        let previous = retriever
            .search(Some(lesson), before, 1)
            .expect("search")
            .first()
            .map(|h| h.passage().text.clone())
            .unwrap_or_default();
        let questions = [before.clone()];
        let follow_up = format!("and what about {}", q.to_lowercase());
        let earlier = Earlier {
            questions: &questions,
            previous_answer: Some(&previous),
        };
        let started = Instant::now();
        black_box(
            retriever
                .retrieve(lesson, &follow_up, &earlier)
                .expect("retrieval"),
        );
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "follow-up retrieval, {} queries: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );
}
