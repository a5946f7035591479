//! One [`Config`], layered: defaults < `tutor.toml` < `TUTOR_*`/`OPENAI_*` environment < flags.
//!
//! The flag/environment layer arrives already merged by clap ([`Overrides`]); this module adds
//! the file and the defaults. Unknown keys in `tutor.toml` are rejected so typos do not pass
//! silently. Secrets come from the environment only, never from the file.

use crate::llm::openai::OpenAiSettings;
use crate::retrieve::RetrievalSettings;
use crate::semantic::SemanticSettings;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default address of `tutor serve`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Values given as flags or environment variables (already merged by clap).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub lessons: Option<PathBuf>,
    pub index: Option<PathBuf>,
    pub prompts: Option<PathBuf>,
    pub addr: Option<String>,
}

/// `[model]` in `tutor.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    base_url: Option<String>,
    model: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    connect_timeout_secs: Option<f64>,
    first_token_timeout_secs: Option<f64>,
    total_timeout_secs: Option<f64>,
    /// A PEM file of certificates to trust besides the system's (model servers behind a
    /// private certificate authority).
    ca_file: Option<PathBuf>,
}

/// An API key, configured by the SHA-256 digest of its text (`tutor hash-key KEY`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// A label for logs and rate limits (never the key itself).
    pub name: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// Set for a public widget key: the only page origins it is valid from.
    #[serde(default)]
    pub origins: Option<Vec<String>>,
}

/// Rate limits of the API, per server key or per client IP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Requests allowed at once before the sustained rate applies.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Header carrying the client's IP, e.g. `x-forwarded-for`, of which the last address (the one
    /// the proxy appended) is used; set only when
    /// a proxy you trust sets it, since clients can forge it.
    #[serde(default)]
    pub client_ip_header: Option<String>,
}

fn default_burst() -> u32 {
    10
}

/// One provider of a fallback chain (`[[providers]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    name: String,
    base_url: String,
    model: String,
    /// The environment variable holding this provider's key (keys never sit in the file).
    #[serde(default)]
    api_key_env: Option<String>,
}

/// `[verify]`: a second-opinion model for sentences the lexical verifier cannot decide.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileVerify {
    /// The verifier model's name.
    model: String,
    /// A `[[providers]]` entry whose URL and key to use.
    #[serde(default)]
    provider: Option<String>,
    /// Otherwise this URL (default: the answering model's, or OpenAI's).
    #[serde(default)]
    base_url: Option<String>,
    /// The environment variable holding its key (default: `OPENAI_API_KEY`).
    #[serde(default)]
    api_key_env: Option<String>,
    /// How long to wait for its verdicts before keeping the lexical ones (default 5).
    #[serde(default)]
    timeout_secs: Option<f64>,
}

/// The resolved `[verify]` section.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    pub settings: OpenAiSettings,
    /// How long to wait for its verdicts.
    pub timeout: Duration,
}

/// `[routing]`: which provider easy and other questions try first.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Provider name for easy questions (short, answered by one passage).
    #[serde(default)]
    pub easy: Option<String>,
    /// Provider name for the others.
    #[serde(default)]
    pub hard: Option<String>,
    /// Most words of an easy question.
    #[serde(default)]
    pub easy_max_words: Option<usize>,
    /// When every provider fails before its first word, answer with the extractive answerer
    /// (default true with `[[providers]]`).
    #[serde(default)]
    pub extractive_fallback: Option<bool>,
}

/// A named provider, resolved.
#[derive(Debug, Clone)]
pub struct NamedProvider {
    pub name: String,
    pub settings: OpenAiSettings,
}

