//! Conversations as learners have them, with the embedded answerer: follow-ups that need the
//! history, off-topic follow-ups, questions in other languages, small talk.
//!
//! ```text
//! cargo run --release --example conversation-eval -- [SQUAD_DIR] [--json]
//! ```
//!
//! Sets, kept apart:
//! - the sample course's hand-written cases (`examples/conversation-cases/`): a tuning file over
//!   four lessons and a held-out file over the other three;
//! - SQuAD 2.0 dev articles (`SQUAD_DIR`, default `../shared/eval/squad2-dev`), the first four
//!   articles (alphabetically) for tuning and the last four held out: every answerable question
//!   followed by one of a hand-written list of off-topic follow-ups (which must be refused), and
//!   by another question on the same section (which must be answered from it with the first
//!   turn as history).
//!
//! - questions in other languages (`examples/conversation-cases/languages.toml`), answered through
//!   a stand-in model: it translates a question as the file says a model could, answers from the
//!   passages as the embedded answerer does, and renders the answer back unchanged; measured is
//!   whether the tutor answers from the right section once the question is translated.
//!
//! Each turn's answer becomes the next turn's history, as the widget sends it.
//! `CONVERSATION_EVAL_SHOW=1` prints every miss.

#[path = "support/setup.rs"]
mod setup;
#[path = "support/squad.rs"]
#[allow(dead_code)]
mod squad;

use serde::Deserialize;
use serde_json::json;
use squad::ratio;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tutor::chat::{Answer, Question, ReplyKind, Tutor};
use tutor::llm::extractive::Extractive;
use tutor::llm::{ChatModel, ModelError, ModelRequest, Reply, ReplyStream, Role, Turn};
use tutor::prompts::Prompts;

/// Off-topic follow-ups, written to sit after any on-topic question.
const OFF_TOPIC: &[&str] = &[
    "How do I cook risotto?",
    "What about pizza?",
    "What is 2+2?",
    "and how tall is Mount Everest?",
    "Who won the last football world cup?",
    "what about its calories?",
    "Can you write me a poem about cats?",
    "What is the capital of Australia?",
    "and what about my car insurance?",
    "How do I bake sourdough bread?",
    "and the weather tomorrow?",
    "How do I make pancakes?",
    "what about pizza toppings?",
    "What is 7 times 8?",
    "Who painted the Mona Lisa?",
    "and how do I fix a flat bicycle tyre?",
    "what about basketball?",
    "How far is the moon from here?",
    "What is a good name for my dog?",
    "and which smartphone should I buy?",
    "How do I tie a bow tie?",
    "What's the best way to learn the guitar?",
    "what about yoga for beginners?",
    "How many calories are in a banana?",
    "Can you recommend a good thriller movie?",
    "and what time does the supermarket close?",
    "How do I knit a scarf?",
    "What about chess openings?",
    "What is the recipe for lemonade?",
    "and who sings that song about umbrellas?",
];

#[derive(Deserialize)]
struct CaseFile {
    case: Vec<Case>,
}

#[derive(Deserialize, Clone)]
struct Case {
    group: String,
    lesson: String,
    turns: Vec<String>,
    expect: String,
    #[serde(default)]
    contains: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let (squad_dir, as_json) = setup::squad_args();
    let show = std::env::var_os("CONVERSATION_EVAL_SHOW").is_some();
    let runtime = tokio::runtime::Runtime::new()?;
    let mut report = serde_json::Map::new();

    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (course, _course_index) = tutor_over(&here.join("lessons"))?;
    for (name, file) in [
        ("course_tune", "course-tune.toml"),
        ("course_holdout", "course-holdout.toml"),
    ] {
        let text = std::fs::read_to_string(here.join("examples/conversation-cases").join(file))?;
        let cases: CaseFile = toml::from_str(&text)?;
        report.insert(name.to_string(), run(&runtime, &course, &cases.case, show)?);
    }

    let text = std::fs::read_to_string(here.join("examples/conversation-cases/languages.toml"))?;
    let cases: LanguageFile = toml::from_str(&text)?;
    for set in ["tune", "holdout"] {
        let cases: Vec<&LanguageCase> = cases.case.iter().filter(|c| c.set == set).collect();
        report.insert(
            format!("languages_{set}"),
            run_languages(&runtime, &here.join("lessons"), &cases, show)?,
        );
    }

