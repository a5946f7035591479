//! `[semantic]`: which embedder the tutor uses, if any.
//!
//! ```toml
//! [semantic]
//! mode = "local"            # "local" (default), "off"
//! model_dir = "/srv/models/all-MiniLM-L6-v2"   # default: the user's cache, see below
//! ```
//!
//! Environment: `TUTOR_SEMANTIC` (`local`, `off`), `TUTOR_SEMANTIC_MODEL_DIR`.

use super::local::{LocalEmbedder, MODEL_FILES};
use super::{Semantic, SemanticError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default model's folder name in the cache.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

/// `[semantic]` as written in `tutor.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSemantic {
    pub mode: Option<String>,
    pub model_dir: Option<PathBuf>,
}

/// The embedder the configuration selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SemanticSettings {
    /// Words alone.
    #[default]
    Off,
    /// A model run in this process, from this folder (`None`: no folder could be named, as
    /// when neither `model_dir` nor a home directory is known).
    Local { model_dir: Option<PathBuf> },
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
            "local" => Ok(SemanticSettings::Local {
                model_dir: env("TUTOR_SEMANTIC_MODEL_DIR")
                    .map(PathBuf::from)
                    .or_else(|| file.and_then(|f| f.model_dir.clone()))
                    .or_else(|| default_model_dir(env)),
            }),
            other => Err(format!(
                "`{from}` must be `local` or `off` (it is `{other}`)"
            )),
        }
    }

    /// Loads the embedder. `Ok(None)` when semantic matching is off; an error when a model was
    /// expected and could not be loaded (the caller warns and serves on words alone).
    pub fn load(&self) -> Result<Option<Arc<Semantic>>, SemanticError> {
        match self {
            SemanticSettings::Off => Ok(None),
            SemanticSettings::Local { model_dir } => {
                let Some(dir) = model_dir else {
                    return Err(SemanticError::Model {
                        path: "(none)".to_string(),
                        reason: "no model folder: set TUTOR_SEMANTIC_MODEL_DIR".to_string(),
                    });
                };
                if let Some(missing) = MODEL_FILES.iter().find(|f| !dir.join(f).is_file()) {
                    return Err(SemanticError::Model {
                        path: dir.display().to_string(),
                        reason: format!("{missing} is missing"),
                    });
                }
                let embedder = LocalEmbedder::load(dir)?;
                Ok(Some(Semantic::new(Arc::new(embedder))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_and_folder_come_from_the_environment_the_file_or_the_cache() {
        let none = |_: &str| None;
        assert_eq!(
            SemanticSettings::read(None, &none),
            Ok(SemanticSettings::Local { model_dir: None })
        );
        let home = |name: &str| (name == "HOME").then(|| "/home/ada".to_string());
        assert_eq!(
            SemanticSettings::read(None, &home),
            Ok(SemanticSettings::Local {
                model_dir: Some(PathBuf::from(
                    "/home/ada/.cache/tutor/models/all-MiniLM-L6-v2"
                ))
            })
        );
        let file = FileSemantic {
            mode: Some("local".to_string()),
            model_dir: Some(PathBuf::from("/srv/m")),
        };
        assert_eq!(
            SemanticSettings::read(Some(&file), &home),
            Ok(SemanticSettings::Local {
                model_dir: Some(PathBuf::from("/srv/m"))
            })
        );
        let off = |name: &str| (name == "TUTOR_SEMANTIC").then(|| "Off".to_string());
        assert_eq!(
            SemanticSettings::read(Some(&file), &off),
            Ok(SemanticSettings::Off)
        );
        let bad = |name: &str| (name == "TUTOR_SEMANTIC").then(|| "magic".to_string());
        let error = SemanticSettings::read(None, &bad).expect_err("refused");
        assert!(error.contains("TUTOR_SEMANTIC"), "{error}");
    }

    #[test]
    fn a_missing_model_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = SemanticSettings::Local {
            model_dir: Some(dir.path().to_path_buf()),
        };
        let error = settings.load().expect_err("no model").to_string();
        assert!(error.contains("config.json is missing"), "{error}");
        assert!(SemanticSettings::Off.load().expect("off").is_none());
    }
}