/// `tutor.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    providers: Vec<FileProvider>,
    #[serde(default)]
    routing: Routing,
    #[serde(default)]
    keys: Vec<ApiKey>,
    limits: Option<RateLimits>,
    max_model_calls: Option<usize>,
    model_queue_secs: Option<f64>,
    /// The conversation log: a SQLite file or a `postgres://` URL; absent: no log.
    log: Option<String>,
    /// Redis, for rate limits, recent answer ids and LTI nonces shared by replicas.
    redis_url: Option<String>,
    /// Open the index read-only (a build artifact made by `tutor index`), never rebuilding it.
    index_read_only: Option<bool>,
    log_retention_days: Option<u32>,
    lessons: Option<PathBuf>,
    index: Option<PathBuf>,
    prompts: Option<PathBuf>,
    addr: Option<String>,
    cors_origins: Option<Vec<String>>,
    shutdown_grace_secs: Option<f64>,
    #[serde(default)]
    model: FileModel,
    #[serde(default)]
    retrieval: Option<RetrievalSettings>,
    lti: Option<crate::lti::LtiSettings>,
    verify: Option<FileVerify>,
    /// Regular expressions whose matches the conversation log replaces with `[redacted]`, on
    /// top of the built-in patterns.
    #[serde(default)]
    log_redact: Vec<String>,
    /// Lets LTI run with no `[[keys]]` (the API then stays open to anyone, not only launched
    /// learners).
    allow_open_api: Option<bool>,
    /// Serve `/metrics` on this address only (e.g. `127.0.0.1:9090`), not on the API's.
    metrics_addr: Option<String>,
    /// Host names (with `:port` when not the default) requests may be addressed to.
    allowed_hosts: Option<Vec<String>>,
    /// The sentence-embedding model that matches questions by meaning.
    semantic: Option<crate::semantic::settings::FileSemantic>,
}

/// Everything the tutor needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub lessons_dir: PathBuf,
    pub index_dir: PathBuf,
    pub prompts_dir: PathBuf,
    pub addr: SocketAddr,
    /// Origins (`scheme://host[:port]`) whose pages may call the API; `*` allows any.
    pub cors_origins: Vec<String>,
    /// `None`: the embedded extractive answerer (unless `providers` are listed).
    pub openai: Option<OpenAiSettings>,
    /// A fallback chain of providers, tried in order; takes precedence over `openai`.
    pub providers: Vec<NamedProvider>,
    pub routing: Routing,
    pub retrieval: RetrievalSettings,
    /// How long in-flight answers may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// API keys; empty: the API is open (fine on loopback).
    pub keys: Vec<ApiKey>,
    /// `None`: no rate limits.
    pub limits: Option<RateLimits>,
    /// Most model calls in flight at once (a provider's own limits sit behind this).
    pub max_model_calls: usize,
    /// How long a question waits for a model slot before `503 overloaded`.
    pub model_queue: Duration,
    /// The conversation log's database (`None`: no log, the default).
    pub log: Option<crate::conversation_log::LogTarget>,
    /// Redis (`redis://...`), shared by replicas; `None`: limits and recent answers are per
    /// process.
    pub redis_url: Option<String>,
    /// Serve the index as built by `tutor index`, never writing it (replicas sharing one).
    pub index_read_only: bool,
    /// Records older than this are pruned.
    pub log_retention: Duration,
    /// LTI 1.3 (`[lti]`); `None`: LMS launches are not configured.
    pub lti: Option<crate::lti::LtiSettings>,
    /// A second-opinion verifier model (`[verify]`); `None`: the lexical verifier decides alone.
    pub verify: Option<VerifySettings>,
    /// LTI may run with no API keys (the API open to anyone).
    pub allow_open_api: bool,
    /// The operator's own redaction patterns for the conversation log.
    pub log_redact: Vec<String>,
    /// `/metrics` on its own listener; `None`: on the API's (same-origin reads only).
    pub metrics_addr: Option<SocketAddr>,
    /// Hosts requests may name in `Host` (besides loopback names on a loopback address and the
    /// LTI URL's host); empty: any host, unless the tutor listens on loopback.
    pub allowed_hosts: Vec<String>,
    /// The sentence-embedding model (`[semantic]`, `TUTOR_SEMANTIC*`).
    pub semantic: SemanticSettings,
}

