//! Any OpenAI-compatible chat-completions server (OpenAI, Groq, Together, Fireworks, Ollama,
//! vLLM, llama.cpp...) through async-openai. The only module that knows async-openai.
//!
//! Liberal in what it accepts: requests carry both `max_tokens` and `max_completion_tokens`
//! (llama.cpp's server ignores the latter), responses are read with our own lenient types, and
//! nothing relies on `usage` arriving in a stream.

use super::{ChatModel, ModelError, ModelRequest, Reply, ReplyStream, Role, TextStream};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// Where and how to reach the model.
#[derive(Clone)]
pub struct OpenAiSettings {
    /// Base URL including the version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Secret; never printed (see the `Debug` impl).
    pub api_key: String,
    pub model: String,
    pub max_tokens: u32,
    pub temperature: f32,
    pub connect_timeout: Duration,
    /// Longest wait for the first token of a stream (or the whole answer without streaming).
    pub first_token_timeout: Duration,
    /// Longest time one answer may take in all.
    pub total_timeout: Duration,
    /// Certificates (PEM) trusted besides the system's, for HTTPS model servers behind a private
    /// certificate authority.
    pub extra_roots: Option<std::sync::Arc<[u8]>>,
}

impl fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("base_url", &self.base_url)
            .field(
                "api_key",
                &if self.api_key.is_empty() { "" } else { "<set>" },
            )
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("extra_roots", &self.extra_roots.is_some())
            .finish()
    }
}

/// Connections an HTTP/2 provider gets at most (one per client; see [`OpenAiModel::new`]).
const HTTP2_CONNECTIONS: usize = 4;

/// An OpenAI-compatible chat model.
pub struct OpenAiModel {
    /// Clients with a connection pool each, taken in turn.
    clients: Vec<Client<OpenAIConfig>>,
    next: std::sync::atomic::AtomicUsize,
    settings: OpenAiSettings,
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<CompletionChoice>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    /// Some servers report a failure mid-stream as a chunk carrying `error`.
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

impl OpenAiModel {
    /// Clients for the configured server.
    ///
    /// Over HTTPS a connection offers HTTP/2 (ALPN), so a provider that speaks it carries many
    /// answers at once on one connection instead of one connection each. A provider caps the
    /// streams of one connection (often at 100 to 256), and a client never opens a second HTTP/2
    /// connection to the same host when the first is full: answers beyond the cap would wait.
    /// So there are [`HTTP2_CONNECTIONS`] clients, taken in turn, each with its own connection.
    /// Pings every 20 s on a connection with answers in flight find a dead one (it would
    /// otherwise fail all its answers only at their timeouts). Plain-HTTP servers (Ollama,
    /// vLLM, llama.cpp) get HTTP/1.1, a connection per answer in flight, as before.
    pub fn new(settings: OpenAiSettings) -> Result<OpenAiModel, ModelError> {
        let build =
            |e: reqwest::Error| ModelError::Upstream(format!("cannot build the HTTP client: {e}"));
        let roots = match &settings.extra_roots {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem).map_err(build)?,
            None => Vec::new(),
        };
        let config = OpenAIConfig::new()
            .with_api_base(settings.base_url.trim_end_matches('/'))
            .with_api_key(settings.api_key.clone());
        let clients = (0..HTTP2_CONNECTIONS)
            .map(|_| {
                let http = reqwest::Client::builder()
                    .connect_timeout(settings.connect_timeout)
                    .http2_keep_alive_interval(Duration::from_secs(20))
                    .http2_keep_alive_timeout(Duration::from_secs(10))
                    .tls_certs_merge(roots.iter().cloned())
                    .build()
                    .map_err(build)?;
                Ok(Client::with_config(config.clone()).with_http_client(http))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(OpenAiModel {
            clients,
            next: std::sync::atomic::AtomicUsize::new(0),
            settings,
        })
    }

    /// The next client in turn.
    fn client(&self) -> &Client<OpenAIConfig> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.clients[n % self.clients.len()]
    }

