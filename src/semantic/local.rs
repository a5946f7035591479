//! A sentence-embedding model run in this process: a BERT-family encoder (all-MiniLM-L6-v2 by
//! default) on the CPU with candle, mean pooling over the tokens and L2 normalisation, as the
//! model is meant to be used. Read from a folder holding `config.json`, `tokenizer.json` and
//! `model.safetensors` (a sentence-transformers folder: its `1_Pooling/config.json`, when
//! present, chooses mean or first-token pooling).
//!
//! Why candle: pure Rust (no C++ runtime to install or load), builds from the Rust package
//! registry alone, and the weights are read into memory rather than mapped, so the crate keeps
//! `unsafe_code = "forbid"`. See ARCHITECTURE.md for the measurements behind the choice.

use super::{Embedder, SemanticError, normalize};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Tokens read of one text: the model was trained on 256 at most; a longer passage is judged by
/// its beginning.
const MAX_TOKENS: usize = 256;

/// The files a model folder must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    First,
}

/// A sentence-embedding model loaded from a folder.
pub struct LocalEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    dimensions: usize,
    identity: String,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Loads the model in `folder`. Its identity is the folder's name and a digest of its
    /// weights, so a changed model is never taken for the one an index was built with.
    pub fn load(folder: &Path) -> Result<LocalEmbedder, SemanticError> {
        let fail = |reason: String| SemanticError::Model {
            path: folder.display().to_string(),
            reason,
        };
        let read =
            |name: &str| std::fs::read(folder.join(name)).map_err(|e| fail(format!("{name}: {e}")));
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| fail(format!("config.json: {e}")))?;
        let dimensions = config.hidden_size;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let weights = read("model.safetensors")?;
        let digest = blake3::hash(&weights).to_hex();
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let pooling = match std::fs::read(folder.join("1_Pooling/config.json")) {
            Ok(bytes) => {
                let pooling: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| fail(format!("1_Pooling/config.json: {e}")))?;
                if pooling["pooling_mode_cls_token"] == true {
                    Pooling::First
                } else {
                    Pooling::Mean
                }
            }
            Err(_) => Pooling::Mean,
        };
        let name = folder
            .file_name()
            .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
        Ok(LocalEmbedder {
            model,
            tokenizer,
            pooling,
            dimensions,
            identity: format!("local:{name}@{}", digest.get(..16).unwrap_or_default()),
        })
    }

    fn forward(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| e.to_string())?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |pick: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| pick(e).iter().copied())
                .collect()
        };
        let device = &Device::Cpu;
        let tensor = |data: Vec<u32>| Tensor::from_vec(data, (rows, width), device);
        let ids = tensor(flat(&|e| e.get_ids())).map_err(|e| e.to_string())?;
        let types = tensor(flat(&|e| e.get_type_ids())).map_err(|e| e.to_string())?;
        let mask = tensor(flat(&|e| e.get_attention_mask())).map_err(|e| e.to_string())?;
        let pooled = (|| {
            let hidden = self.model.forward(&ids, &types, Some(&mask))?;
            match self.pooling {
                Pooling::First => hidden.narrow(1, 0, 1)?.squeeze(1),
                Pooling::Mean => {
                    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                    let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                    summed.broadcast_div(&counts)
                }
            }
        })()
        .map_err(|e| e.to_string())?;
        let mut vectors: Vec<Vec<f32>> = pooled.to_vec2().map_err(|e| e.to_string())?;
        for v in &mut vectors {
            normalize(v);
        }
        Ok(vectors)
    }
}

impl Embedder for LocalEmbedder {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, SemanticError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.forward(texts).map_err(SemanticError::Inference)
    }
}