/// The process environment, as [`Config::load_from`] reads it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn seconds(value: Option<f64>, default: f64, name: &str) -> Result<Duration, ConfigError> {
    let value = value.unwrap_or(default);
    if !(value.is_finite() && value > 0.0 && value < 86_400.0) {
        return Err(ConfigError::Invalid(format!(
            "`{name}` must be a number of seconds between 0 and 86400"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

/// The certificates of `model.ca_file` (`TUTOR_MODEL_CA_FILE`), checked to be PEM holding at
/// least one certificate.
fn extra_roots(path: Option<PathBuf>) -> Result<Option<std::sync::Arc<[u8]>>, ConfigError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let invalid = |why: String| {
        ConfigError::Invalid(format!(
            "`model.ca_file` (TUTOR_MODEL_CA_FILE) {}: {why}",
            path.display()
        ))
    };
    let bytes = std::fs::read(&path).map_err(|e| invalid(e.to_string()))?;
    let certificates = pem::parse_many(&bytes)
        .map_err(|e| invalid(e.to_string()))?
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .count();
    if certificates == 0 {
        return Err(invalid("holds no PEM certificate".to_string()));
    }
    Ok(Some(bytes.into()))
}

/// The environment as [`Config::load_from`] reads it: an empty value is unset.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A whole number from the environment variable `name`, an error naming it when it is not one.
fn whole_number<T: std::str::FromStr>(env: Env<'_>, name: &str) -> Result<Option<T>, ConfigError> {
    env(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("{name} must be a whole number")))
        })
        .transpose()
}

/// A yes or no from the environment variable `name` (`1`/`true`/`yes`, `0`/`false`/`no`).
fn switch(env: Env<'_>, name: &str) -> Result<Option<bool>, ConfigError> {
    let Some(v) = env(name) else {
        return Ok(None);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(Some(true)),
        "0" | "false" | "no" => Ok(Some(false)),
        _ => Err(ConfigError::Invalid(format!(
            "{name} must be true or false (it is `{v}`)"
        ))),
    }
}

/// `TUTOR_LOG_RETENTION_DAYS`: at least one whole day.
fn log_retention_days(env: Env<'_>) -> Result<Option<u32>, ConfigError> {
    env("TUTOR_LOG_RETENTION_DAYS")
        .map(|d| {
            d.trim().parse::<u32>().ok().filter(|d| *d > 0).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "TUTOR_LOG_RETENTION_DAYS must be a whole number of days, at least 1 (it is `{d}`)"
                ))
            })
        })
        .transpose()
}

/// Rate limits: the file's `[limits]`, each value overridden by its environment variable
/// (`TUTOR_RATE_PER_MINUTE`, `TUTOR_RATE_BURST`, `TUTOR_CLIENT_IP_HEADER`); none when the rate
/// is 0.
fn rate_limits(file: &FileConfig, env: Env<'_>) -> Result<Option<RateLimits>, ConfigError> {
    let per_minute = whole_number(env, "TUTOR_RATE_PER_MINUTE")?;
    let burst = whole_number(env, "TUTOR_RATE_BURST")?;
    let header = env("TUTOR_CLIENT_IP_HEADER");
    let from_file = file.limits.clone();
    let limits = match per_minute {
        Some(per_minute) => Some(RateLimits {
            per_minute,
            burst: from_file.as_ref().map_or(default_burst(), |l| l.burst),
            client_ip_header: from_file.and_then(|l| l.client_ip_header),
        }),
        None => from_file,
    }
    .map(|mut limits| {
        limits.burst = burst.unwrap_or(limits.burst);
        limits.client_ip_header = header.or(limits.client_ip_header);
        limits
    })
    .filter(|l| l.per_minute > 0);
    if limits.as_ref().is_some_and(|l| l.burst == 0) {
        return Err(ConfigError::Invalid(
            "`limits.burst` must be at least 1".to_string(),
        ));
    }
    Ok(limits)
}

/// The models: the single OpenAI-compatible one (environment over `[model]`), the
/// `[[providers]]`, and the second opinion (`[verify]`).
struct Models {
    openai: Option<OpenAiSettings>,
    providers: Vec<NamedProvider>,
    verify: Option<VerifySettings>,
}

