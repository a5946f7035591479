//! An author's quiz for a lesson, from the sibling `LESSON.quiz.toml`:
//!
//! ```toml
//! quiz_integrity = "hint"          # or "off": hand quiz answers over like any other
//!
//! [[items]]
//! id = "cascade-weakness"
//! question = "What is the main weakness of a cascade?"
//! answer = "escalated requests take longer"
//! accept = ["escalations are slower"]   # optional: other right answers
//! section = "routing-strategies"
//!
//! [[items]]
//! id = "router-labels"
//! question = "What do you label for each sample request?"
//! choices = ["which model is cheaper", "whether the cheap answer was good enough"]
//! answer = "whether the cheap answer was good enough"
//! section = "learned-routers"
//! ```
//!
//! Pure: text in, the items that are valid and a problem (with its line) for each that is not.
//! One bad item never takes the others down. Whether an answer is *supported* by its section is
//! judged by `tutor check` with the verifier, which needs the index's analysis.

use super::{Lesson, LessonError};
use crate::text::LineIndex;
use serde::Deserialize;
use std::collections::HashSet;

/// What the tutor does when a learner asks one of the quiz's own questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Integrity {
    /// A hint pointing to the section, not the answer (the default).
    #[default]
    Hint,
    /// Answer it like any other question.
    Off,
}

/// A lesson's quiz: the author's items, in the file's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quiz {
    pub integrity: Integrity,
    pub items: Vec<QuizItem>,
}

/// One quiz question and what it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuizItem {
    /// Unique within the lesson: letters, digits, `-` and `_`.
    pub id: String,
    pub question: String,
    /// The expected answer (for a multiple-choice item, the right choice, as written there).
    pub answer: String,
    /// Other answers to accept as right (an abbreviation, another way to say it).
    pub accept: Vec<String>,
    /// The choices of a multiple-choice item; empty for a free-text one.
    pub choices: Vec<String>,
    /// The slug of the section the item checks.
    pub section: String,
    /// 1-based line of the item in its file (0 for items the tutor builds from the lesson).
    pub line: usize,
}

