//! The tutor's quiz replies: a quiz question ("quiz me"), the grading of a reply to one, and
//! hints in place of answers. All are written by the tutor from the lesson itself (no model
//! text), quote the lesson word for word when they quote it, and cite the section they point
//! to. Decisions come from [`crate::quiz`]; the words from `prompts/quiz.j2`.

use super::check::Checker;
use super::release::Release;
use super::{Answer, ChatError, Citation, HintReason, QuizInfo, ReplyKind, Tutor, citation};
use crate::lessons::Lesson;
use crate::lessons::quiz::{Integrity, QuizItem};
use crate::llm::{ModelRequest, NumberedPassage};
use crate::prompts::PromptLesson;
use crate::quiz::{self, Guard, grade::Grade};
use crate::telemetry;
use minijinja::context;

/// A grade a model may refine: its request, the checks its explanation goes through, and the
/// lexical grade it starts from.
pub struct Grading {
    request: ModelRequest,
    checker: Checker,
    lexical: Grade,
    /// The reply contradicts the expected answer (a negation, another number): the lexical
    /// grade stands whatever the model says.
    contradicted: bool,
    /// Keeps the answer out of the model's explanation when it must not be given.
    guard: Guard,
    /// What the grade may say, whichever grade it ends up being.
    reveal: Reveal,
    /// The lesson's language, which the grade is written in.
    language: String,
}

/// What a graded reply may say, decided for the words' grade and again for a model's.
pub struct Reveal {
    section: String,
    /// The section's title states the answer, so it is not named while the answer is kept back.
    title_reveals: bool,
    /// The lesson's sentence holding the answer, quoted after the grade when it may be given.
    answer_quote: Option<String>,
    /// An assessment's reply the words found not right: the answer is never given.
    assessment_withheld: bool,
    /// Another try, for a reply the grade finds not yet right (the answer is kept back).
    retry: Option<Retry>,
}

/// What a learner with another try is told: a word to look for, and the question again.
pub struct Retry {
    /// A word of the question the section says something about (never one of the answer).
    term: String,
    question: String,
    choices: Vec<String>,
    /// Tries left after this one.
    tries_left: u8,
}

