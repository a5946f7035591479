//! [`Semantic`]: the process's one embedder, with vectors kept by text and questions batched.
//!
//! Learners ask the same questions ("what is X?", the widget's suggestions), so a question's
//! vector is kept by its text (a bounded memo). Questions that are not kept go to one thread
//! that embeds whatever has queued up while the previous batch ran, in one forward pass: under
//! load, many learners' questions share a batch, and the async workers never run the model.

use super::{Embedder, SemanticError, Vector};
use crate::memo::Memo;
use std::sync::Arc;
use std::sync::mpsc;

/// Texts kept with their vectors: questions and passages (about 1.5 KB each with 384 numbers).
const KEPT_TEXTS: usize = 8192;

/// Most questions embedded in one pass.
const MAX_BATCH: usize = 32;

/// Texts embedded at once while indexing (sorted by length, so a batch pads little).
const INDEX_BATCH: usize = 32;

type Job = (String, tokio::sync::oneshot::Sender<Option<Vector>>);

/// The embedder in use, its kept vectors and the question batcher.
pub struct Semantic {
    embedder: Arc<dyn Embedder>,
    kept: Arc<Memo<blake3::Hash, [f32]>>,
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Semantic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semantic")
            .field("identity", &self.embedder.identity())
            .finish_non_exhaustive()
    }
}

fn key(text: &str) -> blake3::Hash {
    blake3::hash(text.as_bytes())
}

impl Semantic {
    /// Wraps `embedder` and starts its batching thread (which ends when this is dropped).
    pub fn new(embedder: Arc<dyn Embedder>) -> Arc<Semantic> {
        let kept = Arc::new(Memo::new(KEPT_TEXTS));
        let (queue, jobs) = mpsc::channel::<Job>();
        let worker = embedder.clone();
        let worker_kept = kept.clone();
        std::thread::Builder::new()
            .name("tutor-embed".to_string())
            .spawn(move || batches(&*worker, &worker_kept, &jobs))
            .map(drop)
            .unwrap_or_else(|error| tracing::error!(%error, "cannot start the embedding thread"));
        Arc::new(Semantic {
            embedder,
            kept,
            queue,
        })
    }

    /// The embedder's identity: vectors made under another are never compared with these.
    pub fn identity(&self) -> &str {
        self.embedder.identity()
    }

    /// Length of every vector.
    pub fn dimensions(&self) -> usize {
        self.embedder.dimensions()
    }

    /// Whether questions in any language are matched with passages in any other.
    pub fn multilingual(&self) -> bool {
        self.embedder.multilingual()
    }

    /// A question's vector, from the kept ones or the next batch; `None` when the model fails
    /// (the tutor then answers on words alone).
    pub async fn question(&self, text: &str) -> Option<Vector> {
        let started = std::time::Instant::now();
        if let Some(v) = self.kept.get(&key(text)) {
            metrics::counter!("tutor_question_vectors_total", "from" => "kept").increment(1);
            return Some(v);
        }
        let (reply, vector) = tokio::sync::oneshot::channel();
        self.queue.send((text.to_string(), reply)).ok()?;
        let vector = vector.await.ok().flatten();
        metrics::counter!("tutor_question_vectors_total", "from" => "model").increment(1);
        // Waiting for the batch included: what the semantic stage adds to an answer.
        metrics::histogram!("tutor_question_vector_seconds")
            .record(started.elapsed().as_secs_f64());
        vector
    }

    /// [`Semantic::question`] for callers off the async runtime (the CLI, evaluations): embeds
    /// on this thread.
    pub fn question_blocking(&self, text: &str) -> Option<Vector> {
        match self.embed(&[text]) {
            Ok(mut vectors) => vectors.pop(),
            Err(error) => {
                tracing::warn!(%error, "a question could not be embedded; answering on words alone");
                None
            }
        }
    }

    /// Vectors of `texts`, in order: kept ones reused, the rest embedded in batches of similar
    /// length (blocking).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vector>, SemanticError> {
        let mut out: Vec<Option<Vector>> = texts.iter().map(|t| self.kept.get(&key(t))).collect();
        let mut missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        missing.sort_by_key(|&i| texts[i].len());
        for chunk in missing.chunks(INDEX_BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let vectors = self.embedder.embed(&batch)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                let v: Vector = v.into();
                self.kept.put(key(texts[i]), v.clone());
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// The batching thread: waits for a question, takes every one queued behind it (up to
/// [`MAX_BATCH`]), embeds them in one pass and answers each.
fn batches(embedder: &dyn Embedder, kept: &Memo<blake3::Hash, [f32]>, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (asked, replies): (Vec<String>, Vec<_>) = batch.into_iter().unzip();
        let mut texts: Vec<&str> = asked.iter().map(String::as_str).collect();
        texts.sort_unstable();
        texts.dedup();
        // A question queued while the previous batch embedded the same text is kept by now.
        let (mut found, missing): (Vec<(&str, Option<Vector>)>, Vec<_>) = texts
            .iter()
            .map(|t| (*t, kept.get(&key(t))))
            .partition(|(_, v)| v.is_some());
        let missing: Vec<&str> = missing.into_iter().map(|(t, _)| t).collect();
        if !missing.is_empty() {
            metrics::histogram!("tutor_embed_batch_size").record(missing.len() as f64);
            let vectors = match embedder.embed(&missing) {
                Ok(vectors) => vectors,
                Err(error) => {
                    tracing::warn!(%error, "questions could not be embedded; answering on words alone");
                    Vec::new()
                }
            };
            for (text, v) in missing.iter().zip(vectors) {
                let v = Vector::from(v);
                kept.put(key(text), v.clone());
                found.push((text, Some(v)));
            }
        }
        found.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (text, reply) in asked.iter().zip(replies) {
            let v = found
                .binary_search_by(|(t, _)| (*t).cmp(text.as_str()))
                .ok()
                .and_then(|i| found[i].1.clone());
            let _ = reply.send(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its calls and texts; a text's vector is its length and its first byte.
    struct Counting {
        calls: AtomicUsize,
        texts: AtomicUsize,
    }

    impl Embedder for Counting {
        fn identity(&self) -> &str {
            "counting"
        }
        fn dimensions(&self) -> usize {
            2
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, SemanticError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.texts.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts
                .iter()
                .map(|t| vec![t.len() as f32, f32::from(t.bytes().next().unwrap_or(0))])
                .collect())
        }
    }

    #[tokio::test]
    async fn vectors_are_kept_by_text_and_each_question_gets_its_own() {
        let counting = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            texts: AtomicUsize::new(0),
        });
        let semantic = Semantic::new(counting.clone());
        let asked = ["a", "bb", "a", "ccc", "bb", "dddd"];
        let vectors = futures::future::join_all(asked.iter().map(|q| semantic.question(q))).await;
        for (q, v) in asked.iter().zip(&vectors) {
            let v = v.as_ref().expect("a vector");
            assert_eq!(v[0], q.len() as f32, "{q} got its own vector");
        }
        assert!(
            counting.texts.load(Ordering::SeqCst) <= 4,
            "a text is embedded at most once per batch"
        );
        let before = counting.calls.load(Ordering::SeqCst);
        assert!(semantic.question("ccc").await.is_some());
        let index = semantic.embed(&["dddd", "eeeee"]).expect("embeds");
        assert_eq!(index[1][0], 5.0);
        assert_eq!(
            counting.calls.load(Ordering::SeqCst),
            before + 1,
            "kept texts are not embedded again"
        );
    }
}
