//! `Tutor::ask`: retrieve → refuse, or prompt → model → verify every sentence → [`Answer`].
//!
//! The CLI's `ask`, `POST /v1/chat` and the OpenAI-compatible facade all come here. The gate runs
//! before any model call: a question the lesson does not cover is refused with the refusal text
//! and no model is called. After the call, no model text leaves this module unverified: every
//! answer, whole or streamed, goes through one [`release::Release`], which releases a sentence
//! only once it is complete and the verifier found it supported by the passages it cites.
//!
//! - `question`: the learner's question and its validation;
//! - `verify`: the verifier (pure: a sentence and the passages in, a verdict out);
//! - `check`: the verifier and the leak check bundled for one answer;
//! - `release`: the state machine from model text to verified text, shared by JSON and streams;
//! - `citations`: `[n]` markers taken out of and put back into sentences;
//! - `second`: the optional second opinion of a verifier model;
//! - `quizzing`: quiz questions, graded replies and hints, written by the tutor from the lesson.

pub mod check;
pub mod citations;
pub mod golden;
mod question;
mod quizzing;
pub mod release;
pub mod second;
pub mod translate;
pub mod verify;

pub use question::{
    MAX_HISTORY_TURNS, MAX_MESSAGE_CHARS, MAX_TURN_CHARS, Mode, QUIZ_TRIES, Question, Translated,
};

use crate::language::Detected;
use crate::lessons::{Lesson, Passage};
use crate::llm::extractive::Extractive;
use crate::llm::{ChatModel, ModelError, ModelRequest, NumberedPassage, TextStream};
use crate::prompts::{PromptError, PromptLesson, PromptPassage, Prompts};
use crate::retrieve::{Earlier, GateReason, Retrieval, Retriever};
use crate::telemetry;
use check::{Analysis, Checker};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use release::{Judged, Release, Stop};
use second::SecondOpinion;
use serde::Serialize;
use std::sync::Arc;
use verify::Verdict;

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

/// What is kept of a question to log its turn if answering it fails.
struct Turn {
    lesson_id: String,
    asked: String,
    conversation_id: Option<crate::ids::ConversationId>,
}

impl Turn {
    fn of(question: &Question) -> Turn {
        Turn {
            lesson_id: question.lesson_id.clone(),
            asked: question.asked().to_string(),
            conversation_id: question.conversation_id.clone(),
        }
    }
}

/// A panic caught at `at`: counted, logged (inside the request's span, so with its id), and
/// turned into an internal error.
fn caught(panic: Box<dyn std::any::Any + Send>, at: &'static str) -> ChatError {
    let message = telemetry::panic_message(panic.as_ref());
    telemetry::panicked(at);
    tracing::error!(
        at,
        panic = %telemetry::untrusted(message),
        "a panic stopped this answer"
    );
    ChatError::Internal(format!("panic: {message}"))
}

impl From<crate::retrieve::SearchFailed> for ChatError {
    fn from(error: crate::retrieve::SearchFailed) -> ChatError {
        ChatError::Internal(error.to_string())
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

impl Citation {
    /// The passage as the prompts show it, under its number.
    pub fn prompt_passage(&self) -> PromptPassage<'_> {
        PromptPassage {
            n: self.n,
            section: &self.section,
            text: &self.text,
        }
    }
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
    pub answer_id: crate::ids::AnswerId,
    pub answer: String,
    pub refused: bool,
    pub citations: Vec<Citation>,
    pub backend: String,
    /// What this reply is: an answer from the lesson, a refusal, a reply to small talk, or a
    /// note that the tutor answers in the lesson's language.
    pub kind: ReplyKind,
    /// For a refusal: another lesson that covers the question, when one does.
    pub related_lesson: Option<LessonRef>,
    /// What the verifier did to a model's answer (absent for refusals by the gate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The language the reply is written in (ISO 639-1), when it is not the lesson's: a question
    /// asked in another language, translated by the model, is answered in the learner's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// With `kind: "quiz_question"` and `"grade"`: the quiz item asked or graded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiz: Option<QuizInfo>,
    /// With `kind: "grade"`: how the learner's reply was graded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grade: Option<crate::quiz::grade::Grade>,
    /// With `kind: "hint"`: why a hint was given instead of an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<HintReason>,
    /// Why it was refused (for the log and metrics; not sent).
    #[serde(skip)]
    #[schema(ignore)]
    pub refusal_reason: Option<&'static str>,
    /// Every sentence of the model's draft and its verdict (for `tutor ask`; not sent).
    #[serde(skip)]
    #[schema(ignore)]
    pub judged: Vec<Judged>,
}

/// What a reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// An answer from the lesson, with citations.
    Answer,
    /// The lesson does not cover the question.
    Refusal,
    /// A reply to "hi", "thanks", "what can you do?" (no model call, no citations).
    SmallTalk,
    /// The question is in another language than the lesson's and no model can translate it:
    /// the reply, in the learner's language, asks for the lesson's language.
    OtherLanguage,
    /// A nudge toward the answer (the section to re-read, the word to look for), not the answer.
    Hint,
    /// A quiz question for the learner ("quiz me"); `quiz` names the item.
    QuizQuestion,
    /// The grading of a learner's reply to a quiz item; `grade` says how it went.
    Grade,
}

impl ReplyKind {
    /// A stable word for metrics and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Answer => "answer",
            ReplyKind::Refusal => "refusal",
            ReplyKind::SmallTalk => "small_talk",
            ReplyKind::OtherLanguage => "other_language",
            ReplyKind::Hint => "hint",
            ReplyKind::QuizQuestion => "quiz_question",
            ReplyKind::Grade => "grade",
        }
    }
}

/// Why a hint was given instead of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HintReason {
    /// The learner asked for one (`mode: "hint"`).
    Requested,
    /// The question is one of the lesson's graded quiz questions (quiz integrity).
    QuizItem,
    /// An instructor set the session to hints only, during an assessment.
    Assessment,
}

impl HintReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HintReason::Requested => "requested",
            HintReason::QuizItem => "quiz_item",
            HintReason::Assessment => "assessment",
        }
    }
}

