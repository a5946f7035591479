//! `Tutor::ask`: retrieve → refuse, or prompt → model → check citations → [`Answer`].
//!
//! The CLI's `ask` and `POST /v1/chat` both come here. The gate runs before any model call: a
//! question the lesson does not cover is refused with the refusal text and no model is called.

pub mod citations;

use crate::lessons::{Lesson, Passage};
use crate::llm::{ChatModel, ModelError, ModelRequest, NumberedPassage, TextStream, Turn};
use crate::prompts::{NOT_IN_LESSON, PromptError, PromptLesson, PromptPassage, Prompts};
use crate::retrieve::{GateReason, Retrieval, Retriever};
use crate::telemetry;
use citations::{CitationFilter, filter_answer};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use std::sync::Arc;

/// Longest learner message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Most turns of history a request may carry.
pub const MAX_HISTORY_TURNS: usize = 20;
/// Longest single history turn, in characters.
pub const MAX_TURN_CHARS: usize = 8000;
/// Least share of a model answer's content words that must come from the given passages; below
/// it the answer is taken to come from the model's own knowledge and is withheld.
pub const MIN_GROUNDING: f32 = 0.4;

/// Why a question could not be answered at all.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("there is no lesson `{0}`")]
    LessonNotFound(String),
    #[error("{0}")]
    InvalidMessage(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// Every model slot is busy and none freed up in time.
    #[error("too many questions are waiting for the model")]
    Overloaded,
    #[error("internal error: {0}")]
    Internal(String),
}

/// A validated question: parse, don't validate.
#[derive(Debug, Clone)]
pub struct Question {
    pub lesson_id: String,
    pub message: String,
    pub history: Vec<Turn>,
    /// An anonymous id the widget makes per conversation (for the log); never an identity.
    pub conversation_id: Option<String>,
}

impl Question {
    /// Checks the limits of API.md: a message of 1 to 4,000 characters, bounded history.
    pub fn parse(
        lesson_id: String,
        message: String,
        history: Vec<Turn>,
    ) -> Result<Question, ChatError> {
        let message = message.trim().to_string();
        if message.is_empty() {
            return Err(ChatError::InvalidMessage(
                "`message` is empty: ask a question".to_string(),
            ));
        }
        let chars = message.chars().count();
        if chars > MAX_MESSAGE_CHARS {
            return Err(ChatError::InvalidMessage(format!(
                "`message` is {chars} characters long; the limit is {MAX_MESSAGE_CHARS}"
            )));
        }
        if history.len() > MAX_HISTORY_TURNS {
            return Err(ChatError::InvalidMessage(format!(
                "`history` has {} turns; send at most the last {MAX_HISTORY_TURNS}",
                history.len()
            )));
        }
        if let Some(i) = history
            .iter()
            .position(|t| t.content.chars().count() > MAX_TURN_CHARS)
        {
            return Err(ChatError::InvalidMessage(format!(
                "`history[{i}].content` is longer than {MAX_TURN_CHARS} characters"
            )));
        }
        Ok(Question {
            lesson_id,
            message,
            history,
            conversation_id: None,
        })
    }

    /// Attaches the widget's anonymous conversation id (up to 64 letters, digits, `-`, `_`).
    pub fn with_conversation(mut self, id: Option<String>) -> Result<Question, ChatError> {
        if let Some(id) = &id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(ChatError::InvalidMessage(
                "`conversation_id` must be 1 to 64 letters, digits, `-` or `_`".to_string(),
            ));
        }
        self.conversation_id = id;
        Ok(self)
    }
}

/// A passage an answer stands on, as the learner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Citation {
    pub n: usize,
    pub passage_id: String,
    pub lesson_id: String,
    /// The section's title.
    pub section: String,
    /// The section's slug: the anchor of the heading on the lesson page.
    pub section_id: String,
    pub text: String,
}

/// A lesson named in a refusal.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LessonRef {
    pub id: String,
    pub title: String,
}

/// The answer, as `POST /v1/chat` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Answer {
    /// Identifies this answer for feedback (`POST /v1/feedback`).
    pub answer_id: String,
    pub answer: String,
    pub refused: bool,
    pub citations: Vec<Citation>,
    pub backend: String,
    /// For a refusal: another lesson that covers the question, when one does.
    pub related_lesson: Option<LessonRef>,
    /// Why it was refused (for the log and metrics; not sent).
    #[serde(skip)]
    #[schema(ignore)]
    pub refusal_reason: Option<&'static str>,
}

