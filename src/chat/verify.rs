//! The verifier: judges one sentence of a model's answer against the passages the model was
//! given, before any learner sees it. Pure: text in, verdict out; no I/O, no model.
//!
//! A sentence is supported by a set of passages when
//! - every number it states (after normalisation: "200,000" = "200 000" = "200 thousand") is
//!   stated there too (or in the lesson's title);
//! - every capitalised name or term, and every word mixing letters and digits ("GPT-4o"), occurs
//!   there (or in the learner's question or the lesson's title);
//! - enough of its content words occur there ([`MIN_SUPPORT`]), after the index's own analysis;
//! - its polarity agrees with the passage sentence it matches best: a negation must be matched,
//!   and a negated passage sentence must not be stated positively.
//!
//! A sentence citing passages that do not support it is checked against each other passage, and
//! its citation corrected when one does. A sentence quoting a passage word for word is supported
//! by that passage. Friendly and connective sentences ("Good question!") need no support.

use crate::index::{Analyzer, WordSet};
use crate::text;
use std::sync::Arc;

/// Least share of a sentence's content words that its supporting passages must contain.
///
/// Tuned on the tuning half of the perturbation suite (`examples/verify-eval.rs`: the sample
/// course's tuning lessons and SQuAD articles 1 to 4): at 0.5, faithful paraphrases are shown
/// and sentences added from another article are removed; numbers and names, not this share,
/// catch swapped facts.
pub const MIN_SUPPORT: f32 = 0.5;

/// Between this share and [`MIN_SUPPORT`], with every number and name supported and the
/// polarity agreeing, a sentence is *undecided*: removed by the lexical verifier alone, or sent
/// to the second-opinion model when one is configured.
pub const MIN_UNDECIDED: f32 = 0.25;

/// Least share of a sentence's content words that one place in a passage (a sentence and the
/// next, with the section's title) must contain. Words gathered from all over a passage make a
/// new claim in the lesson's vocabulary ("OLMo's release also included the full logs of every
/// training run."), not a restatement of one of its sentences.
///
/// Tuned on the tuning sets of the perturbation suite: see BENCHMARKS.md ("Verification").
pub const MIN_LOCAL: f32 = 0.5;

/// How many consecutive passage sentences count as one place for [`MIN_LOCAL`].
const LOCAL_WINDOW: usize = 2;

/// A sentence restating one passage sentence this closely (this share of its content words in
/// that one sentence) must not bring in a content word the passages lack: that is a swapped
/// word ("wastes bandwidth" for "wastes money"), not a paraphrase. Judged *undecided*.
pub const NEAR_RESTATEMENT: f32 = 0.75;

/// Fewest content words for [`NEAR_RESTATEMENT`] to apply: a short sentence is a paraphrase
/// more often than a copy.
const NEAR_RESTATEMENT_MIN_TERMS: usize = 5;

/// Ordinary words that open sentences: a capitalised first word that is none of these (and not a
/// stop or filler word) is checked like a name ("Linux is a branch of ..." must not pass).
const STARTERS: &[&str] = &[
    "it",
    "its",
    "this",
    "that",
    "these",
    "those",
    "they",
    "their",
    "there",
    "here",
    "he",
    "she",
    "we",
    "you",
    "your",
    "our",
    "one",
    "each",
    "every",
    "all",
    "both",
    "most",
    "many",
    "some",
    "any",
    "no",
    "none",
    "few",
    "several",
    "other",
    "another",
    "such",
    "same",
    "yes",
    "not",
    "instead",
    "rather",
    "because",
    "since",
    "while",
    "when",
    "where",
    "once",
    "after",
    "before",
    "until",
    "unless",
    "although",
    "though",
    "if",
    "even",
    "only",
    "just",
    "still",
    "also",
    "however",
    "so",
    "then",
    "thus",
    "therefore",
    "first",
    "second",
    "third",
    "next",
    "last",
    "finally",
    "then",
    "today",
    "now",
    "often",
    "usually",
    "sometimes",
    "always",
    "never",
    "typically",
    "generally",
    "mostly",
    "mainly",
    "partly",
    "unlike",
    "like",
    "as",
    "for",
    "with",
    "without",
    "by",
    "from",
    "in",
    "on",
    "at",
    "to",
    "of",
    "into",
    "over",
    "under",
    "between",
    "through",
    "during",
    "about",
    "against",
    "among",
    "within",
    "per",
    "via",
    "using",
    "use",
    "start",
    "run",
    "check",
    "make",
    "try",
    "keep",
    "think",
    "remember",
    "note",
    "ask",
    "look",
    "see",
    "consider",
    "set",
    "build",
    "pick",
    "choose",
    "compare",
    "measure",
    "avoid",
    "test",
    "watch",
    "read",
    "write",
    "send",
    "give",
    "take",
    "get",
    "plan",
    "what",
    "which",
    "who",
    "why",
    "how",
    "whether",
    "put",
    "good",
    "great",
    "sure",
    "overall",
    "more",
    "less",
    "much",
    "very",
    "well",
    "let",
    "let's",
    "there's",
    "it's",
    "that's",
    "here's",
    "essentially",
    "basically",
    "simply",
    "in",
    "an",
    "the",
    "a",
    "gather",
    "work",
    "confirm",
    "collect",
    "find",
    "ensure",
    "add",
    "count",
    "multiply",
    "plot",
    "score",
    "record",
    "estimate",
    "review",
    "treat",
    "stop",
    "follow",
    "decide",
    "prefer",
    "pay",
    "host",
    "keep",
    "expect",
    "assume",
    "list",
    "label",
    "train",
    "route",
    "send",
    "limit",
    "mark",
    "log",
    "monitor",
    "verify",
    "validate",
    "define",
    "describe",
    "name",
    "begin",
    "open",
    "close",
    "yes",
    "no",
    "true",
    "false",
    "key",
    "main",
    "big",
    "small",
    "large",
    "new",
    "old",
];

