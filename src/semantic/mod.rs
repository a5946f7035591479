//! Meaning: sentence vectors, so that a question in the learner's own words finds the passage
//! that says the same thing in the lesson's words.
//!
//! A leaf beside the text analysis: it knows nothing of lessons, the index or HTTP. An
//! [`Embedder`] turns texts into unit-length vectors whose dot product is their cosine
//! similarity. Two embedders exist: [`local::LocalEmbedder`], a BERT-family sentence model run
//! in this process on the CPU (candle, pure Rust), and [`remote::RemoteEmbedder`], any
//! OpenAI-compatible `/v1/embeddings` server (a larger or multilingual model). Every vector is
//! tagged with its embedder's [`Embedder::identity`]: vectors of two models are never compared.
//!
//! Similarity says how close two texts are in meaning, never whether one is true: "Mars has two
//! moons" and "Mars has three moons" are close. It ranks and gates; it never verifies.

pub mod hub;
pub mod local;
pub mod questions;
pub mod remote;
pub mod settings;
pub mod vectors;

pub use questions::Semantic;
pub use settings::SemanticSettings;

use std::sync::Arc;

/// A unit-length vector.
pub type Vector = Arc<[f32]>;

/// Why texts could not be embedded, or a model not loaded.
#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    #[error("the model folder {path} cannot be read: {reason}")]
    Model { path: String, reason: String },
    #[error("the model failed: {0}")]
    Inference(String),
    #[error("the embeddings server failed: {0}")]
    Remote(String),
    #[error("the model could not be downloaded: {0}")]
    Download(String),
}

/// Turns texts into unit-length vectors.
pub trait Embedder: Send + Sync {
    /// Names the model and its weights: two embedders with the same identity give the same
    /// vectors for the same text.
    fn identity(&self) -> &str;

    /// Length of every vector.
    fn dimensions(&self) -> usize;

    /// Whether a text and its translation get close vectors, so that a question in another
    /// language than the lesson's can be matched with the lesson's passages directly.
    fn multilingual(&self) -> bool {
        false
    }

    /// One unit-length vector per text, in order. Blocking: call it off the async workers.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, SemanticError>;
}

/// Cosine similarity of two unit-length vectors (their dot product); 0 when lengths differ.
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_is_the_dot_product_of_unit_vectors() {
        let mut a = vec![3.0, 4.0];
        normalize(&mut a);
        assert!((a[0] - 0.6).abs() < 1e-6 && (a[1] - 0.8).abs() < 1e-6);
        assert!((similarity(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(similarity(&a, &[1.0]), 0.0, "other lengths are unrelated");
        let mut zero = vec![0.0, 0.0];
        normalize(&mut zero);
        assert_eq!(zero, vec![0.0, 0.0]);
    }
}
