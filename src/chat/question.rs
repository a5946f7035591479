//! The learner's question, validated once: a message within the limits of the API, a bounded
//! history, an optional anonymous conversation id.

use super::ChatError;
use crate::llm::Turn;

/// Longest learner message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Most turns of history a request may carry.
pub const MAX_HISTORY_TURNS: usize = 20;
/// Longest single history turn, in characters.
pub const MAX_TURN_CHARS: usize = 8000;

/// Longest first message planned on the async worker, in bytes: retrieval of a message this
/// long takes about 75 µs at most (BENCHMARKS.md), a 600-byte one up to 4 ms.
const QUICK_PLAN_BYTES: usize = 160;

/// A validated question: parse, don't validate. Its fields are readable inside `chat` only, so
/// a `Question` anywhere else was made by [`Question::parse`].
#[derive(Debug, Clone)]
pub struct Question {
    pub(in crate::chat) lesson_id: String,
    pub(in crate::chat) message: String,
    pub(in crate::chat) history: Vec<Turn>,
    /// An anonymous id the widget makes per conversation (for the log); never an identity.
    pub(in crate::chat) conversation_id: Option<crate::ids::ConversationId>,
    /// Set when `message` is a translation of what the learner asked in another language.
    pub(in crate::chat) translated: Option<Translated>,
    /// What the learner wants: an answer, a hint, or a quiz question (or its grading).
    pub(in crate::chat) mode: Mode,
    /// With [`Mode::Quiz`]: the item `message` replies to; without, a question is asked.
    pub(in crate::chat) quiz_item: Option<String>,
    /// With [`Mode::Quiz`] and no item: the items already asked in this session, oldest first.
    pub(in crate::chat) quiz_asked: Vec<String>,
    /// With [`Mode::Quiz`] and an item: which try this reply is (from 1; see [`QUIZ_TRIES`]).
    pub(in crate::chat) quiz_attempt: u8,
    /// Set during an assessment (an instructor's LTI launch): every answer is a hint.
    pub(in crate::chat) hint_only: bool,
    /// The message's sentence vector, when a semantic model is in use (computed before
    /// planning, batched with other learners' questions).
    pub(in crate::chat) meaning: Option<crate::semantic::Vector>,
}

/// Tries a learner has at a quiz item: a reply not yet right on an earlier one gets a hint
/// and another go; the last one gets the answer.
pub const QUIZ_TRIES: u8 = 2;

/// What a learner asks the tutor for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// An answer from the lesson (the default).
    #[default]
    Answer,
    /// A nudge toward the answer: the section to re-read and the word to look for.
    Hint,
    /// A quiz question, or, with an item, the grading of the learner's reply to it.
    Quiz,
}

impl Mode {
    /// A stable word for metrics, logs and the facade's model names.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Answer => "answer",
            Mode::Hint => "hint",
            Mode::Quiz => "quiz",
        }
    }
}

/// What the learner asked, when the tutor works on a translation of it.
#[derive(Debug, Clone)]
pub struct Translated {
    /// The learner's language (ISO 639-1): the answer is rendered in it.
    pub language: &'static str,
    /// The lesson's language, which `message` is now in.
    pub lesson_language: String,
    /// The learner's own words, for the log.
    pub original: String,
}