/// True for a word that opens sentences without naming anything: the words above, and adverbs
/// ("Normally, ...").
fn is_starter(word: &str) -> bool {
    let lower = word.to_lowercase();
    STARTERS.contains(&lower.as_str()) || lower.ends_with("ly")
}

/// A passage given to the model: its text, and what it offers as support, analysed the first time
/// a sentence needs it (a sentence citing one passage correctly analyses only that one), or taken
/// from an [`EvidenceCache`] that analysed it for an earlier answer.
#[derive(Debug)]
pub struct Source {
    section: String,
    text: String,
    evidence: std::sync::OnceLock<Arc<Evidence>>,
    /// Where earlier answers' analyses are kept, and this passage's id there.
    cache: Option<(EvidenceCache, String)>,
}

impl Source {
    /// A passage under its section's title.
    pub fn new(section: &str, text: &str) -> Source {
        Source {
            section: section.to_string(),
            text: text.to_string(),
            evidence: std::sync::OnceLock::new(),
            cache: None,
        }
    }

    /// The same, its analysis shared through `cache` under the passage's `id`.
    pub fn cached(mut self, cache: &EvidenceCache, id: &str) -> Source {
        self.cache = Some((cache.clone(), id.to_string()));
        self
    }

    /// The passage text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn evidence(&self, analyzer: &Analyzer) -> &Evidence {
        self.evidence.get_or_init(|| {
            let analyse = || Evidence::new(analyzer, &self.text, &self.section);
            match &self.cache {
                Some((cache, id)) => cache.get_or_analyse(id, analyse),
                None => Arc::new(analyse()),
            }
        })
    }
}

/// Passages analysed for earlier answers, by passage id, so that the passages of the lessons in
/// use are analysed once rather than for every answer. Bounded: the least recently used go
/// first. One cache serves one version of the catalog (a reload starts a new one, since a passage
/// id may then name new text).
#[derive(Clone, Debug)]
pub struct EvidenceCache(Arc<crate::memo::Memo<String, Evidence>>);

impl EvidenceCache {
    /// A cache of at most `passages` analysed passages.
    pub fn new(passages: std::num::NonZeroUsize) -> EvidenceCache {
        EvidenceCache(Arc::new(crate::memo::Memo::new(passages.get())))
    }

    /// The analysis of passage `id`, made by `analyse` (outside the lock) when not kept.
    fn get_or_analyse(&self, id: &str, analyse: impl FnOnce() -> Evidence) -> Arc<Evidence> {
        self.0.get_or_make(id, || Arc::new(analyse()))
    }
}

/// What one passage offers as support.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// Analyzed terms of the passage and its section title.
    terms: WordSet,
    /// Lower-cased words of the passage and its section title (names are checked by word).
    words: WordSet,
    /// Numbers the passage states.
    numbers: Vec<f64>,
    /// Each sentence (list item, table cell) of the passage: its terms, whether it negates,
    /// and whether it is a table cell.
    sentences: Vec<(WordSet, bool, bool)>,
    /// Terms of the section's title, which every place in the passage shares.
    title: WordSet,
}

