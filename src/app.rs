//! Start-up shared by every command: load the catalog, refresh the index, open the retriever,
//! load the prompts and pick the model. Returns what was found wrong along the way, so the
//! caller decides how loudly to report it.

use crate::chat::Tutor;
use crate::config::Config;
use crate::conversation_log::LogStore;
use crate::http::AppState;
use crate::index::{self, RefreshReport};
use crate::lessons::{Catalog, Problem, load_catalog};
use crate::llm::ChatModel;
use crate::llm::chain::{Chain, Provider};
use crate::llm::extractive::Extractive;
use crate::llm::openai::OpenAiModel;
use crate::prompts::Prompts;
use crate::retrieve::Retriever;
use crate::semantic::{Semantic, SemanticSettings};
use crate::shared::Shared;
use anyhow::Context;
use std::sync::{Arc, Mutex};
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

/// The lessons folder, parsed.
fn lessons(config: &Config) -> anyhow::Result<Catalog> {
    load_catalog(&config.lessons_dir).with_context(|| {
        format!(
            "cannot read the lessons folder {}",
            config.lessons_dir.display()
        )
    })
}

/// Loads lessons and refreshes the index only (`tutor index`, which always writes).
pub fn index(config: &Config) -> anyhow::Result<(Catalog, RefreshReport)> {
    let catalog = lessons(config)?;
    let semantic = semantic(config);
    let report = index::refresh_with(&config.index_dir, &catalog, semantic.as_deref())
        .context("cannot build the index")?;
    Ok((catalog, report))
}

/// The semantic model the configuration names, loaded once per process (reloads and, in tests,
/// every tutor of the process share it). When it cannot be loaded, one warning says why and
/// the tutor matches words alone.
pub fn semantic(config: &Config) -> Option<Arc<Semantic>> {
    static LOADED: Mutex<Vec<(SemanticSettings, Option<Arc<Semantic>>)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, semantic)) = loaded.iter().find(|(s, _)| *s == config.semantic) {
        return semantic.clone();
    }
    let semantic = match config.semantic.load() {
        Ok(semantic) => semantic,
        Err(error) => {
            tracing::warn!(
                "no semantic model ({error}): questions are matched by their words only. Install the model as docs/using.md says, or set TUTOR_SEMANTIC=off to silence this"
            );
            None
        }
    };
    if let Some(semantic) = &semantic {
        tracing::info!(model = %semantic.identity(), "semantic model loaded");
    }
    loaded.push((config.semantic.clone(), semantic.clone()));
    semantic
}