/// A fresh answer id.
fn answer_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What a streamed answer sends, in order: `Citations`, `Delta`s, then `Done` or `Error`.
#[derive(Debug)]
pub enum ChatEvent {
    /// The passages the answer may cite.
    Citations(Vec<Citation>),
    Delta(String),
    Done(Answer),
    Error(ChatError),
}

/// The tutor: a retriever, the prompts and a model.
#[derive(Clone)]
pub struct Tutor {
    retriever: Arc<Retriever>,
    prompts: Arc<Prompts>,
    model: Arc<dyn ChatModel>,
    /// Bounds retrieval work running at once to the number of cores: more threads than cores
    /// only add switching, and a burst would otherwise grow the blocking pool by dozens of
    /// threads and stretch tail latency.
    blocking: Arc<tokio::sync::Semaphore>,
    /// Caps model calls in flight, so a burst waits briefly or is refused instead of piling
    /// onto the provider. `None` for the extractive answerer, which calls nobody.
    model_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// How long a question waits for a model slot.
    model_queue: std::time::Duration,
    /// When this tutor was built (Unix seconds), reported as the models' `created`.
    created: u64,
    /// Questions of at most this many words, answered by one passage, count as easy.
    easy_max_words: usize,
    /// Recent answer ids, so feedback on an unknown id is a 404 even with the log off.
    recent: Arc<RecentAnswers>,
    /// The conversation log, when it is on.
    logger: Option<crate::conversation_log::Logger>,
}

/// A bounded set of the most recent answer ids.
#[derive(Default)]
pub struct RecentAnswers {
    inner: std::sync::Mutex<(
        std::collections::HashSet<String>,
        std::collections::VecDeque<String>,
    )>,
}

impl RecentAnswers {
    const CAPACITY: usize = 100_000;