impl Evidence {
    /// Analyses a passage (and the title of its section).
    fn new(analyzer: &Analyzer, passage: &str, section: &str) -> Evidence {
        let title: WordSet = analyzer.terms(section).into_iter().collect();
        let mut terms = title.clone();
        let mut words = lower_words(section);
        let mut numbers: Vec<f64> = text::numbers(section).iter().map(|n| n.value).collect();
        // One analysis of the whole passage, its terms then assigned to sentences by offset.
        let tokens = analyzer.tokens(passage);
        let mut sentences = Vec::new();
        for line in passage.lines() {
            // A table row's cells state separate things: each is judged on its own polarity.
            let row = text::is_table_row(line);
            let pieces: Vec<&str> = if row {
                line.split("; ").collect()
            } else {
                text::split_sentences(line)
            };
            for sentence in pieces {
                // `sentence` is a slice of `passage`: its offset is the distance between them.
                let start = sentence.as_ptr() as usize - passage.as_ptr() as usize;
                let end = start + sentence.len();
                let sentence_terms: WordSet = tokens
                    .iter()
                    .filter(|(at, _)| (start..end).contains(at))
                    .map(|(_, t)| t.clone())
                    .collect();
                sentences.push((sentence_terms, text::is_negated(sentence), row));
            }
        }
        terms.extend(tokens.into_iter().map(|(_, t)| t));
        words.extend(lower_words(passage));
        numbers.extend(text::numbers(passage).iter().map(|n| n.value));
        Evidence {
            terms,
            words,
            numbers,
            sentences,
            title,
        }
    }

    /// The most of `terms` that one place of the passage holds: [`LOCAL_WINDOW`] consecutive
    /// sentences and the section's title.
    fn most_in_one_place(&self, terms: &[String]) -> usize {
        let windows = self.sentences.len().saturating_sub(LOCAL_WINDOW - 1).max(1);
        (0..windows)
            .map(|start| {
                let place =
                    &self.sentences[start..(start + LOCAL_WINDOW).min(self.sentences.len())];
                terms
                    .iter()
                    .filter(|t| {
                        self.title.contains(*t) || place.iter().any(|(s, _, _)| s.contains(*t))
                    })
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

fn lower_words(text: &str) -> WordSet {
    text::words(text).map(|(_, w)| w.to_lowercase()).collect()
}

/// What else may back a name or a number: the learner's question and the lesson's title.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Lower-cased words of the question and the title.
    words: WordSet,
    /// Analyzed terms of the question and the title.
    terms: WordSet,
    /// Numbers in the lesson's title (not the question's: a learner's wrong guess must not
    /// become the answer).
    numbers: Vec<f64>,
}

impl Context {
    /// The context of one question.
    pub fn new(analyzer: &Analyzer, question: &str, title: &str) -> Context {
        let mut words = lower_words(question);
        words.extend(lower_words(title));
        let mut terms: WordSet = analyzer.terms(question).into_iter().collect();
        terms.extend(analyzer.terms(title));
        Context {
            words,
            terms,
            numbers: text::numbers(title).iter().map(|n| n.value).collect(),
        }
    }
}

/// Why a sentence was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// A number the passages do not state.
    Number(String),
    /// A name or term the passages do not contain.
    Name(String),
    /// Too few of its content words occur in the passages.
    Words { found: usize, of: usize },
    /// Its words occur in the passages, but too few of them in any one place.
    Scattered { found: usize, of: usize },
    /// It restates a passage sentence with this word put in, which the passages lack.
    Substituted(String),
    /// It negates what the passage states, or states what the passage negates.
    Polarity,
    /// It repeats the tutor's instructions.
    Leak,
    /// The second-opinion model judged it unsupported.
    SecondOpinion,
    /// It gives away the answer to this quiz item (empty: the answer a hint must not quote).
    QuizAnswer(String),
}

impl Unsupported {
    /// Signs of doubt rather than missing support: every number, name and enough words are in
    /// the passages, so the lexical verifier alone keeps the sentence; a second-opinion model,
    /// when one is configured, is asked about it.
    pub fn passes_lexically(&self) -> bool {
        matches!(
            self,
            Unsupported::Scattered { .. } | Unsupported::Substituted(_)
        )
    }

    /// A stable word for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Unsupported::Number(_) => "number",
            Unsupported::Name(_) => "name",
            Unsupported::Words { .. } => "words",
            Unsupported::Scattered { .. } => "scattered",
            Unsupported::Substituted(_) => "substituted",
            Unsupported::Polarity => "polarity",
            Unsupported::Leak => "leak",
            Unsupported::SecondOpinion => "second_opinion",
            Unsupported::QuizAnswer(_) => "quiz_answer",
        }
    }
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsupported::Number(n) => write!(f, "the number {n} is not in the passages"),
            Unsupported::Name(n) => write!(f, "\"{n}\" is not in the passages"),
            Unsupported::Words { found, of } => {
                write!(
                    f,
                    "only {found} of its {of} content words are in the passages"
                )
            }
            Unsupported::Scattered { found, of } => write!(
                f,
                "only {found} of its {of} content words are in any one place of the passages"
            ),
            Unsupported::Substituted(w) => write!(
                f,
                "it restates a passage sentence with \"{w}\", which the passages do not have"
            ),
            Unsupported::Polarity => write!(f, "its negation does not match the passage"),
            Unsupported::Leak => write!(f, "it repeats the tutor's instructions"),
            Unsupported::SecondOpinion => write!(f, "the verifier model found no support"),
            Unsupported::QuizAnswer(item) if item.is_empty() => {
                write!(f, "it gives the answer away in a hint")
            }
            Unsupported::QuizAnswer(item) => {
                write!(f, "it gives away the answer to quiz item `{item}`")
            }
        }
    }
}