/// A quiz item as the learner sees it (the expected answer is never sent).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QuizInfo {
    /// Send it back as `quiz_item` with the learner's reply.
    pub item_id: String,
    pub question: String,
    /// The slug of the section the item checks.
    pub section_id: String,
    /// The choices of a multiple-choice item (the learner may reply with the text, its letter
    /// or its number); absent for a free-text item.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// On a grade: which try this reply was (1 for the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u8>,
    /// On a grade: how many more tries the learner has at this item. While it is 1, a reply
    /// not yet right gets a hint and the answer is kept back; send the next reply with
    /// `quiz_attempt` one higher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tries_left: Option<u8>,
}

/// What the verifier did to a model's answer before the learner saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Sentences in the model's draft.
    pub sentences: usize,
    /// Sentences removed as unsupported by the passages.
    pub removed: usize,
    /// Sentences kept with a corrected citation.
    pub corrected: usize,
    /// True when every sentence that answered was removed and the embedded answerer answered
    /// from the lesson instead.
    pub fallback: bool,
}

impl Verification {
    fn of(judged: &[Judged], fallback: bool) -> Verification {
        Verification {
            sentences: judged.len(),
            removed: judged
                .iter()
                .filter(|j| {
                    matches!(
                        j.verdict,
                        Verdict::Unsupported(_) | Verdict::Undecided { .. }
                    )
                })
                .count(),
            corrected: judged
                .iter()
                .filter(|j| matches!(j.verdict, Verdict::Corrected { .. }))
                .count(),
            fallback,
        }
    }
}

/// A fresh answer id.
fn answer_id() -> crate::ids::AnswerId {
    crate::ids::AnswerId::new()
}

/// What a streamed answer sends, in order: `Citations`, `Delta`s, then `Done` or `Error`.
#[derive(Debug)]
pub enum ChatEvent {
    /// The passages the answer may cite.
    Citations(Vec<Citation>),
    Delta(String),
    Done(Box<Answer>),
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
    /// Redis shared by replicas, when configured: answer ids are remembered there too, so
    /// feedback reaching another replica finds its answer.
    shared: Option<Arc<crate::shared::Shared>>,
    /// The analyzer and word lists the verifier uses, built once.
    analysis: Analysis,
    /// The embedded answerer, which answers when the verifier removes every sentence.
    extractive: Extractive,
    /// A model asked about sentences the verifier cannot decide, when one is configured.
    second_opinion: Option<Arc<SecondOpinion>>,
    /// Translates questions in other languages and their verified answers, when a model is
    /// configured.
    translator: Option<Arc<translate::Translator>>,
    /// The vectors of [`crate::conversation::SMALL_TALK_EXAMPLES`], made on first use.
    small_talk_examples: Arc<std::sync::OnceLock<Vec<crate::semantic::Vector>>>,
}

/// The most recent answer ids with their lessons, bounded.
pub struct RecentAnswers {
    inner: std::sync::Mutex<lru::LruCache<String, Arc<str>>>,
}

impl Default for RecentAnswers {
    fn default() -> Self {
        RecentAnswers {
            inner: std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(Self::CAPACITY).expect("non-zero"),
            )),
        }
    }
}

impl RecentAnswers {
    const CAPACITY: usize = 100_000;

    fn insert(&self, id: &crate::ids::AnswerId, lesson: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(id.as_str().to_string(), Arc::from(lesson));
    }

    fn lesson_of(&self, id: &crate::ids::AnswerId) -> Option<Arc<str>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .peek(id.as_str())
            .cloned()
    }
}

/// How long Redis remembers an answer's lesson for feedback from any replica: learners rate
/// within minutes; the log, when on, remembers longer. Bounds Redis's memory to an hour of
/// answers (about 100 bytes each).
const SHARED_ANSWER_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// How long feedback on an unknown answer waits before looking once more.
const UNKNOWN_ANSWER_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// What the lookup of an answer's lesson found.
enum Lookup {
    Found(String),
    Missing,
    /// A store that could know was unreachable.
    Unsure,
}

/// What became of a rating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rated {
    Recorded,
    /// The answer could not be looked up now, and the caller may rate only its own lesson's.
    Unavailable,
    /// No answer has this id.
    Unknown,
    /// The answer is on another lesson than the one the caller may rate.
    OtherLesson(String),
}

/// What to do with one question, decided by retrieval and the gate.
pub enum Plan {
    /// Replied without a model: a refusal (the lesson does not cover it), small talk, or a
    /// question in another language than the lesson's.
    Reply(Box<Answer>),
    /// Ask the model.
    Ask(Box<Asking>),
    /// A graded quiz reply a model may refine (the lexical grade is the reply if it cannot).
    Grade {
        lexical: Box<Answer>,
        grading: Box<quizzing::Grading>,
    },
    /// A question in another language than the lesson's, with a model to translate it: plan
    /// again on its translation into `to`; if it cannot be translated, reply `otherwise`.
    Translate {
        from: &'static str,
        to: String,
        otherwise: Box<Answer>,
    },
}

