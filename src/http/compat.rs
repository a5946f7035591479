//! The tutor as an OpenAI-compatible model, so LMSs and chat front ends (Moodle's AI provider,
//! Open WebUI, LibreChat, any OpenAI client) use it unmodified: `GET /v1/models` lists one model
//! per lesson, `tutor/<lesson-id>`, and `POST /v1/chat/completions` answers the last user message
//! from that lesson exactly as `/v1/chat` does (same gate, citations and refusals).
//!
//! A client's `system`/`developer` messages are ignored: they never override the tutor's
//! grounding rules. Unknown request fields are accepted and ignored. Errors use OpenAI's shape.

use super::ErrorCode;
use super::api::ApiJson;
use super::{AppState, error::ApiError};
use crate::chat::{Answer, ChatEvent, Mode, Question};
use crate::conversation_log::now;
use crate::llm::estimated_tokens;
use crate::llm::{Role, Turn};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;

/// Model ids are `tutor/<lesson-id>`, and `tutor/<lesson-id>:hint` (hints, not answers) and
/// `tutor/<lesson-id>:quiz` ("quiz me": a question, then the grading of the reply to it).
pub const MODEL_PREFIX: &str = "tutor/";

/// The modes a lesson's models offer, by their suffix.
const MODES: [(&str, Mode); 3] = [
    ("", Mode::Answer),
    (":hint", Mode::Hint),
    (":quiz", Mode::Quiz),
];

/// The lesson id and mode a model id names (the lesson not checked).
fn parse_model(model: &str) -> Option<(&str, Mode)> {
    let rest = model.strip_prefix(MODEL_PREFIX)?;
    MODES
        .iter()
        .rev()
        .find_map(|(suffix, mode)| Some((rest.strip_suffix(suffix)?, *mode)))
        .filter(|(id, _)| !id.is_empty())
}

fn model_json(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "tutor"})
}

#[derive(Deserialize)]
pub(super) struct CompletionRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter(|p| {
                    p.kind
                        .as_deref()
                        .is_none_or(|k| k == "text" || k == "input_text")
                })
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

fn fingerprint() -> String {
    format!("tutor-{}", env!("CARGO_PKG_VERSION"))
}

fn model_not_found(model: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ModelNotFound,
        format!(
            "the model `{model}` does not exist; GET /v1/models lists them (`tutor/<lesson-id>`)"
        ),
    )
}

/// List the lessons as OpenAI models, `tutor/<lesson-id>`.
#[utoipa::path(get, path = "/v1/models", tag = "openai-compatible",
    responses((status = 200, description = "`{\"object\": \"list\", \"data\": [{\"id\", \"object\", \"created\", \"owned_by\"}]}`")))]
pub async fn models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let tutor = state.tutor()?;
    let created = tutor.created();
    let data: Vec<Value> = tutor
        .retriever()
        .catalog()
        .lessons
        .iter()
        .flat_map(|l| {
            MODES.iter().map(move |(suffix, _)| {
                model_json(&format!("{MODEL_PREFIX}{}{suffix}", l.id), created)
            })
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// One model, `tutor/<lesson-id>`.
#[utoipa::path(get, path = "/v1/models/tutor/{lesson}", tag = "openai-compatible",
    params(("lesson" = String, Path, description = "Lesson id")),
    responses((status = 200, description = "The model"), (status = 404, description = "`model_not_found`")))]
pub async fn model(
    State(state): State<AppState>,
    Path(lesson): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tutor = state.tutor()?;
    let id = format!("{MODEL_PREFIX}{lesson}");
    parse_model(&id)
        .filter(|(lesson, _)| tutor.retriever().catalog().get(lesson).is_some())
        .ok_or_else(|| model_not_found(&id))?;
    Ok(Json(model_json(&id, tutor.created())))
}