    fn insert(&self, id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *inner;
        if set.insert(id.to_string()) {
            order.push_back(id.to_string());
            if order.len() > Self::CAPACITY
                && let Some(old) = order.pop_front()
            {
                set.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .contains(id)
    }
}

/// The outcome of retrieval and the gate for one question.
pub struct Plan {
    pub retrieval: Retrieval,
    /// Set when the gate refused; no model is called.
    pub refusal: Option<Answer>,
    /// The passages given to the model, numbered from 1.
    pub citations: Vec<Citation>,
    request: Option<ModelRequest>,
}

impl Tutor {
    /// A tutor over an opened index.
    pub fn new(
        retriever: Arc<Retriever>,
        prompts: Arc<Prompts>,
        model: Arc<dyn ChatModel>,
    ) -> Tutor {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Tutor {
            retriever,
            prompts,
            model,
            blocking: Arc::new(tokio::sync::Semaphore::new(cores)),
            model_slots: None,
            model_queue: std::time::Duration::from_secs(2),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            easy_max_words: 12,
            recent: Arc::new(RecentAnswers::default()),
            logger: None,
        }
    }

    /// Logs every answer through `logger`.
    pub fn with_logger(mut self, logger: crate::conversation_log::Logger) -> Tutor {
        self.logger = Some(logger);
        self
    }

    /// The conversation log, when it is on.
    pub fn logger(&self) -> Option<&crate::conversation_log::Logger> {
        self.logger.as_ref()
    }

    /// Records a learner's rating. Returns false when the answer id is unknown.
    pub fn rate(
        &self,
        answer_id: &str,
        rating: crate::conversation_log::Rating,
        comment: Option<&str>,
    ) -> bool {
        let known = self.recent.contains(answer_id)
            || self.logger.as_ref().is_some_and(|l| l.knows(answer_id));
        if !known {
            return false;
        }
        telemetry::feedback(rating);
        if let Some(logger) = &self.logger {
            logger.rate(answer_id, rating, comment);
        }
        true
    }

    /// Remembers an answer (for feedback) and logs it when the log is on.
    fn record(&self, question: &Question, answer: &Answer, started: std::time::Instant) {
        self.recent.insert(&answer.answer_id);
        let Some(logger) = &self.logger else {
            return;
        };
        logger.append(crate::conversation_log::Record {
            answer_id: answer.answer_id.clone(),
            time: crate::conversation_log::now(),
            lesson_id: question.lesson_id.clone(),
            question: crate::conversation_log::redact(&question.message),
            answer: answer.answer.clone(),
            refused: answer.refused,
            refusal_reason: answer.refusal_reason.map(str::to_string),
            cited: answer
                .citations
                .iter()
                .map(|c| c.passage_id.clone())
                .collect(),
            backend: answer.backend.clone(),
            latency_ms: started.elapsed().as_millis() as u64,
            conversation_id: question.conversation_id.clone(),
            rating: None,
            comment: None,
        });
    }

    /// The same tutor (model, slots, limits) over a reloaded catalog and prompts: requests in
    /// flight keep the old one; new requests get this one.
    pub fn reloaded(&self, retriever: Arc<Retriever>, prompts: Arc<Prompts>) -> Tutor {
        Tutor {
            retriever,
            prompts,
            ..self.clone()
        }
    }

    /// Sets the word limit of an easy question (for routing).
    pub fn with_easy_max_words(mut self, words: usize) -> Tutor {
        self.easy_max_words = words;
        self
    }

    /// Caps model calls in flight at `slots`; a question waits up to `queue` for one.
    pub fn with_model_slots(mut self, slots: usize, queue: std::time::Duration) -> Tutor {
        self.model_slots = Some(Arc::new(tokio::sync::Semaphore::new(slots.max(1))));
        self.model_queue = queue;
        self
    }

    /// When this tutor was built, in Unix seconds.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// Takes a model slot, waiting at most `model_queue`.
    async fn model_slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ChatError> {
        let Some(slots) = &self.model_slots else {
            return Ok(None);
        };
        match tokio::time::timeout(self.model_queue, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            Ok(Err(_)) | Err(_) => Err(ChatError::Overloaded),
        }
    }

    /// Runs blocking work (retrieval, search) on the blocking pool, at most one task per core.
    pub async fn off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Tutor) -> T + Send + 'static,
    ) -> Result<T, ChatError> {
        let _permit = self
            .blocking
            .acquire()
            .await
            .map_err(|e| ChatError::Internal(format!("blocking pool closed: {e}")))?;
        let tutor = self.clone();
        tokio::task::spawn_blocking(move || work(&tutor))
            .await
            .map_err(|e| ChatError::Internal(format!("blocking task failed: {e}")))
    }

    /// The retriever (and through it, the catalog).
    pub fn retriever(&self) -> &Arc<Retriever> {
        &self.retriever
    }

    /// The model's name as reported in `backend`.
    pub fn backend(&self) -> String {
        self.model.name()
    }

    /// Retrieval, the gate and the prompt: blocking work, run it off the async workers.
    pub fn plan(&self, question: &Question) -> Result<Plan, ChatError> {
        let lesson = self
            .retriever
            .catalog()
            .get(&question.lesson_id)
            .cloned()
            .ok_or_else(|| ChatError::LessonNotFound(question.lesson_id.clone()))?;
        let history: Vec<String> = question
            .history
            .iter()
            .filter(|t| t.role == crate::llm::Role::User)
            .map(|t| t.content.clone())
            .collect();
        let started = std::time::Instant::now();
        let retrieval = self
            .retriever
            .retrieve(&lesson.id, &question.message, &history);
        telemetry::retrieval(started.elapsed().as_secs_f64());
        telemetry::gate(retrieval.covered, retrieval.reason.as_str());
        if !retrieval.covered {
            telemetry::refusal(retrieval.reason.as_str());
            let refusal = self.refusal(&question.message, &lesson, retrieval.reason)?;
            return Ok(Plan {
                retrieval,
                refusal: Some(refusal),
                citations: Vec::new(),
                request: None,
            });
        }
        let hits = &retrieval.hits[..retrieval.hits.len().min(self.retriever.settings().passages)];
        let top_score = hits.first().map_or(1.0, |h| h.score.max(f32::EPSILON));
        let given: Vec<&Passage> = hits.iter().map(|h| h.passage()).collect();
        let citations: Vec<Citation> = given
            .iter()
            .enumerate()
            .map(|(i, p)| citation(i + 1, &lesson, p))
            .collect();
        let prompt_passages: Vec<PromptPassage<'_>> = citations
            .iter()
            .map(|c| PromptPassage {
                n: c.n,
                section: &c.section,
                text: &c.text,
            })
            .collect();
        let system = self.prompts.system(
            &PromptLesson {
                id: &lesson.id,
                title: &lesson.title,
                summary: &lesson.summary,
            },
            &prompt_passages,
        )?;
        let request = ModelRequest {
            system,
            history: question.history.clone(),
            message: question.message.clone(),
            passages: citations
                .iter()
                .zip(hits)
                .map(|(c, hit)| NumberedPassage {
                    n: c.n,
                    section: c.section.clone(),
                    text: c.text.clone(),
                    relevance: hit.score / top_score,
                })
                .collect(),
            terms: retrieval.terms.clone(),
            // Short, and one passage holds every term of it.
            easy: question.message.split_whitespace().count() <= self.easy_max_words
                && retrieval.coverage >= 0.99,
        };
        Ok(Plan {
            retrieval,
            refusal: None,
            citations,
            request: Some(request),
        })
    }