/// Brings the index in line with `catalog`, or, with `index_read_only`, takes the version built
/// elsewhere as it is (never written), reporting lessons whose files differ from what was
/// indexed (a replica deployed with other lesson files than its index was built from).
fn index_for(config: &Config, catalog: &Catalog) -> anyhow::Result<RefreshReport> {
    if !config.index_read_only {
        return index::refresh_with(&config.index_dir, catalog, semantic(config).as_deref())
            .context("cannot refresh the index");
    }
    let (version, _) = index::current_version(&config.index_dir).with_context(|| {
        format!(
            "no index at {} (index_read_only is set): build it with `tutor index`",
            config.index_dir.display()
        )
    })?;
    let different = index::differences(&config.index_dir, catalog);
    if let Some(first) = different.first() {
        tracing::warn!(
            lessons = different.len(),
            first = %first,
            %version,
            "the read-only index was built from other lesson files than these"
        );
    }
    Ok(RefreshReport {
        unchanged: catalog.lessons.len(),
        version,
        ..RefreshReport::default()
    })
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

/// Opens the index for `catalog` and loads the prompts: what every load and reload builds.
fn open_parts(config: &Config, catalog: Catalog) -> anyhow::Result<(Arc<Retriever>, Arc<Prompts>)> {
    let retriever = Retriever::open_with(
        Arc::new(catalog),
        &config.index_dir,
        config.retrieval.clone(),
        semantic(config),
    )
    .context("cannot open the index")?;
    let prompts = Prompts::load(&config.prompts_dir).context("cannot load the prompts")?;
    Ok((Arc::new(retriever), Arc::new(prompts)))
}

/// What the tutor keeps outside the process: the conversation log's database and Redis, each
/// when configured. Opened once and shared by the tutor, LTI and the rate limiter.
#[derive(Clone, Default)]
pub struct Stores {
    pub log: Option<Arc<dyn LogStore>>,
    pub redis: Option<Arc<Shared>>,
}

impl Stores {
    /// Opens the configured log (creating or migrating it; a database that cannot be reached
    /// is an error) and a handle on Redis (connected on first use, so a Redis that is down
    /// does not stop the tutor).
    pub fn open(config: &Config) -> anyhow::Result<Stores> {
        let log = match &config.log {
            Some(target) => Some(
                target
                    .open()
                    .with_context(|| format!("cannot open the conversation log at {target}"))?,
            ),
            None => None,
        };
        let redis = match &config.redis_url {
            Some(url) => Some(Shared::new(url).map_err(anyhow::Error::msg)?),
            None => None,
        };
        Ok(Stores { log, redis })
    }
}

/// Everything `serve`, `ask` and `check` need.
pub fn load(config: &Config) -> anyhow::Result<Loaded> {
    load_with(config, &Stores::open(config)?)
}

/// [`load`] with stores already opened (`serve` shares them with LTI and the rate limiter).
pub fn load_with(config: &Config, stores: &Stores) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let catalog = lessons(config)?;
    let refresh = index_for(config, &catalog)?;
    let problems = catalog.problems.clone();
    let lessons = catalog.lessons.len();
    let passages = catalog.passage_count();
    let (retriever, prompts) = open_parts(config, catalog)?;
    let mut tutor = Tutor::new(retriever, prompts, model(config)?);
    if uses_provider(config) {
        tutor = tutor
            .with_model_slots(config.max_model_calls, config.model_queue)
            .with_translation();
    }
    if let Some(verify) = &config.verify {
        let model = OpenAiModel::new(verify.settings.clone())
            .context("cannot set up the verifier model of `[verify]`")?;
        tutor = tutor.with_second_opinion(crate::chat::second::SecondOpinion::new(
            Arc::new(model),
            verify.timeout,
        ));
    }
    if let Some(words) = config.routing.easy_max_words {
        tutor = tutor.with_easy_max_words(words);
    }
    if let Some(store) = &stores.log {
        let redactor = crate::conversation_log::Redactor::new(&config.log_redact)
            .map_err(anyhow::Error::msg)?;
        tutor = tutor.with_logger(crate::conversation_log::Logger::start_redacting(
            store.clone(),
            config.log_retention,
            redactor,
        ));
    }
    tutor = tutor.with_shared(stores.redis.clone());
    Ok(Loaded {
        tutor,
        problems,
        refresh,
        lessons,
        passages,
        elapsed: started.elapsed(),
    })
}

/// A tutor for an author's command (`tutor check`, `ask`, `report`) that changes nothing
/// learners get: it reads the lesson files as they are now, over a scratch copy of the published
/// index (see [`index::Scratch`]), and writes to no log. Only `tutor index` and `serve --watch`
/// publish.
pub struct Private {
    pub loaded: Loaded,
    /// Kept until the tutor is dropped (fields drop in order: the tutor first).
    _scratch: Option<index::Scratch>,
}

/// Loads a [`Private`] tutor.
pub fn load_private(config: &Config) -> anyhow::Result<Private> {
    if config.index_read_only {
        let loaded = load_with(config, &Stores::default())?;
        return Ok(Private {
            loaded,
            _scratch: None,
        });
    }
    let scratch = index::Scratch::new(&config.index_dir).context("cannot copy the index")?;
    let mut private = config.clone();
    private.index_dir = scratch.path().to_path_buf();
    let loaded = load_with(&private, &Stores::default())?;
    Ok(Private {
        loaded,
        _scratch: Some(scratch),
    })
}