/// OpenAI chat completions with `model: tutor/<lesson-id>`: the last user message answered from
/// that lesson, earlier turns as history; `stream` with `stream_options.include_usage` supported.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai-compatible",
    request_body(content = Object, description = "An OpenAI chat-completions request"),
    responses(
        (status = 200, description = "A `chat.completion` (with extra `citations`), or `chat.completion.chunk` events then `[DONE]`"),
        (status = 400, description = "OpenAI error shape"), (status = 401, description = "OpenAI error shape"),
        (status = 404, description = "`model_not_found`"), (status = 429, description = "Rate limited"),
        (status = 502, description = "The model provider failed"), (status = 504, description = "The model provider timed out"),
    ))]
pub async fn completions(
    State(state): State<AppState>,
    caller: Option<axum::Extension<super::Caller>>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Response {
    match completions_inner(state, caller.map(|c| c.0), request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn completions_inner(
    state: AppState,
    caller: Option<super::Caller>,
    request: CompletionRequest,
) -> Result<Response, ApiError> {
    let tutor = state.tutor()?;
    let (lesson_id, mode) = parse_model(&request.model)
        .filter(|(id, _)| tutor.retriever().catalog().get(id).is_some())
        .ok_or_else(|| model_not_found(&request.model))?;
    let lesson_id = lesson_id.to_string();
    super::api::check_lesson(caller.as_ref(), &lesson_id)?;
    // The question is the last user message; earlier user and assistant turns are history.
    let last_user = request
        .messages
        .iter()
        .rposition(|m| m.role == "user")
        .ok_or_else(|| ApiError::invalid_request("`messages` has no user message to answer"))?;
    let message = request.messages[last_user]
        .content
        .as_ref()
        .map(Content::text)
        .unwrap_or_default();
    let history: Vec<Turn> = request.messages[..last_user]
        .iter()
        .filter_map(|m| {
            let role = match m.role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                _ => return None,
            };
            let content = m.content.as_ref().map(Content::text).unwrap_or_default();
            (!content.trim().is_empty()).then_some(Turn { role, content })
        })
        .collect();
    let history = history[history.len().saturating_sub(crate::chat::MAX_HISTORY_TURNS)..].to_vec();
    let prompt_tokens = estimated_tokens(&message)
        + history
            .iter()
            .map(|t| estimated_tokens(&t.content))
            .sum::<u64>();
    let question = facade_question(&tutor, mode, lesson_id, message, history)?
        .hint_only(super::api::hint_only(caller.as_ref()));
    let model = request.model.clone();
    if request.stream != Some(true) {
        let (answer, _) = tutor.ask(question).await?;
        return Ok(Json(completion(&model, &answer, prompt_tokens)).into_response());
    }
    let include_usage = request
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let events = tutor.ask_stream(question).await?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now();
    let chunk = move |delta: Value, finish: Option<&str>, extra: Option<(&str, Value)>| {
        let mut value = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": fingerprint(),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        });
        if let Some((key, extra)) = extra {
            value[key] = extra;
        }
        value
    };
    // The first `citations` event opens the message; later ones (a newly cited passage) have
    // no chunk of their own: the last chunk carries the answer's citations.
    let mut opened = false;
    let stream = events.flat_map(move |event| {
        let frames: Vec<Value> = match event {
            ChatEvent::Citations(_) if opened => Vec::new(),
            ChatEvent::Citations(_) => {
                opened = true;
                vec![chunk(
                    json!({"role": "assistant", "content": ""}),
                    None,
                    None,
                )]
            }
            ChatEvent::Delta(text) => vec![chunk(json!({"content": text}), None, None)],
            ChatEvent::Done(answer) => {
                let mut last = chunk(
                    json!({}),
                    Some("stop"),
                    Some(("citations", json!(answer.citations))),
                );
                last["refused"] = json!(answer.refused);
                last["kind"] = json!(answer.kind);
                let mut frames = vec![last];
                if include_usage {
                    let mut usage = chunk(
                        json!({}),
                        None,
                        Some(("usage", usage(prompt_tokens, &answer))),
                    );
                    usage["choices"] = json!([]);
                    frames.push(usage);
                }
                frames.push(Value::String("[DONE]".to_string()));
                frames
            }
            ChatEvent::Error(error) => vec![openai_body(&ApiError::from(error))],
        };
        futures::stream::iter(frames.into_iter().map(|frame| {
            let data = match frame {
                Value::String(done) => done,
                other => other.to_string(),
            };
            Ok::<_, Infallible>(Event::default().data(data))
        }))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}

/// The question a facade request asks in `mode`. The facade keeps no state: in `:quiz`, the
/// item a reply answers is the one the last assistant turn asked, and the items asked are those
/// the assistant turns hold.
fn facade_question(
    tutor: &crate::chat::Tutor,
    mode: Mode,
    lesson_id: String,
    message: String,
    history: Vec<Turn>,
) -> Result<Question, ApiError> {
    if mode != Mode::Quiz {
        return Ok(Question::parse(lesson_id, message, history)?.with_mode(mode, None)?);
    }
    let lesson = tutor
        .retriever()
        .catalog()
        .get(&lesson_id)
        .cloned()
        .ok_or_else(|| model_not_found(&format!("{MODEL_PREFIX}{lesson_id}:quiz")))?;
    let items = tutor.quiz_items(&lesson);
    let asked_in = |turn: &Turn| {
        items
            .iter()
            .filter(|i| turn.role == Role::Assistant && turn.content.contains(&i.question))
            .map(|i| i.id.clone())
            .collect::<Vec<_>>()
    };
    let pending = history
        .last()
        .map(asked_in)
        .and_then(|ids| ids.into_iter().next());
    Ok(match pending {
        Some(item) if !message.trim().is_empty() => {
            // Each assistant turn in a row that put the question (asked, then asked again after
            // a reply not yet right) is one try.
            let attempt = history
                .iter()
                .rev()
                .filter(|turn| turn.role == Role::Assistant)
                .take_while(|turn| asked_in(turn).contains(&item))
                .count();
            Question::parse(lesson_id, message, Vec::new())?
                .with_mode(Mode::Quiz, Some(item))?
                .with_attempt(Some(attempt as u32))?
        }
        _ => Question::quiz_me(lesson_id, history.iter().flat_map(asked_in).collect())?,
    })
}

fn usage(prompt_tokens: u64, answer: &Answer) -> Value {
    let completion_tokens = estimated_tokens(&answer.answer);
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens})
}

fn completion(model: &str, answer: &Answer, prompt_tokens: u64) -> Value {
    json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "system_fingerprint": fingerprint(),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.answer, "refusal": null},
            "finish_reason": "stop",
            "logprobs": null,
        }],
        "usage": usage(prompt_tokens, answer),
        "citations": answer.citations,
        "refused": answer.refused,
        "kind": answer.kind,
        "related_lesson": answer.related_lesson,
    })
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
fn openai_body(error: &ApiError) -> Value {
    json!({"error": {
        "message": error.message,
        "type": error.code.openai_type(),
        "param": null,
        "code": error.code.as_str(),
    }})
}