    fn refusal(
        &self,
        message: &str,
        lesson: &Lesson,
        reason: GateReason,
    ) -> Result<Answer, ChatError> {
        let related = match reason {
            GateReason::NoSearchableWords => None,
            _ => self.retriever.lesson_covering(message, &lesson.id),
        };
        let answer = self
            .prompts
            .refusal(related.as_ref().map(|l| (l.id.as_str(), l.title.as_str())))?;
        Ok(Answer {
            answer_id: answer_id(),
            refusal_reason: Some(reason.as_str()),
            answer,
            refused: true,
            citations: Vec::new(),
            backend: self.model.name(),
            related_lesson: related.map(|l| LessonRef {
                id: l.id.clone(),
                title: l.title.clone(),
            }),
        })
    }

    async fn plan_off_thread(&self, question: Question) -> Result<(Plan, Question), ChatError> {
        self.off_thread(move |tutor| tutor.plan(&question).map(|plan| (plan, question)))
            .await?
    }

    /// Answers a question in one piece.
    pub async fn ask(&self, question: Question) -> Result<(Answer, Retrieval), ChatError> {
        let asked = std::time::Instant::now();
        let (plan, question) = self.plan_off_thread(question).await?;
        let Plan {
            retrieval,
            refusal,
            citations,
            request,
        } = plan;
        if let Some(refusal) = refusal {
            self.record(&question, &refusal, asked);
            return Ok((refusal, retrieval));
        }
        let request = request.ok_or_else(|| ChatError::Internal("no model request".to_string()))?;
        let _slot = self.model_slot().await?;
        let started = std::time::Instant::now();
        let reply = self
            .model
            .complete(&request)
            .await
            .inspect_err(|e| record_model_error(&self.model.name(), e))?;
        let seconds = started.elapsed().as_secs_f64();
        telemetry::model_call(&reply.backend, "ok");
        telemetry::model_first_token(&reply.backend, seconds);
        telemetry::model_total(&reply.backend, seconds);
        telemetry::model_tokens(&reply.backend, prompt_tokens(&request), tokens(&reply.text));
        let answer = self
            .finish(
                &question,
                &reply.text,
                &citations,
                &reply.backend,
                reply.verbatim,
            )
            .await?;
        self.record(&question, &answer, asked);
        Ok((answer, retrieval))
    }

