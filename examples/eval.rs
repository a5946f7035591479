//! Quality evaluation on public data (`../shared/eval/`), with the embedded extractive answerer.
//!
//! ```text
//! cargo run --release --example eval -- squad   ../shared/eval/squad2-dev [--json]
//! cargo run --release --example eval -- scifact ../shared/eval/scifact   [--json]
//! ```
//!
//! squad: recall@1/@3 of the expected section, answered with the right section cited, gold
//! answer contained in the extractive answer, refusals on `refuse: true`, refusals of questions
//! asked in the wrong lesson (cross-lesson), and false refusals.
//! scifact: nDCG@10 and recall@100 of the Tantivy retriever, one passage per abstract.

#[path = "support/setup.rs"]
mod setup;
#[path = "support/squad.rs"]
mod squad;

use serde::Deserialize;
use serde_json::json;
use squad::ratio;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use tutor::chat::Question;
use tutor::lessons::{Catalog, Lesson, Passage, Section};
use tutor::retrieve::RetrievalSettings;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let as_json = args.iter().any(|a| a == "--json");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(kind), Some(dir)) = (positional.first(), positional.get(1)) else {
        anyhow::bail!("usage: eval squad|scifact DIR [--json]");
    };
    let dir = PathBuf::from(dir);
    let report = match kind.as_str() {
        "squad" => squad(&dir)?,
        "scifact" => scifact(&dir)?,
        other => anyhow::bail!("unknown evaluation `{other}`: use squad or scifact"),
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(map) = report.as_object() {
        for (key, value) in map {
            println!("{key:<32} {value}");
        }
    }
    Ok(())
}

/// Retrieval settings, adjustable for tuning: `EVAL_MIN_COVERAGE`, `EVAL_SECTION_BOOST`.
fn settings() -> RetrievalSettings {
    let mut settings = RetrievalSettings::default();
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f32>().ok());
    if let Some(value) = number("EVAL_MIN_COVERAGE") {
        settings.min_coverage = value;
    }
    if let Some(value) = number("EVAL_SURE_COVERAGE") {
        settings.sure_coverage = value;
    }
    if let Some(value) = number("EVAL_MARGIN") {
        settings.elsewhere_margin = value;
    }
    if let Some(value) = number("EVAL_SECTION_BOOST") {
        settings.section_boost = value;
    }
    settings
}

fn squad(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let (retriever, _index) = setup::load_and_index(&dir.join("lessons"), settings())?;
    let ids: Vec<String> = retriever
        .catalog()
        .lessons
        .iter()
        .map(|l| l.id.clone())
        .collect();
    let tutor = setup::extractive_tutor(retriever.clone());
    let runtime = tokio::runtime::Runtime::new()?;
    let questions = squad::questions(dir)?;

    let (mut answerable, mut r1, mut r3, mut answered, mut cited_right, mut contains) =
        (0, 0, 0, 0, 0, 0);
    let (mut unanswerable, mut refused_unanswerable) = (0, 0);
    let (mut cross, mut refused_cross) = (0, 0);
    for q in &questions {
        let section_of =
            |hit: &tutor::retrieve::Hit| hit.lesson.section_of(hit.passage()).slug.clone();
        let ask = |lesson: &str| {
            let question = Question::parse(lesson.to_string(), q.q.clone(), Vec::new())
                .expect("eval questions are valid");
            runtime
                .block_on(tutor.ask(question))
                .expect("extractive never fails")
        };
        if q.refuse {
            unanswerable += 1;
            let (answer, _) = ask(&q.lesson);
            refused_unanswerable += usize::from(answer.refused);
            continue;
        }
        answerable += 1;
        let (answer, retrieval) = ask(&q.lesson);
        let top: Vec<String> = retrieval.hits.iter().take(3).map(section_of).collect();
        r1 += usize::from(top.first() == Some(&q.section));
        r3 += usize::from(top.contains(&q.section));
        if !answer.refused {
            answered += 1;
            cited_right += usize::from(answer.citations.iter().any(|c| c.section_id == q.section));
            let lower = answer.answer.to_lowercase();
            let hit = q.answers.iter().any(|a| lower.contains(&a.to_lowercase()));
            contains += usize::from(hit);
            if !hit && std::env::var_os("EVAL_SHOW_GOLD").is_some() {
                eprintln!(
                    "GOLD-MISS {} {:?} gold {:?}\n     got: {}",
                    q.lesson, q.q, q.answers, answer.answer
                );
            }
        }
        // The same question asked in another lesson must be refused.
        let position = ids.iter().position(|id| *id == q.lesson).unwrap_or(0);
        let other = &ids[(position + 1) % ids.len()];
        cross += 1;
        let (answer, _) = ask(other);
        refused_cross += usize::from(answer.refused);
    }
    Ok(json!({
        "answerable": answerable,
        "recall_at_1": ratio(r1, answerable),
        "recall_at_3": ratio(r3, answerable),
        "answered_with_right_section_cited": ratio(cited_right, answerable),
        "gold_answer_contained": ratio(contains, answerable),
        "false_refusals": ratio(answerable - answered, answerable),
        "unanswerable": unanswerable,
        "refusal_on_unanswerable": ratio(refused_unanswerable, unanswerable),
        "cross_lesson": cross,
        "refusal_on_cross_lesson": ratio(refused_cross, cross),
    }))
}

