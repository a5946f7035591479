//! JSON and SSE handlers of `/v1/*`, `/healthz` and `/readyz`.

use super::ErrorCode;
use super::error::{ApiError, ErrorBody};
use super::{AppState, BODY_LIMIT};
use crate::chat::{Answer, ChatEvent, Mode, Question};
#[allow(unused_imports)]
use crate::chat::{Citation, LessonRef};
use crate::lessons::Lesson;
use crate::llm::Turn;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use utoipa::ToSchema;

/// The body of `POST /v1/chat`. Unknown fields are ignored, so clients may send more.
#[derive(Deserialize, ToSchema)]
pub struct ChatRequest {
    /// The lesson the learner is reading.
    lesson_id: String,
    /// The question, 1 to 4,000 characters (with `mode: "quiz"`: the reply to `quiz_item`, or
    /// nothing to be asked a question).
    #[serde(default)]
    message: Option<String>,
    /// `answer` (the default), `hint` (a nudge toward the answer, not the answer) or `quiz`.
    #[serde(default)]
    mode: Mode,
    /// With `mode: "quiz"`: the item `message` replies to (from the `quiz` of the question).
    #[serde(default)]
    quiz_item: Option<String>,
    /// With `mode: "quiz"` and no `message`: items already asked in this session, oldest
    /// first, so the next question is a new one.
    #[serde(default)]
    quiz_asked: Vec<String>,
    /// With `mode: "quiz"` and `quiz_item`: which try this reply is, from 1 (the default). A
    /// reply not yet right on the first try gets a hint and the answer is kept back
    /// (`quiz.tries_left` is 1); on the second it gets the answer. Send 2 to have the answer at
    /// once.
    #[serde(default)]
    quiz_attempt: Option<u32>,
    /// Earlier turns, oldest first (at most 20).
    #[serde(default)]
    history: Option<Vec<Turn>>,
    /// Stream the answer as Server-Sent Events (also chosen by `Accept: text/event-stream`).
    #[serde(default)]
    stream: Option<bool>,
    /// An anonymous id for the conversation (the widget makes one), kept in the log when on.
    #[serde(default)]
    conversation_id: Option<String>,
}

/// The body of `POST /v1/feedback`.
#[derive(Deserialize, ToSchema)]
pub struct FeedbackRequest {
    /// The `answer_id` of a chat answer.
    answer_id: crate::ids::AnswerId,
    rating: crate::conversation_log::Rating,
    /// An optional short comment (up to 500 characters), usually with "down".
    #[serde(default)]
    comment: Option<String>,
}

/// A section of a lesson.
#[derive(Serialize, ToSchema)]
pub struct SectionInfo {
    /// The heading's slug: its anchor on the lesson page.
    id: String,
    title: String,
}

/// A lesson as listed by the API.
#[derive(Serialize, ToSchema)]
pub struct LessonInfo {
    id: String,
    title: String,
    summary: String,
    track: Option<String>,
    minutes: Option<u32>,
    related: Vec<String>,
    sections: Vec<SectionInfo>,
}

/// `GET /v1/lessons`.
#[derive(Serialize, ToSchema)]
pub struct LessonList {
    lessons: Vec<LessonInfo>,
}

/// One search hit.
#[derive(Serialize, ToSchema)]
pub struct SearchHit {
    passage_id: String,
    lesson_id: String,
    section: String,
    section_id: String,
    text: String,
    score: f32,
}

/// `GET /v1/search`.
#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    hits: Vec<SearchHit>,
}

/// A JSON request body, as an extractor: read within [`BODY_LIMIT`] (a larger
/// `Content-Length` is refused before reading) and [`super::server::BODY_READ_TIMEOUT`], and
/// every failure rejected as an [`ApiError`] in the API's error shape. Any `Content-Type` is
/// taken (`curl -d` and simple browser requests send others), the body alone decides.
pub(super) struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, _: &S) -> Result<Self, ApiError> {
        if request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            > Some(BODY_LIMIT)
        {
            return Err(ApiError::payload_too_large());
        }
        read_json(request.into_body()).await.map(ApiJson)
    }
}

