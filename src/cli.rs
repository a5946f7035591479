//! The `tutor` command line: `index`, `serve`, `ask`, `check`, `report`, `hash-key`,
//! `lti-key`. Parses flags (clap), builds the [`Config`], and runs the command. Output for
//! people goes to stdout; logs go to stderr.

use crate::app;
use crate::chat::{Answer, Mode, Question};
use crate::config::{Config, Overrides};
use crate::http::{self, AppState};
use crate::retrieve::Retrieval;
use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A grounded lesson tutor: answers learners' questions using only what the lesson says.
#[derive(Debug, Parser)]
#[command(name = "tutor", version, about)]
pub struct Cli {
    /// Folder of lesson Markdown files.
    #[arg(long, global = true, env = "TUTOR_LESSONS", value_name = "DIR")]
    lessons: Option<PathBuf>,
    /// Folder of the built Tantivy index.
    #[arg(long, global = true, env = "TUTOR_INDEX", value_name = "DIR")]
    index: Option<PathBuf>,
    /// Folder of the prompt templates.
    #[arg(long, global = true, env = "TUTOR_PROMPTS", value_name = "DIR")]
    prompts: Option<PathBuf>,
    /// Configuration file (default: tutor.toml in the working directory, if present).
    #[arg(long, global = true, env = "TUTOR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build or refresh the index from the lessons (only changed lessons are rewritten).
    Index,
    /// Serve the HTTP API, the lesson pages and the widget.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "TUTOR_ADDR", value_name = "HOST:PORT")]
        addr: Option<String>,
        /// Reload lessons, prompts and the index when they change (checked twice a second).
        #[arg(long)]
        watch: bool,
    },
    /// Ask one question about a lesson; prints the answer, citations and retrieval details.
    Ask {
        /// The lesson's id.
        #[arg(long)]
        lesson: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Earlier turns, for a follow-up: a JSON file (`-` for standard input) holding the
        /// `history` array of `POST /v1/chat`, `[{"role": "user", "content": "..."}, ...]`.
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// `answer`, `hint` (a nudge, not the answer) or `quiz` (with no question: a quiz
        /// question; with `--quiz-item`: the question is graded as the reply to that item).
        #[arg(long, value_enum, default_value = "answer")]
        mode: AskMode,
        /// With `--mode quiz`: the quiz item the words reply to.
        #[arg(long, value_name = "ID")]
        quiz_item: Option<String>,
        /// With `--quiz-item`: which try the reply is (1, the default, keeps the answer back
        /// from a reply not yet right and gives a hint; 2 shows it).
        #[arg(long, value_name = "N", requires = "quiz_item")]
        attempt: Option<u32>,
        /// The question (with `--mode quiz` and `--quiz-item`: the reply to grade).
        #[arg(num_args = 0..)]
        question: Vec<String>,
    },
    /// Print the SHA-256 digest of an API key, for `[[keys]]` in tutor.toml (reads the key from
    /// standard input when not given).
    HashKey {
        /// The key (prefer standard input: arguments end up in shell history).
        key: Option<String>,
    },
    /// Report what learners asked, per lesson and section, from the conversation log: refusal
    /// and thumbs-down rates, and clusters of questions the lessons could not answer.
    Report {
        /// The conversation log, a SQLite file or a postgres:// URL (default: `log` from
        /// tutor.toml or TUTOR_LOG_DB).
        #[arg(long, value_name = "FILE|URL")]
        log: Option<String>,
        /// Only this lesson.
        #[arg(long)]
        lesson: Option<String>,
        /// Only questions since this date (YYYY-MM-DD) or this many days (e.g. 7d).
        #[arg(long)]
        since: Option<String>,
        /// markdown (default), json or csv.
        #[arg(long, default_value = "markdown")]
        format: String,
    },
    /// List the LTI tool keys (the newest signs; all are published), or add one to rotate.
    LtiKey {
        /// Generate a new key; keep the old one until platforms have refetched the JWKS.
        #[arg(long)]
        new: bool,
    },
    /// Run every lesson's golden questions; exits non-zero if any fails.
    Check {
        /// Only this lesson.
        #[arg(long)]
        lesson: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            lessons: self.lessons.clone(),
            index: self.index.clone(),
            prompts: self.prompts.clone(),
            addr: match &self.command {
                Command::Serve { addr, .. } => addr.clone(),
                _ => None,
            },
        }
    }

    /// True for the long-running command, whose logs are wanted at `info`.
    pub fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve { .. })
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::HashKey { key } = &cli.command {
        let key = match key {
            Some(key) => key.clone(),
            None => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("cannot read the key")?;
                line
            }
        };
        anyhow::ensure!(!key.trim().is_empty(), "the key is empty");
        println!("{}", http::key_digest_hex(&key));
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(&cli.overrides())?;
    match cli.command {
        Command::Index => index(&config),
        Command::Serve { watch, .. } => serve(config, watch),
        Command::Ask {
            lesson,
            json,
            history,
            mode,
            quiz_item,
            attempt,
            question,
        } => ask(
            &config,
            lesson,
            question.join(" "),
            history.as_deref(),
            (mode.into(), quiz_item, attempt),
            json,
        ),
        Command::Check { lesson, json } => check(&config, lesson.as_deref(), json),
        Command::LtiKey { new } => lti_key(&config, new),
        Command::HashKey { .. } => Ok(ExitCode::SUCCESS),
        Command::Report {
            log,
            lesson,
            since,
            format,
        } => report(&config, log, lesson.as_deref(), since.as_deref(), &format),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn index(config: &Config) -> anyhow::Result<ExitCode> {
    let (catalog, report) = app::index(config)?;
    for problem in &catalog.problems {
        eprintln!("warning: {problem}");
    }
    println!(
        "indexed {} lessons ({} passages) into {} (version {}) in {:.0} ms: {} added, {} updated, {} removed, {} unchanged{}",
        catalog.lessons.len(),
        catalog.passage_count(),
        config.index_dir.display(),
        report.version,
        report.elapsed.as_secs_f64() * 1000.0,
        report.added,
        report.updated,
        report.removed,
        report.unchanged,
        if report.rebuilt {
            " (built from scratch)"
        } else {
            ""
        }
    );
    if catalog.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} broken file(s): fix them and run `tutor index` again (the rest were indexed)",
            catalog.problems.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

fn lti_key(config: &Config, new: bool) -> anyhow::Result<ExitCode> {
    let Some(lti) = &config.lti else {
        anyhow::bail!("LTI is not configured: add an [lti] section to tutor.toml");
    };
    if new {
        let path = crate::lti::keys::generate(&lti.keys_dir).map_err(anyhow::Error::msg)?;
        println!("added {}", path.display());
    }
    let keys =
        crate::lti::keys::ToolKeys::load_or_generate(&lti.keys_dir).map_err(anyhow::Error::msg)?;
    let kids = keys.kids();
    for (i, kid) in kids.iter().enumerate() {
        let role = if i + 1 == kids.len() {
            "signs"
        } else {
            "published"
        };
        println!("{kid}\t{role}");
    }
    println!(
        "{} key(s) in {}; JWKS at {}/.well-known/jwks.json",
        kids.len(),
        lti.keys_dir.display(),
        lti.base_url()
    );
    Ok(ExitCode::SUCCESS)
}

fn serve(config: Config, watch: bool) -> anyhow::Result<ExitCode> {
    // Before anything opens files: thousands of learners need more than the usual 1,024.
    let open_files = http::server::raise_open_files_limit();
    runtime()?.block_on(async move {
        tracing::info!(open_files, "open-files limit");
        let listener = http::server::listen(config.addr)
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        let local = listener.local_addr().context("no local address")?;
        let keys = http::Keys::new(&config.keys).map_err(anyhow::Error::msg)?;
        if keys.is_empty() && !config.addr.ip().is_loopback() {
            tracing::warn!(
                addr = %config.addr,
                "NO API KEYS ARE CONFIGURED AND THE TUTOR LISTENS BEYOND LOOPBACK: anyone who can reach it can use it (and your model budget). Add [[keys]] to tutor.toml and [limits]."
            );
        }
        let stores = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || app::Stores::open(&config))
                .await
                .context("opening the stores failed")??
        };
        if let Some(redis) = &stores.redis {
            redis.warm_up().await;
        }
        let lti = lti_for(&config, &stores, keys.is_empty())?;
        let state = AppState::new(config.cors_origins.clone())
            .with_keys(keys)
            .with_limits(config.limits.clone())
            .with_shared(stores.redis.clone())
            .with_lti(lti)
            .with_allowed_hosts(config.allowed_hosts.clone())
            .with_metrics_elsewhere(config.metrics_addr.is_some());
        if let Some(addr) = config.metrics_addr {
            serve_metrics(addr).await?;
        }
        if config.allowed_hosts.is_empty() && !config.addr.ip().is_loopback() {
            tracing::warn!(
                addr = %config.addr,
                "any Host name is accepted: list the names the tutor is reached by in `allowed_hosts` (tutor.toml) or TUTOR_ALLOWED_HOSTS to refuse DNS-rebinding requests"
            );
        }
        let failed = load_in_background(&config, &state, stores, watch);
        tracing::info!("listening on http://{local}");
        eprintln!("tutor: listening on http://{local}");
        serve_until_stopped(listener, state, config.shutdown_grace, failed).await
    })
}

