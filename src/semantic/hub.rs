//! The default sentence model, fetched once from a Hugging Face hub into the user's cache when it
//! is not there: each file streamed to a temporary name, its SHA-256 digest checked against the
//! one pinned here, then renamed into place, so a cut download or a changed upstream file is
//! never taken for the model. The endpoint is settable (a mirror, or a local hub in tests).
//!
//! Blocking, like loading the model: the download runs on a thread of its own with a small
//! runtime, so it may be called from anywhere.

use super::SemanticError;
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the default model is fetched from, unless `TUTOR_HUB_ENDPOINT` (or `HF_ENDPOINT`) says
/// otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The default model's repository on the hub.
pub const DEFAULT_REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// A file of a model repository and its SHA-256 digest (hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubFile {
    pub path: &'static str,
    pub sha256: &'static str,
}

/// The files of all-MiniLM-L6-v2 the tutor reads, with the digests of the upstream files
/// (Apache-2.0).
pub const DEFAULT_FILES: &[HubFile] = &[
    HubFile {
        path: "config.json",
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    },
    HubFile {
        path: "tokenizer.json",
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
    HubFile {
        path: "1_Pooling/config.json",
        sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    },
    HubFile {
        path: "model.safetensors",
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
];

/// Longest wait to connect, and between two pieces of a file.
const STALL: Duration = Duration::from_secs(30);

/// Where to fetch a model from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSource {
    /// The hub's base URL, e.g. `https://huggingface.co`.
    pub endpoint: String,
    pub repo: String,
    /// The files to fetch, with their digests.
    pub files: &'static [HubFile],
}

impl HubSource {
    /// The default model at `endpoint`.
    pub fn default_model(endpoint: &str) -> HubSource {
        HubSource {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            repo: DEFAULT_REPO.to_string(),
            files: DEFAULT_FILES,
        }
    }

    fn url(&self, file: &HubFile) -> String {
        format!("{}/{}/resolve/main/{}", self.endpoint, self.repo, file.path)
    }

    /// Fetches into `folder` every file that is missing or differs from its digest (a file
    /// already right is kept). Shows progress on standard error when it is a terminal.
    pub fn fetch(&self, folder: &Path) -> Result<(), SemanticError> {
        let needed: Vec<HubFile> = self
            .files
            .iter()
            .filter(|file| !digest_matches(&folder.join(file.path), file.sha256))
            .copied()
            .collect();
        if needed.is_empty() {
            return Ok(());
        }
        tracing::info!(endpoint = %self.endpoint, repo = %self.repo, folder = %folder.display(), "downloading the sentence model (once)");
        let source = self.clone();
        let folder = folder.to_path_buf();
        let progress = std::io::stderr().is_terminal();
        std::thread::Builder::new()
            .name("tutor-model-download".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| fail(&source, &format!("cannot start its runtime: {e}")))?;
                runtime.block_on(source.fetch_all(&folder, &needed, progress))
            })
            .map_err(|e| fail(self, &format!("cannot start the download thread: {e}")))?
            .join()
            .map_err(|_| fail(self, "the download thread panicked"))?
    }

    async fn fetch_all(
        &self,
        folder: &Path,
        files: &[HubFile],
        progress: bool,
    ) -> Result<(), SemanticError> {
        let client = reqwest::Client::builder()
            .connect_timeout(STALL)
            .read_timeout(STALL)
            .build()
            .map_err(|e| fail(self, &format!("cannot build the HTTP client: {e}")))?;
        for file in files {
            self.fetch_one(&client, folder, file, progress).await?;
        }
        Ok(())
    }

    /// Streams one file to a temporary name beside its place, checks its digest, renames it.
    async fn fetch_one(
        &self,
        client: &reqwest::Client,
        folder: &Path,
        file: &HubFile,
        progress: bool,
    ) -> Result<(), SemanticError> {
        let target = folder.join(file.path);
        let parent = target.parent().unwrap_or(folder);
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(self, &format!("cannot create {}: {e}", parent.display())))?;
        let part = part_name(&target);
        let result = self.stream_to(client, file, &part, progress).await;
        if let Err(error) = result {
            let _ = std::fs::remove_file(&part);
            return Err(error);
        }
        std::fs::rename(&part, &target).map_err(|e| {
            let _ = std::fs::remove_file(&part);
            fail(self, &format!("cannot move {} into place: {e}", file.path))
        })
    }

    async fn stream_to(
        &self,
        client: &reqwest::Client,
        file: &HubFile,
        part: &Path,
        progress: bool,
    ) -> Result<(), SemanticError> {
        let url = self.url(file);
        let mut response = client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| fail(self, &format!("{url}: {e}")))?;
        let total = response.content_length();
        let mut out = std::fs::File::create(part)
            .map_err(|e| fail(self, &format!("cannot write {}: {e}", part.display())))?;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut shown = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(self, &format!("{url}: the download was cut: {e}")))?
        {
            hasher.update(&chunk);
            out.write_all(&chunk)
                .map_err(|e| fail(self, &format!("cannot write {}: {e}", part.display())))?;
            received += chunk.len() as u64;
            if progress && (received - shown >= 1 << 20 || Some(received) == total) {
                shown = received;
                show_progress(file.path, received, total);
            }
        }
        if progress {
            eprintln!();
        }
        out.sync_all()
            .map_err(|e| fail(self, &format!("cannot write {}: {e}", part.display())))?;
        let digest = hex(&hasher.finalize());
        if digest != file.sha256 {
            return Err(fail(
                self,
                &format!(
                    "{} has SHA-256 {digest}, not the expected {} ({received} bytes received): not used",
                    file.path, file.sha256
                ),
            ));
        }
        Ok(())
    }
}

fn fail(source: &HubSource, reason: &str) -> SemanticError {
    SemanticError::Download(format!(
        "{} from {}: {reason}",
        source.repo, source.endpoint
    ))
}

/// A temporary name beside `target`, unique to this process.
fn part_name(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".part-{}", std::process::id()));
    target.with_file_name(name)
}

/// True when `path` exists and its SHA-256 is `sha256`.
fn digest_matches(path: &Path, sha256: &str) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).is_ok() && hex(&hasher.finalize()) == sha256
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn show_progress(name: &str, received: u64, total: Option<u64>) {
    let mb = |bytes: u64| bytes as f64 / 1_048_576.0;
    let line = match total {
        Some(total) if total > 0 => format!(
            "\rdownloading {name}: {:.1} / {:.1} MB ({}%)",
            mb(received),
            mb(total),
            received * 100 / total
        ),
        _ => format!("\rdownloading {name}: {:.1} MB", mb(received)),
    };
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_kept_only_when_its_digest_matches() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        assert!(!digest_matches(&path, "00"), "missing");
        std::fs::write(&path, b"abc").expect("write");
        assert!(digest_matches(
            &path,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ));
        assert!(!digest_matches(&path, DEFAULT_FILES[0].sha256));
        let part = part_name(&dir.path().join("1_Pooling/config.json"));
        assert!(
            part.ends_with(format!("config.json.part-{}", std::process::id())),
            "{part:?}"
        );
        assert_eq!(
            HubSource::default_model("https://hub.example/").url(&DEFAULT_FILES[3]),
            "https://hub.example/sentence-transformers/all-MiniLM-L6-v2/resolve/main/model.safetensors"
        );
    }
}