/// A question the lesson covers, ready for the model.
pub struct Asking {
    /// The passages given to the model, numbered from 1.
    pub citations: Vec<Citation>,
    pub request: ModelRequest,
    /// The checks every sentence of the answer goes through.
    pub checker: Checker,
    /// Set when the model is asked for a hint (`prompts/hint.j2`) rather than the answer.
    pub hint: Option<HintReason>,
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
            shared: None,
            analysis: Analysis::new(),
            extractive: Extractive::new(),
            second_opinion: None,
            translator: None,
            small_talk_examples: Arc::default(),
        }
    }

    /// Answers questions in other languages than the lesson's through the tutor's model:
    /// translated for retrieval, answered and verified in the lesson's language, rendered back.
    pub fn with_translation(mut self) -> Tutor {
        self.translator = Some(Arc::new(translate::Translator::new(self.model.clone())));
        self
    }

    /// Sends sentences the verifier cannot decide to a second-opinion model.
    pub fn with_second_opinion(mut self, second: SecondOpinion) -> Tutor {
        self.second_opinion = Some(Arc::new(second));
        self
    }

    /// Logs every answer through `logger`.
    pub fn with_logger(mut self, logger: crate::conversation_log::Logger) -> Tutor {
        self.logger = Some(logger);
        self
    }

    /// Remembers answer ids in Redis too (replicas behind a load balancer).
    pub fn with_shared(mut self, shared: Option<Arc<crate::shared::Shared>>) -> Tutor {
        self.shared = shared;
        self
    }

    /// The conversation log, when it is on.
    pub fn logger(&self) -> Option<&crate::conversation_log::Logger> {
        self.logger.as_ref()
    }

    /// Records a learner's rating of an answer, on `only_lesson` when the caller may rate only
    /// that lesson's answers (a learner's session). Blocking (it may ask the log): run it off the
    /// async workers.
    pub async fn rate(
        &self,
        answer_id: &crate::ids::AnswerId,
        rating: crate::conversation_log::Rating,
        comment: Option<&str>,
        only_lesson: Option<&str>,
    ) -> Rated {
        let lesson = match self.lesson_of_answer(answer_id).await {
            Lookup::Found(lesson) => Some(lesson),
            Lookup::Missing => return Rated::Unknown,
            // The store cannot say now: the writer keeps the rating until the answer's record
            // is there. A session limited to one lesson cannot be checked, so it is refused.
            Lookup::Unsure if only_lesson.is_some() => return Rated::Unavailable,
            Lookup::Unsure => None,
        };
        if let (Some(only), Some(lesson)) = (only_lesson, lesson)
            && only != lesson
        {
            return Rated::OtherLesson(lesson);
        }
        telemetry::feedback(rating.as_str());
        if let Some(logger) = &self.logger {
            logger.rate(answer_id, rating, comment);
        }
        Rated::Recorded
    }

    /// The lesson of an answer: remembered here, in Redis (another replica's), or stored in
    /// the log. Asked twice a moment apart before it counts as missing, since another replica
    /// may have sent its answer an instant ago.
    async fn lesson_of_answer(&self, answer_id: &crate::ids::AnswerId) -> Lookup {
        let mut unsure = false;
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(UNKNOWN_ANSWER_RETRY).await;
            }
            if let Some(lesson) = self.recent.lesson_of(answer_id) {
                return Lookup::Found(lesson.to_string());
            }
            if let Some(shared) = &self.shared {
                match shared.answer_lesson(answer_id).await {
                    Ok(Some(lesson)) => return Lookup::Found(lesson),
                    Ok(None) => {}
                    Err(_) => unsure = true,
                }
            }
            if let Some(logger) = &self.logger {
                match logger.lesson_of(answer_id).await {
                    Ok(Some(lesson)) => return Lookup::Found(lesson),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot look up an answer for feedback");
                        unsure = true;
                    }
                }
            }
            if self.shared.is_none() && self.logger.is_none() {
                break;
            }
        }
        // Only the log is the record of every answer; Redis alone forgets after an hour.
        if unsure && self.logger.is_some() {
            Lookup::Unsure
        } else {
            Lookup::Missing
        }
    }

    /// Logs a turn that failed (a bug, not the learner's input) when the log is on: kind
    /// `failed`, the cause as its outcome, no answer.
    fn record_failure(&self, turn: &Turn, cause: &str, started: std::time::Instant) {
        let Some(logger) = &self.logger else {
            return;
        };
        logger.append(crate::conversation_log::Record {
            answer_id: crate::ids::AnswerId::new(),
            time: crate::conversation_log::now(),
            lesson_id: turn.lesson_id.clone(),
            question: turn.asked.clone(),
            answer: String::new(),
            refused: false,
            refusal_reason: None,
            cited: Vec::new(),
            backend: self.backend(),
            latency_ms: started.elapsed().as_millis() as u64,
            conversation_id: turn.conversation_id.clone(),
            rating: None,
            comment: None,
            verification: None,
            kind: Some("failed".to_string()),
            outcome: Some(cause.chars().take(200).collect()),
        });
    }

    /// Remembers an answer (for feedback) and logs it when the log is on.
    fn record(&self, question: &Question, answer: &Answer, started: std::time::Instant) {
        self.recent.insert(&answer.answer_id, &question.lesson_id);
        if let Some(shared) = &self.shared {
            // Queued, written in batches: a slow or absent Redis never delays the answer.
            shared.remember_answer(&answer.answer_id, &question.lesson_id, SHARED_ANSWER_TTL);
        }
        let Some(logger) = &self.logger else {
            return;
        };
        logger.append(crate::conversation_log::Record {
            answer_id: answer.answer_id.clone(),
            time: crate::conversation_log::now(),
            lesson_id: question.lesson_id.clone(),
            // Redacted by the log's writer, off the answer path.
            question: question.asked().to_string(),
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
            verification: answer.verification.as_ref().map(|v| {
                let reasons: Vec<&str> = answer
                    .judged
                    .iter()
                    .filter_map(|j| match &j.verdict {
                        Verdict::Unsupported(why) | Verdict::Undecided { why, .. } => {
                            Some(why.as_str())
                        }
                        _ => None,
                    })
                    .collect();
                serde_json::json!({
                    "sentences": v.sentences, "removed": v.removed, "corrected": v.corrected,
                    "fallback": v.fallback, "reasons": reasons,
                })
                .to_string()
            }),
            kind: Some(answer.kind.as_str().to_string()),
            outcome: match answer.kind {
                ReplyKind::Hint => answer.hint.map(|h| h.as_str().to_string()),
                // A first try that gets another is not a grade yet: the last try's is.
                ReplyKind::Grade if answer.quiz.as_ref().and_then(|q| q.tries_left) > Some(0) => {
                    Some("retry".to_string())
                }
                ReplyKind::Grade => answer.grade.map(|g| g.as_str().to_string()),
                ReplyKind::QuizQuestion => answer.quiz.as_ref().map(|q| q.section_id.clone()),
                _ => None,
            },
        });
    }

    /// The same tutor (model, slots, limits) over a reloaded catalog and prompts: requests in
    /// flight keep the old one; new requests get this one.
    pub fn reloaded(&self, retriever: Arc<Retriever>, prompts: Arc<Prompts>) -> Tutor {
        Tutor {
            retriever,
            prompts,
            analysis: self.analysis.for_new_catalog(),
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
            .map_err(|e| match e.try_into_panic() {
                Ok(panic) => caught(panic, "blocking"),
                Err(e) => ChatError::Internal(format!("blocking task failed: {e}")),
            })
    }

    /// The retriever (and through it, the catalog).
    pub fn retriever(&self) -> &Arc<Retriever> {
        &self.retriever
    }

    /// The model's name as reported in `backend`.
    pub fn backend(&self) -> String {
        self.model.name()
    }

    /// True when a model writes answers (not the embedded answerer alone): hints and grades
    /// then ask it too.
    fn has_model(&self) -> bool {
        self.model.name() != self.extractive.name()
    }

    /// The lesson with this id in the current catalog.
    fn lesson(&self, id: &str) -> Result<Arc<Lesson>, ChatError> {
        self.retriever
            .catalog()
            .get(id)
            .cloned()
            .ok_or_else(|| ChatError::LessonNotFound(id.to_string()))
    }

    /// The reply to small talk of `kind`, in `language` (a request for help lists the
    /// lesson's sections).
    fn small_talk_reply(
        &self,
        kind: crate::conversation::SmallTalk,
        lesson: &Lesson,
        language: &str,
    ) -> Result<Answer, ChatError> {
        let prompt_lesson = PromptLesson {
            id: &lesson.id,
            title: &lesson.title,
            summary: &lesson.summary,
        };
        let sections: Vec<&str> = lesson
            .sections
            .iter()
            .filter(|s| s.level == 2)
            .map(|s| s.title.as_str())
            .collect();
        let text = self
            .prompts
            .small_talk(kind.as_str(), &prompt_lesson, language, &sections)?;
        telemetry::small_talk(kind.as_str());
        Ok(self.tutor_reply(text, ReplyKind::SmallTalk, Vec::new()))
    }

    /// Small talk told by meaning ([`crate::conversation::small_talk_by_meaning`]), when a
    /// semantic model is in use.
    fn small_talk_by_meaning(
        &self,
        message: &str,
        vector: &[f32],
    ) -> Option<(crate::conversation::SmallTalk, f32)> {
        let semantic = self.retriever.semantic()?;
        let examples = match self.small_talk_examples.get() {
            Some(examples) => examples,
            None => {
                let texts: Vec<&str> = crate::conversation::SMALL_TALK_EXAMPLES
                    .iter()
                    .map(|(text, _)| *text)
                    .collect();
                let vectors = semantic.embed(&texts).ok()?;
                self.small_talk_examples.get_or_init(|| vectors)
            }
        };
        crate::conversation::small_talk_by_meaning(
            message,
            vector,
            examples,
            self.retriever.settings().small_talk_similarity,
        )
    }

    /// Retrieval, the gate and the prompt: blocking work, run it off the async workers.
    pub fn plan(&self, question: &Question) -> Result<(Plan, Retrieval), ChatError> {
        let lesson = self.lesson(&question.lesson_id)?;
        let questions: Vec<String> = question
            .history
            .iter()
            .filter(|t| t.role == crate::llm::Role::User)
            .map(|t| t.content.clone())
            .collect();
        let earlier = Earlier {
            questions: &questions,
            previous_answer: crate::llm::last_answer(&question.history),
        };
        let reading = crate::conversation::read(&question.message);
        if question.mode == Mode::Quiz {
            let (reply, grading) = self.quiz_reply(question, &lesson)?;
            let plan = match grading {
                Some(grading) if self.has_model() => Plan::Grade {
                    lexical: Box::new(reply),
                    grading: Box::new(grading),
                },
                _ => Plan::Reply(Box::new(reply)),
            };
            return Ok((plan, Retrieval::unread(reading)));
        }
        let language = crate::language::detect(&question.message);
        let prompt_lesson = PromptLesson {
            id: &lesson.id,
            title: &lesson.title,
            summary: &lesson.summary,
        };
        if let Some(kind) = reading.small_talk {
            let language = language.map_or("en", Detected::code);
            let reply = self.small_talk_reply(kind, &lesson, language)?;
            return Ok((Plan::Reply(Box::new(reply)), Retrieval::unread(reading)));
        }
        // A multilingual embedder matches the question with the lesson's passages as it is;
        // a model that can translate still does (its answer is then in the learner's language).
        let read_directly = self.translator.is_none()
            && self
                .retriever
                .semantic()
                .is_some_and(|semantic| semantic.multilingual());
        if let Some(language) = language
            && language.code() != lesson.language
            && question.translated.is_none()
            && !read_directly
        {
            let text =
                self.prompts
                    .other_language(language.code(), &prompt_lesson, &lesson.language)?;
            telemetry::other_language(language.code());
            let reply = Box::new(self.tutor_reply(text, ReplyKind::OtherLanguage, Vec::new()));
            let plan = match language {
                // Translations are checked against the negations of the languages the tutor
                // speaks, so only those are translated.
                Detected::Spoken(from) if self.translator.is_some() => Plan::Translate {
                    from,
                    to: lesson.language.clone(),
                    otherwise: reply,
                },
                _ => Plan::Reply(reply),
            };
            return Ok((plan, Retrieval::unread(reading)));
        }
        let vector = match &question.meaning {
            Some(vector) => Some(vector.clone()),
            None => self.retriever.question_vector_blocking(&question.message),
        };
        // Quiz integrity, before any retrieval or model: a quiz's own question gets a hint.
        let (guards, near) = match self.integrity(question, &lesson, vector.as_deref()) {
            quizzing::Guarding::Hint(item) => {
                if let Some(hint) = self.quiz_item_hint(question, &lesson, &item)? {
                    return Ok((Plan::Reply(Box::new(hint)), Retrieval::unread(reading)));
                }
                (Vec::new(), Vec::new())
            }
            quizzing::Guarding::Answer(guards, near) => (guards, near),
        };
        let started = std::time::Instant::now();
        let retrieval = self.retriever.retrieve_read(
            &lesson.id,
            &question.message,
            reading,
            &earlier,
            vector.as_deref(),
        )?;
        telemetry::retrieval(started.elapsed().as_secs_f64());
        telemetry::gate(retrieval.covered, retrieval.reason.as_str());
        // Small talk in other words ("hello, can you help me with this?"): nearer to an example
        // of small talk than to any passage of the lesson.
        let small_talk = vector
            .as_deref()
            .and_then(|vector| self.small_talk_by_meaning(&question.message, vector));
        let margin = self.retriever.settings().small_talk_margin;
        if let Some((kind, similarity)) = small_talk
            && similarity >= retrieval.similarity.unwrap_or(0.0) + margin
        {
            let language = language.map_or("en", Detected::code);
            let reply = self.small_talk_reply(kind, &lesson, language)?;
            return Ok((Plan::Reply(Box::new(reply)), retrieval));
        }
        if !retrieval.covered {
            telemetry::refusal(retrieval.reason.as_str());
            let refusal = self.refusal(question, &lesson, retrieval.reason)?;
            return Ok((Plan::Reply(Box::new(refusal)), retrieval));
        }
        let hint =
            (question.mode == Mode::Hint || question.hint_only).then_some(if question.hint_only {
                HintReason::Assessment
            } else {
                HintReason::Requested
            });
        // Without a model, the tutor writes the hint itself.
        if let Some(reason) = hint
            && !self.has_model()
            && let Some(best) = retrieval.hits.first()
        {
            let avoid: Vec<&str> = near.iter().map(String::as_str).collect();
            let cited = citation(1, &lesson, best.passage());
            let hint = self.hint_reply(question, &lesson, cited, reason, None, &avoid)?;
            return Ok((Plan::Reply(Box::new(hint)), retrieval));
        }
        let asking = self.asking(question, &lesson, &retrieval, guards, hint)?;
        Ok((Plan::Ask(Box::new(asking)), retrieval))
    }

    /// The model's request for a covered question: the passages retrieval ranked, numbered
    /// from 1 into the system prompt (or the hint prompt), and the checks every sentence of the
    /// reply goes through, with `guards` (and, for a hint, the answer the lesson gives).
    fn asking(
        &self,
        question: &Question,
        lesson: &Lesson,
        retrieval: &Retrieval,
        guards: Vec<crate::quiz::Guard>,
        hint: Option<HintReason>,
    ) -> Result<Asking, ChatError> {
        let prompt_lesson = PromptLesson {
            id: &lesson.id,
            title: &lesson.title,
            summary: &lesson.summary,
        };
        let hits = &retrieval.hits[..retrieval.hits.len().min(self.retriever.settings().passages)];
        let top_score = hits.first().map_or(1.0, |h| h.score.max(f32::EPSILON));
        let citations: Vec<Citation> = hits
            .iter()
            .enumerate()
            .map(|(i, hit)| citation(i + 1, lesson, hit.passage()))
            .collect();
        let prompt_passages: Vec<PromptPassage<'_>> =
            citations.iter().map(Citation::prompt_passage).collect();
        let system = match hint {
            Some(_) => self.prompts.hint(&prompt_lesson, &prompt_passages)?,
            None => self.prompts.system(&prompt_lesson, &prompt_passages)?,
        };
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
                    meaning: self
                        .retriever
                        .unit_similarities(hit, retrieval.vector.as_deref()),
                })
                .collect(),
            terms: retrieval.terms.clone(),
            // Short, and one passage holds every term of it.
            easy: question.message.split_whitespace().count() <= self.easy_max_words
                && retrieval.coverage >= 0.99,
            reading: retrieval.reading,
            language: lesson.language.clone(),
        };
        let sources: Vec<(&str, &str, &str)> = citations
            .iter()
            .map(|c| (c.passage_id.as_str(), c.section.as_str(), c.text.as_str()))
            .collect();
        let checker = Checker::new(
            &self.analysis,
            self.prompts.clone(),
            &sources,
            &question.message,
            &lesson.title,
            &lesson.language,
        );
        // A model's hint must not state the answer: the sentences the embedded answerer would
        // answer with are guarded too.
        let guards =
            match hint {
                Some(_) => {
                    let words = self.analysis.quiz_words(&lesson.language);
                    let mut guards = guards;
                    guards.extend(self.extractive.answer(&request).iter().map(|s| {
                        crate::quiz::Guard::new(words, None, &citations::take_markers(s).0)
                    }));
                    guards
                }
                None => guards,
            };
        let checker = checker.with_guards(guards);
        let asking = Asking {
            citations,
            request,
            checker,
            hint,
        };
        Ok(asking)
    }

    /// A reply from a template, with no model call and nothing to cite.
    fn tutor_reply(&self, text: String, kind: ReplyKind, citations: Vec<Citation>) -> Answer {
        Answer {
            answer_id: answer_id(),
            answer: text,
            refused: false,
            citations,
            backend: "tutor".to_string(),
            kind,
            related_lesson: None,
            verification: None,
            language: None,
            quiz: None,
            grade: None,
            hint: None,
            refusal_reason: None,
            judged: Vec::new(),
        }
    }

    /// The refusal for `question` (in the learner's language when it was translated).
    fn refusal(
        &self,
        question: &Question,
        lesson: &Lesson,
        reason: GateReason,
    ) -> Result<Answer, ChatError> {
        let related = match reason {
            GateReason::NoSearchableWords => None,
            _ => self
                .retriever
                .lesson_covering(&question.message, &lesson.id)?,
        };
        let language = question
            .translated
            .as_ref()
            .map_or(lesson.language.as_str(), |t| t.language);
        let answer = self.prompts.refusal(
            related.as_ref().map(|l| (l.id.as_str(), l.title.as_str())),
            language,
        )?;
        Ok(Answer {
            answer_id: answer_id(),
            refusal_reason: Some(reason.as_str()),
            answer,
            refused: true,
            citations: Vec::new(),
            backend: self.model.name(),
            kind: ReplyKind::Refusal,
            related_lesson: related.map(|l| LessonRef {
                id: l.id.clone(),
                title: l.title.clone(),
            }),
            verification: None,
            language: question.translated.as_ref().map(|t| t.language.to_string()),
            quiz: None,
            grade: None,
            hint: None,
            judged: Vec::new(),
        })
    }

    /// Plans a question: a short first question on this async worker (retrieval then costs
    /// tens of microseconds, less than handing it to another thread and back), anything longer
    /// on the bounded blocking pool (a long message, or a follow-up's history and anchor
    /// searches, can take milliseconds). Figures in BENCHMARKS.md.
    async fn plan_where_cheap(
        &self,
        mut question: Question,
    ) -> Result<(Plan, Retrieval, Question), ChatError> {
        // A quiz reply is graded with its meaning too; asking for a quiz question needs none.
        let wants_meaning = question.mode != Mode::Quiz || question.quiz_item.is_some();
        if wants_meaning && question.meaning.is_none() {
            question.meaning = self.retriever.question_vector(&question.message).await;
        }
        if question.plans_quickly() {
            let (plan, retrieval) = self.plan(&question)?;
            return Ok((plan, retrieval, question));
        }
        self.off_thread(move |tutor| {
            tutor
                .plan(&question)
                .map(|(plan, retrieval)| (plan, retrieval, question))
        })
        .await?
    }

    /// Answers a question in one piece: the model's whole text goes through the same release
    /// as a stream's pieces, so both show the same verified text.
    pub async fn ask(&self, question: Question) -> Result<(Answer, Retrieval), ChatError> {
        let asked = std::time::Instant::now();
        let turn = Turn::of(&question);
        let answering = async {
            let (plan, retrieval, question) = self.plan_where_cheap(question).await?;
            self.answer_plan(question, plan, retrieval, asked).await
        };
        // A bug on the way must not cut the learner off: the panic becomes `internal`, and the
        // turn is logged as failed.
        let result = std::panic::AssertUnwindSafe(answering)
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(caught(panic, "answer")));
        if let Err(ChatError::Internal(cause)) = &result {
            self.record_failure(&turn, cause, asked);
        }
        result
    }

    /// [`Tutor::ask`] from a plan already made (a translated question plans again on its
    /// translation).
    async fn answer_plan(
        &self,
        question: Question,
        plan: Plan,
        retrieval: Retrieval,
        asked: std::time::Instant,
    ) -> Result<(Answer, Retrieval), ChatError> {
        let (plan, retrieval, question) = match plan {
            Plan::Translate {
                from,
                to,
                otherwise,
            } => match self.translated(question, from, &to, otherwise).await? {
                Ok(planned) => planned,
                Err((question, reply)) => {
                    self.record(&question, &reply, asked);
                    return Ok((*reply, retrieval));
                }
            },
            plan => (plan, retrieval, question),
        };
        let asking = match plan {
            Plan::Reply(refusal) => {
                self.record(&question, &refusal, asked);
                return Ok((*refusal, retrieval));
            }
            Plan::Grade { lexical, grading } => {
                let answer = self.graded_by_model(*lexical, *grading).await;
                self.record(&question, &answer, asked);
                return Ok((answer, retrieval));
            }
            Plan::Ask(asking) => asking,
            Plan::Translate { otherwise, .. } => {
                self.record(&question, &otherwise, asked);
                return Ok((*otherwise, retrieval));
            }
        };
        let _slot = self.model_slot().await?;
        let started = std::time::Instant::now();
        let reply = self
            .model
            .complete(&asking.request)
            .await
            .inspect_err(|e| record_model_error(self.model.as_ref(), e))?;
        let seconds = started.elapsed().as_secs_f64();
        telemetry::model_call(&reply.backend, "ok");
        telemetry::model_first_token(&reply.backend, seconds);
        telemetry::model_total(&reply.backend, seconds);
        telemetry::model_tokens(
            &reply.backend,
            prompt_tokens(&asking.request),
            crate::llm::estimated_tokens(&reply.text),
        );
        let mut release = Release::new(self.second_opinion.is_some());
        release.push(&reply.text, &asking.checker);
        release.finish(&asking.checker);
        let (mut answer, _) = self
            .conclude(&question, &asking, release, &reply.backend)
            .await?;
        if let Some(translated) = &question.translated
            && answer.kind == ReplyKind::Answer
        {
            answer = self.rendered_in(answer, translated).await?;
        }
        self.record(&question, &answer, asked);
        Ok((answer, retrieval))
    }

    /// Plans a question asked in another language (`from`) on its translation into the
    /// lesson's (`to`). `Err` carries the reply to send instead when it cannot be translated.
    #[allow(clippy::type_complexity)]
    async fn translated(
        &self,
        question: Question,
        from: &'static str,
        to: &str,
        otherwise: Box<Answer>,
    ) -> Result<Result<(Plan, Retrieval, Question), (Question, Box<Answer>)>, ChatError> {
        let Some(translator) = &self.translator else {
            return Ok(Err((question, otherwise)));
        };
        let translation = {
            let _slot = self.model_slot().await?;
            translator
                .question(&self.prompts, &question.message, from, to)
                .await
        };
        match translation {
            Ok((text, cached)) => {
                telemetry::translation("question", if cached { "cached" } else { "ok" });
                let question = question.in_lesson_language(text, from, to);
                Ok(Ok(self.plan_where_cheap(question).await?))
            }
            Err(why) => {
                telemetry::translation("question", why.as_str());
                tracing::warn!(language = from, "{why}; asking for the lesson's language");
                Ok(Err((question, otherwise)))
            }
        }
    }

    /// A verified answer rendered in the learner's language. When the rendering cannot be made
    /// or fails [`translate::faithful`], the verified answer is sent as it is, in the lesson's
    /// language: nothing unchecked is shown.
    async fn rendered_in(
        &self,
        mut answer: Answer,
        translated: &Translated,
    ) -> Result<Answer, ChatError> {
        let Some(translator) = &self.translator else {
            return Ok(answer);
        };
        let rendering = {
            let _slot = self.model_slot().await?;
            translator
                .answer(
                    &self.prompts,
                    &answer.answer,
                    &translated.lesson_language,
                    translated.language,
                )
                .await
        };
        match rendering {
            Ok(text) => {
                telemetry::translation("answer", "ok");
                answer.answer = text;
                answer.language = Some(translated.language.to_string());
            }
            Err(why) => {
                telemetry::translation("answer", why.as_str());
                tracing::warn!(
                    language = translated.language,
                    "{why}; sending the verified answer in the lesson's language"
                );
            }
        }
        Ok(answer)
    }

    /// Turns what the release kept into the answer: second opinions on undecided sentences,
    /// then the verified answer; the embedded answer when nothing that answers is left; or a
    /// refusal when the model said the lesson does not answer (or leaked its instructions).
    /// Returns the answer and the text released here, which a stream has not sent yet.
    async fn conclude(
        &self,
        question: &Question,
        asking: &Asking,
        mut release: Release,
        backend: &str,
    ) -> Result<(Answer, String), ChatError> {
        let mut released = String::new();
        let undecided = release.undecided();
        if !undecided.is_empty() {
            let opinions = match &self.second_opinion {
                Some(second) => {
                    second
                        .judge(&self.prompts, &undecided, &asking.citations)
                        .await
                }
                None => Vec::new(),
            };
            released.push_str(&release.settle(&opinions));
        }
        let judged = release.judged().to_vec();
        for sentence in &judged {
            let reason = match &sentence.verdict {
                Verdict::Unsupported(why) | Verdict::Undecided { why, .. } => why.as_str(),
                _ => "none",
            };
            telemetry::verdict(sentence.verdict.as_str(), reason);
        }
        if release.answered() {
            let mut answer = answered(&release, &asking.citations, backend, judged, false);
            if asking.hint.is_some() {
                answer.kind = ReplyKind::Hint;
                answer.hint = asking.hint;
            }
            return Ok((answer, released));
        }
        // A model's hint that stated the answer (or nothing usable): the tutor's own hint.
        if let (Some(reason), None, Some(best)) =
            (asking.hint, release.stop(), asking.citations.first())
        {
            let question = question.clone();
            let best = best.clone();
            let mut hint = self
                .off_thread(move |tutor| {
                    let lesson = tutor.lesson(&question.lesson_id)?;
                    tutor.hint_reply(&question, &lesson, best, reason, None, &[])
                })
                .await??;
            hint.verification = Some(Verification::of(&judged, true));
            hint.judged = judged;
            released.push_str(&hint.answer);
            return Ok((hint, released));
        }
        let reason = match release.stop() {
            Some(Stop::NotInLesson) => "model_not_in_lesson",
            Some(Stop::Leak) => {
                tracing::warn!(
                    backend,
                    "the model repeated the tutor's instructions; withheld"
                );
                "model_repeated_rules"
            }
            None if let Some(hint) = self.hint_for_removed(question, &judged)? => {
                released.push_str(&hint.answer);
                return Ok((hint, released));
            }
            None => {
                // Every sentence that answered was removed, but the gate found that the lesson
                // covers the question: answer from it with the embedded answerer.
                // Passages' sentences giving a nearby quiz answer away are left out of it.
                let request = asking.checker.masked(&asking.request);
                let quoted = self.extractive.reply(&request).join(" ");
                let mut fallback = Release::new(false);
                let mut text = fallback.push(&quoted, &asking.checker);
                text.push_str(&fallback.finish(&asking.checker));
                if fallback.answered() {
                    tracing::info!(
                        backend,
                        "every sentence was unsupported; answered from the lesson"
                    );
                    telemetry::fallback();
                    let backend = self.extractive.name();
                    let answer = answered(&fallback, &asking.citations, &backend, judged, true);
                    released.push_str(&text);
                    return Ok((answer, released));
                }
                "model_unsupported"
            }
        };
        telemetry::refusal(reason);
        let question = question.clone();
        let mut refusal = self
            .off_thread(move |tutor| {
                let lesson = tutor.lesson(&question.lesson_id)?;
                tutor.refusal(&question, &lesson, GateReason::NotCovered)
            })
            .await??;
        refusal.refusal_reason = Some(reason);
        refusal.verification = Some(Verification::of(&judged, false));
        refusal.judged = judged;
        released.push_str(&refusal.answer);
        Ok((refusal, released))
    }

    /// When the sentences that answered were removed for giving a quiz answer away, the hint
    /// for that quiz item.
    fn hint_for_removed(
        &self,
        question: &Question,
        judged: &[Judged],
    ) -> Result<Option<Answer>, ChatError> {
        let Some(item_id) = judged.iter().find_map(|j| match &j.verdict {
            Verdict::Unsupported(verify::Unsupported::QuizAnswer(id)) if !id.is_empty() => {
                Some(id.as_str())
            }
            _ => None,
        }) else {
            return Ok(None);
        };
        let Some(lesson) = self.retriever.catalog().get(&question.lesson_id).cloned() else {
            return Ok(None);
        };
        let Some(item) = lesson.quiz.as_ref().and_then(|q| q.item(item_id)) else {
            return Ok(None);
        };
        let words = self.analysis.quiz_words(&lesson.language);
        // Only a question close to the quiz question gets its hint; another one is answered
        // from what remains of the passages.
        let index = self.analysis.quiz_index(&lesson);
        let asked = words.terms(&question.message);
        if !index.hinted_after_removal(&asked, crate::quiz::answer_kind(&question.message), item) {
            return Ok(None);
        }
        self.quiz_item_hint(question, &lesson, item)
    }

    /// Answers a question as a stream of events. Errors before the first word (unknown lesson,
    /// a provider that fails or times out before answering) are returned as `Err`, so the HTTP
    /// layer can still send a status code. Text is sent a verified sentence at a time.
    pub async fn ask_stream(
        &self,
        question: Question,
    ) -> Result<BoxStream<'static, ChatEvent>, ChatError> {
        let asked = std::time::Instant::now();
        let turn = Turn::of(&question);
        let started = std::panic::AssertUnwindSafe(self.start_stream(question, asked))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(caught(panic, "answer")));
        let events = match started {
            Ok(events) => events,
            Err(error) => {
                if let ChatError::Internal(cause) = &error {
                    self.record_failure(&turn, cause, asked);
                }
                return Err(error);
            }
        };
        // A panic while the answer streams ends the stream with an `error` event, not a cut.
        let tutor = self.clone();
        let events = std::panic::AssertUnwindSafe(events)
            .catch_unwind()
            .map(move |event| {
                event.unwrap_or_else(|panic| {
                    let error = caught(panic, "stream");
                    if let ChatError::Internal(cause) = &error {
                        tutor.record_failure(&turn, cause, asked);
                    }
                    ChatEvent::Error(error)
                })
            });
        Ok(events.boxed())
    }

    /// [`Tutor::ask_stream`] up to the stream of events.
    async fn start_stream(
        &self,
        question: Question,
        asked: std::time::Instant,
    ) -> Result<BoxStream<'static, ChatEvent>, ChatError> {
        let (plan, retrieval, question) = self.plan_where_cheap(question).await?;
        let asking = match plan {
            Plan::Reply(refusal) => {
                self.record(&question, &refusal, asked);
                let events = vec![
                    ChatEvent::Citations(refusal.citations.clone()),
                    ChatEvent::Delta(refusal.answer.clone()),
                    ChatEvent::Done(refusal),
                ];
                return Ok(futures::stream::iter(events).boxed());
            }
            plan @ (Plan::Translate { .. } | Plan::Grade { .. }) => {
                // A rendering in the learner's language, and a model's grade, can only be
                // checked whole, so they are sent whole, once checked.
                let (answer, _) = self.answer_plan(question, plan, retrieval, asked).await?;
                let mut events = vec![ChatEvent::Citations(answer.citations.clone())];
                if !answer.answer.is_empty() {
                    events.push(ChatEvent::Delta(answer.answer.clone()));
                }
                events.push(ChatEvent::Done(Box::new(answer)));
                return Ok(futures::stream::iter(events).boxed());
            }
            Plan::Ask(asking) => asking,
        };
        let slot = self.model_slot().await?;
        let started = std::time::Instant::now();
        let reply = self
            .model
            .stream(&asking.request)
            .await
            .inspect_err(|e| record_model_error(self.model.as_ref(), e))?;
        telemetry::model_call(&reply.backend, "ok");
        telemetry::model_first_token(&reply.backend, started.elapsed().as_secs_f64());
        // Nothing is cited yet: each `delta` that cites a new passage comes after a
        // `citations` event listing every citation so far, numbered as shown.
        let head = futures::stream::iter([ChatEvent::Citations(Vec::new())]);
        let state = StreamState {
            asked,
            _in_flight: telemetry::StreamInFlight::start(),
            started,
            prompt_tokens: prompt_tokens(&asking.request),
            _slot: slot,
            backend: reply.backend,
            tutor: self.clone(),
            question,
            text: reply.text,
            release: Release::new(self.second_opinion.is_some()),
            asking,
            written: 0,
            sent_citations: Vec::new(),
            queued: std::collections::VecDeque::new(),
            finished: false,
        };
        let body = futures::stream::unfold(state, |mut state| async move {
            let event = state.next_event().await?;
            Some((event, state))
        });
        Ok(head.chain(body).boxed())
    }
}