impl Models {
    fn read(file: &FileConfig, env: Env<'_>) -> Result<Models, ConfigError> {
        let model_file = &file.model;
        let api_key = env("OPENAI_API_KEY");
        let base_url = env("OPENAI_BASE_URL").or(model_file.base_url.clone());
        let model = env("TUTOR_MODEL").or(model_file.model.clone());
        // Limits and timeouts shared by the single model and every `[[providers]]` entry.
        let shared = OpenAiSettings {
            base_url: DEFAULT_BASE_URL.to_string(),
            api_key: String::new(),
            model: DEFAULT_MODEL.to_string(),
            max_tokens: model_file.max_tokens.unwrap_or(400),
            temperature: model_file.temperature.unwrap_or(0.2),
            connect_timeout: seconds(model_file.connect_timeout_secs, 5.0, "connect_timeout_secs")?,
            first_token_timeout: seconds(
                model_file.first_token_timeout_secs,
                20.0,
                "first_token_timeout_secs",
            )?,
            total_timeout: seconds(model_file.total_timeout_secs, 60.0, "total_timeout_secs")?,
            extra_roots: extra_roots(
                env("TUTOR_MODEL_CA_FILE")
                    .map(PathBuf::from)
                    .or(model_file.ca_file.clone()),
            )?,
        };
        let openai =
            (api_key.is_some() || base_url.is_some() || model.is_some()).then(|| OpenAiSettings {
                base_url: base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
                api_key: api_key.unwrap_or_default(),
                model: model.unwrap_or_else(|| DEFAULT_MODEL.to_string()),
                ..shared.clone()
            });
        let mut providers = Vec::new();
        for provider in &file.providers {
            let mut settings = shared.clone();
            settings.base_url = provider.base_url.clone();
            settings.model = provider.model.clone();
            settings.api_key = provider
                .api_key_env
                .as_deref()
                .and_then(&env)
                .unwrap_or_default();
            providers.push(NamedProvider {
                name: provider.name.clone(),
                settings,
            });
        }
        let verify = match &file.verify {
            None => None,
            Some(v) => {
                let mut settings = match &v.provider {
                        Some(name) => providers
                            .iter()
                            .find(|p| &p.name == name)
                            .map(|p| p.settings.clone())
                            .ok_or_else(|| {
                                ConfigError::Invalid(format!(
                                    "`verify.provider` names `{name}`, which is not a `[[providers]]` entry"
                                ))
                            })?,
                        None => openai.clone().unwrap_or_else(|| OpenAiSettings {
                            api_key: env("OPENAI_API_KEY").unwrap_or_default(),
                            ..shared.clone()
                        }),
                    };
                if v.model.trim().is_empty() {
                    return Err(ConfigError::Invalid(
                        "`verify.model` must name a model".to_string(),
                    ));
                }
                settings.model = v.model.clone();
                if let Some(url) = &v.base_url {
                    settings.base_url = url.clone();
                }
                if let Some(name) = &v.api_key_env {
                    settings.api_key = env(name).unwrap_or_default();
                }
                // Verdicts are a line per claim: a short reply, and no creativity.
                settings.max_tokens = 200;
                settings.temperature = 0.0;
                Some(VerifySettings {
                    settings,
                    timeout: seconds(v.timeout_secs, 5.0, "verify.timeout_secs")?,
                })
            }
        };
        Ok(Models {
            openai,
            providers,
            verify,
        })
    }
}