/// Reads a JSON body within [`BODY_LIMIT`] and [`super::server::BODY_READ_TIMEOUT`]; every
/// failure is an [`ApiError`].
async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = tokio::time::timeout(
        super::server::BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, BODY_LIMIT),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} s",
                super::server::BODY_READ_TIMEOUT.as_secs()
            ),
        )
    })?
    .map_err(|_| ApiError::payload_too_large())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request(
            "the request body is empty: send a JSON object",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "the request body is not valid JSON"
        } else {
            "the request body does not match the expected fields"
        };
        ApiError::invalid_request(format!("{what}: {e}"))
    })
}

fn wants_stream(headers: &HeaderMap, flag: Option<bool>) -> bool {
    flag.unwrap_or_else(|| {
        headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"))
    })
}

/// Ask a question about a lesson.
///
/// Answers from the lesson only, citing passages as `[n]`; refuses (200, `refused: true`) when
/// the lesson does not cover the question. With `stream`, Server-Sent Events: `citations`,
/// `delta`..., then `done` (the whole answer) or one `error`.
#[utoipa::path(post, path = "/v1/chat", tag = "tutor", request_body = ChatRequest,
    responses(
        (status = 200, description = "The answer (JSON), or `text/event-stream` when streaming", body = Answer),
        (status = 400, description = "Malformed JSON, missing or wrong-typed field", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 403, description = "Browser origin not allowed", body = ErrorBody),
        (status = 404, description = "Unknown lesson", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Empty or too long message, history too long", body = ErrorBody),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorBody),
        (status = 502, description = "The model provider failed", body = ErrorBody),
        (status = 503, description = "Loading, or every model slot is busy", body = ErrorBody),
        (status = 504, description = "The model provider timed out", body = ErrorBody),
    ))]