impl Question {
    /// True when planning this question is known to be short: a first message (no history to
    /// search) of at most [`QUICK_PLAN_BYTES`].
    pub(in crate::chat) fn plans_quickly(&self) -> bool {
        self.history.is_empty() && self.message.len() <= QUICK_PLAN_BYTES
    }

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
            translated: None,
            mode: Mode::Answer,
            quiz_item: None,
            quiz_asked: Vec::new(),
            quiz_attempt: 1,
            hint_only: false,
            meaning: None,
        })
    }

    /// "Quiz me": ask the learner one question of the lesson, other than those in `asked`
    /// (item ids, oldest first, at most 100).
    pub fn quiz_me(lesson_id: String, asked: Vec<String>) -> Result<Question, ChatError> {
        check_item_ids(&asked)?;
        Ok(Question {
            lesson_id,
            message: String::new(),
            history: Vec::new(),
            conversation_id: None,
            translated: None,
            mode: Mode::Quiz,
            quiz_item: None,
            quiz_asked: asked,
            quiz_attempt: 1,
            hint_only: false,
            meaning: None,
        })
    }

    /// The same message, as a hint request (`Mode::Hint`) or a reply to quiz item `item`
    /// (`Mode::Quiz`); `Mode::Answer` leaves it as it is.
    pub fn with_mode(mut self, mode: Mode, item: Option<String>) -> Result<Question, ChatError> {
        match (mode, item) {
            (Mode::Quiz, Some(item)) => {
                check_item_ids(std::slice::from_ref(&item))?;
                self.quiz_item = Some(item);
            }
            (Mode::Quiz, None) => {
                return Err(ChatError::InvalidMessage(
                    "a reply in `mode: \"quiz\"` needs the `quiz_item` it answers; send no `message` to be asked a question".to_string(),
                ));
            }
            (_, Some(_)) => {
                return Err(ChatError::InvalidMessage(
                    "`quiz_item` goes with `mode: \"quiz\"`".to_string(),
                ));
            }
            (_, None) => {}
        }
        self.mode = mode;
        Ok(self)
    }

    /// Which try at its quiz item a reply is: 1 (the default) or more; a reply not yet right
    /// gets the answer only on the last of [`QUIZ_TRIES`].
    pub fn with_attempt(mut self, attempt: Option<u32>) -> Result<Question, ChatError> {
        let Some(attempt) = attempt else {
            return Ok(self);
        };
        if self.quiz_item.is_none() {
            return Err(ChatError::InvalidMessage(
                "`quiz_attempt` goes with `mode: \"quiz\"` and the `quiz_item` replied to"
                    .to_string(),
            ));
        }
        if attempt == 0 {
            return Err(ChatError::InvalidMessage(
                "`quiz_attempt` counts from 1".to_string(),
            ));
        }
        self.quiz_attempt = attempt.min(u32::from(QUIZ_TRIES)) as u8;
        Ok(self)
    }

    /// During an assessment: every answer becomes a hint, and graded replies quote nothing.
    pub fn hint_only(mut self, hint_only: bool) -> Question {
        self.hint_only = hint_only;
        self
    }

    /// What the learner asked for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The message (empty for "quiz me").
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same question with `message` replaced by its translation into the lesson's
    /// language; the learner's words are kept in [`Question::translated`].
    pub fn in_lesson_language(
        mut self,
        translation: String,
        language: &'static str,
        lesson_language: &str,
    ) -> Question {
        let original = std::mem::replace(&mut self.message, translation);
        // The vector was of the learner's words: the translation gets its own.
        self.meaning = None;
        self.translated = Some(Translated {
            language,
            lesson_language: lesson_language.to_string(),
            original,
        });
        self
    }

    /// The lesson asked about.
    pub fn lesson_id(&self) -> &str {
        &self.lesson_id
    }

    /// What the learner typed (the original of a translated question).
    pub fn asked(&self) -> &str {
        self.translated
            .as_ref()
            .map_or(&self.message, |t| &t.original)
    }

    /// Attaches the widget's anonymous conversation id (up to 64 letters, digits, `-`, `_`).
    pub fn with_conversation(mut self, id: Option<&str>) -> Result<Question, ChatError> {
        self.conversation_id = id
            .map(crate::ids::ConversationId::parse)
            .transpose()
            .map_err(|e| ChatError::InvalidMessage(e.to_string()))?;
        Ok(self)
    }
}

/// Quiz item ids as the API takes them: each 1 to 64 letters, digits, `-` or `_`, at most 100.
fn check_item_ids(ids: &[String]) -> Result<(), ChatError> {
    if ids.len() > 100 {
        return Err(ChatError::InvalidMessage(
            "`quiz_asked` lists more than 100 items; send the last 100".to_string(),
        ));
    }
    match ids.iter().find(|id| !crate::lessons::quiz::is_item_id(id)) {
        Some(id) => Err(ChatError::InvalidMessage(format!(
            "quiz item id {id:?} must be 1 to 64 letters, digits, `-` or `_`"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Role, Turn};

    fn question(message: &str, history: Vec<Turn>) -> Question {
        Question::parse("lesson".to_string(), message.to_string(), history).expect("valid")
    }

    #[test]
    fn only_a_short_first_question_is_planned_on_the_async_worker() {
        assert!(question("What is a closed API?", Vec::new()).plans_quickly());
        let longest = "w".repeat(QUICK_PLAN_BYTES);
        assert!(question(&longest, Vec::new()).plans_quickly());
        let longer = "w".repeat(QUICK_PLAN_BYTES + 1);
        assert!(!question(&longer, Vec::new()).plans_quickly());
        // Bytes, not characters: a short message in another script can be a long search.
        let accented = "é".repeat(QUICK_PLAN_BYTES / 2 + 1);
        assert!(!question(&accented, Vec::new()).plans_quickly());
        let history = vec![Turn {
            role: Role::User,
            content: "What is a closed API?".to_string(),
        }];
        assert!(!question("Why?", history).plans_quickly());
    }
}