impl Reveal {
    /// The other try a reply of `grade` gets, if any, and whether the answer is kept back.
    fn decide(&self, grade: Grade) -> (Option<&Retry>, bool) {
        let retry = self.retry.as_ref().filter(|_| grade != Grade::Correct);
        (retry, self.assessment_withheld || retry.is_some())
    }
}

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
    /// `question.quiz_item`, with what a model needs to refine that grade. No retrieval, no
    /// model call.
    pub(super) fn quiz_reply(
        &self,
        question: &super::Question,
        lesson: &Lesson,
    ) -> Result<(Answer, Option<Grading>), ChatError> {
        let words = self.analysis.quiz_words(&lesson.language);
        let index = self.analysis.quiz_index(lesson);
        let items = index.to_ask();
        let Some(id) = &question.quiz_item else {
            let Some(item) = quiz::next_item(items, &question.quiz_asked) else {
                let text = self.prompts.quiz(
                    "no_quiz",
                    &lesson.language,
                    context! { lesson => context! { id => &lesson.id, title => &lesson.title } },
                )?;
                telemetry::quiz("quiz_question", "none");
                return Ok((
                    self.tutor_reply(text, ReplyKind::QuizQuestion, Vec::new()),
                    None,
                ));
            };
            let choices = letters(&item.choices);
            let text = self.prompts.quiz(
                "question",
                &lesson.language,
                context! {
                    question => &item.question,
                    choices => choices,
                    section => section_title(lesson, &item.section),
                },
            )?;
            telemetry::quiz("quiz_question", "asked");
            let mut reply = self.tutor_reply(text, ReplyKind::QuizQuestion, Vec::new());
            reply.quiz = Some(quiz_info(item));
            return Ok((reply, None));
        };
        let item = items.iter().find(|i| &i.id == id).ok_or_else(|| {
            ChatError::InvalidMessage(format!(
                "lesson `{}` has no quiz item `{id}`; ask for a question with `mode: \"quiz\"` and no `quiz_item`",
                lesson.id
            ))
        })?;
        // Meaning as one signal beside the words: the reply's nearness to the expected answer
        // (or one it accepts) and to the lesson's other answers, when the index holds their
        // vectors.
        let nearness = question.meaning.as_deref().and_then(|reply| {
            let nearest = |answers: &mut dyn Iterator<Item = &String>| {
                answers
                    .filter_map(|answer| self.retriever.quiz_vector(answer))
                    .map(|answer| crate::semantic::similarity(reply, &answer))
                    .reduce(f32::max)
            };
            let answer = nearest(&mut std::iter::once(&item.answer).chain(&item.accept))?;
            let others = nearest(
                &mut items
                    .iter()
                    .filter(|other| other.id != item.id)
                    .flat_map(|other| std::iter::once(&other.answer).chain(&other.accept)),
            );
            Some(quiz::grade::Nearness {
                answer,
                others: others.unwrap_or(0.0).max(0.0),
            })
        });
        let settings = self.retriever.settings();
        let grade = quiz::grade::grade_with_meaning(
            words,
            item,
            &question.message,
            nearness,
            quiz::grade::MeaningRule {
                threshold: settings.grade_similarity,
                margin: settings.grade_margin,
            },
        );
        let passage = quiz::passage_for(words, lesson, item);
        // A try left: a reply not yet right gets a hint and another go, not the answer.
        let tries_left = super::QUIZ_TRIES.saturating_sub(question.quiz_attempt);
        // Only a reply not yet right needs it, unless a model may grade it otherwise.
        let may_retry = grade != Grade::Correct || self.has_model();
        let retry = (tries_left > 0 && may_retry && passage.is_some()).then(|| {
            let term = passage
                .and_then(|p| quiz::key_word(words, &item.question, &p.text, Some(&item.answer)));
            Retry {
                term: term.unwrap_or_default(),
                question: item.question.clone(),
                choices: item.choices.clone(),
                tries_left,
            }
        });
        let section = section_title(lesson, &item.section).to_string();
        let guard = Guard::new(words, Some(item.id.clone()), &item.answer);
        let reveal = Reveal {
            // A section title may itself be the answer ("Closed APIs"): while the answer is
            // kept back, the grade says "this section" instead.
            title_reveals: guard.revealed_by(words, &section),
            section,
            answer_quote: passage
                .and_then(|p| quiz::answer_sentence(words, &p.text, &item.answer))
                .map(str::to_string),
            // During an assessment nothing a wrong reply gets gives the answer, whatever a
            // model then says.
            assessment_withheld: question.hint_only && grade != Grade::Correct,
            retry,
        };
        let (text, tries_left) = self.grade_text(&lesson.language, grade, &reveal, "")?;
        // A question's grade is counted once, on its last try.
        if tries_left > 0 {
            telemetry::quiz("retry", grade.as_str());
        } else {
            telemetry::quiz("grade", grade.as_str());
        }
        let citations = passage
            .map(|p| vec![citation(1, lesson, p)])
            .unwrap_or_default();
        let mut reply = self.tutor_reply(text, ReplyKind::Grade, citations);
        reply.quiz = Some(QuizInfo {
            attempt: Some(question.quiz_attempt),
            tries_left: Some(tries_left),
            ..quiz_info(item)
        });
        reply.grade = Some(grade);
        let Some(passage) = passage else {
            return Ok((reply, None));
        };
        let prompt_lesson = PromptLesson {
            id: &lesson.id,
            title: &lesson.title,
            summary: &lesson.summary,
        };
        let request = ModelRequest {
            system: self.prompts.grade(
                &prompt_lesson,
                &item.question,
                &item.answer,
                &reveal.section,
                &passage.text,
            )?,
            history: Vec::new(),
            message: question.message.clone(),
            passages: vec![NumberedPassage {
                n: 1,
                section: reveal.section.clone(),
                text: passage.text.clone(),
                relevance: 1.0,
                meaning: None,
            }],
            terms: Vec::new(),
            easy: true,
            reading: Default::default(),
            language: lesson.language.clone(),
        };
        let checker = Checker::new(
            &self.analysis,
            self.prompts.clone(),
            &[(
                passage.id.as_str(),
                reveal.section.as_str(),
                passage.text.as_str(),
            )],
            &item.question,
            &lesson.title,
            &lesson.language,
        );
        let grading = Grading {
            request,
            checker,
            guard,
            lexical: grade,
            contradicted: quiz::grade::contradicts(words, item, &question.message),
            reveal,
            language: lesson.language.clone(),
        };
        Ok((reply, Some(grading)))
    }

    /// The words of a graded reply: the grade, then the model's verified explanation, or the
    /// lesson's own sentence, or a pointer to the section (and, with a try left, the question
    /// again); with the tries left after it.
    fn grade_text(
        &self,
        language: &str,
        grade: Grade,
        reveal: &Reveal,
        explanation: &str,
    ) -> Result<(String, u8), ChatError> {
        let (retry, withheld) = reveal.decide(grade);
        let quote = reveal.answer_quote.as_deref().filter(|_| !withheld);
        let section = if withheld && reveal.title_reveals {
            ""
        } else {
            &reveal.section
        };
        let tries_left = retry.map_or(0, |r| r.tries_left);
        let retry = retry.map(|r| {
            context! {
                term => &r.term,
                question => &r.question,
                choices => letters(&r.choices),
            }
        });
        let text = self.prompts.quiz(
            "grade",
            language,
            context! {
                grade => grade.as_str(),
                section => section,
                n => 1,
                quote => quote.unwrap_or(""),
                explanation => explanation,
                retry => retry,
            },
        )?;
        Ok((text, tries_left))
    }

    /// A model's grade of the reply `lexical` graded: its verdict is taken unless the reply
    /// contradicts the expected answer, and its explanation only as far as the verifier finds
    /// it in the passage. Any failure keeps the lexical grade.
    pub(super) async fn graded_by_model(&self, mut lexical: Answer, grading: Grading) -> Answer {
        let reply = match self.model_slot().await {
            Ok(_slot) => self.model.complete(&grading.request).await,
            Err(_) => {
                telemetry::quiz("model_grade", "busy");
                return lexical;
            }
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                tracing::warn!(%error, "the model could not grade; the lexical grade stands");
                telemetry::quiz("model_grade", "failed");
                return lexical;
            }
        };
        let Some((verdict, explanation)) = parse_grade(&reply.text) else {
            telemetry::quiz("model_grade", "unreadable");
            return lexical;
        };
        let grade = if grading.contradicted {
            grading.lexical
        } else {
            verdict
        };
        telemetry::quiz(
            "model_grade",
            if grade == grading.lexical {
                "agreed"
            } else {
                "changed"
            },
        );
        // A reply the model finds right needs no other try.
        let (_, withheld) = grading.reveal.decide(grade);
        let checker = if withheld {
            grading.checker.with_guards(vec![grading.guard])
        } else {
            grading.checker
        };
        let mut release = Release::new(false);
        release.push(explanation, &checker);
        release.finish(&checker);
        let verified = if release.answered() {
            release.shown().to_string()
        } else {
            String::new()
        };
        if let Ok((text, tries_left)) =
            self.grade_text(&grading.language, grade, &grading.reveal, &verified)
        {
            lexical.answer = text;
            lexical.grade = Some(grade);
            if let Some(quiz) = &mut lexical.quiz {
                quiz.tries_left = Some(tries_left);
            }
            lexical.backend = reply.backend;
            lexical.verification = Some(super::Verification::of(release.judged(), false));
            lexical.judged = release.judged().to_vec();
        }
        lexical
    }

    /// Quiz integrity for an ordinary question on `lesson`: a hint when it asks one of the
    /// quiz's own questions, otherwise the answers near it to keep out of the reply.
    ///
    /// With the question's `vector`, meaning counts too: a question near a quiz question in
    /// meaning asks it, or comes near it, whatever its words.
    pub(super) fn integrity(
        &self,
        question: &super::Question,
        lesson: &Lesson,
        vector: Option<&[f32]>,
    ) -> Guarding {
        let Some(quiz) = &lesson.quiz else {
            return Guarding::Answer(Vec::new(), Vec::new());
        };
        if quiz.items.is_empty() || (quiz.integrity == Integrity::Off && !question.hint_only) {
            return Guarding::Answer(Vec::new(), Vec::new());
        }
        let words = self.analysis.quiz_words(&lesson.language);
        let index = self.analysis.quiz_index(lesson);
        let asked = words.terms(&question.message);
        let nearness = vector.map(|vector| {
            let settings = self.retriever.settings();
            quiz::Nearness {
                similarities: index
                    .items()
                    .map(|item| {
                        self.retriever
                            .quiz_vector(&item.question)
                            .map_or(0.0, |v| crate::semantic::similarity(vector, &v))
                    })
                    .collect(),
                asked: settings.quiz_similarity,
                near: settings.quiz_near_similarity,
                margin: settings.quiz_margin,
            }
        });
        let kind = quiz::answer_kind(&question.message);
        let question_form = Some(quiz::form(&question.message));
        if let Some(item) = index.asked_in_form(&asked, kind, question_form, nearness.as_ref()) {
            return Guarding::Hint(item.clone());
        }
        let (guards, answers) = index.near(&asked, nearness.as_ref());
        Guarding::Answer(guards, answers)
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
        // The hint cites this one passage, shown as [1].
        let cited = Citation { n: 1, ..cited };
        let section = cited.section.clone();
        let n = cited.n;
        let guards: Vec<Guard> = avoid.iter().map(|a| Guard::new(words, None, a)).collect();
        let render = |section: &str, term: Option<&str>| {
            self.prompts.quiz(
                "hint",
                &lesson.language,
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
            text = render("", None)?;
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
        let cited = citation(1, lesson, passage);
        self.hint_reply(question, lesson, cited, reason, Some(item), &[&item.answer])
            .map(Some)
    }

    /// The items "quiz me" draws from on `lesson` (see [`quiz::items_of`]).
    pub fn quiz_items(&self, lesson: &Lesson) -> Vec<QuizItem> {
        self.analysis.quiz_index(lesson).to_ask().to_vec()
    }
}

/// Reads a model's `GRADE: correct | partly | not_yet` first line; returns the grade and the
/// explanation after it.
fn parse_grade(text: &str) -> Option<(Grade, &str)> {
    let text = text.trim_start();
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let verdict = first
        .trim()
        .trim_matches(['*', '`'])
        .strip_prefix("GRADE:")
        .or_else(|| first.trim().strip_prefix("Grade:"))?
        .trim()
        .trim_matches(['*', '`', '.'])
        .to_ascii_lowercase()
        .replace([' ', '-'], "_");
    let grade = match verdict.as_str() {
        "correct" => Grade::Correct,
        "partly" => Grade::Partly,
        "not_yet" => Grade::NotYet,
        _ => return None,
    };
    Some((grade, rest.trim()))
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
        attempt: None,
        tries_left: None,
    }
}

/// Choices with their letters, for the templates: `a) …`, `b) …`.
fn letters(choices: &[String]) -> Vec<minijinja::Value> {
    choices
        .iter()
        .zip('a'..='z')
        .map(|(text, letter)| context! { letter => letter.to_string(), text => text })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_grade_is_read_from_its_first_line_or_not_at_all() {
        let cases: &[(&str, Option<(Grade, &str)>)] = &[
            (
                "GRADE: correct\nWell done [1].",
                Some((Grade::Correct, "Well done [1].")),
            ),
            (
                "**GRADE: not yet**\nLook again [1].",
                Some((Grade::NotYet, "Look again [1].")),
            ),
            ("Grade: partly", Some((Grade::Partly, ""))),
            ("GRADE: excellent\nGreat.", None),
            ("You got it right!", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_grade(text), *expected, "{text}");
        }
    }
}
