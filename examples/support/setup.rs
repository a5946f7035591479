//! What the evaluation examples share besides the data: a catalog indexed into a temporary
//! folder, the `[SQUAD_DIR] [--json]` command line, which SQuAD articles are for tuning, and
//! the report printed set by set. Each example uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tutor::lessons::{Catalog, load_catalog};
use tutor::retrieve::{RetrievalSettings, Retriever};

/// A retriever over `catalog`, indexed into a temporary folder kept alive by the second value,
/// with the semantic model as the tutor runs by default (`TUTOR_SEMANTIC=off`: words alone).
pub fn index(
    catalog: Catalog,
    settings: RetrievalSettings,
) -> anyhow::Result<(Arc<Retriever>, tempfile::TempDir)> {
    index_with(catalog, settings, semantic()?)
}

/// [`index`] over the lessons in `dir`, none of which may be broken.
pub fn load_and_index(
    dir: &Path,
    settings: RetrievalSettings,
) -> anyhow::Result<(Arc<Retriever>, tempfile::TempDir)> {
    let catalog = load_catalog(dir)?;
    anyhow::ensure!(
        catalog.problems.is_empty(),
        "broken lessons: {:?}",
        catalog.problems
    );
    index(catalog, settings)
}

/// A tutor with the embedded answerer (as on a fresh clone) and the built-in prompts over
/// `retriever`.
pub fn extractive_tutor(retriever: Arc<Retriever>) -> tutor::chat::Tutor {
    tutor::chat::Tutor::new(
        retriever,
        Arc::new(tutor::prompts::Prompts::built_in()),
        Arc::new(tutor::llm::extractive::Extractive::new()),
    )
}

/// `catalog` with its lessons' quizzes taken out, for evaluations of what quiz integrity would
/// otherwise answer with a hint.
pub fn without_quizzes(mut catalog: Catalog) -> Catalog {
    for lesson in &mut catalog.lessons {
        if lesson.quiz.is_some() {
            Arc::make_mut(lesson).quiz = None;
        }
    }
    catalog
}

/// `[SQUAD_DIR] [--json]`: the SQuAD folder (default `../shared/eval/squad2-dev`) and whether
/// to print JSON.
pub fn squad_args() -> (PathBuf, bool) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let as_json = args.iter().any(|a| a == "--json");
    let squad = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or_else(|| PathBuf::from("../shared/eval/squad2-dev"), PathBuf::from);
    (squad, as_json)
}

/// The SQuAD articles tuned on: the first half of the lesson ids, alphabetically (the rest are
/// held out).
pub fn tune_articles(catalog: &Catalog) -> Vec<String> {
    let mut ids: Vec<String> = catalog.lessons.iter().map(|l| l.id.clone()).collect();
    ids.sort();
    ids.truncate(ids.len() / 2);
    ids
}

/// Prints a `{set: {row: figures}}` report, as JSON or as indented text with rows padded to
/// `width`.
pub fn print_sets(report: &serde_json::Value, as_json: bool, width: usize) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for (set, rows) in report.as_object().into_iter().flatten() {
        println!("{set}");
        for (row, figures) in rows.as_object().into_iter().flatten() {
            println!("  {row:<width$} {figures}");
        }
    }
    Ok(())
}

/// [`index`] with a semantic model: passage vectors computed into the index and questions
/// matched by meaning too.
pub fn index_with(
    catalog: Catalog,
    settings: RetrievalSettings,
    semantic: Option<Arc<tutor::semantic::Semantic>>,
) -> anyhow::Result<(Arc<Retriever>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    // `EVAL_INDEX_DIR` keeps each catalog's index between runs, so trying settings does not
    // embed every passage again.
    let path = match std::env::var("EVAL_INDEX_DIR") {
        Ok(kept) => {
            let first = catalog.lessons.first().map_or("empty", |l| l.id.as_str());
            Path::new(&kept).join(first)
        }
        Err(_) => dir.path().to_path_buf(),
    };
    tutor::index::refresh_with(&path, &catalog, semantic.as_deref())?;
    let retriever = Retriever::open_with(Arc::new(catalog), &path, settings, semantic)?;
    Ok((Arc::new(retriever), dir))
}

/// The semantic model evaluations use: `TUTOR_SEMANTIC_MODEL_DIR`, else the default cache;
/// none with `TUTOR_SEMANTIC=off`; an embeddings server with `TUTOR_SEMANTIC=remote` (its URL
/// from `TUTOR_SEMANTIC_BASE_URL`, else `OPENAI_BASE_URL`).
pub fn semantic() -> anyhow::Result<Option<Arc<tutor::semantic::Semantic>>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let providers = tutor::semantic::settings::Providers {
        named: &|_| None,
        base_url: env("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".to_string()),
    };
    let settings = tutor::semantic::SemanticSettings::read(None, &env, &providers)
        .map_err(anyhow::Error::msg)?;
    Ok(settings.load()?)
}

/// Retrieval settings with the JSON object in `TUNE` (if set) laid over the defaults, for trying
/// thresholds without rebuilding.
pub fn tuned_settings() -> anyhow::Result<RetrievalSettings> {
    let mut value = serde_json::to_value(RetrievalSettings::default())?;
    if let Ok(tune) = std::env::var("TUNE") {
        let over: serde_json::Value = serde_json::from_str(&tune)?;
        for (k, v) in over.as_object().into_iter().flatten() {
            value[k] = v.clone();
        }
    }
    Ok(serde_json::from_value(value)?)
}
