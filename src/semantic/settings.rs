//! `[semantic]`: which embedder the tutor uses, if any.
//!
//! ```toml
//! [semantic]
//! mode = "local"            # "local" (default), "remote", "off"
//! model_dir = "/srv/models/all-MiniLM-L6-v2"   # local: default the user's cache, see below
//! download = true           # local, default folder: fetch the model from the hub when missing
//! hub_endpoint = "https://huggingface.co"      # or a mirror
//!
//! # remote: any OpenAI-compatible /v1/embeddings server
//! model = "nomic-embed-text"        # the embeddings model's name there
//! provider = "ollama"               # a [[providers]] entry whose URL and key to use, or:
//! base_url = "http://localhost:11434/v1"   # default: the chat model's, else OpenAI's
//! api_key_env = "EMBEDDINGS_KEY"    # default: OPENAI_API_KEY
//! timeout_secs = 10
//! multilingual = true       # the model matches a text with its translation
//! ```
//!
//! Environment: `TUTOR_SEMANTIC` (`local`, `remote`, `off`), `TUTOR_SEMANTIC_MODEL_DIR`,
//! `TUTOR_SEMANTIC_DOWNLOAD` (`true`, `false`), `TUTOR_HUB_ENDPOINT` (else `HF_ENDPOINT`),
//! `TUTOR_SEMANTIC_MODEL`, `TUTOR_SEMANTIC_BASE_URL`, `TUTOR_SEMANTIC_MULTILINGUAL` (`true`, `false`).

use super::hub::HubSource;
use super::local::{LocalEmbedder, MODEL_FILES};
use super::remote::{RemoteEmbedder, RemoteSettings};
use super::{Semantic, SemanticError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The default model's folder name in the cache.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

/// `[semantic]` as written in `tutor.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSemantic {
    pub mode: Option<String>,
    pub model_dir: Option<PathBuf>,
    /// Local, default folder: fetch the model from the hub when it is missing (default true).
    pub download: Option<bool>,
    /// The hub to fetch it from (default `https://huggingface.co`).
    pub hub_endpoint: Option<String>,
    /// Remote: the embeddings model's name.
    pub model: Option<String>,
    /// Remote: a `[[providers]]` entry whose URL and key to use.
    pub provider: Option<String>,
    /// Remote: the server's base URL, with its version (`.../v1`).
    pub base_url: Option<String>,
    /// Remote: the environment variable holding its key (default `OPENAI_API_KEY`).
    pub api_key_env: Option<String>,
    /// Remote: longest wait for one batch of vectors, in seconds (default 10).
    pub timeout_secs: Option<f64>,
    /// Remote: the model places a text and its translation together (multilingual-e5, bge-m3,
    /// nomic-embed-text-v2...), so a question in another language than the lesson's is matched
    /// with the lesson's passages directly (default false).
    pub multilingual: Option<bool>,
}

/// Where the chat models are reached, for a remote embedder that shares them: the URL and key
/// of a named `[[providers]]` entry, and the single chat model's URL (else OpenAI's).
pub struct Providers<'a> {
    pub named: &'a dyn Fn(&str) -> Option<(String, String)>,
    pub base_url: String,
}

/// The embedder the configuration selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SemanticSettings {
    /// Words alone.
    #[default]
    Off,
    /// A model run in this process, from this folder (`None`: no folder could be named, as
    /// when neither `model_dir` nor a home directory is known), fetched from `download` first
    /// when it is missing there.
    Local {
        model_dir: Option<PathBuf>,
        download: Option<HubSource>,
    },
    /// An OpenAI-compatible embeddings server.
    Remote(RemoteSettings),
}

/// The folder the default model is looked for in: `$XDG_CACHE_HOME/tutor/models/NAME`, else
/// `$HOME/.cache/tutor/models/NAME`.
pub fn default_model_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let cache = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(cache.join("tutor").join("models").join(DEFAULT_MODEL))
}