/// The verdict on one sentence.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Supported by the passages it cites (numbered from 1); `cites` may add a citation to an
    /// uncited sentence.
    Supported { cites: Vec<usize> },
    /// Supported, but by another passage than the one cited: the citation is corrected.
    Corrected { from: Vec<usize>, to: Vec<usize> },
    /// A friendly or connective phrase that states nothing.
    Neutral,
    /// Numbers, names and polarity are supported but only part of the words are (see
    /// [`MIN_UNDECIDED`]), or all are but with a sign of doubt ([`Unsupported::passes_lexically`]):
    /// a second-opinion model may judge it.
    Undecided { cites: Vec<usize>, why: Unsupported },
    /// Not supported: removed.
    Unsupported(Unsupported),
}

impl Verdict {
    /// A stable word for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Supported { .. } => "supported",
            Verdict::Corrected { .. } => "corrected",
            Verdict::Neutral => "neutral",
            Verdict::Undecided { .. } => "undecided",
            Verdict::Unsupported(_) => "unsupported",
        }
    }

    /// The passages the sentence ends up citing, when it is kept.
    pub fn cites(&self) -> &[usize] {
        match self {
            Verdict::Supported { cites } | Verdict::Corrected { to: cites, .. } => cites,
            _ => &[],
        }
    }
}

/// A sentence analysed for checking.
#[derive(Debug)]
struct Claim<'a> {
    /// The sentence, as written.
    body: &'a str,
    /// Content terms (analyzed, filler removed, deduplicated).
    terms: Vec<String>,
    /// Where in `body` each term's word starts, in the order of `terms`.
    offsets: Vec<usize>,
    /// Names and terms to find, as written.
    names: Vec<String>,
    /// Each name's lower-cased form and its analyzed term, in the order of `names`.
    name_forms: Vec<(String, Option<String>)>,
    /// Numbers, as written and as values.
    numbers: Vec<(String, f64)>,
    negated: bool,
}

/// Judges sentences against the passages of one answer.
pub struct Verifier<'a> {
    analyzer: &'a Analyzer,
    filler: &'a WordSet,
    passages: &'a [Source],
    context: &'a Context,
}