    /// Turns the model's raw text into the answer: refusal detection and citation checks.
    async fn finish(
        &self,
        question: &Question,
        raw: &str,
        given: &[Citation],
        backend: &str,
        verbatim: bool,
    ) -> Result<Answer, ChatError> {
        // Quoted lesson text needs no leak or grounding check (and they cost a re-analysis).
        let leaked = !verbatim && self.prompts.reveals_rules(raw);
        if leaked {
            tracing::warn!(
                backend,
                "the model repeated the tutor's instructions; withheld"
            );
        }
        let texts: Vec<&str> = given.iter().map(|c| c.text.as_str()).collect();
        let grounding = if verbatim {
            1.0
        } else {
            self.retriever.grounding(raw, &texts)
        };
        let ungrounded = grounding < MIN_GROUNDING;
        if ungrounded {
            tracing::warn!(
                backend,
                grounding,
                "the model answered from outside the lesson; withheld"
            );
        }
        if leaked || ungrounded || raw.contains(NOT_IN_LESSON) {
            telemetry::refusal(if leaked {
                "model_repeated_rules"
            } else if ungrounded {
                "model_ungrounded"
            } else {
                "model_not_in_lesson"
            });
            let question = question.clone();
            return self
                .off_thread(move |tutor| {
                    let lesson = tutor
                        .retriever
                        .catalog()
                        .get(&question.lesson_id)
                        .cloned()
                        .ok_or_else(|| ChatError::LessonNotFound(question.lesson_id.clone()))?;
                    tutor.refusal(&question.message, &lesson, GateReason::NotCovered)
                })
                .await?;
        }
        let (text, used) = filter_answer(raw, given.len());
        if text.is_empty() {
            return Err(ChatError::Model(ModelError::Upstream(
                "the model returned an empty answer".to_string(),
            )));
        }
        Ok(Answer {
            answer_id: answer_id(),
            refusal_reason: None,
            answer: text,
            refused: false,
            citations: given
                .iter()
                .filter(|c| used.contains(&c.n))
                .cloned()
                .collect(),
            backend: backend.to_string(),
            related_lesson: None,
        })
    }

    /// Answers a question as a stream of events. Errors before the first word (unknown lesson,
    /// a provider that fails or times out before answering) are returned as `Err`, so the HTTP
    /// layer can still send a status code.
    pub async fn ask_stream(
        &self,
        question: Question,
    ) -> Result<BoxStream<'static, ChatEvent>, ChatError> {
        let asked = std::time::Instant::now();
        let (plan, question) = self.plan_off_thread(question).await?;
        if let Some(refusal) = plan.refusal {
            self.record(&question, &refusal, asked);
            let events = vec![
                ChatEvent::Citations(Vec::new()),
                ChatEvent::Delta(refusal.answer.clone()),
                ChatEvent::Done(refusal),
            ];
            return Ok(futures::stream::iter(events).boxed());
        }
        let request = plan
            .request
            .ok_or_else(|| ChatError::Internal("no model request".to_string()))?;
        let slot = self.model_slot().await?;
        let started = std::time::Instant::now();
        let reply = self
            .model
            .stream(&request)
            .await
            .inspect_err(|e| record_model_error(&self.model.name(), e))?;
        telemetry::model_call(&reply.backend, "ok");
        telemetry::model_first_token(&reply.backend, started.elapsed().as_secs_f64());
        let prompt_tokens = prompt_tokens(&request);
        let state = StreamState {
            asked,
            _in_flight: telemetry::StreamInFlight::start(),
            started,
            prompt_tokens,
            _slot: slot,
            backend: reply.backend,
            verbatim: reply.verbatim,
            tutor: self.clone(),
            question,
            text: reply.text,
            filter: CitationFilter::new(plan.citations.len()),
            given: plan.citations.clone(),
            raw: String::new(),
            shown: String::new(),
            deciding: true,
            ended: false,
            finished: false,
            queued: None,
        };
        let head = futures::stream::iter([ChatEvent::Citations(plan.citations)]);
        let body = futures::stream::unfold(state, |mut state| async move {
            let event = state.next_event().await?;
            Some((event, state))
        });
        Ok(head.chain(body).boxed())
    }
}

/// The state of one streamed answer.
struct StreamState {
    /// When the question arrived.
    asked: std::time::Instant,
    /// Counts this stream in `tutor_streams_in_flight` until it is dropped.
    _in_flight: telemetry::StreamInFlight,
    /// When the model call began.
    started: std::time::Instant,
    prompt_tokens: u64,
    /// Held until the answer ends (or the learner leaves and the stream is dropped).
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Which model is answering.
    backend: String,
    /// The answer is quoted lesson text (see [`crate::llm::Reply::verbatim`]).
    verbatim: bool,
    tutor: Tutor,
    question: Question,
    text: TextStream,
    filter: CitationFilter,
    given: Vec<Citation>,
    /// Everything the model wrote.
    raw: String,
    /// Everything shown to the learner so far.
    shown: String,
    /// True until it is clear the model is not answering `NOT_IN_LESSON`.
    deciding: bool,
    /// The model's stream has ended (it must not be polled again).
    ended: bool,
    finished: bool,
    /// An event to send before anything else.
    queued: Option<ChatEvent>,
}