    fn body<'a>(&'a self, request: &'a ModelRequest, stream: bool) -> Body<'a> {
        let mut messages = Vec::with_capacity(request.history.len() + 2);
        messages.push(Turn {
            role: "system",
            content: &request.system,
        });
        for turn in &request.history {
            let role = match turn.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            messages.push(Turn {
                role,
                content: &turn.content,
            });
        }
        messages.push(Turn {
            role: "user",
            content: &request.message,
        });
        Body {
            model: &self.settings.model,
            messages,
            temperature: self.settings.temperature,
            max_tokens: self.settings.max_tokens,
            max_completion_tokens: self.settings.max_tokens,
            stream,
        }
    }
}

/// A chat-completions request, borrowing the prompt and the turns (serialised once, by the
/// client, without an intermediate JSON tree).
#[derive(serde::Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Vec<Turn<'a>>,
    temperature: f32,
    max_tokens: u32,
    max_completion_tokens: u32,
    stream: bool,
}

/// One message of [`Body`].
#[derive(serde::Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: &'a str,
}

fn model_error(error: OpenAIError) -> ModelError {
    match error {
        OpenAIError::Reqwest(e) if e.is_timeout() => ModelError::Timeout(e.to_string()),
        OpenAIError::Reqwest(e) if e.is_connect() => {
            ModelError::Upstream(format!("cannot connect: {e}"))
        }
        OpenAIError::ApiError(e) => ModelError::Upstream(e.to_string()),
        OpenAIError::JSONDeserialize(e, _) => {
            ModelError::Upstream(format!("malformed response: {e}"))
        }
        other => ModelError::Upstream(other.to_string()),
    }
}

impl ChatModel for OpenAiModel {
    fn name(&self) -> String {
        format!("openai:{}", self.settings.model)
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<Reply, ModelError>> {
        Box::pin(async move {
            let body = self.body(request, false);
            let chat = self.client().chat();
            let call = chat.create_byot::<_, Completion>(body);
            let completion = tokio::time::timeout(self.settings.total_timeout, call)
                .await
                .map_err(|_| ModelError::Timeout("no answer in time".to_string()))?
                .map_err(model_error)?;
            completion
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.message)
                .and_then(|m| m.content)
                .map(|text| Reply {
                    backend: self.name(),
                    text,
                })
                .ok_or_else(|| {
                    ModelError::Upstream("the response has no message content".to_string())
                })
        })
    }

    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ReplyStream, ModelError>> {
        Box::pin(async move {
            let started = Instant::now();
            let first_deadline = started + self.settings.first_token_timeout;
            let total_deadline = started + self.settings.total_timeout;
            let body = self.body(request, true);
            let chat = self.client().chat();
            let call = chat.create_stream_byot::<_, Chunk>(body);
            let mut chunks = tokio::time::timeout_at(first_deadline, call)
                .await
                .map_err(|_| ModelError::Timeout("no first token in time".to_string()))?
                .map_err(model_error)?;
            // Wait for the first piece of text here, so that a provider that fails before
            // writing anything is reported as an HTTP error rather than a broken stream.
            let mut first = None;
            while first.is_none() {
                match tokio::time::timeout_at(first_deadline, chunks.next()).await {
                    Err(_) => {
                        return Err(ModelError::Timeout("no first token in time".to_string()));
                    }
                    Ok(None) => break,
                    Ok(Some(chunk)) => first = chunk_text(chunk.map_err(model_error))?,
                }
            }
            if first.is_none() {
                return Err(ModelError::Upstream(
                    "the stream ended without any text".to_string(),
                ));
            }
            let rest = futures::stream::unfold(chunks, move |mut chunks| async move {
                loop {
                    match tokio::time::timeout_at(total_deadline, chunks.next()).await {
                        Err(_) => {
                            let error = ModelError::Timeout("the answer took too long".to_string());
                            return Some((Err(error), chunks));
                        }
                        Ok(None) => return None,
                        Ok(Some(chunk)) => match chunk_text(chunk.map_err(model_error)) {
                            Ok(Some(text)) => return Some((Ok(text), chunks)),
                            Ok(None) => continue,
                            Err(error) => return Some((Err(error), chunks)),
                        },
                    }
                }
            });
            let text: TextStream = Box::pin(futures::stream::iter(first.map(Ok)).chain(rest));
            Ok(ReplyStream {
                backend: self.name(),
                text,
            })
        })
    }
}

/// The text a chunk carries, `None` for chunks without text (role, finish, usage).
fn chunk_text(chunk: Result<Chunk, ModelError>) -> Result<Option<String>, ModelError> {
    let chunk = chunk?;
    if let Some(error) = chunk.error {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_string);
        return Err(ModelError::Upstream(message));
    }
    let text: String = chunk
        .choices
        .into_iter()
        .filter_map(|c| c.delta.and_then(|d| d.content))
        .collect();
    Ok((!text.is_empty()).then_some(text))
}