/// The state of one streamed answer: the model's text flows into a [`Release`], and only what
/// it releases becomes `delta` events.
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
    tutor: Tutor,
    question: Question,
    /// The model's text; replaced by an empty stream once nothing more of it will be used,
    /// which drops the upstream request.
    text: TextStream,
    release: Release,
    asking: Box<Asking>,
    /// Characters the model wrote (for the token estimate).
    written: usize,
    /// The citations of the last `citations` event.
    sent_citations: Vec<Citation>,
    /// Events to send before reading more.
    queued: std::collections::VecDeque<ChatEvent>,
    /// `done` or `error` has been queued.
    finished: bool,
}

impl StreamState {
    async fn next_event(&mut self) -> Option<ChatEvent> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            match self.text.next().await {
                Some(Ok(piece)) => {
                    self.written += piece.chars().count();
                    let out = self.release.push(&piece, &self.asking.checker);
                    self.queue_delta(out);
                    if self.release.stopped() {
                        self.end().await;
                    }
                }
                Some(Err(error)) => {
                    // The sentence being written is dropped unverified; what was sent stands.
                    self.finished = true;
                    self.text = Box::pin(futures::stream::empty());
                    telemetry::model_failure(&self.backend, error.outcome());
                    self.queued
                        .push_back(ChatEvent::Error(ChatError::Model(error)));
                }
                None => {
                    let out = self.release.finish(&self.asking.checker);
                    self.queue_delta(out);
                    self.end().await;
                }
            }
        }
    }

    fn queue_delta(&mut self, text: String) {
        let citations = shown_citations(&self.release, &self.asking.citations);
        self.queue_text(text, citations);
    }

    /// Queues `text` as a `delta`, after a `citations` event when it cites what no earlier
    /// event listed.
    fn queue_text(&mut self, text: String, citations: Vec<Citation>) {
        if text.is_empty() {
            return;
        }
        if citations != self.sent_citations {
            self.sent_citations.clone_from(&citations);
            self.queued.push_back(ChatEvent::Citations(citations));
        }
        self.queued.push_back(ChatEvent::Delta(text));
    }

    /// Concludes the answer and queues its last text and `done` (or `error`).
    async fn end(&mut self) {
        self.finished = true;
        telemetry::model_total(&self.backend, self.started.elapsed().as_secs_f64());
        telemetry::model_tokens(
            &self.backend,
            self.prompt_tokens,
            (self.written as u64).div_ceil(4),
        );
        // Drop the upstream request now: nothing more of it will be shown.
        self.text = Box::pin(futures::stream::empty());
        let release = std::mem::replace(&mut self.release, Release::new(false));
        match self
            .tutor
            .conclude(&self.question, &self.asking, release, &self.backend)
            .await
        {
            Ok((answer, released)) => {
                self.tutor.record(&self.question, &answer, self.asked);
                self.queue_text(released, answer.citations.clone());
                self.queued.push_back(ChatEvent::Done(Box::new(answer)));
            }
            Err(error) => self.queued.push_back(ChatEvent::Error(error)),
        }
    }
}