/// Middleware for the OpenAI-compatible routes: restates every error response (from handlers,
/// keys, limits, body limits) in OpenAI's shape, from the [`ApiError`] the response carries.
pub async fn openai_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status().as_u16() < 400 {
        return response;
    }
    let Some(error) = response.extensions().get::<ApiError>().cloned() else {
        // Every error of the routes behind this layer is an `ApiError`; anything else is kept
        // as it is rather than guessed at.
        return response;
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(openai_body(&error).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ErrorCode;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_error_code_keeps_its_code_and_status_in_openai_shape() {
        for &code in ErrorCode::ALL {
            let app = axum::Router::new()
                .route(
                    "/",
                    axum::routing::get(move || async move { ApiError::new(code, "why") }),
                )
                .layer(axum::middleware::from_fn(openai_errors));
            let response = app
                .oneshot(
                    axum::http::Request::builder()
                        .uri("/")
                        .body(Body::empty())
                        .expect("request"),
                )
                .await
                .expect("response");
            assert_eq!(response.status(), code.status(), "{code:?}");
            let bytes = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .expect("body");
            let body: Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(body["error"]["code"], code.as_str(), "{code:?}");
            assert_eq!(body["error"]["type"], code.openai_type(), "{code:?}");
            assert_eq!(body["error"]["message"], "why");
            assert!(body["error"].get("param").is_some());
        }
    }
}
