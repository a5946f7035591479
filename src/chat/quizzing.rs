//! The tutor's quiz replies: a quiz question ("quiz me"), the grading of a reply to one, and
//! hints in place of answers. All are written by the tutor from the lesson itself (no model
//! text), quote the lesson word for word when they quote it, and cite the section they point
//! to. Decisions come from [`crate::quiz`]; the words from `prompts/quiz.j2`.

use super::{
    Answer, ChatError, Citation, HintReason, QuizInfo, ReplyKind, Tutor, answer_id, citation,
};
use crate::lessons::Lesson;
use crate::lessons::quiz::{Integrity, QuizItem};
use crate::quiz::{self, Guard, grade::Grade};
use crate::telemetry;
use minijinja::context;

/// What a question gets when quiz integrity applies to it, decided before any model is called.
pub(super) enum Guarding {
    /// Answer as usual, keeping the nearby items' answers out of the reply (their guards, and
    /// the answers as written).
    Answer(Vec<Guard>, Vec<String>),
    /// A hint for this quiz item instead.
    Hint(QuizItem),
}

impl Tutor {
    /// Quiz mode: the next question to ask, or the grading of `message` as a reply to
    /// `question.quiz_item`. No retrieval, no model.
    pub(super) fn quiz_reply(
        &self,
        question: &super::Question,
        lesson: &Lesson,
    ) -> Result<Answer, ChatError> {
        let words = self.analysis.quiz_words(&lesson.language);
        let items = quiz::items_of(lesson);
        let Some(id) = &question.quiz_item else {
            let Some(item) = quiz::next_item(&items, &question.quiz_asked) else {
                let text = self.prompts.quiz(
                    "no_quiz",
                    context! { lesson => context! { id => &lesson.id, title => &lesson.title } },
                )?;
                telemetry::quiz("quiz_question", "none");
                return Ok(self.tutor_reply(text, ReplyKind::QuizQuestion, Vec::new()));
            };
            let choices: Vec<_> = item
                .choices
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let letter = char::from(b'a' + i as u8).to_string();
                    context! { letter => letter, text => text }
                })
                .collect();
            let text = self.prompts.quiz(
                "question",
                context! {
                    question => &item.question,
                    choices => choices,
                    section => section_title(lesson, &item.section),
                },
            )?;
            telemetry::quiz("quiz_question", "asked");
            let mut reply = self.tutor_reply(text, ReplyKind::QuizQuestion, Vec::new());
            reply.quiz = Some(quiz_info(item));
            return Ok(reply);
        };
        let item = items.iter().find(|i| &i.id == id).ok_or_else(|| {
            ChatError::InvalidMessage(format!(
                "lesson `{}` has no quiz item `{id}`; ask for a question with `mode: \"quiz\"` and no `quiz_item`",
                lesson.id
            ))
        })?;
        let grade = quiz::grade::grade(words, item, &question.message);
        let passage = quiz::passage_for(words, lesson, item);
        // During an assessment a wrong reply is not followed by the answer.
        let quote = match passage {
            Some(p) if grade == Grade::Correct || !question.hint_only => {
                quiz::answer_sentence(words, &p.text, &item.answer)
            }
            _ => None,
        };
        let text = self.prompts.quiz(
            "grade",
            context! {
                grade => grade.as_str(),
                section => section_title(lesson, &item.section),
                n => 1,
                quote => quote.unwrap_or(""),
            },
        )?;
        telemetry::quiz("grade", grade.as_str());
        let citations = passage
            .map(|p| vec![citation(1, lesson, p)])
            .unwrap_or_default();
        let mut reply = self.tutor_reply(text, ReplyKind::Grade, citations);
        reply.quiz = Some(quiz_info(item));
        reply.grade = Some(grade);
        Ok(reply)
    }

    /// Quiz integrity for an ordinary question on `lesson`: a hint when it asks one of the
    /// quiz's own questions, otherwise the answers near it to keep out of the reply.
    pub(super) fn integrity(&self, question: &super::Question, lesson: &Lesson) -> Guarding {
        let Some(quiz) = &lesson.quiz else {
            return Guarding::Answer(Vec::new(), Vec::new());
        };
        if quiz.items.is_empty() || (quiz.integrity == Integrity::Off && !question.hint_only) {
            return Guarding::Answer(Vec::new(), Vec::new());
        }
        let words = self.analysis.quiz_words(&lesson.language);
        let index = self.analysis.quiz_index(lesson);
        let asked = words.terms(&question.message);
        if let Some(item) = index.asked(&asked) {
            return Guarding::Hint(item.clone());
        }
        let answers = index
            .near_answers(&asked)
            .into_iter()
            .map(str::to_string)
            .collect();
        Guarding::Answer(index.near(&asked), answers)
    }

    /// A hint toward the passage `cited`: its section to re-read and a word of the question to
    /// look for, never a word of `avoid` (the answer, when known).
    pub(super) fn hint_reply(
        &self,
        question: &super::Question,
        lesson: &Lesson,
        cited: Citation,
        reason: HintReason,
        item: Option<&QuizItem>,
        avoid: &[&str],
    ) -> Result<Answer, ChatError> {
        let words = self.analysis.quiz_words(&lesson.language);
        let passage_text = cited.text.clone();
        let avoided = avoid.join(" ");
        let avoid_text = (!avoided.is_empty()).then_some(avoided.as_str());
        let term =
            quiz::key_word(words, &question.message, &passage_text, avoid_text).or_else(|| {
                item.and_then(|i| quiz::key_word(words, &i.question, &passage_text, avoid_text))
            });
        let section = cited.section.clone();
        let n = cited.n;
        let guards: Vec<Guard> = avoid.iter().map(|a| Guard::new(words, None, a)).collect();
        let render = |section: &str, term: Option<&str>| {
            self.prompts.quiz(
                "hint",
                context! {
                    reason => reason.as_str(),
                    section => section,
                    n => n,
                    term => term.unwrap_or(""),
                },
            )
        };
        let mut text = render(&section, term.as_deref())?;
        // A section title or a word may itself be the answer: say less rather than give it.
        if guards.iter().any(|g| g.revealed_by(words, &text)) {
            text = render("this section", None)?;
        }
        telemetry::quiz("hint", reason.as_str());
        let mut reply = self.tutor_reply(text, ReplyKind::Hint, vec![cited]);
        reply.hint = Some(reason);
        reply.quiz = item.map(quiz_info);
        Ok(reply)
    }

    /// The hint for a quiz item whose answer the learner asked for, citing the item's passage
    /// as passage `n`.
    pub(super) fn quiz_item_hint(
        &self,
        question: &super::Question,
        lesson: &Lesson,
        item: &QuizItem,
        n: usize,
    ) -> Result<Option<Answer>, ChatError> {
        let words = self.analysis.quiz_words(&lesson.language);
        let Some(passage) = quiz::passage_for(words, lesson, item) else {
            return Ok(None);
        };
        let reason = if question.hint_only {
            HintReason::Assessment
        } else {
            HintReason::QuizItem
        };
        let cited = citation(n, lesson, passage);
        self.hint_reply(question, lesson, cited, reason, Some(item), &[&item.answer])
            .map(Some)
    }

    /// A reply the tutor writes itself, citing `citations`.
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
}

fn section_title<'a>(lesson: &'a Lesson, slug: &str) -> &'a str {
    lesson.section(slug).map_or("", |s| s.title.as_str())
}

fn quiz_info(item: &QuizItem) -> QuizInfo {
    QuizInfo {
        item_id: item.id.clone(),
        question: item.question.clone(),
        section_id: item.section.clone(),
        choices: item.choices.clone(),
    }
}