/// The answer a release arrived at: its text, the given passages it cites, and what the verifier
/// did to the model's draft (`judged`; `fallback` when the release is the embedded answer's).
fn answered(
    release: &Release,
    given: &[Citation],
    backend: &str,
    judged: Vec<Judged>,
    fallback: bool,
) -> Answer {
    Answer {
        answer_id: answer_id(),
        answer: release.shown().to_string(),
        refused: false,
        citations: shown_citations(release, given),
        backend: backend.to_string(),
        kind: ReplyKind::Answer,
        related_lesson: None,
        verification: Some(Verification::of(&judged, fallback)),
        language: None,
        quiz: None,
        grade: None,
        hint: None,
        refusal_reason: None,
        judged,
    }
}

/// The passages the released text cites, numbered as the learner sees them (from 1, in order
/// of first appearance).
fn shown_citations(release: &Release, given: &[Citation]) -> Vec<Citation> {
    release
        .cited()
        .iter()
        .filter_map(|&n| given.iter().find(|c| c.n == n))
        .zip(1..)
        .map(|(c, shown)| Citation {
            n: shown,
            ..c.clone()
        })
        .collect()
}

fn prompt_tokens(request: &ModelRequest) -> u64 {
    crate::llm::estimated_tokens(&request.system)
        + crate::llm::estimated_tokens(&request.message)
        + request
            .history
            .iter()
            .map(|t| crate::llm::estimated_tokens(&t.content))
            .sum::<u64>()
}

fn record_model_error(model: &dyn ChatModel, error: &ModelError) {
    if !model.counts_its_failures() {
        telemetry::model_failure(&model.name(), error.outcome());
    }
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