/// Reloads lessons, index and prompts for a running tutor, keeping the last good version of any
/// lesson an edit broke. The model and its limits are kept.
pub fn reload(
    config: &Config,
    current: &Tutor,
) -> anyhow::Result<(Tutor, Vec<Problem>, RefreshReport)> {
    let served = current.retriever().catalog();
    let catalog = lessons(config)?.keeping_last_good(served);
    let mut refresh = index_for(config, &catalog)?;
    // What learners get now against what they got: the index may have been published by
    // `tutor index` before this reload saw it, so its own report can be all zeros.
    let (added, updated, removed) = changes(served, &catalog);
    refresh.added = added;
    refresh.updated = updated;
    refresh.removed = removed;
    refresh.unchanged = catalog.lessons.len() - added - updated;
    let problems = catalog.problems.clone();
    let (retriever, prompts) = open_parts(config, catalog)?;
    Ok((current.reloaded(retriever, prompts), problems, refresh))
}

/// The lessons added, updated and removed from `served` to `now` (compared by id and hash).
fn changes(served: &Catalog, now: &Catalog) -> (usize, usize, usize) {
    let before: std::collections::HashMap<&str, &str> = served
        .lessons
        .iter()
        .map(|l| (l.id.as_str(), l.hash.as_str()))
        .collect();
    let mut added = 0;
    let mut updated = 0;
    for lesson in &now.lessons {
        match before.get(lesson.id.as_str()) {
            None => added += 1,
            Some(hash) if *hash != lesson.hash => updated += 1,
            Some(_) => {}
        }
    }
    let removed = served
        .lessons
        .iter()
        .filter(|l| now.get(&l.id).is_none())
        .count();
    (added, updated, removed)
}

/// What a running `serve` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// `serve --watch`: lesson, questions and prompt files, and the index.
    Everything,
    /// Plain `serve`: only the index's current version, which `tutor index` switches when
    /// lessons change, so an author's `tutor index` (or a new build artifact) is picked up
    /// without restarting (editing a file alone is not).
    Index,
}

/// What the watcher compares: with [`Follow::Everything`], every lesson, questions and prompt
/// file with its size and modification time; always the index's current version (so
/// `tutor index` run elsewhere is seen too).
fn fingerprint(config: &Config, follow: Follow) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut visit = |dir: &std::path::Path, recurse: bool| {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
            entries.sort_by_key(|e| e.path());
            for entry in entries {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    if recurse {
                        stack.push(path);
                    }
                    continue;
                }
                path.hash(&mut hasher);
                meta.len().hash(&mut hasher);
                meta.modified().ok().hash(&mut hasher);
            }
        }
    };
    if follow == Follow::Everything {
        visit(&config.lessons_dir, true);
        visit(&config.prompts_dir, false);
    }
    index::current_version(&config.index_dir).hash(&mut hasher);
    hasher.finish()
}

/// Checks what `follow` names every `every`; on a change, reloads and swaps the tutor
/// atomically (requests in flight finish on the old one).
pub async fn watch(config: Config, state: AppState, every: Duration, follow: Follow) {
    let config = Arc::new(config);
    let mut last = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || fingerprint(&config, follow))
            .await
            .unwrap_or(0)
    };
    loop {
        tokio::time::sleep(every).await;
        let Ok(current) = state.tutor() else { continue };
        let config = config.clone();
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            if fingerprint(&config, follow) == last {
                return Ok(None);
            }
            let reloaded = reload(&config, &current)?;
            // Taken after the reload, which may have switched the index's version itself.
            Ok(Some((fingerprint(&config, follow), reloaded)))
        })
        .await;
        state.reload_checked();
        match result {
            Ok(Ok(Some((now, (tutor, problems, refresh))))) => {
                for problem in &problems {
                    tracing::warn!("{problem}");
                }
                tracing::info!(
                    added = refresh.added,
                    updated = refresh.updated,
                    removed = refresh.removed,
                    version = %refresh.version,
                    "lessons reloaded"
                );
                state.set_tutor(tutor);
                last = now;
            }
            Ok(Ok(None)) => {}
            // The index may be locked by a `tutor index` running now: try again next tick.
            Ok(Err(error)) => tracing::warn!("reload failed, will retry: {error:#}"),
            Err(error) => tracing::error!(%error, "reload task failed"),
        }
    }
}
