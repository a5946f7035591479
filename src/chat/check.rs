//! The checks one answer goes through, bundled for [`super::release::Release`]: the verifier over
//! the passages given to the model, and the leak check of the tutor's own instructions.

use super::release::Judge;
use super::verify::{Context, Evidence, Unsupported, Verdict, Verifier, quote_verdict};
use crate::index::Analyzer;
use crate::prompts::Prompts;
use std::sync::{Arc, OnceLock};

/// What a verifier needs that does not change between answers: the analyzer and the filler
/// words as it sees them.
#[derive(Clone)]
pub struct Analysis {
    analyzer: Arc<Analyzer>,
    filler: Arc<super::verify::WordSet>,
}

impl Analysis {
    /// Builds the analyzer and the filler words once.
    pub fn new() -> Analysis {
        let analyzer = Analyzer::new();
        let filler = super::verify::filler_terms(&analyzer);
        Analysis {
            analyzer: Arc::new(analyzer),
            filler: Arc::new(filler),
        }
    }
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis::new()
    }
}

/// The checks of one answer. The passages are analysed only when a sentence is not a
/// word-for-word quote of one (so the embedded answerer's answers cost no analysis).
pub struct Checker {
    analysis: Analysis,
    prompts: Arc<Prompts>,
    /// (section title, text) of each passage, numbered from 1.
    passages: Vec<(String, String)>,
    question: String,
    title: String,
    analysed: OnceLock<(Vec<Evidence>, Context)>,
}

impl Checker {
    /// Checks against `passages` (section title, text), numbered from 1 in this order, for a
    /// question on a lesson titled `title`.
    pub fn new(
        analysis: &Analysis,
        prompts: Arc<Prompts>,
        passages: &[(&str, &str)],
        question: &str,
        title: &str,
    ) -> Checker {
        Checker {
            analysis: analysis.clone(),
            prompts,
            passages: passages
                .iter()
                .map(|(s, t)| (s.to_string(), t.to_string()))
                .collect(),
            question: question.to_string(),
            title: title.to_string(),
            analysed: OnceLock::new(),
        }
    }

    fn verifier(&self) -> Verifier<'_> {
        let analyzer = &self.analysis.analyzer;
        let (evidence, context) = self.analysed.get_or_init(|| {
            (
                self.passages
                    .iter()
                    .map(|(section, text)| Evidence::new(analyzer, text, section))
                    .collect(),
                Context::new(analyzer, &self.question, &self.title),
            )
        });
        Verifier::new(analyzer, &self.analysis.filler, evidence, context)
    }
}

impl Judge for Checker {
    fn judge(&self, sentence: &str, cited: &[usize]) -> Verdict {
        // Quoting the lesson is never a leak, whatever the lesson says.
        let texts: Vec<&str> = self.passages.iter().map(|(_, t)| t.as_str()).collect();
        if let Some(verdict) = quote_verdict(&texts, sentence, cited) {
            return verdict;
        }
        if self.prompts.reveals_rules(sentence) {
            return Verdict::Unsupported(Unsupported::Leak);
        }
        self.verifier().judge_claim(sentence, cited)
    }
}
