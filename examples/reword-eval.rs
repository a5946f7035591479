//! Questions in the learner's own words, with the embedded answerer: situations and synonyms
//! instead of the lesson's terms ("our data can't leave the building, which option fits?").
//!
//! ```text
//! cargo run --release --example reword-eval -- [SQUAD_DIR] [--json]
//! TUTOR_SEMANTIC=off cargo run --release --example reword-eval     # words alone, to compare
//! ```
//!
//! Sets, kept apart (`examples/reword-cases/`): `tune.toml` (four course lessons and the first
//! four SQuAD 2.0 articles) is what thresholds are tuned on; `holdout.toml` (the other three
//! course lessons and the last four articles) is only measured. The course cases are asked of
//! the sample course (`lessons/`), the SQuAD ones of the articles in `SQUAD_DIR/lessons` (default
//! `../shared/eval/squad2-dev`), each catalog indexed on its own.
//!
//! A case is *right* when the answer is not refused, cites an expected section, holds one of
//! the `contains` phrases (when given) and none of the `must_not` ones; *misleading* when it
//! holds a `must_not` phrase (the option the question rules out). Refusal cases are right when
//! refused. `TUNE='{"sure_similarity": 0.45}'` lays settings over the defaults;
//! `REWORD_SHOW=1` prints every miss.

#[path = "support/setup.rs"]
mod setup;

use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tutor::chat::{Question, Tutor};
use tutor::lessons::load_catalog;

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Expect {
    One(String),
    Any(Vec<String>),
}

#[derive(Deserialize)]
struct Case {
    lesson: String,
    question: String,
    expect: Expect,
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    must_not: Vec<String>,
}

#[derive(Default)]
struct Tally {
    answerable: usize,
    right: usize,
    right_section: usize,
    refused: usize,
    misleading: usize,
    refusals: usize,
    refused_right: usize,
}

fn ratio(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        (n as f64 * 1000.0 / of as f64).round() / 1000.0
    }
}

fn main() -> anyhow::Result<()> {
    let (squad, as_json) = setup::squad_args();
    let show = std::env::var("REWORD_SHOW").is_ok();
    let semantic = setup::semantic()?;
    let settings = setup::tuned_settings()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut tutors: BTreeMap<String, Tutor> = BTreeMap::new();
    let mut keep = Vec::new();
    let mut catalogs = vec![here.join("lessons")];
    if squad.join("lessons").is_dir() {
        catalogs.push(squad.join("lessons"));
    }
    for dir in catalogs {
        let catalog = load_catalog(&dir)?;
        let ids: Vec<String> = catalog.lessons.iter().map(|l| l.id.clone()).collect();
        let (retriever, index) = setup::index_with(catalog, settings.clone(), semantic.clone())?;
        let tutor = setup::extractive_tutor(Arc::clone(&retriever));
        for id in ids {
            tutors.insert(id, tutor.clone());
        }
        keep.push(index);
    }
    let mut report = serde_json::Map::new();
    for set in ["tune", "holdout"] {
        let path = here.join(format!("examples/reword-cases/{set}.toml"));
        let cases: Cases = toml::from_str(&std::fs::read_to_string(&path)?)?;
        let mut tally = Tally::default();
        for case in &cases.case {
            let Some(tutor) = tutors.get(&case.lesson) else {
                continue; // a SQuAD case without the SQuAD folder
            };
            let question = Question::parse(case.lesson.clone(), case.question.clone(), Vec::new())
                .map_err(|e| anyhow::anyhow!("{}: {e}", case.question))?;
            let (answer, _) = runtime
                .block_on(tutor.ask(question))
                .map_err(|e| anyhow::anyhow!("{}: {e}", case.question))?;
            let text = answer.answer.to_lowercase();
            let expected: Vec<&str> = match &case.expect {
                Expect::One(one) => vec![one.as_str()],
                Expect::Any(any) => any.iter().map(String::as_str).collect(),
            };
            let verdict = if expected == ["refuse"] {
                tally.refusals += 1;
                tally.refused_right += usize::from(answer.refused);
                if answer.refused { "right" } else { "answered" }
            } else {
                tally.answerable += 1;
                let section = answer
                    .citations
                    .iter()
                    .any(|c| expected.contains(&c.section_id.as_str()));
                let holds = case.contains.is_empty()
                    || case
                        .contains
                        .iter()
                        .any(|p| text.contains(&p.to_lowercase()));
                let misleads = case
                    .must_not
                    .iter()
                    .any(|p| text.contains(&p.to_lowercase()));
                if answer.refused {
                    tally.refused += 1;
                    "refused"
                } else if misleads {
                    tally.misleading += 1;
                    "misleading"
                } else {
                    tally.right_section += usize::from(section);
                    if section && holds {
                        tally.right += 1;
                        "right"
                    } else if section {
                        "right section, phrase missing"
                    } else {
                        "wrong section"
                    }
                }
            };
            if show && verdict != "right" {
                println!(
                    "[{set}] {verdict}: {} / {}\n    -> {}",
                    case.lesson, case.question, answer.answer
                );
            }
        }
        report.insert(
            set.to_string(),
            json!({
                "answerable": json!({
                    "cases": tally.answerable,
                    "right": ratio(tally.right, tally.answerable),
                    "right_section": ratio(tally.right_section, tally.answerable),
                    "refused": ratio(tally.refused, tally.answerable),
                    "misleading": tally.misleading,
                }),
                "not_covered": json!({
                    "cases": tally.refusals,
                    "refused": ratio(tally.refused_right, tally.refusals),
                }),
            }),
        );
    }
    let report = json!({
        "semantic": semantic.as_ref().map(|s| s.identity().to_string()),
        "sets": report,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("semantic: {}", report["semantic"]);
        setup::print_sets(&report["sets"], false, 12)?;
    }
    Ok(())
}
