//! The checks one answer goes through, bundled for [`super::release::Release`]: the verifier over
//! the passages given to the model, and the leak check of the tutor's own instructions.

use super::release::Judge;
use super::verify::{Context, Evidence, Verdict, Verifier};
use crate::index::Analyzer;
use crate::prompts::Prompts;
use std::collections::HashSet;
use std::sync::Arc;

/// What a verifier needs that does not change between answers: the analyzer and the filler
/// words as it sees them.
#[derive(Clone)]
pub struct Analysis {
    analyzer: Arc<Analyzer>,
    filler: Arc<HashSet<String>>,
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

/// The checks of one answer.
pub struct Checker {
    analysis: Analysis,
    prompts: Arc<Prompts>,
    evidence: Vec<Evidence>,
    context: Context,
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
        let analyzer = &analysis.analyzer;
        Checker {
            evidence: passages
                .iter()
                .map(|(section, text)| Evidence::new(analyzer, text, section))
                .collect(),
            context: Context::new(analyzer, question, title),
            analysis: analysis.clone(),
            prompts,
        }
    }

    fn verifier(&self) -> Verifier<'_> {
        Verifier::new(
            &self.analysis.analyzer,
            &self.analysis.filler,
            &self.evidence,
            &self.context,
        )
    }
}

impl Judge for Checker {
    fn judge(&self, sentence: &str, cited: &[usize]) -> Verdict {
        self.verifier().judge(sentence, cited)
    }

    fn leaks(&self, sentence: &str) -> bool {
        // Quoting the lesson is never a leak, whatever the lesson says.
        self.verifier().quoted_from(sentence).is_none() && self.prompts.reveals_rules(sentence)
    }
}
