//! Authors' golden questions, asked as a learner would (earlier questions of `after` first, each
//! answer becoming history) and judged: the section cited or the refusal (and where it points),
//! and the phrases the answer must and must not contain. `tutor check` prints what this finds.

use super::check::Checker;
use super::release::Judge;
use super::verify::Verdict;
use super::{Answer, HintReason, Question, ReplyKind, Tutor};
use crate::lessons::quiz::QuizItem;
use crate::lessons::{GoldenQuestion, Lesson};
use crate::llm::{Role, Turn};

/// What a golden question expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// An answer citing this section.
    Cited(String),
    /// A refusal, pointing to this lesson when one is named.
    Refused(Option<String>),
    /// A quiz item's answer, supported by this section.
    QuizAnswer(String),
}

/// One golden question, judged.
#[derive(Debug, Clone)]
pub struct Judged {
    pub expected: Expected,
    /// How many `must` and `must_not` phrases were checked.
    pub phrases: usize,
    /// What came back, as a line for the author ("cited x; missing \"y\"").
    pub got: String,
    pub passed: bool,
}

impl Judged {
    /// The expectation as a line for the author.
    pub fn expected_text(&self) -> String {
        let expected = match &self.expected {
            Expected::Cited(section) => format!("cited {section}"),
            Expected::Refused(Some(id)) => format!("refused -> {id}"),
            Expected::Refused(None) => "refused".to_string(),
            Expected::QuizAnswer(section) => format!("answer supported by {section}"),
        };
        match self.phrases {
            0 => expected,
            1 => format!("{expected}, 1 phrase"),
            n => format!("{expected}, {n} phrases"),
        }
    }
}

impl Tutor {
    /// Asks `golden` on `lesson_id` (after its `after` questions) and judges the answer.
    pub async fn judge_golden(&self, lesson_id: &str, golden: &GoldenQuestion) -> Judged {
        let expected = if golden.refuse {
            Expected::Refused(golden.points_to.clone())
        } else {
            Expected::Cited(golden.section.clone().unwrap_or_default())
        };
        let phrases = golden.must.len() + golden.must_not.len();
        let (got, passed) = match self.ask_after(lesson_id, golden).await {
            // One of the quiz's own questions gets a hint by design (quiz integrity): it passes
            // when the hint points to the expected section; its phrases are withheld.
            Ok(answer)
                if answer.kind == ReplyKind::Hint && answer.hint == Some(HintReason::QuizItem) =>
            {
                let item = answer.quiz.as_ref().map_or("", |q| q.item_id.as_str());
                let passed = !golden.refuse
                    && answer
                        .citations
                        .iter()
                        .any(|c| Some(c.section_id.as_str()) == golden.section.as_deref());
                (
                    format!(
                        "hint for quiz item {item} citing {}",
                        sections_cited(&answer)
                    ),
                    passed,
                )
            }
            Ok(answer) => {
                let (got, passed) = judge(
                    golden.section.as_deref(),
                    golden.refuse,
                    golden.points_to.as_deref(),
                    &answer,
                );
                let wrong = judge_phrases(golden, &answer);
                if wrong.is_empty() {
                    (got, passed)
                } else {
                    (format!("{got}; {}", wrong.join(", ")), false)
                }
            }
            Err(error) => (format!("error: {error}"), false),
        };
        Judged {
            expected,
            phrases,
            got,
            passed,
        }
    }

    /// Checks a quiz item as the tutor checks a model's sentence: its expected answer must be
    /// supported by the passages of the section it names.
    pub fn judge_quiz_item(&self, lesson: &Lesson, item: &QuizItem) -> Judged {
        let sources: Vec<(&str, &str, &str)> = lesson
            .passages
            .iter()
            .filter(|p| lesson.section_of(p).slug == item.section)
            .map(|p| {
                (
                    p.id.as_str(),
                    lesson.section_of(p).title.as_str(),
                    p.text.as_str(),
                )
            })
            .collect();
        let checker = Checker::new(
            &self.analysis,
            self.prompts.clone(),
            &sources,
            "",
            &lesson.title,
            &lesson.language,
        );
        let verdict = checker.judge(&item.answer, &[]);
        let (got, passed) = match &verdict {
            Verdict::Supported { .. } | Verdict::Corrected { .. } => {
                (format!("supported by {}", item.section), true)
            }
            Verdict::Undecided { why, .. } if why.passes_lexically() => {
                (format!("supported by {}", item.section), true)
            }
            Verdict::Undecided { why, .. } | Verdict::Unsupported(why) => {
                (format!("not supported: {why}"), false)
            }
            Verdict::Neutral => ("states nothing to check".to_string(), false),
        };
        Judged {
            expected: Expected::QuizAnswer(item.section.clone()),
            phrases: 0,
            got,
            passed,
        }
    }