#[derive(Deserialize)]
struct Abstract {
    #[serde(rename = "_id")]
    id: String,
    title: String,
    text: String,
}

#[derive(Deserialize)]
struct Claim {
    #[serde(rename = "_id")]
    id: String,
    text: String,
}

fn scifact(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let corpus = std::fs::read_to_string(dir.join("corpus.jsonl"))?;
    let mut lessons = Vec::new();
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        let doc: Abstract = serde_json::from_str(line)?;
        let id = format!("doc-{}", doc.id);
        lessons.push((
            PathBuf::from(&id),
            Lesson {
                id: id.clone(),
                title: doc.title.clone(),
                summary: String::new(),
                track: None,
                minutes: None,
                language: "en".to_string(),
                related: Vec::new(),
                sections: vec![Section {
                    slug: "abstract".to_string(),
                    title: doc.title,
                    level: 2,
                    line: 1,
                    body_offset: 0,
                }],
                passages: vec![Passage {
                    id: format!("{id}#abstract-1"),
                    section: 0,
                    text: doc.text,
                    line: 1,
                }],
                questions: Vec::new(),
                quiz: None,
                body: String::new(),
                hash: id,
            },
        ));
    }
    let (retriever, _index) = setup::index(Catalog::from_lessons(lessons, Vec::new()), settings())?;

    let mut relevant: HashMap<String, HashSet<String>> = HashMap::new();
    for line in std::fs::read_to_string(dir.join("qrels.test.tsv"))?
        .lines()
        .skip(1)
    {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() >= 3 && fields[2].trim() != "0" {
            relevant
                .entry(fields[0].to_string())
                .or_default()
                .insert(format!("doc-{}", fields[1]));
        }
    }
    let (mut ndcg, mut recall, mut n) = (0.0, 0.0, 0);
    for line in std::fs::read_to_string(dir.join("queries.test.jsonl"))?.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let claim: Claim = serde_json::from_str(line)?;
        let Some(wanted) = relevant.get(&claim.id) else {
            continue;
        };
        let ranked: Vec<String> = retriever
            .search(None, &claim.text, 100)
            .expect("search")
            .into_iter()
            .map(|h| h.lesson.id.clone())
            .collect();
        let dcg: f64 = ranked
            .iter()
            .take(10)
            .enumerate()
            .filter(|(_, id)| wanted.contains(*id))
            .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..wanted.len().min(10))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        ndcg += dcg / ideal;
        recall +=
            ranked.iter().filter(|id| wanted.contains(*id)).count() as f64 / wanted.len() as f64;
        n += 1;
    }
    Ok(json!({
        "queries": n,
        "ndcg_at_10": (ndcg / n as f64 * 1000.0).round() / 1000.0,
        "recall_at_100": (recall / n as f64 * 1000.0).round() / 1000.0,
    }))
}