impl StreamState {
    async fn next_event(&mut self) -> Option<ChatEvent> {
        if let Some(event) = self.queued.take() {
            return Some(event);
        }
        if self.finished {
            return None;
        }
        if self.ended {
            return Some(self.done().await);
        }
        loop {
            match self.text.next().await {
                Some(Ok(piece)) => {
                    self.raw.push_str(&piece);
                    if !self.verbatim && self.tutor.prompts.reveals_rules(&self.raw) {
                        // Stop at once: `done` carries a refusal in place of the leak.
                        return Some(self.done().await);
                    }
                    if self.deciding {
                        let head = self.raw.trim_start();
                        if head.starts_with(NOT_IN_LESSON) {
                            // The model refuses: stop reading (dropping the upstream request)
                            // and send the refusal.
                            return Some(self.done().await);
                        }
                        if NOT_IN_LESSON.starts_with(head) {
                            continue;
                        }
                        self.deciding = false;
                        let held = self.raw.clone();
                        let out = self.filter.push(&held);
                        if let Some(event) = self.delta(out) {
                            return Some(event);
                        }
                        continue;
                    }
                    let out = self.filter.push(&piece);
                    if let Some(event) = self.delta(out) {
                        return Some(event);
                    }
                }
                Some(Err(error)) => {
                    self.finished = true;
                    record_model_error(&self.backend, &error);
                    return Some(ChatEvent::Error(ChatError::Model(error)));
                }
                None => {
                    self.ended = true;
                    let rest = if self.deciding {
                        let held = self.raw.clone();
                        self.filter.push(&held)
                    } else {
                        String::new()
                    } + &self.filter.finish();
                    self.deciding = false;
                    if let Some(event) = self.delta(rest) {
                        // Come back once more for `done`.
                        return Some(event);
                    }
                    return Some(self.done().await);
                }
            }
        }
    }

    fn delta(&mut self, text: String) -> Option<ChatEvent> {
        if text.is_empty() {
            return None;
        }
        self.shown.push_str(&text);
        Some(ChatEvent::Delta(text))
    }

    async fn done(&mut self) -> ChatEvent {
        self.finished = true;
        telemetry::model_total(&self.backend, self.started.elapsed().as_secs_f64());
        telemetry::model_tokens(&self.backend, self.prompt_tokens, tokens(&self.raw));
        // Drop the upstream request now: nothing more of it will be shown.
        self.text = Box::pin(futures::stream::empty());
        match self
            .tutor
            .finish(
                &self.question,
                &self.raw,
                &self.given,
                &self.backend,
                self.verbatim,
            )
            .await
        {
            Ok(answer) => {
                self.tutor.record(&self.question, &answer, self.asked);
                self.done_event(answer)
            }
            Err(error) => ChatEvent::Error(error),
        }
    }

    fn done_event(&mut self, answer: Answer) -> ChatEvent {
        match answer {
            answer if answer.refused && self.shown.is_empty() => {
                let text = answer.answer.clone();
                self.queued = Some(ChatEvent::Done(answer));
                ChatEvent::Delta(text)
            }
            answer => ChatEvent::Done(answer),
        }
    }
}

/// A rough token count (about four characters a token).
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn prompt_tokens(request: &ModelRequest) -> u64 {
    tokens(&request.system)
        + tokens(&request.message)
        + request
            .history
            .iter()
            .map(|t| tokens(&t.content))
            .sum::<u64>()
}

fn record_model_error(backend: &str, error: &ModelError) {
    let outcome = match error {
        ModelError::Timeout(_) => "timeout",
        ModelError::Upstream(_) => "error",
    };
    telemetry::model_call(backend, outcome);
}

fn citation(n: usize, lesson: &Lesson, passage: &Passage) -> Citation {
    let section = lesson.section_of(passage);
    Citation {
        n,
        passage_id: passage.id.clone(),
        lesson_id: lesson.id.clone(),
        section: section.title.clone(),
        section_id: section.slug.clone(),
        text: passage.text.clone(),
    }
}