impl SemanticSettings {
    /// Reads `[semantic]` and its environment overrides; an unknown mode is an error naming
    /// where it came from.
    pub fn read(
        file: Option<&FileSemantic>,
        env: &dyn Fn(&str) -> Option<String>,
        providers: &Providers<'_>,
    ) -> Result<SemanticSettings, String> {
        let (mode, from) = match env("TUTOR_SEMANTIC") {
            Some(mode) => (mode, "TUTOR_SEMANTIC"),
            None => (
                file.and_then(|f| f.mode.clone())
                    .unwrap_or_else(|| "local".to_string()),
                "semantic.mode",
            ),
        };
        match mode.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(SemanticSettings::Off),
            "local" => {
                let named = env("TUTOR_SEMANTIC_MODEL_DIR")
                    .map(PathBuf::from)
                    .or_else(|| file.and_then(|f| f.model_dir.clone()));
                // Only the default folder is filled from the hub: a folder an operator names
                // holds the model they put there.
                let wanted = match flag(env, "TUTOR_SEMANTIC_DOWNLOAD")? {
                    Some(wanted) => wanted,
                    None => file.and_then(|f| f.download).unwrap_or(true),
                };
                let download = (named.is_none() && wanted).then(|| {
                    let endpoint = env("TUTOR_HUB_ENDPOINT")
                        .or_else(|| env("HF_ENDPOINT"))
                        .or_else(|| file.and_then(|f| f.hub_endpoint.clone()))
                        .unwrap_or_else(|| super::hub::DEFAULT_ENDPOINT.to_string());
                    HubSource::default_model(&endpoint)
                });
                Ok(SemanticSettings::Local {
                    model_dir: named.or_else(|| default_model_dir(env)),
                    download,
                })
            }
            "remote" => remote(file, env, providers).map(SemanticSettings::Remote),
            other => Err(format!(
                "`{from}` must be `local`, `remote` or `off` (it is `{other}`)"
            )),
        }
    }

    /// Loads the embedder. `Ok(None)` when semantic matching is off; an error when a model was
    /// expected and could not be loaded (the caller warns and serves on words alone).
    pub fn load(&self) -> Result<Option<Arc<Semantic>>, SemanticError> {
        match self {
            SemanticSettings::Off => Ok(None),
            SemanticSettings::Local {
                model_dir,
                download,
            } => {
                let Some(dir) = model_dir else {
                    return Err(SemanticError::Model {
                        path: "(none)".to_string(),
                        reason: "no model folder: set TUTOR_SEMANTIC_MODEL_DIR".to_string(),
                    });
                };
                let complete = || MODEL_FILES.iter().all(|f| dir.join(f).is_file());
                let embedder = match download {
                    // The default folder: fetched when it is missing, fetched again (the files
                    // that differ from the hub's digests) when what is there does not load, as
                    // after a copy cut short.
                    Some(source) => {
                        if !complete() {
                            source.fetch(dir)?;
                        }
                        match LocalEmbedder::load(dir) {
                            Ok(embedder) => embedder,
                            Err(error) => {
                                tracing::warn!(%error, "the cached model does not load; fetching it again");
                                source.fetch(dir)?;
                                LocalEmbedder::load(dir)?
                            }
                        }
                    }
                    None => {
                        if let Some(missing) = MODEL_FILES.iter().find(|f| !dir.join(f).is_file()) {
                            return Err(SemanticError::Model {
                                path: dir.display().to_string(),
                                reason: format!("{missing} is missing"),
                            });
                        }
                        LocalEmbedder::load(dir)?
                    }
                };
                Ok(Some(Semantic::new(Arc::new(embedder))))
            }
            SemanticSettings::Remote(settings) => {
                let embedder = RemoteEmbedder::connect(settings.clone())?;
                Ok(Some(Semantic::new(Arc::new(embedder))))
            }
        }
    }
}