/// LTI 1.3, when configured; refuses to run it with an open API unless `allow_open_api` says so.
fn lti_for(
    config: &Config,
    stores: &app::Stores,
    no_keys: bool,
) -> anyhow::Result<Option<crate::lti::Lti>> {
    let Some(settings) = &config.lti else {
        return Ok(None);
    };
    let lti = crate::lti::Lti::new(settings.clone())
        .map_err(anyhow::Error::msg)?
        .with_shared_nonces(stores.redis.clone(), stores.log.clone());
    tracing::info!(
        launch = %settings.launch_url(),
        platforms = settings.platforms.len(),
        "LTI 1.3 enabled"
    );
    if no_keys {
        if !config.allow_open_api {
            anyhow::bail!(
                "LTI is on but no API keys are configured, so the API would be open to anyone, not only to learners launched from the course (their session tokens would not be needed). Add one [[keys]] entry to close it, or set `allow_open_api = true` in tutor.toml to run open on purpose"
            );
        }
        tracing::warn!(
            "LTI is on but no API keys are configured, and allow_open_api = true: the API is open to anyone, not only to launched learners"
        );
    }
    Ok(Some(lti))
}

/// Serves `/metrics` on its own address (kept off the public port).
async fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let metrics = http::server::listen(addr)
        .with_context(|| format!("cannot listen on {addr} for /metrics"))?;
    tracing::info!("metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        if let Err(error) = http::serve_metrics(metrics, std::future::pending()).await {
            tracing::error!(%error, "the metrics listener failed");
        }
    });
    Ok(())
}