impl Quiz {
    /// The item with this id.
    pub fn item(&self, id: &str) -> Option<&QuizItem> {
        self.items.iter().find(|i| i.id == id)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuizFile {
    #[serde(default)]
    quiz_integrity: Option<toml::Spanned<String>>,
    #[serde(default)]
    items: Vec<toml::Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: String,
    question: String,
    answer: String,
    #[serde(default)]
    accept: Vec<String>,
    #[serde(default)]
    choices: Vec<String>,
    section: String,
}

/// Most choices a multiple-choice item may have.
const MAX_CHOICES: usize = 8;

/// Parses a quiz file for `lesson`: the valid items, and a problem for each invalid one (or
/// for the whole file when it is not TOML of this shape, which then yields no quiz).
pub fn parse_quiz(text: &str, lesson: &Lesson) -> (Option<Quiz>, Vec<LessonError>) {
    let lines = LineIndex::new(text);
    let file: QuizFile = match toml::from_str(text) {
        Ok(file) => file,
        Err(e) => {
            let line = e.span().map_or(1, |span| lines.line(span.start));
            return (None, vec![LessonError::at(line, e.message().to_string())]);
        }
    };
    let mut problems = Vec::new();
    let integrity = match file.quiz_integrity {
        None => Integrity::Hint,
        Some(value) => match value.get_ref().as_str() {
            "hint" => Integrity::Hint,
            "off" => Integrity::Off,
            other => {
                problems.push(LessonError::at(
                    lines.line(value.span().start),
                    format!("`quiz_integrity` is \"{other}\"; use \"hint\" or \"off\""),
                ));
                Integrity::Hint
            }
        },
    };
    let mut items = Vec::new();
    let mut ids = HashSet::new();
    for spanned in file.items {
        let line = lines.line(spanned.span().start);
        let raw = match RawItem::deserialize(toml::Value::Table(spanned.into_inner())) {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(LessonError::at(line, format!("quiz item: {}", e.message())));
                continue;
            }
        };
        match check_item(&raw, lesson) {
            Err(reason) => problems.push(LessonError::at(line, reason)),
            Ok(()) if !ids.insert(raw.id.clone()) => problems.push(LessonError::at(
                line,
                format!(
                    "quiz item id `{}` is used twice; ids must be unique",
                    raw.id
                ),
            )),
            Ok(()) => items.push(QuizItem {
                id: raw.id,
                question: raw.question.trim().to_string(),
                answer: raw.answer.trim().to_string(),
                accept: raw
                    .accept
                    .iter()
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect(),
                choices: raw.choices.iter().map(|c| c.trim().to_string()).collect(),
                section: raw.section,
                line,
            }),
        }
    }
    (Some(Quiz { integrity, items }), problems)
}

fn check_item(item: &RawItem, lesson: &Lesson) -> Result<(), String> {
    if !is_item_id(&item.id) {
        return Err(format!(
            "quiz item id `{}` must be 1 to 64 letters, digits, `-` or `_`",
            item.id
        ));
    }
    if item.question.trim().is_empty() {
        return Err(format!("quiz item `{}` has an empty `question`", item.id));
    }
    if item.answer.trim().is_empty() {
        return Err(format!("quiz item `{}` has an empty `answer`", item.id));
    }
    if lesson.section(&item.section).is_none() {
        let known: Vec<&str> = lesson.sections.iter().map(|s| s.slug.as_str()).collect();
        return Err(format!(
            "quiz item `{}` names section `{}`, which is not in the lesson (sections: {})",
            item.id,
            item.section,
            known.join(", ")
        ));
    }
    if !item.choices.is_empty() {
        if item.choices.len() < 2 || item.choices.len() > MAX_CHOICES {
            return Err(format!(
                "quiz item `{}` has {} choices; give 2 to {MAX_CHOICES}",
                item.id,
                item.choices.len()
            ));
        }
        if !item.choices.iter().any(|c| c.trim() == item.answer.trim()) {
            return Err(format!(
                "quiz item `{}`: its `answer` must be one of its `choices`, written the same way",
                item.id
            ));
        }
        let distinct: HashSet<String> = item
            .choices
            .iter()
            .map(|c| c.trim().to_lowercase())
            .collect();
        if distinct.len() != item.choices.len() {
            return Err(format!("quiz item `{}` lists a choice twice", item.id));
        }
    }
    Ok(())
}

/// A quiz item id is shaped like every id the API takes (ids travel in URLs and JSON).
pub fn is_item_id(id: &str) -> bool {
    crate::ids::well_formed(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lessons::parse_lesson;

    fn lesson() -> Lesson {
        parse_lesson(
            "---\nid: l\ntitle: L\nsummary: S\n---\n## Routing strategies\nA cascade tries the cheap model first.\n## Learned routers\nLabel whether the cheap answer was good enough.\n",
            "l",
        )
        .expect("lesson")
    }

    #[test]
    fn valid_items_load_and_each_bad_one_is_reported_on_its_line() {
        let text = r#"quiz_integrity = "hint"

[[items]]
id = "cascade"
question = "What does a cascade try first?"
answer = "the cheap model"
section = "routing-strategies"

[[items]]
id = "missing-section"
question = "Where?"
answer = "there"
section = "nowhere"

[[items]]
id = "cascade"
question = "Twice?"
answer = "twice"
section = "routing-strategies"

[[items]]
id = "labels"
question = "What is labelled?"
choices = ["the price", "whether the cheap answer was good enough"]
answer = "whether the cheap answer was good enough"
section = "learned-routers"

[[items]]
id = "bad-choice"
question = "Which?"
choices = ["a", "b"]
answer = "c"
section = "learned-routers"

[[items]]
id = "typo"
question = "Which?"
answers = "c"
section = "learned-routers"
"#;
        let (quiz, problems) = parse_quiz(text, &lesson());
        let quiz = quiz.expect("a quiz");
        let ids: Vec<&str> = quiz.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["cascade", "labels"]);
        assert_eq!(quiz.items[0].line, 3);
        assert_eq!(quiz.integrity, Integrity::Hint);
        let found: Vec<(usize, bool)> = problems
            .iter()
            .map(|p| (p.line, !p.reason.is_empty()))
            .collect();
        assert_eq!(
            found,
            [(9, true), (15, true), (28, true), (35, true)],
            "{problems:?}"
        );
        assert!(problems[0].reason.contains("section `nowhere`"));
        assert!(problems[1].reason.contains("used twice"));
        assert!(problems[2].reason.contains("one of its `choices`"));
        assert!(problems[3].reason.contains("answers"), "{problems:?}");
    }

    #[test]
    fn a_file_that_is_not_toml_or_a_bad_integrity_setting_is_reported() {
        let (quiz, problems) = parse_quiz("[[items]\nid = ", &lesson());
        assert!(quiz.is_none());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 1);

        let (quiz, problems) = parse_quiz("quiz_integrity = \"strict\"\n", &lesson());
        assert_eq!(quiz.expect("quiz").integrity, Integrity::Hint);
        assert!(problems[0].reason.contains("\"strict\""));

        let (quiz, problems) = parse_quiz("quiz_integrity = \"off\"\n", &lesson());
        assert_eq!(quiz.expect("quiz").integrity, Integrity::Off);
        assert!(problems.is_empty());
    }
}