/// A `true`/`false` environment variable (`None` when unset).
fn flag(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<bool>, String> {
    match env(name) {
        None => Ok(None),
        Some(value) => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            other => Err(format!(
                "`{name}` must be `true` or `false` (it is `{other}`)"
            )),
        },
    }
}

/// The remote embedder's settings: environment over the file; the URL and key from a named
/// provider, else `base_url` and `api_key_env`, else the chat model's URL and OpenAI's key.
fn remote(
    file: Option<&FileSemantic>,
    env: &dyn Fn(&str) -> Option<String>,
    providers: &Providers<'_>,
) -> Result<RemoteSettings, String> {
    let model = env("TUTOR_SEMANTIC_MODEL")
        .or_else(|| file.and_then(|f| f.model.clone()))
        .filter(|m| !m.trim().is_empty())
        .ok_or("`semantic.model` (TUTOR_SEMANTIC_MODEL) must name the embeddings model when `semantic.mode` is `remote`")?;
    let key_of = || {
        let name = file
            .and_then(|f| f.api_key_env.clone())
            .unwrap_or_else(|| "OPENAI_API_KEY".to_string());
        env(&name).unwrap_or_default()
    };
    let (base_url, api_key) = match (
        env("TUTOR_SEMANTIC_BASE_URL"),
        file.and_then(|f| f.provider.as_deref()),
    ) {
        (Some(url), _) => (url, key_of()),
        (None, Some(name)) => (providers.named)(name).ok_or_else(|| {
            format!("`semantic.provider` names `{name}`, which is not a `[[providers]]` entry")
        })?,
        (None, None) => (
            file.and_then(|f| f.base_url.clone())
                .unwrap_or_else(|| providers.base_url.clone()),
            key_of(),
        ),
    };
    let seconds = file.and_then(|f| f.timeout_secs).unwrap_or(10.0);
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        return Err(format!(
            "`semantic.timeout_secs` must be between 0 and 3600 seconds (it is {seconds})"
        ));
    }
    let multilingual = flag(env, "TUTOR_SEMANTIC_MULTILINGUAL")?
        .unwrap_or_else(|| file.and_then(|f| f.multilingual).unwrap_or(false));
    Ok(RemoteSettings {
        base_url,
        api_key,
        model,
        timeout: Duration::from_secs_f64(seconds),
        multilingual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_providers() -> Providers<'static> {
        Providers {
            named: &|_| None,
            base_url: "https://api.openai.com/v1".to_string(),
        }
    }

    #[test]
    fn the_mode_and_folder_come_from_the_environment_the_file_or_the_cache() {
        let none = |_: &str| None;
        assert_eq!(
            SemanticSettings::read(None, &none, &no_providers()),
            Ok(SemanticSettings::Local {
                model_dir: None,
                download: Some(HubSource::default_model("https://huggingface.co")),
            })
        );
        let home = |name: &str| (name == "HOME").then(|| "/home/ada".to_string());
        assert_eq!(
            SemanticSettings::read(None, &home, &no_providers()),
            Ok(SemanticSettings::Local {
                model_dir: Some(PathBuf::from(
                    "/home/ada/.cache/tutor/models/all-MiniLM-L6-v2"
                )),
                download: Some(HubSource::default_model("https://huggingface.co")),
            })
        );
        let file = FileSemantic {
            mode: Some("local".to_string()),
            model_dir: Some(PathBuf::from("/srv/m")),
            ..FileSemantic::default()
        };
        assert_eq!(
            SemanticSettings::read(Some(&file), &home, &no_providers()),
            Ok(SemanticSettings::Local {
                model_dir: Some(PathBuf::from("/srv/m")),
                download: None,
            }),
            "a folder the operator names is not filled from the hub"
        );
        let mirror = |name: &str| match name {
            "HOME" => Some("/home/ada".to_string()),
            "HF_ENDPOINT" => Some("http://mirror.internal/".to_string()),
            _ => None,
        };
        match SemanticSettings::read(None, &mirror, &no_providers()) {
            Ok(SemanticSettings::Local {
                download: Some(source),
                ..
            }) => assert_eq!(source.endpoint, "http://mirror.internal"),
            other => panic!("{other:?}"),
        }
        let offline = |name: &str| match name {
            "HOME" => Some("/home/ada".to_string()),
            "TUTOR_SEMANTIC_DOWNLOAD" => Some("false".to_string()),
            _ => None,
        };
        assert!(matches!(
            SemanticSettings::read(None, &offline, &no_providers()),
            Ok(SemanticSettings::Local { download: None, .. })
        ));
        let off = |name: &str| (name == "TUTOR_SEMANTIC").then(|| "Off".to_string());
        assert_eq!(
            SemanticSettings::read(Some(&file), &off, &no_providers()),
            Ok(SemanticSettings::Off)
        );
        let bad = |name: &str| (name == "TUTOR_SEMANTIC").then(|| "magic".to_string());
        let error = SemanticSettings::read(None, &bad, &no_providers()).expect_err("refused");
        assert!(error.contains("TUTOR_SEMANTIC"), "{error}");
    }

    #[test]
    fn a_remote_embedder_takes_a_provider_a_url_or_the_chat_models() {
        let file = |provider: Option<&str>, base_url: Option<&str>| FileSemantic {
            mode: Some("remote".to_string()),
            model: Some("nomic-embed-text".to_string()),
            provider: provider.map(str::to_string),
            base_url: base_url.map(str::to_string),
            api_key_env: Some("EMBED_KEY".to_string()),
            ..FileSemantic::default()
        };
        let env = |name: &str| match name {
            "EMBED_KEY" => Some("k-embed".to_string()),
            "OPENAI_API_KEY" => Some("k-openai".to_string()),
            _ => None,
        };
        let named = |name: &str| {
            (name == "ollama").then(|| ("http://ollama:11434/v1".to_string(), "k-p".to_string()))
        };
        let providers = Providers {
            named: &named,
            base_url: "http://chat:8000/v1".to_string(),
        };
        let remote = |f: &FileSemantic| match SemanticSettings::read(Some(f), &env, &providers) {
            Ok(SemanticSettings::Remote(r)) => (r.base_url, r.api_key, r.model),
            other => panic!("not remote: {other:?}"),
        };
        assert_eq!(
            remote(&file(Some("ollama"), None)),
            (
                "http://ollama:11434/v1".to_string(),
                "k-p".to_string(),
                "nomic-embed-text".to_string()
            )
        );
        assert_eq!(
            remote(&file(None, Some("http://tei:80/v1"))).0,
            "http://tei:80/v1"
        );
        assert_eq!(remote(&file(None, None)).0, "http://chat:8000/v1");
        assert_eq!(remote(&file(None, None)).1, "k-embed");

        let unknown = SemanticSettings::read(Some(&file(Some("nope"), None)), &env, &providers)
            .expect_err("no such provider");
        assert!(unknown.contains("`nope`"), "{unknown}");
        let nameless = FileSemantic {
            mode: Some("remote".to_string()),
            ..FileSemantic::default()
        };
        let error = SemanticSettings::read(Some(&nameless), &env, &providers)
            .expect_err("a model must be named");
        assert!(error.contains("TUTOR_SEMANTIC_MODEL"), "{error}");
        let printed = format!(
            "{:?}",
            SemanticSettings::read(Some(&file(None, None)), &env, &providers)
        );
        assert!(
            !printed.contains("k-embed"),
            "the key is never printed: {printed}"
        );
    }

    #[test]
    fn a_missing_model_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = SemanticSettings::Local {
            model_dir: Some(dir.path().to_path_buf()),
            download: None,
        };
        let error = settings.load().expect_err("no model").to_string();
        assert!(error.contains("config.json is missing"), "{error}");
        assert!(SemanticSettings::Off.load().expect("off").is_none());
    }
}
