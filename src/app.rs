//! Start-up shared by every command: load the catalog, refresh the index, open the retriever,
//! load the prompts and pick the model. Returns what was found wrong along the way, so the
//! caller decides how loudly to report it.

use crate::chat::Tutor;
use crate::config::Config;
use crate::index::{self, RefreshReport};
use crate::lessons::{Catalog, Problem, load_catalog};
use crate::llm::ChatModel;
use crate::llm::chain::{Chain, Provider};
use crate::llm::extractive::Extractive;
use crate::llm::openai::OpenAiModel;
use crate::prompts::Prompts;
use crate::retrieve::Retriever;
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A loaded tutor and what happened while loading it.
pub struct Loaded {
    pub tutor: Tutor,
    /// Broken lesson or questions files (`path:line: reason`); the rest loaded.
    pub problems: Vec<Problem>,
    pub refresh: RefreshReport,
    pub lessons: usize,
    pub passages: usize,
    pub elapsed: Duration,
}

/// Loads lessons and refreshes the index only (`tutor index`).
pub fn index(config: &Config) -> anyhow::Result<(Catalog, RefreshReport)> {
    let catalog = load_catalog(&config.lessons_dir).with_context(|| {
        format!(
            "cannot read the lessons folder {}",
            config.lessons_dir.display()
        )
    })?;
    let report = index::refresh(&config.index_dir, &catalog).context("cannot build the index")?;
    Ok((catalog, report))
}

/// The model the configuration selects.
pub fn model(config: &Config) -> anyhow::Result<Arc<dyn ChatModel>> {
    if !config.providers.is_empty() {
        let mut providers = Vec::new();
        for provider in &config.providers {
            let model = OpenAiModel::new(provider.settings.clone())
                .with_context(|| format!("cannot set up provider `{}`", provider.name))?;
            providers.push(Provider {
                name: provider.name.clone(),
                model: Arc::new(model),
            });
        }
        let chain = Chain::new(
            providers,
            config.routing.easy.as_deref(),
            config.routing.hard.as_deref(),
            config.routing.extractive_fallback.unwrap_or(true),
        )
        .map_err(anyhow::Error::msg)?;
        return Ok(Arc::new(chain));
    }
    Ok(match &config.openai {
        Some(settings) => Arc::new(
            OpenAiModel::new(settings.clone())
                .context("cannot set up the OpenAI-compatible model")?,
        ),
        None => Arc::new(Extractive::new()),
    })
}

/// True when answers come from a model provider (and model calls need capping).
pub fn uses_provider(config: &Config) -> bool {
    config.openai.is_some() || !config.providers.is_empty()
}

/// Everything `serve`, `ask` and `check` need.
pub fn load(config: &Config) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let (catalog, refresh) = index(config)?;
    let problems = catalog.problems.clone();
    let lessons = catalog.lessons.len();
    let passages = catalog.passage_count();
    let retriever = Retriever::open(
        Arc::new(catalog),
        &config.index_dir,
        config.retrieval.clone(),
    )
    .context("cannot open the index")?;
    let prompts = Prompts::load(&config.prompts_dir).context("cannot load the prompts")?;
    let mut tutor = Tutor::new(Arc::new(retriever), Arc::new(prompts), model(config)?);
    if uses_provider(config) {
        tutor = tutor.with_model_slots(config.max_model_calls, config.model_queue);
    }
    if let Some(words) = config.routing.easy_max_words {
        tutor = tutor.with_easy_max_words(words);
    }
    Ok(Loaded {
        tutor,
        problems,
        refresh,
        lessons,
        passages,
        elapsed: started.elapsed(),
    })
}