/// Loads the lessons, index and model off the async workers while the server already answers
/// `/healthz` (and `/readyz` with 503), then hands the tutor to `state` and follows changes.
/// The receiver gets the error when loading fails.
fn load_in_background(
    config: &Config,
    state: &AppState,
    stores: app::Stores,
    watch: bool,
) -> tokio::sync::oneshot::Receiver<anyhow::Error> {
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let state = state.clone();
    let config = config.clone();
    tokio::task::spawn_blocking(move || match app::load_with(&config, &stores) {
        Ok(loaded) => {
            for problem in &loaded.problems {
                tracing::warn!("{problem}");
            }
            tracing::info!(
                lessons = loaded.lessons,
                passages = loaded.passages,
                backend = %loaded.tutor.backend(),
                index_changed = !loaded.refresh.is_noop(),
                ms = loaded.elapsed.as_millis() as u64,
                "ready"
            );
            state.set_tutor(loaded.tutor);
            let follow = if watch {
                app::Follow::Everything
            } else {
                app::Follow::Index
            };
            tokio::runtime::Handle::current().spawn(app::watch(
                config,
                state,
                std::time::Duration::from_millis(500),
                follow,
            ));
        }
        Err(error) => {
            let _ = failed_tx.send(error);
        }
    });
    failed_rx
}