impl<'a> Verifier<'a> {
    /// A verifier over `passages` (numbered from 1 in the order given).
    pub fn new(
        analyzer: &'a Analyzer,
        filler: &'a WordSet,
        passages: &'a [Source],
        context: &'a Context,
    ) -> Verifier<'a> {
        Verifier {
            analyzer,
            filler,
            passages,
            context,
        }
    }

    /// Judges one sentence (citation markers already taken out) that cites `cited`: a word-for-
    /// word quote of a passage by [`quote_verdict`], anything else by [`Verifier::judge_claim`].
    pub fn judge(&self, sentence: &str, cited: &[usize]) -> Verdict {
        let texts: Vec<&str> = self.passages.iter().map(Source::text).collect();
        quote_verdict(&texts, sentence, cited).unwrap_or_else(|| self.judge_claim(sentence, cited))
    }

    /// Judges a sentence by its numbers, names, words and polarity (the lexical checks).
    pub fn judge_claim(&self, sentence: &str, cited: &[usize]) -> Verdict {
        let body = text::without_list_marker(sentence).trim();
        let cited = valid_citations(cited, self.passages.len());
        let claim = self.claim(body);
        if claim.terms.is_empty() && claim.names.is_empty() && claim.numbers.is_empty() {
            // "Good question!" states nothing; "Not really." does.
            return if claim.negated {
                Verdict::Unsupported(Unsupported::Polarity)
            } else {
                Verdict::Neutral
            };
        }
        let mut first_failure = None;
        if !cited.is_empty() {
            let support: Vec<&Evidence> = cited
                .iter()
                .map(|n| self.passages[n - 1].evidence(self.analyzer))
                .collect();
            match self.check(&claim, &support) {
                Ok(()) => return Verdict::Supported { cites: cited },
                Err(why) => first_failure = Some(why),
            }
        }
        // Another passage may support it: correct (or add) the citation.
        let mut best: Option<(usize, Unsupported)> = None;
        for (i, source) in self.passages.iter().enumerate() {
            let n = i + 1;
            if cited.len() == 1 && cited[0] == n {
                continue;
            }
            match self.check(&claim, &[source.evidence(self.analyzer)]) {
                Ok(()) => {
                    return if cited.is_empty() {
                        Verdict::Supported { cites: vec![n] }
                    } else {
                        Verdict::Corrected {
                            from: cited,
                            to: vec![n],
                        }
                    };
                }
                Err(why) => {
                    if best.as_ref().is_none_or(|(_, b)| rank(&why) > rank(b)) {
                        best = Some((n, why));
                    }
                }
            }
        }
        let (n, why) = match (first_failure, best) {
            (Some(why), Some((n, other))) if rank(&other) > rank(&why) => (vec![n], other),
            (Some(why), _) => (cited, why),
            (None, Some((n, why))) => (vec![n], why),
            (None, None) => (cited, Unsupported::Words { found: 0, of: 0 }),
        };
        match why {
            Unsupported::Words { found, of } | Unsupported::Scattered { found, of }
                if of > 0 && found as f32 / of as f32 >= MIN_UNDECIDED =>
            {
                Verdict::Undecided { cites: n, why }
            }
            Unsupported::Substituted(_) => Verdict::Undecided { cites: n, why },
            why => Verdict::Unsupported(why),
        }
    }

    fn claim<'b>(&self, body: &'b str) -> Claim<'b> {
        let tokens = self.analyzer.tokens(body);
        let numbers = text::numbers(body);
        let in_number = |at: usize| numbers.iter().any(|n| (n.start..n.end).contains(&at));
        let mut names = Vec::new();
        let mut name_forms = Vec::new();
        for (index, (at, word)) in text::words(body).enumerate() {
            if in_number(at) {
                continue;
            }
            let has_digit = word.chars().any(|c| c.is_ascii_digit());
            let has_letter = word.chars().any(char::is_alphabetic);
            let mut chars = word.chars();
            let capital = chars.next().is_some_and(char::is_uppercase);
            let inner_capital = chars.any(char::is_uppercase);
            let analyzed = tokens.iter().any(|(offset, _)| *offset == at);
            let name = (has_digit && has_letter)
                || (capital
                    && word.chars().count() > 1
                    && analyzed
                    && (index > 0 || inner_capital || !is_starter(word)));
            if name && !self.filler.contains(&word.to_lowercase()) {
                names.push(word.to_string());
                let stem = tokens
                    .iter()
                    .find(|(offset, _)| *offset == at)
                    .map(|(_, t)| t.clone());
                name_forms.push((word.to_lowercase(), stem));
            }
        }
        let mut seen = WordSet::default();
        let (terms, offsets) = tokens
            .into_iter()
            .filter(|(at, term)| {
                !in_number(*at)
                    && term.chars().count() > 1
                    && !matches!(term.as_str(), "ll" | "re" | "ve")
                    && !term.chars().all(|c| c.is_ascii_digit())
                    && !self.filler.contains(term)
                    && seen.insert(term.clone())
            })
            .map(|(at, term)| (term, at))
            .unzip();
        Claim {
            body,
            terms,
            offsets,
            names,
            name_forms,
            numbers: numbers
                .iter()
                .map(|n| (text::cut(body, n.start..n.end).to_string(), n.value))
                .collect(),
            negated: text::is_negated(without_answer_particle(body)),
        }
    }

    /// Checks a claim against the union of some passages.
    fn check(&self, claim: &Claim<'_>, support: &[&Evidence]) -> Result<(), Unsupported> {
        for (written, value) in &claim.numbers {
            let stated = support
                .iter()
                .flat_map(|e| e.numbers.iter())
                .chain(&self.context.numbers)
                .any(|n| text::same_number(*n, *value));
            if !stated {
                return Err(Unsupported::Number(written.clone()));
            }
        }
        for (name, (lower, stem)) in claim.names.iter().zip(&claim.name_forms) {
            let found = self.context.words.contains(lower)
                || support.iter().any(|e| e.words.contains(lower))
                || stem.as_ref().is_some_and(|t| {
                    self.context.terms.contains(t) || support.iter().any(|e| e.terms.contains(t))
                });
            if !found {
                return Err(Unsupported::Name(name.clone()));
            }
        }
        let found = claim
            .terms
            .iter()
            .filter(|t| support.iter().any(|e| e.terms.contains(*t)))
            .count();
        let of = claim.terms.len();
        // Short sentences need two supported words (or all they have): half of "Labs love
        // it" is a claim of its own.
        let needed = ((MIN_SUPPORT * of as f32).ceil() as usize).max(of.min(2));
        if found < needed {
            return Err(Unsupported::Words { found, of });
        }
        // Polarity against the passage sentence sharing the most terms with the claim.
        let min_shared = polarity_min_shared(claim.terms.len());
        let pieces = || {
            support
                .iter()
                .flat_map(|e| e.sentences.iter())
                .map(|(terms, negated, cell)| {
                    let shared = claim.terms.iter().filter(|t| terms.contains(*t)).count();
                    (shared, *negated, *cell)
                })
        };
        let best = pieces().max_by_key(|(shared, _, _)| *shared);
        if let Some((shared, negated, cell)) = best
            && shared >= min_shared
            && negated != claim.negated
            // A sentence read out from a table row spans several cells: one of them with the
            // claim's polarity is enough.
            && !(cell
                && pieces().any(|(shared, negated, cell)| {
                    cell && shared >= min_shared.min(2) && negated == claim.negated
                }))
        {
            return Err(Unsupported::Polarity);
        }
        // Signs of doubt, once every hard check passed: words from all over the passage...
        let local = support
            .iter()
            .map(|e| e.most_in_one_place(&claim.terms))
            .max()
            .unwrap_or(0);
        let needed_local = ((MIN_LOCAL * of as f32).ceil() as usize).max(of.min(2));
        if local < needed_local {
            return Err(Unsupported::Scattered { found: local, of });
        }
        // ...or a close restatement of one sentence with a word put in that no passage has.
        if of >= NEAR_RESTATEMENT_MIN_TERMS
            && let Some((closest, _, _)) = best
            && closest as f32 >= NEAR_RESTATEMENT * of as f32
            && let Some(put_in) = claim.terms.iter().position(|t| {
                !support.iter().any(|e| e.terms.contains(t)) && !self.context.terms.contains(t)
            })
        {
            let at = claim.offsets[put_in];
            let word = text::words(text::cut(claim.body, at..))
                .next()
                .map_or("", |(_, w)| w);
            return Err(Unsupported::Substituted(word.to_string()));
        }
        Ok(())
    }
}