    /// The answer to `golden.q`, asked after `golden.after` in one conversation.
    async fn ask_after(
        &self,
        lesson_id: &str,
        golden: &GoldenQuestion,
    ) -> Result<Answer, super::ChatError> {
        let mut history = Vec::new();
        for earlier in &golden.after {
            let question =
                Question::parse(lesson_id.to_string(), earlier.clone(), history.clone())?;
            let (answer, _) = self.ask(question).await?;
            history.push(Turn {
                role: Role::User,
                content: earlier.clone(),
            });
            history.push(Turn {
                role: Role::Assistant,
                content: answer.answer,
            });
        }
        let question = Question::parse(lesson_id.to_string(), golden.q.clone(), history)?;
        self.ask(question).await.map(|(answer, _)| answer)
    }
}

fn judge(
    expected_section: Option<&str>,
    refuse: bool,
    points_to: Option<&str>,
    answer: &Answer,
) -> (String, bool) {
    if refuse {
        let pointed = answer.related_lesson.as_ref().map(|l| l.id.as_str());
        let got = match (answer.refused, pointed) {
            (true, Some(id)) => format!("refused -> {id}"),
            (true, None) => "refused".to_string(),
            (false, _) => format!("answered from {}", sections_cited(answer)),
        };
        let passed = answer.refused && points_to.is_none_or(|want| pointed == Some(want));
        return (got, passed);
    }
    if answer.refused {
        return ("refused".to_string(), false);
    }
    let cited = sections_cited(answer);
    let passed = answer
        .citations
        .iter()
        .any(|c| Some(c.section_id.as_str()) == expected_section);
    (format!("cited {cited}"), passed)
}

/// What a golden question's phrases found wrong with an answer: each `must` phrase it lacks and
/// each `must_not` phrase it has. Case, spacing and citation markers are ignored.
fn judge_phrases(golden: &GoldenQuestion, answer: &Answer) -> Vec<String> {
    let said = plain_words(&answer.answer);
    let has = |phrase: &str| {
        let phrase = plain_words(phrase);
        format!(" {said} ").contains(&format!(" {phrase} "))
    };
    let missing = golden
        .must
        .iter()
        .filter(|p| !has(p))
        .map(|p| format!("missing \"{p}\""));
    let unwanted = golden
        .must_not
        .iter()
        .filter(|p| has(p))
        .map(|p| format!("says \"{p}\""));
    missing.chain(unwanted).collect()
}

/// Lower-case words separated by single spaces, without `[n]` citation markers.
fn plain_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut marker = false;
    for c in text.chars() {
        match c {
            '[' => marker = true,
            ']' if marker => marker = false,
            _ if marker && c.is_ascii_digit() => {}
            _ => {
                marker = false;
                if c.is_alphanumeric() || matches!(c, '%' | '.' | ',' | '\'' | '’') {
                    out.extend(c.to_lowercase());
                } else {
                    out.push(' ');
                }
            }
        }
    }
    out.split_whitespace()
        .map(|w| w.trim_matches(|c: char| matches!(c, '.' | ',' | '\'' | '’')))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn sections_cited(answer: &Answer) -> String {
    let mut ids: Vec<&str> = answer
        .citations
        .iter()
        .map(|c| c.section_id.as_str())
        .collect();
    ids.dedup();
    if ids.is_empty() {
        "nothing".to_string()
    } else {
        ids.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::plain_words;

    #[test]
    fn phrases_are_compared_as_plain_words() {
        assert_eq!(
            plain_words("The Moon's  gravity [1] pulls, the oceans [2]."),
            "the moon's gravity pulls the oceans"
        );
        assert_eq!(plain_words("A list [12][3]: one; two."), "a list one two");
        assert_eq!(
            plain_words("10^25 FLOP, 32,000 tokens"),
            "10 25 flop 32,000 tokens"
        );
    }
}