impl Config {
    /// Builds the configuration from flags/environment, the optional file and defaults.
    /// `tutor.toml` in the working directory is read when present; `--config` names another.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_from(overrides, &process_env)
    }

    /// [`Config::load`] with the environment given as a lookup (tests pass their own, so the
    /// developer's environment never leaks into them). An empty value counts as unset; a value
    /// that does not parse is an error naming its variable.
    pub fn load_from(
        overrides: &Overrides,
        environment: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let env = |name: &str| environment(name).filter(|v| !v.trim().is_empty());
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None if Path::new("tutor.toml").exists() => read_file(Path::new("tutor.toml"))?,
            None => FileConfig::default(),
        };
        let addr_text = overrides
            .addr
            .clone()
            .or(file.addr.clone())
            .unwrap_or_else(|| DEFAULT_ADDR.to_string());
        let addr: SocketAddr = addr_text.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "`{addr_text}` is not an address: use HOST:PORT, e.g. 127.0.0.1:8080"
            ))
        })?;
        let cors_origins = match env("TUTOR_CORS_ORIGINS") {
            Some(list) => list
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            None => file.cors_origins.clone().unwrap_or_default(),
        };
        let Models {
            openai,
            providers,
            verify,
        } = Models::read(&file, &env)?;
        let retrieval = file.retrieval.clone().unwrap_or_default();
        let limits = rate_limits(&file, &env)?;
        if let Some(lti) = &file.lti {
            lti.validate().map_err(ConfigError::Invalid)?;
        }
        if retrieval.passages == 0 || retrieval.candidates < retrieval.passages {
            return Err(ConfigError::Invalid(
                "`retrieval.passages` must be at least 1 and at most `retrieval.candidates`"
                    .to_string(),
            ));
        }
        let metrics_addr = match &file.metrics_addr {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "`metrics_addr` `{text}` is not an address: use HOST:PORT, e.g. 127.0.0.1:9090"
                ))
            })?),
        };
        let allowed_hosts = match env("TUTOR_ALLOWED_HOSTS") {
            Some(list) => list
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            None => file
                .allowed_hosts
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
        };
        let named = |name: &str| {
            providers
                .iter()
                .find(|p| p.name == name)
                .map(|p| (p.settings.base_url.clone(), p.settings.api_key.clone()))
        };
        let chat_models = crate::semantic::settings::Providers {
            named: &named,
            base_url: openai
                .as_ref()
                .map_or_else(|| DEFAULT_BASE_URL.to_string(), |m| m.base_url.clone()),
        };
        let semantic = SemanticSettings::read(file.semantic.as_ref(), &env, &chat_models)
            .map_err(ConfigError::Invalid)?;
        Ok(Config {
            semantic,
            allow_open_api: file.allow_open_api.unwrap_or(false),
            log_redact: file.log_redact.clone(),
            metrics_addr,
            allowed_hosts,
            lessons_dir: overrides
                .lessons
                .clone()
                .or(file.lessons.clone())
                .unwrap_or_else(|| PathBuf::from("lessons")),
            index_dir: overrides
                .index
                .clone()
                .or(file.index.clone())
                .unwrap_or_else(|| PathBuf::from("index")),
            prompts_dir: overrides
                .prompts
                .clone()
                .or(file.prompts.clone())
                .unwrap_or_else(|| PathBuf::from("prompts")),
            addr,
            cors_origins,
            openai,
            providers,
            routing: file.routing.clone(),
            verify,
            retrieval,
            shutdown_grace: seconds(file.shutdown_grace_secs, 20.0, "shutdown_grace_secs")?,
            keys: file.keys,
            limits,
            max_model_calls: whole_number(&env, "TUTOR_MAX_MODEL_CALLS")?
                .or(file.max_model_calls)
                .unwrap_or(1024)
                .max(1),
            model_queue: seconds(file.model_queue_secs, 2.0, "model_queue_secs")?,
            log: env("TUTOR_LOG_DB")
                .or(file.log.clone())
                .map(|text| {
                    crate::conversation_log::LogTarget::parse(&text).map_err(|e| {
                        ConfigError::Invalid(format!("`log` (or TUTOR_LOG_DB): {e}"))
                    })
                })
                .transpose()?,
            redis_url: env("TUTOR_REDIS_URL")
                .or(file.redis_url.clone())
                .map(|url| {
                    let url = url.trim().to_string();
                    if url.starts_with("redis://") || url.starts_with("unix://") {
                        Ok(url)
                    } else {
                        Err(ConfigError::Invalid(format!(
                            "`redis_url` (or TUTOR_REDIS_URL) must start with redis:// or unix:// (it is `{url}`)"
                        )))
                    }
                })
                .transpose()?,
            index_read_only: switch(&env, "TUTOR_INDEX_READ_ONLY")?
                .or(file.index_read_only)
                .unwrap_or(false),
            log_retention: Duration::from_secs(
                u64::from(log_retention_days(&env)?.or(file.log_retention_days).unwrap_or(30))
                    * 86_400,
            ),
            lti: file.lti,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().replace('\n', " "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration with only these environment variables set.
    fn load_with_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_from(&Overrides::default(), &move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn environment_values_are_read_from_the_given_lookup_and_bad_ones_are_errors() {
        let config = load_with_env(&[
            ("TUTOR_LOG_RETENTION_DAYS", "7"),
            ("TUTOR_MAX_MODEL_CALLS", ""),
            ("TUTOR_RATE_PER_MINUTE", "120"),
            ("TUTOR_RATE_BURST", " 5 "),
            ("TUTOR_INDEX_READ_ONLY", "Yes"),
        ])
        .expect("loads");
        assert_eq!(config.log_retention, Duration::from_secs(7 * 86_400));
        assert_eq!(config.max_model_calls, 1024, "an empty value is unset");
        let limits = config.limits.expect("limits");
        assert_eq!((limits.per_minute, limits.burst), (120, 5));
        assert!(config.index_read_only);
        for (name, value) in [
            ("TUTOR_LOG_RETENTION_DAYS", "thirty"),
            ("TUTOR_LOG_RETENTION_DAYS", "0"),
            ("TUTOR_MAX_MODEL_CALLS", "many"),
            ("TUTOR_RATE_PER_MINUTE", "-1"),
            ("TUTOR_RATE_BURST", "lots"),
            ("TUTOR_INDEX_READ_ONLY", "maybe"),
            ("TUTOR_REDIS_URL", "http://cache"),
        ] {
            let error = load_with_env(&[(name, value)]).expect_err("a bad value is an error");
            assert!(error.to_string().contains(name), "{name}={value}: {error}");
        }
    }

    #[test]
    fn a_model_ca_file_is_read_for_every_model_and_a_file_without_certificates_is_an_error() {
        let ca = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/tls/ca.pem");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = load_with_env(&[
            ("OPENAI_API_KEY", "sk-test"),
            ("TUTOR_MODEL_CA_FILE", &ca.display().to_string()),
        ])
        .expect("loads");
        let roots = config.openai.expect("a model").extra_roots.expect("roots");
        assert_eq!(&roots[..], &std::fs::read(&ca).expect("ca")[..]);

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        for path in [empty, dir.path().join("missing.pem")] {
            let error = load_with_env(&[("TUTOR_MODEL_CA_FILE", &path.display().to_string())])
                .expect_err("a bad CA file is an error");
            assert!(
                error.to_string().contains("TUTOR_MODEL_CA_FILE")
                    && error.to_string().contains(&path.display().to_string()),
                "{error}"
            );
        }

        // From the file too, for the `[[providers]]` as well.
        let file = dir.path().join("tutor.toml");
        std::fs::write(
            &file,
            format!(
                "[model]\nca_file = {:?}\n[[providers]]\nname = \"a\"\nbase_url = \"https://models.internal/v1\"\nmodel = \"m\"\n",
                ca.display().to_string()
            ),
        )
        .expect("write");
        let config = Config::load_from(
            &Overrides {
                config: Some(file),
                ..Overrides::default()
            },
            &|_| None,
        )
        .expect("loads");
        assert!(config.providers[0].settings.extra_roots.is_some());
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tutor.toml");
        std::fs::write(&path, "lesons = \"x\"\n").expect("write");
        let error = Config::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .expect_err("typo rejected");
        assert!(error.to_string().contains("lesons"), "{error}");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tutor.toml");
        std::fs::write(
            &path,
            "lessons = \"from-file\"\nindex = \"idx-file\"\n[retrieval]\npassages = 3\n",
        )
        .expect("write");
        let config = Config::load(&Overrides {
            config: Some(path),
            index: Some(PathBuf::from("idx-flag")),
            ..Overrides::default()
        })
        .expect("loads");
        assert_eq!(config.lessons_dir, PathBuf::from("from-file"));
        assert_eq!(config.index_dir, PathBuf::from("idx-flag"));
        assert_eq!(config.prompts_dir, PathBuf::from("prompts"));
        assert_eq!(config.retrieval.passages, 3);
        assert_eq!(config.addr.to_string(), DEFAULT_ADDR);
    }
}