/// A sentence without a leading "Yes," or "No,": the particle answers the learner's question
/// (whose polarity is the learner's); what follows is the claim.
fn without_answer_particle(sentence: &str) -> &str {
    let bytes = sentence.as_bytes();
    for particle in ["yes", "no"] {
        let n = particle.len();
        if bytes.len() > n
            && bytes[..n].eq_ignore_ascii_case(particle.as_bytes())
            && matches!(bytes[n], b',' | b':' | b';' | b'.' | b'!')
        {
            // The particle and its mark are ASCII, so what follows starts a character.
            return sentence.get(n + 1..).map_or(sentence, str::trim_start);
        }
    }
    sentence
}

/// How many terms a claim must share with a passage sentence before their polarities are
/// compared: a third of the claim's terms, at least two (or all a one-term claim has); a
/// sentence sharing one word with a longer claim is not the one it restates.
fn polarity_min_shared(terms: usize) -> usize {
    terms.div_ceil(3).max(2).min(terms.max(1))
}

/// The cited numbers that name one of `passages` passages (numbered from 1).
fn valid_citations(cited: &[usize], passages: usize) -> Vec<usize> {
    cited
        .iter()
        .copied()
        .filter(|n| (1..=passages).contains(n))
        .collect()
}

/// The verdict on a sentence that quotes one of `passages` (numbered from 1) word for word, as
/// the extractive answerer does: supported by that passage, its citation corrected when it cites
/// another. `None` when it quotes none (short fragments do not count).
pub fn quote_verdict(passages: &[&str], sentence: &str, cited: &[usize]) -> Option<Verdict> {
    let quote = text::without_list_marker(sentence)
        .trim()
        .trim_end_matches(['.', '!', '?', ':', ';', ','])
        .trim();
    if quote.len() < 12 {
        return None;
    }
    // One searcher for every passage (building it is most of the cost of a search).
    let finder = memchr::memmem::Finder::new(quote);
    let n = passages
        .iter()
        .position(|p| finder.find(p.as_bytes()).is_some())?
        + 1;
    let cited = valid_citations(cited, passages.len());
    Some(if cited.is_empty() || cited.contains(&n) {
        Verdict::Supported { cites: vec![n] }
    } else {
        Verdict::Corrected {
            from: cited,
            to: vec![n],
        }
    })
}

