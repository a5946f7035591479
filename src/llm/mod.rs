//! Models that write answers: the [`ChatModel`] trait, an OpenAI-compatible client
//! ([`openai::OpenAiModel`], the only place that knows async-openai) and the embedded
//! [`extractive::Extractive`] answerer that needs no network.

pub mod chain;
pub mod extractive;
pub mod openai;

use crate::retrieve::QueryTerm;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// Who said a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One earlier turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

/// A rough token count (about four characters a token), for usage figures and metrics when the
/// provider's own count is not seen.
pub fn estimated_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The tutor's last answer in a conversation's history, if it has one.
pub fn last_answer(history: &[Turn]) -> Option<&str> {
    history
        .iter()
        .rev()
        .find(|t| t.role == Role::Assistant)
        .map(|t| t.content.as_str())
}

/// A passage given to the model, numbered as the answer must cite it.
#[derive(Debug, Clone)]
pub struct NumberedPassage {
    pub n: usize,
    pub section: String,
    pub text: String,
    /// Retrieval score relative to the best passage (1.0 for the best).
    pub relevance: f32,
    /// With a semantic model: each unit's similarity to the question (sentences, list items
    /// and table rows in [`crate::text::units_of`] order).
    pub meaning: Option<Vec<f32>>,
}

/// Everything a model needs to answer one question.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// The rendered system prompt (rules and fenced passages).
    pub system: String,
    /// Earlier turns, oldest first.
    pub history: Vec<Turn>,
    /// The learner's message, sent as the user turn (never inside the system prompt).
    pub message: String,
    /// The passages in the system prompt, for answerers that work on them directly.
    pub passages: Vec<NumberedPassage>,
    /// The question's analyzed terms, with their weights.
    pub terms: Vec<QueryTerm>,
    /// A short question that one passage answers: routing may send it to a cheaper provider.
    pub easy: bool,
    /// What the message asks for (a reason, a list, the second item …), for answerers that
    /// pick sentences themselves.
    pub reading: crate::conversation::Reading,
    /// The lesson's language (ISO 639-1): the passages and `terms` are analyzed in it.
    pub language: String,
}

/// A whole answer and who wrote it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// As reported in `backend`: `extractive` or `openai:MODEL`.
    pub backend: String,
    pub text: String,
}

/// An answer being written, and who is writing it.
pub struct ReplyStream {
    pub backend: String,
    pub text: TextStream,
}

impl ReplyStream {
    /// An answer already written, sent in these pieces.
    pub fn of_pieces(backend: String, pieces: Vec<String>) -> ReplyStream {
        ReplyStream {
            backend,
            text: Box::pin(futures::stream::iter(pieces.into_iter().map(Ok))),
        }
    }
}

/// Text as it arrives from a model.
pub type TextStream = BoxStream<'static, Result<String, ModelError>>;

/// Why a model call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// The provider answered with an error, or with something that is not a completion.
    #[error("the model provider failed: {0}")]
    Upstream(String),
    /// The provider did not answer in time.
    #[error("the model provider timed out: {0}")]
    Timeout(String),
}

impl ModelError {
    /// How the call ended, as the metrics label it: `timeout` or `error`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ModelError::Timeout(_) => "timeout",
            ModelError::Upstream(_) => "error",
        }
    }
}

/// A model that answers from numbered passages.
pub trait ChatModel: Send + Sync {
    /// What answered, as reported in `backend`: `extractive` or `openai:MODEL`.
    fn name(&self) -> String;

    /// True when the model counts its own failed calls in `tutor_model_calls_total` (a chain
    /// counts each provider's), so the caller must not count them again.
    fn counts_its_failures(&self) -> bool {
        false
    }

    /// The whole answer at once.
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<Reply, ModelError>>;

    /// The answer as it is written. Returns once the first words have arrived, so a provider
    /// that fails before answering is an `Err` (and a fallback can take over).
    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ReplyStream, ModelError>>;
}