    if squad_dir.join("questions.jsonl").exists() {
        let (tutor, _index) = tutor_over(&squad_dir.join("lessons"))?;
        let (tune, holdout) = squad_cases(&squad_dir, &tutor)?;
        for (name, cases) in [("squad_tune", tune), ("squad_holdout", holdout)] {
            report.insert(name.to_string(), run(&runtime, &tutor, &cases, show)?);
        }
    }
    setup::print_sets(&serde_json::Value::Object(report), as_json, 28)
}

#[derive(Deserialize)]
struct LanguageFile {
    case: Vec<LanguageCase>,
}

#[derive(Deserialize, Clone)]
struct LanguageCase {
    set: String,
    lesson: String,
    asked: String,
    translation: String,
    section: String,
}

/// A stand-in for a translating model: questions translated as the case file says, answers
/// written from the passages by the embedded answerer, renderings returned unchanged.
struct StandIn {
    answerer: Extractive,
    translations: BTreeMap<String, String>,
}

impl StandIn {
    fn reply(&self, request: &ModelRequest) -> Reply {
        let text = if request.system.contains("Translate the learner's message") {
            self.translations
                .get(&request.message)
                .cloned()
                .unwrap_or_else(|| request.message.clone())
        } else if request.system.contains("Translate the tutor's answer") {
            request.message.clone()
        } else {
            self.answerer.answer(request).join(" ")
        };
        Reply {
            backend: self.name(),
            text,
        }
    }
}

impl ChatModel for StandIn {
    fn name(&self) -> String {
        "openai:stand-in".to_string()
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> futures::future::BoxFuture<'a, Result<Reply, ModelError>> {
        let reply = self.reply(request);
        Box::pin(async move { Ok(reply) })
    }

    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> futures::future::BoxFuture<'a, Result<ReplyStream, ModelError>> {
        let reply = self.reply(request);
        Box::pin(async move { Ok(ReplyStream::of_pieces(reply.backend, vec![reply.text])) })
    }
}

/// Other-language questions through the stand-in: answered from the right section, and told
/// "not covered". (The stand-in renders answers unchanged, in English, so whether renderings pass
/// the faithfulness check is measured by the unit tests of `chat::translate`, not here.)
fn run_languages(
    runtime: &tokio::runtime::Runtime,
    lessons: &Path,
    cases: &[&LanguageCase],
    show: bool,
) -> anyhow::Result<serde_json::Value> {
    let (retriever, _index) = setup::load_and_index(lessons, setup::tuned_settings()?)?;
    let stand_in = StandIn {
        answerer: Extractive::new(),
        translations: cases
            .iter()
            .map(|c| (c.asked.clone(), c.translation.clone()))
            .collect(),
    };
    let tutor =
        Tutor::new(retriever, Arc::new(Prompts::built_in()), Arc::new(stand_in)).with_translation();
    let (mut right, mut not_covered) = (0, 0);
    for case in cases {
        let question = Question::parse(case.lesson.clone(), case.asked.clone(), Vec::new())
            .map_err(|e| anyhow::anyhow!("{}: {e}", case.asked))?;
        let (answer, _) = runtime
            .block_on(tutor.ask(question))
            .map_err(|e| anyhow::anyhow!("{}: {e}", case.asked))?;
        let hit = !answer.refused && cited(&answer).contains(&case.section.as_str());
        right += usize::from(hit);
        not_covered += usize::from(answer.refused);
        if show && !hit {
            eprintln!(
                "MISS [language] {} {:?} expected {}\n     got: {} ({:?}, cited {:?})",
                case.lesson,
                case.asked,
                case.section,
                answer.answer,
                answer.kind,
                cited(&answer)
            );
        }
    }
    let n = cases.len();
    Ok(json!({
        "n": n,
        "right_section": ratio(right, n),
        "told_not_covered": not_covered,
    }))
}

/// The sections an answer cites, in order.
fn cited(answer: &Answer) -> Vec<&str> {
    answer
        .citations
        .iter()
        .map(|c| c.section_id.as_str())
        .collect()
}

/// A tutor with the embedded answerer over the lessons in `dir`, with its index.
fn tutor_over(dir: &Path) -> anyhow::Result<(Tutor, tempfile::TempDir)> {
    let (retriever, index) = setup::load_and_index(dir, setup::tuned_settings()?)?;
    let tutor = setup::extractive_tutor(retriever);
    Ok((tutor, index))
}