/// How close a failure came to support, to report the most telling reason.
fn rank(why: &Unsupported) -> u32 {
    match why {
        Unsupported::Words { found, of } if *of > 0 => 100 + (100 * found / of) as u32,
        // Only a doubt: every hard check passed.
        Unsupported::Scattered { found, of } if *of > 0 => 400 + (50 * found / of) as u32,
        Unsupported::Substituted(_) => 460,
        Unsupported::Polarity => 300,
        Unsupported::Name(_) | Unsupported::Number(_) => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::filler_terms;

    #[test]
    fn an_answer_particle_is_cut_only_when_it_is_one_and_any_first_character_is_safe() {
        assert_eq!(
            without_answer_particle("Yes, it runs offline."),
            "it runs offline."
        );
        assert_eq!(without_answer_particle("no: never."), "never.");
        assert_eq!(without_answer_particle("Nothing else."), "Nothing else.");
        // A first or second character of two or more bytes: these panicked once.
        for sentence in [
            "Möngke Khan succeeded Ögedei's son.",
            "Sí, es así.",
            "Nö, doch nicht.",
            "Yé!",
            "ñ",
            "日本語の文です。",
            "🙂, fine.",
            "",
        ] {
            assert_eq!(without_answer_particle(sentence), sentence);
        }
    }

    const PASSAGES: &[(&str, &str)] = &[
        (
            "Building a vocabulary",
            "Byte-pair encoding starts from single bytes. The builder merges the pair of adjacent symbols that occurs most often, and repeats until the vocabulary reaches a set size, typically between 32,000 and 200,000 tokens.",
        ),
        (
            "Costs",
            "Self-hosting is not free: you pay for GPUs even when they sit idle. Llama 3 runs on a single card.",
        ),
        (
            "Routing strategies",
            "Cascade: try the cheap model first, escalate if a check fails. Escalated requests take longer.",
        ),
    ];

    fn judge(sentence: &str, cited: &[usize]) -> Verdict {
        judge_in(PASSAGES, sentence, cited)
    }

    fn judge_in(passages: &[(&str, &str)], sentence: &str, cited: &[usize]) -> Verdict {
        let analyzer = Analyzer::new();
        let filler = filler_terms(&analyzer);
        let sources: Vec<Source> = passages
            .iter()
            .map(|(section, text)| Source::new(section, text))
            .collect();
        let context = Context::new(
            &analyzer,
            "How big does the vocabulary get?",
            "Tokens and Vocabularies",
        );
        Verifier::new(&analyzer, &filler, &sources, &context).judge(sentence, cited)
    }

    #[test]
    fn sentences_and_their_verdicts() {
        use Verdict::*;
        let supported = |cites: &[usize]| Supported {
            cites: cites.to_vec(),
        };
        let cases: Vec<(&str, &[usize], Verdict)> = vec![
            // Faithful: quoted, paraphrased, terse.
            (
                "Byte-pair encoding starts from single bytes.",
                &[1],
                supported(&[1]),
            ),
            (
                "The vocabulary usually ends up between 32,000 and 200,000 tokens.",
                &[1],
                supported(&[1]),
            ),
            ("It's 32 000 to 200 thousand tokens.", &[1], supported(&[1])),
            ("Escalated requests take longer.", &[], supported(&[3])),
            ("Llama-3 runs on a single card.", &[2], supported(&[2])),
            // A close restatement with a word the passage lacks: only a doubt, which the
            // lexical verdict keeps and a second opinion is asked about.
            (
                "Llama-3 runs on one single card.",
                &[2],
                Undecided {
                    cites: vec![2],
                    why: super::Unsupported::Substituted("one".into()),
                },
            ),
            // Friendly phrases need no support.
            ("Good question!", &[], Neutral),
            ("In short, here is what the lesson says.", &[], Neutral),
            // A wrong number, an invented name, a claim from elsewhere.
            (
                "The builder merges pairs until the vocabulary reaches about 500,000 tokens.",
                &[1],
                Unsupported(super::Unsupported::Number("500,000".into())),
            ),
            (
                "Byte-pair encoding was invented at Google, and the builder merges the pair of adjacent symbols that occurs most often.",
                &[1],
                Unsupported(super::Unsupported::Name("Google".into())),
            ),
            (
                "Large vocabularies are banned across Europe by new rules.",
                &[1],
                Unsupported(super::Unsupported::Name("Europe".into())),
            ),
            (
                "Large vocabularies are banned by strict new regulations.",
                &[1],
                Unsupported(super::Unsupported::Words { found: 1, of: 6 }),
            ),
            // "No," answers the learner's question; what follows is the claim.
            ("No, escalated requests take longer.", &[3], supported(&[3])),
            // A bare negation states something too.
            (
                "Not really.",
                &[1],
                Unsupported(super::Unsupported::Polarity),
            ),
            // Polarity: a negation added, a negation dropped.
            (
                "The builder never starts from single bytes.",
                &[1],
                Unsupported(super::Unsupported::Polarity),
            ),
            (
                "Self-hosting is free, since you pay for GPUs only when busy.",
                &[2],
                Unsupported(super::Unsupported::Polarity),
            ),
            // A right claim with the wrong citation is corrected.
            (
                "Escalated requests take longer in a cascade.",
                &[1],
                Corrected {
                    from: vec![1],
                    to: vec![3],
                },
            ),
            // A name may open the sentence.
            (
                "Linux runs on a single card.",
                &[2],
                Unsupported(super::Unsupported::Name("Linux".into())),
            ),
            // List markers are not numbers.
            ("2. Escalate if a check fails.", &[3], supported(&[3])),
        ];
        for (sentence, cited, expected) in cases {
            assert_eq!(judge(sentence, cited), expected, "{sentence}");
        }
    }

    #[test]
    fn a_passage_is_analysed_once_per_cache_and_again_in_a_new_one() {
        let analyzer = Analyzer::new();
        let cache = EvidenceCache::new(std::num::NonZeroUsize::MIN.saturating_add(1));
        let (section, text) = PASSAGES[0];
        let first = Source::new(section, text).cached(&cache, "lesson#part-1");
        let second = Source::new(section, text).cached(&cache, "lesson#part-1");
        assert!(std::ptr::eq(
            first.evidence(&analyzer),
            second.evidence(&analyzer)
        ));
        let other = EvidenceCache::new(std::num::NonZeroUsize::MIN);
        let fresh = Source::new(section, "Other text.").cached(&other, "lesson#part-1");
        assert!(!std::ptr::eq(
            first.evidence(&analyzer),
            fresh.evidence(&analyzer)
        ));
        assert!(fresh.evidence(&analyzer).terms.contains("text"));
    }

    #[test]
    fn partly_supported_sentences_are_undecided() {
        let verdict = judge(
            "Cascades escalate whenever a reviewer distrusts the cheap draft.",
            &[3],
        );
        assert!(
            matches!(verdict, Verdict::Undecided { ref cites, .. } if cites == &vec![3]),
            "{verdict:?}"
        );
    }

    #[test]
    fn doubts_are_undecided_and_pass_the_lexical_checks() {
        // One word swapped in a close restatement of a passage sentence.
        let verdict = judge(
            "The builder merges the pair of adjacent glyphs that occurs most often.",
            &[1],
        );
        assert_eq!(
            verdict,
            Verdict::Undecided {
                cites: vec![1],
                why: Unsupported::Substituted("glyphs".into())
            }
        );
        // A new claim made of words from far-apart sentences of one passage.
        let spread = &[(
            "Open models",
            "OLMo published its weights. Reviewers praised the documentation. The training code came later. Benchmarks were repeated twice. Many labs now keep logs of evaluation runs.",
        )];
        let verdict = judge_in(
            spread,
            "OLMo published weights while labs keep logs for its newest release.",
            &[1],
        );
        assert!(
            matches!(
                &verdict,
                Verdict::Undecided { cites, why: why @ Unsupported::Scattered { .. } }
                    if cites == &vec![1] && why.passes_lexically()
            ),
            "{verdict:?}"
        );
        // The same words from one place are no doubt, and a hard failure is not a doubt.
        assert_eq!(
            judge_in(
                spread,
                "Many labs keep logs of their evaluation runs.",
                &[1]
            ),
            Verdict::Supported { cites: vec![1] }
        );
        assert!(!Unsupported::Words { found: 1, of: 4 }.passes_lexically());
        assert!(!Unsupported::Polarity.passes_lexically());
    }
}