pub async fn chat(
    State(state): State<AppState>,
    caller: Option<axum::Extension<super::Caller>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Response {
    match chat_inner(state, caller.map(|c| c.0), headers, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The lesson a learner's LTI session is limited to (`None` for keys and the open API).
fn session_lesson(caller: Option<&super::Caller>) -> Option<String> {
    match caller {
        Some(super::Caller::Learner { lesson, .. }) => Some(lesson.to_string()),
        _ => None,
    }
}

/// A learner's LTI session launched by an instructor in hint-only mode (an assessment).
pub(super) fn hint_only(caller: Option<&super::Caller>) -> bool {
    matches!(
        caller,
        Some(super::Caller::Learner {
            hint_only: true,
            ..
        })
    )
}

/// A learner's LTI session is for one lesson only.
pub(super) fn check_lesson(
    caller: Option<&super::Caller>,
    lesson_id: &str,
) -> Result<(), ApiError> {
    match caller {
        Some(super::Caller::Learner { lesson, .. }) if lesson.as_ref() != lesson_id => {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this session is for lesson `{lesson}`, not `{lesson_id}`"),
            ))
        }
        _ => Ok(()),
    }
}

async fn chat_inner(
    state: AppState,
    caller: Option<super::Caller>,
    headers: HeaderMap,
    request: ChatRequest,
) -> Result<Response, ApiError> {
    let stream = wants_stream(&headers, request.stream);
    let question = match (request.mode, request.message, request.quiz_item) {
        (Mode::Quiz, None, None) => Question::quiz_me(request.lesson_id, request.quiz_asked)?,
        // Only "quiz me" comes without a message: as before modes, a missing one is bad JSON.
        (_, None, _) => {
            return Err(ApiError::invalid_request(
                "missing field `message` (only `mode: \"quiz\"` without `quiz_item` may leave it out)",
            ));
        }
        (mode, Some(message), item) => Question::parse(
            request.lesson_id,
            message,
            request.history.unwrap_or_default(),
        )?
        .with_mode(mode, item)?,
    }
    .with_attempt(request.quiz_attempt)?
    .with_conversation(request.conversation_id.as_deref())?
    .hint_only(hint_only(caller.as_ref()));
    check_lesson(caller.as_ref(), question.lesson_id())?;
    let tutor = state.tutor()?;
    if !stream {
        let (answer, _) = tutor.ask(question).await?;
        return Ok(Json(answer).into_response());
    }
    let events = tutor.ask_stream(question).await?;
    let events = events.map(|event| Ok::<_, Infallible>(sse_event(event)));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}

fn sse_event(event: ChatEvent) -> Event {
    match event {
        ChatEvent::Citations(citations) => Event::default()
            .event("citations")
            .data(json!({ "citations": citations }).to_string()),
        ChatEvent::Delta(text) => Event::default()
            .event("delta")
            .data(json!({ "text": text }).to_string()),
        ChatEvent::Done(answer) => Event::default()
            .event("done")
            .data(answer_json(&answer).to_string()),
        ChatEvent::Error(error) => Event::default()
            .event("error")
            .data(ApiError::from(error).body().to_string()),
    }
}

fn answer_json(answer: &Answer) -> Value {
    serde_json::to_value(answer).unwrap_or_else(|_| json!({}))
}

fn lesson_info(lesson: &Lesson) -> LessonInfo {
    LessonInfo {
        id: lesson.id.clone(),
        title: lesson.title.clone(),
        summary: lesson.summary.clone(),
        track: lesson.track.clone(),
        minutes: lesson.minutes,
        related: lesson.related.clone(),
        sections: lesson
            .sections
            .iter()
            .map(|s| SectionInfo {
                id: s.slug.clone(),
                title: s.title.clone(),
            })
            .collect(),
    }
}

/// List the lessons with their sections.
#[utoipa::path(get, path = "/v1/lessons", tag = "tutor",
    responses((status = 200, body = LessonList), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn lessons(
    State(state): State<AppState>,
    caller: Option<axum::Extension<super::Caller>>,
) -> Result<Json<LessonList>, ApiError> {
    let tutor = state.tutor()?;
    let catalog = tutor.retriever().catalog();
    // A learner's session sees its own lesson only.
    let only = session_lesson(caller.as_ref().map(|c| &c.0));
    let lessons = catalog
        .lessons
        .iter()
        .filter(|l| only.as_ref().is_none_or(|only| *only == l.id))
        .map(|l| lesson_info(l))
        .collect();
    Ok(Json(LessonList { lessons }))
}

/// One lesson with its sections.
#[utoipa::path(get, path = "/v1/lessons/{id}", tag = "tutor", params(("id" = String, Path, description = "Lesson id")),
    responses((status = 200, body = LessonInfo), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn lesson(
    State(state): State<AppState>,
    caller: Option<axum::Extension<super::Caller>>,
    Path(id): Path<String>,
) -> Result<Json<LessonInfo>, ApiError> {
    check_lesson(caller.as_ref().map(|c| &c.0), &id)?;
    let tutor = state.tutor()?;
    let catalog = tutor.retriever().catalog();
    let lesson = catalog
        .get(&id)
        .ok_or_else(|| ApiError::lesson_not_found(&id))?;
    Ok(Json(lesson_info(lesson)))
}

/// Search passages (BM25), in one lesson or all.
#[utoipa::path(get, path = "/v1/search", tag = "tutor",
    params(
        ("q" = String, Query, description = "Free text; never parsed as query syntax"),
        ("lesson_id" = Option<String>, Query, description = "Only this lesson"),
        ("k" = Option<usize>, Query, description = "Hits, 1 to 50 (default 5)"),
    ),
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    caller: Option<axum::Extension<super::Caller>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<SearchResults>, ApiError> {
    let Query(mut params) = query.map_err(|e| ApiError::invalid_request(e.body_text()))?;
    let q = params
        .remove("q")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_request("`q` is required: the text to search for"))?;
    if q.chars().count() > crate::chat::MAX_MESSAGE_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            format!(
                "`q` is longer than {} characters",
                crate::chat::MAX_MESSAGE_CHARS
            ),
        ));
    }
    let k = match params.get("k").map(String::as_str) {
        None | Some("") => 5,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=50).contains(k))
            .ok_or_else(|| ApiError::invalid_request("`k` must be a whole number from 1 to 50"))?,
    };
    let tutor = state.tutor()?;
    let caller = caller.as_ref().map(|c| &c.0);
    // A learner's session searches its own lesson, and only it.
    let lesson_id = params
        .remove("lesson_id")
        .filter(|l| !l.is_empty())
        .or_else(|| session_lesson(caller));
    if let Some(id) = &lesson_id {
        check_lesson(caller, id)?;
    }
    if let Some(id) = &lesson_id
        && tutor.retriever().catalog().get(id).is_none()
    {
        return Err(ApiError::lesson_not_found(id));
    }
    let hits = tutor
        .off_thread(move |tutor| {
            tutor
                .retriever()
                .search(lesson_id.as_deref(), &q, k)
                .map(|hits| {
                    hits.into_iter()
                        .map(|hit| {
                            let passage = hit.passage();
                            let section = hit.lesson.section_of(passage);
                            SearchHit {
                                passage_id: passage.id.clone(),
                                lesson_id: hit.lesson.id.clone(),
                                section: section.title.clone(),
                                section_id: section.slug.clone(),
                                text: passage.text.clone(),
                                score: hit.score,
                            }
                        })
                        .collect::<Vec<_>>()
                })
        })
        .await?
        .map_err(crate::chat::ChatError::from)?;
    Ok(Json(SearchResults { hits }))
}

