//! Any OpenAI-compatible `/v1/embeddings` server (OpenAI, Ollama, llama.cpp, vLLM, Text
//! Embeddings Inference...) through async-openai: the way to a larger or a multilingual model
//! than the one run in this process.
//!
//! [`Embedder::embed`] is blocking (it runs on the batching thread and while indexing), so the
//! embedder owns a small runtime of its own: a call is spawned there and waited for, which works
//! from any thread, inside another runtime or not.

use super::{Embedder, SemanticError, normalize};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Where and how to reach an embeddings server.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    /// Base URL including the version, e.g. `http://localhost:11434/v1`.
    pub base_url: String,
    /// Secret; never printed (see the `Debug` impl).
    pub api_key: String,
    /// The embeddings model's name on that server.
    pub model: String,
    /// Longest wait for one batch's vectors.
    pub timeout: Duration,
    /// The model matches a text with its translation.
    pub multilingual: bool,
}

impl fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("base_url", &self.base_url)
            .field(
                "api_key",
                &if self.api_key.is_empty() { "" } else { "<set>" },
            )
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("multilingual", &self.multilingual)
            .finish()
    }
}

/// Texts sent in one request at most (servers cap the inputs of one call; 2,048 at OpenAI).
const MAX_INPUTS: usize = 256;

/// A sentence-embedding model behind an OpenAI-compatible API.
pub struct RemoteEmbedder {
    client: Client<OpenAIConfig>,
    settings: RemoteSettings,
    identity: String,
    dimensions: usize,
    /// Runs the HTTP calls; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for RemoteEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteEmbedder")
            .field("identity", &self.identity)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

impl Drop for RemoteEmbedder {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a runtime's worker thread may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The request body: the inputs as an array, vectors as floats.
#[derive(serde::Serialize)]
struct Body<'a> {
    model: &'a str,
    input: &'a [&'a str],
    encoding_format: &'static str,
}

/// The parts of the response read: each vector with the index of its input.
#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl RemoteEmbedder {
    /// Connects and asks for one vector, which tells the model's dimensions and that the server
    /// answers: an unreachable server is an error now, not at the first question.
    pub fn connect(settings: RemoteSettings) -> Result<RemoteEmbedder, SemanticError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tutor-embed-http")
            .enable_all()
            .build()
            .map_err(|e| SemanticError::Remote(format!("cannot start its runtime: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| SemanticError::Remote(format!("cannot build the HTTP client: {e}")))?;
        let config = OpenAIConfig::new()
            .with_api_base(settings.base_url.trim_end_matches('/'))
            .with_api_key(settings.api_key.clone());
        let client = Client::with_config(config).with_http_client(http);
        let identity = format!(
            "remote:{}@{}",
            settings.model,
            settings.base_url.trim_end_matches('/')
        );
        let mut embedder = RemoteEmbedder {
            client,
            settings,
            identity,
            dimensions: 0,
            runtime: Some(runtime),
        };
        let probe = embedder.call(&["dimensions"])?;
        embedder.dimensions = probe.first().map_or(0, Vec::len);
        if embedder.dimensions == 0 {
            return Err(SemanticError::Remote(
                "the server returned an empty vector".to_string(),
            ));
        }
        Ok(embedder)
    }

    /// One request: the vectors of `texts`, in order, unit length.
    fn call(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, SemanticError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| SemanticError::Remote("the embedder is stopping".to_string()))?;
        let client = self.client.clone();
        let model = self.settings.model.clone();
        let inputs: Vec<String> = texts.iter().map(|t| (*t).to_string()).collect();
        let timeout = self.settings.timeout;
        let task = runtime.spawn(async move {
            let input: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let body = Body {
                model: &model,
                input: &input,
                encoding_format: "float",
            };
            let embeddings = client.embeddings();
            let call = embeddings.create_byot::<_, Response>(body);
            tokio::time::timeout(timeout, call).await
        });
        let response = futures::executor::block_on(task)
            .map_err(|e| SemanticError::Remote(format!("the call stopped: {e}")))?
            .map_err(|_| SemanticError::Remote(format!("no vectors in {timeout:?}")))?
            .map_err(|e| SemanticError::Remote(e.to_string()))?;
        order(response.data, texts.len(), self.dimensions)
    }
}

/// The response's vectors in input order, normalised; an error unless there is exactly one
/// vector per input, all of one length (and of `dimensions`, once known).
fn order(
    data: Vec<Item>,
    inputs: usize,
    dimensions: usize,
) -> Result<Vec<Vec<f32>>, SemanticError> {
    if data.len() != inputs {
        return Err(SemanticError::Remote(format!(
            "{} vectors for {inputs} texts",
            data.len()
        )));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for (position, item) in data.into_iter().enumerate() {
        let at = item.index.unwrap_or(position);
        let slot = out
            .get_mut(at)
            .ok_or_else(|| SemanticError::Remote(format!("a vector for input {at}")))?;
        if slot.is_some() {
            return Err(SemanticError::Remote(format!("two vectors for input {at}")));
        }
        let mut v = item.embedding;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(SemanticError::Remote("a vector is not finite".to_string()));
        }
        normalize(&mut v);
        *slot = Some(v);
    }
    let out: Vec<Vec<f32>> = out.into_iter().flatten().collect();
    let expected = if dimensions > 0 {
        dimensions
    } else {
        out.first().map_or(0, Vec::len)
    };
    if let Some(v) = out.iter().find(|v| v.len() != expected) {
        return Err(SemanticError::Remote(format!(
            "a vector of {} numbers where {expected} were expected",
            v.len()
        )));
    }
    Ok(out)
}

impl Embedder for RemoteEmbedder {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn multilingual(&self) -> bool {
        self.settings.multilingual
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, SemanticError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(MAX_INPUTS) {
            out.extend(self.call(chunk)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: Option<usize>, embedding: Vec<f32>) -> Item {
        Item { index, embedding }
    }

    #[test]
    fn vectors_come_back_in_input_order_normalised_and_checked() {
        let ordered = order(
            vec![item(Some(1), vec![0.0, 2.0]), item(Some(0), vec![3.0, 4.0])],
            2,
            0,
        )
        .expect("two vectors");
        assert_eq!(ordered[0], vec![0.6, 0.8]);
        assert_eq!(ordered[1], vec![0.0, 1.0]);
        let positional = order(vec![item(None, vec![1.0, 0.0])], 1, 2).expect("by position");
        assert_eq!(positional[0], vec![1.0, 0.0]);

        let fails = |data: Vec<Item>, inputs: usize, dims: usize| {
            order(data, inputs, dims).expect_err("refused").to_string()
        };
        assert!(fails(vec![], 1, 0).contains("0 vectors for 1 texts"));
        assert!(
            fails(
                vec![item(Some(0), vec![1.0]), item(Some(0), vec![1.0])],
                2,
                0
            )
            .contains("two vectors for input 0")
        );
        assert!(fails(vec![item(Some(5), vec![1.0])], 1, 0).contains("input 5"));
        assert!(fails(vec![item(None, vec![1.0, 2.0])], 1, 3).contains("3 were expected"));
        assert!(fails(vec![item(None, vec![f32::NAN])], 1, 0).contains("not finite"));
    }
}