/// Serves until SIGTERM or Ctrl-C (then finishes requests in flight for at most `grace`), or
/// until loading fails (`failed`), which is then the error.
async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    state: AppState,
    grace: std::time::Duration,
    failed: tokio::sync::oneshot::Receiver<anyhow::Error>,
) -> anyhow::Result<ExitCode> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let failure = tokio::spawn(async move {
        match failed.await {
            Ok(error) => {
                let _ = stop_tx.send(());
                Some(error)
            }
            Err(_) => None,
        }
    });
    let stopping = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = stopping.clone();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => tracing::info!(
                "shutting down: finishing requests in flight"
            ),
            Ok(()) = stop_rx => {}
        }
        notify.notify_one();
    };
    let serving = state.clone();
    let mut server = tokio::spawn(http::serve(listener, serving, shutdown));
    let mut stopped_at = None;
    tokio::select! {
        served = &mut server => {
            served.context("the server task failed")?.context("the server failed")?;
        }
        _ = async {
            stopping.notified().await;
            stopped_at = Some(std::time::Instant::now());
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(seconds = grace.as_secs_f64(), "grace period over: closing the connections still open");
        }
    }
    // The conversation log's queue is in flight too: written before exit, within what is left
    // of the grace period (at least a second).
    let left = stopped_at
        .map_or(grace, |at| grace.saturating_sub(at.elapsed()))
        .max(std::time::Duration::from_secs(1));
    flush_log(&state, left).await;
    if failure.is_finished()
        && let Ok(Some(error)) = failure.await
    {
        return Err(error.context("cannot load the lessons"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes what the conversation log still holds, waiting at most `limit`; says so when some of
/// it could not be written.
async fn flush_log(state: &AppState, limit: std::time::Duration) {
    let Ok(tutor) = state.tutor() else { return };
    if tutor.logger().is_none() {
        return;
    }
    let flushed = tokio::task::spawn_blocking(move || {
        tutor
            .logger()
            .is_none_or(|logger| logger.flush_within(limit))
    })
    .await
    .unwrap_or(false);
    if flushed {
        tracing::info!("conversation log written");
    } else {
        crate::telemetry::log_dropped();
        tracing::warn!(
            seconds = limit.as_secs_f64(),
            "the conversation log could not be written in time: records still queued are lost"
        );
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn retrieval_json(retrieval: &Retrieval) -> serde_json::Value {
    json!({
        "gate": {
            "covered": retrieval.covered,
            "reason": retrieval.reason,
            "coverage": retrieval.coverage,
            "follow_up": retrieval.follow_up,
        },
        "terms": retrieval.terms,
        "passages": retrieval.hits.iter().map(|h| json!({
            "passage_id": h.passage().id,
            "section": h.lesson.section_of(h.passage()).title,
            "score": h.score,
            "coverage": h.coverage,
            "text": h.passage().text,
        })).collect::<Vec<_>>(),
    })
}

/// Reads a `history` array (as `POST /v1/chat` takes it) from a file, or standard input for `-`.
fn read_history(path: &Path) -> anyhow::Result<Vec<crate::llm::Turn>> {
    let (name, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        ("standard input".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        (path.display().to_string(), text)
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{name}:{}: not a history array ([{{\"role\": \"user\", \"content\": \"...\"}}, ...]): {e}",
            e.line()
        )
    })
}

/// What `tutor ask` asks for (`--mode`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AskMode {
    Answer,
    Hint,
    Quiz,
}

impl From<AskMode> for Mode {
    fn from(mode: AskMode) -> Mode {
        match mode {
            AskMode::Answer => Mode::Answer,
            AskMode::Hint => Mode::Hint,
            AskMode::Quiz => Mode::Quiz,
        }
    }
}

fn ask(
    config: &Config,
    lesson: String,
    question: String,
    history: Option<&Path>,
    (mode, quiz_item, attempt): (Mode, Option<String>, Option<u32>),
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let history = match history {
        None => Vec::new(),
        Some(path) => read_history(path)?,
    };
    let private = app::load_private(config)?;
    let loaded = &private.loaded;
    for problem in &loaded.problems {
        eprintln!("warning: {problem}");
    }
    let question = match (mode, quiz_item) {
        (Mode::Quiz, None) if question.trim().is_empty() => Question::quiz_me(lesson, Vec::new())?,
        (mode, item) => {
            anyhow::ensure!(
                !question.trim().is_empty(),
                "give a question (or, with `--mode quiz` and `--quiz-item`, the reply to grade)"
            );
            Question::parse(lesson, question, history)?
                .with_mode(mode, item)?
                .with_attempt(attempt)?
        }
    };
    let (answer, retrieval) = runtime()?.block_on(loaded.tutor.ask(question))?;
    let mut out = std::io::stdout().lock();
    if as_json {
        print_answer_json(&mut out, &answer, &retrieval)?;
    } else {
        print_answer(&mut out, &answer, &retrieval)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `tutor ask --json`: the answer as the API returns it, with how it was retrieved and each
/// sentence's verdict.
fn print_answer_json(
    out: &mut impl Write,
    answer: &Answer,
    retrieval: &Retrieval,
) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(answer)?;
    value["retrieval"] = retrieval_json(retrieval);
    if !answer.judged.is_empty() {
        value["sentences"] = answer
            .judged
            .iter()
            .map(|j| serde_json::json!({"text": j.text, "verdict": j.verdict.as_str(), "why": verdict_reason(&j.verdict)}))
            .collect();
    }
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    Ok(())
}

/// `tutor ask`: the answer, then for its author the quiz item, citations, each sentence's
/// verdict, the gate's decision and the passages retrieved.
fn print_answer(
    out: &mut impl Write,
    answer: &Answer,
    retrieval: &Retrieval,
) -> anyhow::Result<()> {
    writeln!(out, "{}", answer.answer)?;
    if let Some(quiz) = &answer.quiz {
        writeln!(
            out,
            "\nquiz item: {} (section {}){}",
            quiz.item_id,
            quiz.section_id,
            answer
                .grade
                .map(|g| format!("; graded {}", g.as_str()))
                .unwrap_or_default()
        )?;
    }
    if let Some(related) = &answer.related_lesson {
        writeln!(out, "\nsee: {} ({})", related.title, related.id)?;
    }
    if !answer.citations.is_empty() {
        writeln!(out, "\ncitations:")?;
        for c in &answer.citations {
            writeln!(out, "  [{}] {} ({})", c.n, c.section, c.passage_id)?;
        }
    }
    if let Some(verification) = &answer.verification {
        writeln!(
            out,
            "\nverified: {} sentence{}, {} removed, {} corrected{}",
            verification.sentences,
            if verification.sentences == 1 { "" } else { "s" },
            verification.removed,
            verification.corrected,
            if verification.fallback {
                "; answered from the lesson instead"
            } else {
                ""
            }
        )?;
        for judged in &answer.judged {
            let why = verdict_reason(&judged.verdict);
            writeln!(
                out,
                "  {:<11} {}{}",
                judged.verdict.as_str(),
                judged.text,
                if why.is_empty() {
                    String::new()
                } else {
                    format!("  ({why})")
                }
            )?;
        }
    }
    writeln!(
        out,
        "\ngate: {} ({:?}, best coverage {:.2}{}{}); backend: {}",
        if retrieval.covered {
            "answer"
        } else {
            "refuse"
        },
        retrieval.reason,
        retrieval.coverage,
        retrieval
            .similarity
            .map_or_else(String::new, |s| format!(", best similarity {s:.2}")),
        if retrieval.follow_up {
            ", follow-up"
        } else {
            ""
        },
        answer.backend
    )?;
    writeln!(out, "retrieved:")?;
    for hit in &retrieval.hits {
        let text: String = hit.passage().text.chars().take(90).collect();
        writeln!(
            out,
            "  {:>7.3}  cov {:.2}  {}  {}",
            hit.score,
            hit.coverage,
            hit.passage().id,
            text.replace('\n', " ")
        )?;
    }
    Ok(())
}

/// Why a sentence was removed or its citation changed, in words (empty when it simply stood).
fn verdict_reason(verdict: &crate::chat::verify::Verdict) -> String {
    use crate::chat::verify::Verdict;
    let cites = |ns: &[usize]| ns.iter().map(|n| format!("[{n}]")).collect::<String>();
    match verdict {
        Verdict::Unsupported(why) | Verdict::Undecided { why, .. } => why.to_string(),
        Verdict::Corrected { from, to } => {
            format!("cited {}, supported by {}", cites(from), cites(to))
        }
        Verdict::Supported { .. } | Verdict::Neutral => String::new(),
    }
}

fn report(
    config: &Config,
    log: Option<String>,
    lesson: Option<&str>,
    since: Option<&str>,
    format: &str,
) -> anyhow::Result<ExitCode> {
    use crate::conversation_log::LogTarget;
    let target = match log {
        Some(text) => LogTarget::parse(&text)?,
        None => config.log.clone().context(
            "no conversation log: pass --log FILE|URL, or set `log` in tutor.toml / TUTOR_LOG_DB",
        )?,
    };
    if let LogTarget::Sqlite(path) = &target {
        anyhow::ensure!(path.exists(), "no conversation log at {}", path.display());
    }
    let since = since
        .map(|s| crate::report::parse_since(s, crate::conversation_log::now()))
        .transpose()
        .map_err(anyhow::Error::msg)?
        .unwrap_or(0);
    let records = target.open()?.records(since, lesson)?;
    let private = app::load_private(config)?;
    let report = crate::report::build(&records, private.loaded.tutor.retriever());
    let text = match format {
        "markdown" | "md" => crate::report::markdown(&report),
        "json" => serde_json::to_string_pretty(&report)? + "\n",
        "csv" => crate::report::csv(&report),
        other => anyhow::bail!("unknown --format `{other}`: use markdown, json or csv"),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The outcome of one golden question.
struct CheckRow {
    lesson: String,
    question: String,
    judged: crate::chat::golden::Judged,
}

fn check(config: &Config, only: Option<&str>, as_json: bool) -> anyhow::Result<ExitCode> {
    let private = app::load_private(config)?;
    let loaded = &private.loaded;
    let catalog = loaded.tutor.retriever().catalog().clone();
    if let Some(id) = only
        && catalog.get(id).is_none()
    {
        anyhow::bail!("there is no lesson `{id}`");
    }
    let runtime = runtime()?;
    let mut rows = Vec::new();
    for lesson in catalog
        .lessons
        .iter()
        .filter(|l| only.is_none_or(|id| l.id == id))
    {
        for golden in &lesson.questions {
            let judged = runtime.block_on(loaded.tutor.judge_golden(&lesson.id, golden));
            rows.push(CheckRow {
                lesson: lesson.id.clone(),
                question: golden.q.clone(),
                judged,
            });
        }
        for item in lesson.quiz.iter().flat_map(|q| &q.items) {
            rows.push(CheckRow {
                lesson: lesson.id.clone(),
                question: format!("quiz {}: {}", item.id, item.question),
                judged: loaded.tutor.judge_quiz_item(lesson, item),
            });
        }
    }
    let failed = rows.iter().filter(|r| !r.judged.passed).count();
    let problems = &loaded.problems;
    let mut out = std::io::stdout().lock();
    if as_json {
        let value = json!({
            "passed": rows.len() - failed,
            "failed": failed,
            "problems": problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "questions": rows.iter().map(|r| json!({
                "lesson": r.lesson, "question": r.question,
                "expected": r.judged.expected_text(), "got": r.judged.got,
                "passed": r.judged.passed,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        for problem in problems {
            writeln!(out, "broken: {problem}")?;
        }
        let width = rows
            .iter()
            .map(|r| r.question.chars().count())
            .max()
            .unwrap_or(8)
            .min(60);
        writeln!(
            out,
            "{:<4}  {:<28}  {:<width$}  {:<40}  got",
            "", "lesson", "question", "expected"
        )?;
        for row in &rows {
            let question: String = row.question.chars().take(width).collect();
            writeln!(
                out,
                "{:<4}  {:<28}  {:<width$}  {:<40}  {}",
                if row.judged.passed { "ok" } else { "FAIL" },
                row.lesson,
                question,
                row.judged.expected_text(),
                row.judged.got
            )?;
        }
        let answered = rows
            .iter()
            .filter(|r| {
                r.judged.passed
                    && matches!(r.judged.expected, crate::chat::golden::Expected::Cited(_))
            })
            .count();
        let refused = rows
            .iter()
            .filter(|r| {
                r.judged.passed
                    && matches!(r.judged.expected, crate::chat::golden::Expected::Refused(_))
            })
            .count();
        let quiz = rows
            .iter()
            .filter(|r| {
                r.judged.passed
                    && matches!(
                        r.judged.expected,
                        crate::chat::golden::Expected::QuizAnswer(_)
                    )
            })
            .count();
        writeln!(
            out,
            "\n{} passed, {} failed ({} answered from the right section, {} refused as expected, {} quiz answers supported; {} broken files)",
            rows.len() - failed,
            failed,
            answered,
            refused,
            quiz,
            problems.len()
        )?;
    }
    Ok(if failed == 0 && problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
