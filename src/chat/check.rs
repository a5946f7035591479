//! The checks one answer goes through, bundled for [`super::release::Release`]: the verifier over
//! the passages given to the model, and the leak check of the tutor's own instructions.

use super::release::Judge;
use super::verify::{
    Context, EvidenceCache, Source, Unsupported, Verdict, Verifier, quote_verdict,
};
use crate::index::{Analyzer, Analyzers};
use crate::prompts::Prompts;
use std::sync::{Arc, OnceLock};

/// Passages whose analysis is kept between answers: about 100 lessons' worth, a few megabytes.
const CACHED_PASSAGES: usize = 1024;

/// What a verifier needs that does not change between answers: each lesson language's analyzer
/// and the filler words as it sees them, and the passages analysed for earlier answers.
#[derive(Clone)]
pub struct Analysis {
    languages: Arc<Vec<Language>>,
    cache: EvidenceCache,
    /// Lessons' quizzes analysed, by lesson id, built on first use.
    quizzes: QuizCache,
}

/// Lessons whose analysed quiz is kept.
const CACHED_QUIZZES: usize = 256;

type QuizCache = Arc<crate::memo::Memo<String, crate::quiz::QuizIndex>>;

fn new_quiz_cache() -> QuizCache {
    Arc::new(crate::memo::Memo::new(CACHED_QUIZZES))
}

/// A lesson language's analyzer, and the filler words as it sees them.
struct Language {
    code: &'static str,
    analyzer: Analyzer,
    filler: crate::index::WordSet,
    /// The same analyzer with the quiz's own filler words.
    quiz: crate::quiz::Words,
}

impl Analysis {
    /// Builds the analyzers and the filler words once.
    pub fn new() -> Analysis {
        let languages = Analyzers::new()
            .iter()
            .map(|(code, analyzer)| Language {
                code,
                filler: crate::index::filler_terms(analyzer),
                quiz: crate::quiz::Words::new(analyzer.clone()),
                analyzer: analyzer.clone(),
            })
            .collect();
        Analysis {
            languages: Arc::new(languages),
            cache: new_cache(),
            quizzes: new_quiz_cache(),
        }
    }

    /// Which of [`Analysis::languages`] reads `language` (English for an unknown code).
    fn language(&self, language: &str) -> usize {
        self.languages
            .iter()
            .position(|l| l.code == language)
            .unwrap_or(0)
    }

    /// The analysis quizzes use for a lesson in `language`.
    pub fn quiz_words(&self, language: &str) -> &crate::quiz::Words {
        &self.languages[self.language(language)].quiz
    }

    /// `lesson`'s quiz analysed (its items' terms and guards, its term weights, the items to
    /// ask), on first use,
    /// and kept until a reload.
    pub fn quiz_index(&self, lesson: &crate::lessons::Lesson) -> Arc<crate::quiz::QuizIndex> {
        self.quizzes.get_or_make(&lesson.id, || {
            Arc::new(crate::quiz::QuizIndex::new(
                self.quiz_words(&lesson.language),
                lesson,
            ))
        })
    }

    /// The same analyzer with an empty cache, for a reloaded catalog (where a passage id may
    /// name new text).
    pub fn for_new_catalog(&self) -> Analysis {
        Analysis {
            cache: new_cache(),
            quizzes: new_quiz_cache(),
            ..self.clone()
        }
    }
}

fn new_cache() -> EvidenceCache {
    EvidenceCache::new(
        std::num::NonZeroUsize::new(CACHED_PASSAGES).unwrap_or(std::num::NonZeroUsize::MIN),
    )
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
    /// The lesson's language, as an index into the analysis's languages.
    language: usize,
    prompts: Arc<Prompts>,
    /// The passages, numbered from 1; each analysed when a sentence first needs it.
    passages: Vec<Source>,
    question: String,
    title: String,
    /// The question and the lesson's title, analysed when a sentence first needs them.
    context: OnceLock<Context>,
    /// Answers no sentence may give away: quiz answers near the question, or the answer a
    /// hint must not quote.
    guards: Vec<crate::quiz::Guard>,
}

impl Checker {
    /// Checks against `passages` (passage id, section title, text), numbered from 1 in this
    /// order, for a question on a lesson titled `title`, written in `language`.
    pub fn new(
        analysis: &Analysis,
        prompts: Arc<Prompts>,
        passages: &[(&str, &str, &str)],
        question: &str,
        title: &str,
        language: &str,
    ) -> Checker {
        Checker {
            language: analysis.language(language),
            analysis: analysis.clone(),
            prompts,
            passages: passages
                .iter()
                .map(|(id, section, text)| Source::new(section, text).cached(&analysis.cache, id))
                .collect(),
            question: question.to_string(),
            title: title.to_string(),
            context: OnceLock::new(),
            guards: Vec::new(),
        }
    }

    /// Removes every sentence that gives one of `guards` away.
    pub fn with_guards(mut self, guards: Vec<crate::quiz::Guard>) -> Checker {
        self.guards = guards;
        self
    }

    /// `request` with every passage sentence that gives a guarded answer away left out (or
    /// only its revealing part, `quiz::without_revealing`), for the embedded answerer to
    /// answer from what remains.
    pub fn masked(&self, request: &crate::llm::ModelRequest) -> crate::llm::ModelRequest {
        let mut request = request.clone();
        if self.guards.is_empty() {
            return request;
        }
        let words = &self.analysis.languages[self.language].quiz;
        for passage in &mut request.passages {
            passage.text = passage
                .text
                .lines()
                .map(|line| {
                    crate::text::split_sentences(line)
                        .into_iter()
                        .filter_map(|s| crate::quiz::without_revealing(words, &self.guards, s))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|line| !line.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n");
        }
        request
    }

    fn verifier(&self) -> Verifier<'_> {
        let language = &self.analysis.languages[self.language];
        let analyzer = &language.analyzer;
        let context = self
            .context
            .get_or_init(|| Context::new(analyzer, &self.question, &self.title));
        Verifier::new(analyzer, &language.filler, &self.passages, context)
    }
}

impl Judge for Checker {
    fn judge(&self, sentence: &str, cited: &[usize]) -> Verdict {
        if !self.guards.is_empty() {
            let words = &self.analysis.languages[self.language].quiz;
            let said = crate::quiz::Said::new(words, sentence);
            if let Some(guard) = self.guards.iter().find(|g| g.revealed_in(&said)) {
                return Verdict::Unsupported(Unsupported::QuizAnswer(
                    guard.item.clone().unwrap_or_default(),
                ));
            }
        }
        // Quoting the lesson is never a leak, whatever the lesson says.
        let texts: Vec<&str> = self.passages.iter().map(Source::text).collect();
        if let Some(verdict) = quote_verdict(&texts, sentence, cited) {
            return verdict;
        }
        if self.prompts.reveals_rules(sentence) {
            return Verdict::Unsupported(Unsupported::Leak);
        }
        self.verifier().judge_claim(sentence, cited)
    }
}