/// The process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The index is loaded and questions can be answered.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, body = ErrorBody, description = "Still loading")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.tutor() {
        Ok(tutor) => Json(json!({
            "status": "ready",
            "lessons": tutor.retriever().catalog().lessons.len(),
            "backend": tutor.backend(),
            // The sentence model matching questions by meaning, or "off" (words alone).
            "semantic": tutor
                .retriever()
                .semantic()
                .map_or_else(|| "off".to_string(), |s| s.identity().to_string()),
            // How many times the watcher has looked for a new index (or edited files).
            "reload_checks": state.reload_checks(),
        }))
        .into_response(),
        Err(error) => error.into_response(),
    }
}

/// Rate an answer up or down (the last rating wins).
#[utoipa::path(post, path = "/v1/feedback", tag = "tutor", request_body = FeedbackRequest,
    responses(
        (status = 200, description = "`{\"status\": \"recorded\"}`"),
        (status = 400, body = ErrorBody), (status = 404, description = "Unknown answer id", body = ErrorBody),
        (status = 422, description = "Comment too long", body = ErrorBody),
    ))]
pub async fn feedback(
    State(state): State<AppState>,
    caller: Option<axum::Extension<super::Caller>>,
    ApiJson(request): ApiJson<FeedbackRequest>,
) -> Result<Json<Value>, ApiError> {
    if request
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 500)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidMessage,
            "`comment` is longer than 500 characters",
        ));
    }
    let tutor = state.tutor()?;
    let comment = request
        .comment
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .map(str::to_string);
    let only_lesson = session_lesson(caller.as_ref().map(|c| &c.0));
    let rated = tutor
        .rate(
            &request.answer_id,
            request.rating,
            comment.as_deref(),
            only_lesson.as_deref(),
        )
        .await;
    match rated {
        crate::chat::Rated::Recorded => Ok(Json(json!({"status": "recorded"}))),
        crate::chat::Rated::Unknown => Err(ApiError::new(
            ErrorCode::AnswerNotFound,
            "no answer has this `answer_id`",
        )),
        crate::chat::Rated::Unavailable => Err(ApiError::new(
            ErrorCode::Overloaded,
            "answers cannot be looked up right now; try again in a moment",
        )),
        crate::chat::Rated::OtherLesson(lesson) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this session may rate answers on its own lesson only, not on `{lesson}`"),
        )),
    }
}

/// Service metrics in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4", description = "Prometheus text exposition")))]
pub async fn metrics() -> Response {
    let mut response = crate::telemetry::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see GET /v1/lessons, POST /v1/chat, GET /v1/search")
}

/// Known paths with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}