/// Asks every case's turns in order and judges the last answer; ratios per group.
fn run(
    runtime: &tokio::runtime::Runtime,
    tutor: &Tutor,
    cases: &[Case],
    show: bool,
) -> anyhow::Result<serde_json::Value> {
    let mut groups: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for case in cases {
        let mut history: Vec<Turn> = Vec::new();
        let mut last: Option<Answer> = None;
        for turn in &case.turns {
            let question = Question::parse(case.lesson.clone(), turn.clone(), history.clone())
                .map_err(|e| anyhow::anyhow!("{turn}: {e}"))?;
            let (answer, _) = runtime
                .block_on(tutor.ask(question))
                .map_err(|e| anyhow::anyhow!("{turn}: {e}"))?;
            history.push(Turn {
                role: Role::User,
                content: turn.clone(),
            });
            history.push(Turn {
                role: Role::Assistant,
                content: answer.answer.clone(),
            });
            last = Some(answer);
        }
        let answer = last.ok_or_else(|| anyhow::anyhow!("a case without turns"))?;
        let right = match case.expect.as_str() {
            "refuse" => answer.refused,
            "small_talk" => answer.kind == ReplyKind::SmallTalk,
            "other_language" => answer.kind == ReplyKind::OtherLanguage,
            section => !answer.refused && cited(&answer).contains(&section),
        };
        let contains = case.contains.as_ref().is_none_or(|phrase| {
            answer
                .answer
                .to_lowercase()
                .contains(&phrase.to_lowercase())
        });
        // A question in another language told "not covered" is the failure that matters most.
        let told_not_covered = case.group == "other_language" && answer.refused;
        let entry = groups.entry(case.group.clone()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(right && contains);
        entry.2 += usize::from(told_not_covered);
        if show && !(right && contains) {
            eprintln!(
                "MISS [{}] {} {:?} expected {}{}\n     got: {} ({:?}, cited {:?})",
                case.group,
                case.lesson,
                case.turns,
                case.expect,
                case.contains
                    .as_ref()
                    .map(|c| format!(" containing {c:?}"))
                    .unwrap_or_default(),
                answer.answer,
                answer.kind,
                cited(&answer)
            );
        }
    }
    let mut out = serde_json::Map::new();
    for (group, (n, right, not_covered)) in groups {
        let mut value = json!({ "n": n, "right": ratio(right, n) });
        if group == "other_language" {
            value["told_not_covered"] = json!(not_covered);
        }
        out.insert(group, value);
    }
    Ok(serde_json::Value::Object(out))
}

/// SQuAD cases: each answerable question followed by an off-topic follow-up, and by another
/// question on the same section; split by article into tuning and held-out halves.
fn squad_cases(dir: &Path, tutor: &Tutor) -> anyhow::Result<(Vec<Case>, Vec<Case>)> {
    let questions = squad::questions(dir)?;
    let tune_ids = setup::tune_articles(tutor.retriever().catalog());
    let mut ids: Vec<String> = tutor
        .retriever()
        .catalog()
        .lessons
        .iter()
        .map(|l| l.id.clone())
        .collect();
    ids.sort();
    let answerable: Vec<&squad::SquadQuestion> = questions.iter().filter(|q| !q.refuse).collect();
    let (mut tune, mut holdout) = (Vec::new(), Vec::new());
    // The same off-topic messages as first questions, for comparison.
    for id in &ids {
        let cases = if tune_ids.contains(id) {
            &mut tune
        } else {
            &mut holdout
        };
        for message in OFF_TOPIC {
            cases.push(Case {
                group: "off_topic_first_question".to_string(),
                lesson: id.clone(),
                turns: vec![message.to_string()],
                expect: "refuse".to_string(),
                contains: None,
            });
        }
    }
    for (i, q) in answerable.iter().enumerate() {
        let off = Case {
            group: "off_topic_follow_up".to_string(),
            lesson: q.lesson.clone(),
            turns: vec![q.q.clone(), OFF_TOPIC[i % OFF_TOPIC.len()].to_string()],
            expect: "refuse".to_string(),
            contains: None,
        };
        // The next question on the same section, asked after this one.
        let next = answerable[i + 1..]
            .iter()
            .find(|n| n.lesson == q.lesson && n.section == q.section);
        let cases = if tune_ids.contains(&q.lesson) {
            &mut tune
        } else {
            &mut holdout
        };
        cases.push(off);
        if let Some(next) = next {
            cases.push(Case {
                group: "second_question_same_section".to_string(),
                lesson: q.lesson.clone(),
                turns: vec![q.q.clone(), next.q.clone()],
                expect: next.section.clone(),
                contains: None,
            });
        }
    }
    Ok((tune, holdout))
}
