//! Retrieval and the gate: a learner's question (plus recent history) becomes weighted terms,
//! BM25 ranks the passages of one lesson, and term coverage decides whether the lesson covers
//! the question at all.
//!
//! Free text never errors: it is analyzed into plain terms (no query syntax), so quotes, colons,
//! `AND`/`OR`, `C++`, emoji and other scripts are just words or nothing.

use crate::conversation::{self, Reading, Want};
use crate::index::{self, Fields, IndexError};
use crate::lessons::{Catalog, Lesson, Passage};
use crate::memo::Memo;
use crate::semantic::{self, Semantic, Vector, vectors::text_key};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TokenStream;
use tantivy::{IndexReader, ReloadPolicy, Searcher, Term};

/// Words that shape a question but say nothing about its topic ("what does … mean?").
pub(crate) const QUESTION_WORDS: &[&str] = &[
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "when",
    "where",
    "why",
    "how",
    "do",
    "does",
    "did",
    "done",
    "can",
    "could",
    "would",
    "should",
    "shall",
    "may",
    "might",
    "must",
    "i",
    "me",
    "my",
    "we",
    "our",
    "you",
    "your",
    "mean",
    "means",
    "meaning",
    "explain",
    "tell",
    "describe",
    "lesson",
    "please",
    "about",
    "anything",
    "something",
    "thing",
    "things",
    "s",
    "t",
    "am",
    "been",
    "being",
    "has",
    "have",
    "had",
    "here",
    "there",
    "some",
    "any",
    "give",
    "know",
    "say",
    "says",
    "said",
    "talk",
    "talks",
    "get",
    "from",
    "also",
    "again",
    "more",
    "much",
    "many",
    "like",
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank",
    "ok",
    "okay",
    "someone",
    "somebody",
    "anyone",
    "anybody",
    "after",
    "before",
    "during",
    "within",
    "without",
    "upon",
    "than",
    "then",
    "actually",
    "really",
    "exactly",
    "basically",
    "just",
    "even",
    "still",
    "ever",
];

/// Words that point back at the conversation, or say what kind of answer is wanted, rather
/// than name a topic ("why does *it matter*?", "what is *the catch*?", "and *the second one*?"):
/// left out of a follow-up's terms, so only its topic words are searched and must be found in
/// the lesson.
const NOT_TOPIC_WORDS: &[&str] = &[
    "it",
    "its",
    "that",
    "this",
    "those",
    "these",
    "them",
    "they",
    "their",
    "one",
    "ones",
    "more",
    "else",
    "example",
    "examples",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "last",
    "final",
    "next",
    "previous",
    "other",
    "others",
    "another",
    "same",
    "former",
    "latter",
    "elaborate",
    "further",
    "and",
    "but",
    "so",
    "or",
    "then",
    "he",
    "she",
    "his",
    "her",
    "him",
    "such",
    "step",
    "steps",
    "item",
    "items",
    "point",
    "points",
    "number",
    "part",
    "bit",
    "detail",
    "details",
    "go",
    "on",
    "continue",
    "catch",
    "downside",
    "downsides",
    "drawback",
    "drawbacks",
    "disadvantage",
    "disadvantages",
    "tradeoff",
    "tradeoffs",
    "trade",
    "off",
    "weakness",
    "weaknesses",
    "weak",
    "strength",
    "strengths",
    "cons",
    "pros",
    "limitation",
    "limitations",
    "problem",
    "problems",
    "reason",
    "reasons",
    "purpose",
    "matter",
    "matters",
    "important",
    "work",
    "works",
    "use",
    "used",
    "useful",
    "happen",
    "happens",
    "difference",
    "differ",
    "compare",
    "good",
    "bad",
    "benefit",
    "benefits",
    "advantage",
    "advantages",
    "true",
    "right",
    "wrong",
    "way",
    "ways",
    "idea",
    "sense",
    "case",
    "cases",
    "kind",
    "kinds",
    "since",
    "long",
    "often",
    "usually",
    "really",
    "why",
    "when",
    "where",
    "who",
    "which",
    "well",
    "better",
    "worse",
    "best",
    "worst",
    "help",
    "helps",
    "danger",
    "dangerous",
    "risky",
    "safe",
    "simply",
    "simple",
    "word",
    "words",
    "ok",
    "okay",
    "yes",
    "no",
    "sure",
    "show",
    "list",
    "name",
    "names",
    "summary",
    "summarise",
    "summarize",
    "short",
    "question",
    "questions",
    "thing",
    "things",
];

/// Share of a previous answer's terms a passage must hold to be the one it stood on (an
/// answer quoting two passages holds about half of each).
const ANCHOR_MIN_SHARE: f32 = 0.4;
/// How many of a previous answer's rarest terms find the passage it stood on.
const ANCHOR_TERMS: usize = 12;

/// Weight of the terms added for the kind of answer a question wants.
const WANTED_WEIGHT: f32 = 0.2;

/// Tunable numbers of retrieval and the gate.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalSettings {
    /// Passages given to the model.
    pub passages: usize,
    /// Passages examined by the gate.
    pub candidates: usize,
    /// Extra weight of section-title matches (titles are also part of the ranked text).
    pub section_boost: f32,
    /// Weight of terms taken from the conversation history.
    pub history_weight: f32,
    /// Coverage (share of the question's term weight found in one passage) at or above which
    /// the lesson covers the question.
    pub sure_coverage: f32,
    /// Coverage below which the lesson does not cover the question. Between the two, the
    /// question is refused only when another lesson covers it clearly better.
    pub min_coverage: f32,
    /// How much better another lesson must cover a borderline question to take it.
    pub elsewhere_margin: f32,
    /// With a semantic model: the weight of BM25 (relative to the lesson's best passage) beside
    /// the question's cosine similarity with a passage when ranking.
    pub lexical_weight: f32,
    /// With a semantic model: similarity of the best passage at or above which the lesson covers
    /// the question, whatever its words.
    pub sure_similarity: f32,
    /// Similarity below which meaning does not vouch for the question; between the two, it is
    /// covered unless another lesson's passage is clearly closer (`elsewhere_similarity`).
    pub min_similarity: f32,
    /// How much closer another lesson's passage must be to take a borderline question.
    pub elsewhere_similarity: f32,
    /// With a semantic model: a question this close in meaning to one of the lesson's quiz
    /// questions asks it, in other words (it gets the item's hint, never its answer).
    pub quiz_similarity: f32,
    /// With a semantic model: a question this close to a quiz question comes near it (the item's
    /// answer is kept out of the reply).
    pub quiz_near_similarity: f32,
    /// With a semantic model: how much nearer than every other quiz question the nearest must
    /// be for meaning to count (a question on the topic of several items asks none of them).
    pub quiz_margin: f32,
    /// With a semantic model: a free-text quiz reply this close in meaning to the expected
    /// answer (or one it accepts) is correct, unless it contradicts it (a negation, another
    /// number).
    pub grade_similarity: f32,
    /// With a semantic model: how much nearer to the expected answer than to every other quiz
    /// answer of the lesson such a reply must be ("open-weight models" is near "fully open
    /// models", and nearer still to another item's "open weights with closed data").
    pub grade_margin: f32,
    /// With a semantic model: a short message this close to an example of small talk (a
    /// greeting, thanks, a request for help), and nearer to it than to the lesson, is that small
    /// talk.
    pub small_talk_similarity: f32,
    /// With a semantic model: how much nearer to the example of small talk than to the lesson's
    /// best passage such a message must be ("this is confusing, can you help?" is not a
    /// question about confusion).
    pub small_talk_margin: f32,
}

impl Default for RetrievalSettings {
    fn default() -> Self {
        RetrievalSettings {
            passages: 4,
            candidates: 8,
            section_boost: 0.5,
            history_weight: 0.35,
            sure_coverage: 0.5,
            min_coverage: 0.35,
            elsewhere_margin: 0.2,
            lexical_weight: 0.3,
            sure_similarity: 0.5,
            min_similarity: 0.35,
            elsewhere_similarity: 0.2,
            quiz_similarity: 0.55,
            quiz_near_similarity: 0.5,
            quiz_margin: 0.25,
            grade_similarity: 0.6,
            grade_margin: 0.3,
            small_talk_similarity: 0.5,
            small_talk_margin: 0.1,
        }
    }
}

/// A question term with its weight in the catalog.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueryTerm {
    pub term: String,
    /// Inverse document frequency over the whole catalog (capped for unseen words).
    pub idf: f32,
    /// 1.0 for the learner's message, lower for terms from history.
    pub weight: f32,
}

/// One ranked passage.
#[derive(Debug, Clone)]
pub struct Hit {
    pub lesson: Arc<Lesson>,
    /// Index into `lesson.passages`.
    pub passage: usize,
    /// BM25 score.
    pub score: f32,
    /// Share of the question's term weight this passage (with its section title) contains
    /// (computed by the gate; 0 for plain [`Retriever::search`]).
    pub coverage: f32,
    /// (lesson, passage) position in the catalog: the tie-breaker between equal scores, and the
    /// key of the passage's analysed terms.
    order: (u32, u32),
}

impl Hit {
    /// The passage itself.
    pub fn passage(&self) -> &Passage {
        &self.lesson.passages[self.passage]
    }
}

/// Why the gate decided as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateReason {
    /// A passage covers enough of the question.
    Covered,
    /// The question has no words the tutor can search for.
    NoSearchableWords,
    /// No passage of the lesson covers enough of the question.
    NotCovered,
    /// The lesson covers the question only partly, and another lesson covers it clearly better.
    BetterElsewhere,
    /// Not searched: small talk, or a question in another language than the lesson's.
    NotAQuestion,
}

impl GateReason {
    /// The reason as a stable word, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            GateReason::Covered => "covered",
            GateReason::NoSearchableWords => "no_searchable_words",
            GateReason::NotCovered => "not_covered",
            GateReason::BetterElsewhere => "better_elsewhere",
            GateReason::NotAQuestion => "not_a_question",
        }
    }
}

/// Retrieval results plus the gate's decision.
#[derive(Debug, Clone)]
pub struct Retrieval {
    pub terms: Vec<QueryTerm>,
    /// Best first; at most `candidates`.
    pub hits: Vec<Hit>,
    /// Best coverage among the hits.
    pub coverage: f32,
    pub covered: bool,
    pub reason: GateReason,
    /// True when the message was read as a follow-up and history terms counted for the gate.
    pub follow_up: bool,
    /// For a follow-up: the passage the previous answer stood on, when it was found.
    pub anchor: Option<String>,
    /// What the message is (small talk, follow-up, ordinal, the kind of answer it wants).
    pub reading: Reading,
    /// With a semantic model: the best passage's similarity to the message.
    pub similarity: Option<f32>,
    /// The message's vector, when it was matched by meaning.
    pub vector: Option<Vector>,
}

impl Retrieval {
    /// No retrieval: the message was answered before any search (small talk, another
    /// language).
    pub fn unread(reading: Reading) -> Retrieval {
        Retrieval {
            terms: Vec::new(),
            hits: Vec::new(),
            coverage: 0.0,
            covered: false,
            reason: GateReason::NotAQuestion,
            follow_up: false,
            anchor: None,
            reading,
            similarity: None,
            vector: None,
        }
    }
}

/// What came before a message in the conversation, as retrieval uses it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Earlier<'a> {
    /// The learner's earlier messages, oldest first.
    pub questions: &'a [String],
    /// The tutor's last answer.
    pub previous_answer: Option<&'a str>,
}

impl Earlier<'_> {
    /// A first message: nothing came before.
    pub const NONE: Earlier<'static> = Earlier {
        questions: &[],
        previous_answer: None,
    };
}

/// The index could not be searched (a damaged or vanished segment): an error, not an empty
/// result.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the index search failed: {0}")]
pub struct SearchFailed(pub String);

/// What the gate decides on, once the lesson's passages are scored.
#[derive(Debug, Clone, Copy)]
pub struct GateInput {
    /// The message is a sum ("2+2"): never a topic.
    pub arithmetic: bool,
    /// The message has words the tutor can search for.
    pub searchable: bool,
    /// Coverage of a follow-up's own topic words alone (1.0 for a first question).
    pub own_coverage: f32,
    /// The best passage's coverage of the gate's terms.
    pub coverage: f32,
    pub follow_up: bool,
    /// With a semantic model: the best passage's similarity to the message itself (for a
    /// follow-up too: the history cannot carry it).
    pub similarity: Option<f32>,
}

/// How well the best other lesson answers the question, for a question in doubt.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OtherLesson {
    /// Its best passage's coverage of the question's terms.
    pub coverage: Option<f32>,
    /// Its best passage's similarity to the question (with a semantic model).
    pub similarity: Option<f32>,
}

/// Where one signal stands against its two thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Sure,
    Doubt,
    No,
}

fn verdict(value: f32, sure: f32, min: f32) -> Verdict {
    if value >= sure {
        Verdict::Sure
    } else if value >= min {
        Verdict::Doubt
    } else {
        Verdict::No
    }
}

/// The gate: answer, or refuse and why, on two signals: the share of the question's words a
/// passage holds (coverage) and, with a semantic model, how close in meaning the best passage
/// is (similarity). Covered when either is sure; refused when neither reaches its minimum; in
/// between, and when only meaning vouches for it, refused only when another lesson is clearly
/// better on either signal (`other_lesson`, asked only then: it costs a catalog-wide search;
/// never for a follow-up, whose topic is set by the conversation). A follow-up's own words
/// must be found in the lesson, or its own meaning be near a passage: history can resolve a
/// reference, never carry an off-topic message.
pub fn gate<E>(
    input: &GateInput,
    settings: &RetrievalSettings,
    other_lesson: impl FnOnce() -> Result<OtherLesson, E>,
) -> Result<(bool, GateReason), E> {
    let words = verdict(
        input.coverage,
        settings.sure_coverage,
        settings.min_coverage,
    );
    let meaning = input.similarity.map_or(Verdict::No, |s| {
        verdict(s, settings.sure_similarity, settings.min_similarity)
    });
    let own_meaning = input
        .similarity
        .is_some_and(|s| s >= settings.min_similarity);
    Ok(if input.arithmetic {
        (false, GateReason::NotCovered)
    } else if !input.searchable && meaning != Verdict::Sure {
        (false, GateReason::NoSearchableWords)
    } else if input.own_coverage < settings.sure_coverage && !own_meaning {
        (false, GateReason::NotCovered)
    } else if words == Verdict::Sure {
        (true, GateReason::Covered)
    } else if words == Verdict::No
        && (meaning == Verdict::No || input.coverage <= 0.0 && meaning != Verdict::Sure)
    {
        // With not one of its words in the lesson, a question must be sure in meaning: merely
        // close ("how do I make guacamole?" beside a lesson's "recipe") is not covered.
        (false, GateReason::NotCovered)
    } else if input.follow_up {
        (true, GateReason::Covered)
    } else {
        let other = other_lesson()?;
        let better_words = other
            .coverage
            .is_some_and(|c| c >= input.coverage + settings.elsewhere_margin);
        let better_meaning = match (other.similarity, input.similarity) {
            (Some(theirs), Some(ours)) => theirs >= ours + settings.elsewhere_similarity,
            _ => false,
        };
        // A question only meaning vouches for goes where it means more; one the words
        // vouch for goes where the words are clearly better.
        if (meaning == Verdict::No && better_words)
            || (words == Verdict::No && better_meaning)
            || (better_words && better_meaning)
        {
            (false, GateReason::BetterElsewhere)
        } else {
            (true, GateReason::Covered)
        }
    })
}

/// One process-wide reader over the index plus the catalog it was built from.
pub struct Retriever {
    catalog: Arc<Catalog>,
    reader: IndexReader,
    fields: Fields,
    /// Passage key -> (lesson index in the catalog, passage index in the lesson).
    keys: HashMap<u64, (u32, u32)>,
    /// One analyzer per lesson language: a question is analyzed in its lesson's.
    analyzers: index::Analyzers,
    question_words: HashSet<String>,
    /// Stems of [`NOT_TOPIC_WORDS`].
    not_topic_words: HashSet<String>,
    settings: RetrievalSettings,
    /// The analysed terms of passages (each with its section title), by (lesson, passage)
    /// index in this retriever's catalog, as sorted hashes: coverage only asks whether a term
    /// occurs, and the passages of the lessons in use are analysed once, not for every
    /// question.
    passage_terms: Memo<(u32, u32), [u64]>,
    /// The passages' sentence vectors, when a semantic model is in use and the index holds its
    /// vectors.
    meaning: Option<Meaning>,
    /// Each lesson's position in the catalog.
    lesson_index: HashMap<String, u32>,
}

/// The passages' vectors, one row per passage of the catalog in order, and their units'.
struct Meaning {
    semantic: Arc<Semantic>,
    dimensions: usize,
    /// Row of each lesson's first passage.
    first_row: Vec<usize>,
    /// `rows × dimensions` numbers; a passage the index has no vector for has zeros (its
    /// similarity is 0, so meaning never vouches for it).
    vectors: Vec<f32>,
    /// The vectors of each passage's units (sentences, list items, table rows), in
    /// [`crate::text::units_of`] order: those of row `r` are `unit_start[r]..unit_start[r + 1]`.
    units: Vec<f32>,
    unit_start: Vec<usize>,
    /// The vectors of the quizzes' questions and answers ([`index::quiz_texts`]), by text.
    quiz: HashMap<semantic::vectors::TextKey, Vector>,
}

impl Meaning {
    /// Reads the vectors of the current version of `dir` for `catalog`, when they were made by
    /// `semantic`'s model.
    fn load(dir: &Path, catalog: &Catalog, semantic: Arc<Semantic>) -> Option<Meaning> {
        let Some(file) = index::read_vectors(dir) else {
            tracing::warn!(
                "the index has no passage vectors (built without a semantic model): matching words only; run `tutor index` to add them"
            );
            return None;
        };
        if file.identity != semantic.identity() || file.dimensions != semantic.dimensions() {
            tracing::warn!(
                index = %file.identity,
                model = %semantic.identity(),
                "the index's passage vectors were made by another model: matching words only until it is rebuilt with `tutor index`"
            );
            return None;
        }
        let dimensions = file.dimensions;
        let zeros = || std::iter::repeat_n(0.0, dimensions);
        let mut first_row = Vec::with_capacity(catalog.lessons.len());
        let mut vectors = Vec::with_capacity(catalog.passage_count() * dimensions);
        let mut units = Vec::new();
        let mut unit_start = vec![0];
        let mut missing = 0usize;
        for lesson in &catalog.lessons {
            first_row.push(vectors.len() / dimensions);
            for passage in &lesson.passages {
                // The texts the index embedded: the passage, then its units when it has more
                // than one (`index::meaning_texts`, so build and read never disagree).
                let texts = index::meaning_texts(&lesson.section_of(passage).title, &passage.text);
                let mut lookup =
                    |text: &str, into: &mut Vec<f32>| match file.vectors.get(&text_key(text)) {
                        Some(v) => into.extend_from_slice(v),
                        None => {
                            missing += 1;
                            into.extend(zeros());
                        }
                    };
                lookup(&texts[0], &mut vectors);
                if texts.len() > 1 {
                    for text in &texts[1..] {
                        lookup(text, &mut units);
                    }
                } else {
                    let row = &vectors[vectors.len() - dimensions..];
                    units.extend_from_slice(row);
                }
                unit_start.push(units.len() / dimensions);
            }
        }
        let mut quiz = HashMap::new();
        for text in catalog.lessons.iter().flat_map(|l| index::quiz_texts(l)) {
            let key = text_key(text);
            match file.vectors.get(&key) {
                Some(v) => {
                    quiz.insert(key, Vector::from(&v[..]));
                }
                None => missing += 1,
            }
        }
        if missing > 0 {
            tracing::warn!(
                missing,
                "texts without a vector in the index: matched by their words only"
            );
        }
        Some(Meaning {
            semantic,
            dimensions,
            first_row,
            vectors,
            units,
            unit_start,
            quiz,
        })
    }

    /// The similarity of `question` to each unit of passage `p` of lesson `l`.
    fn unit_similarities(&self, l: u32, p: u32, question: &[f32]) -> Vec<f32> {
        let row = self.first_row[l as usize] + p as usize;
        (self.unit_start[row]..self.unit_start[row + 1])
            .map(|u| {
                semantic::similarity(
                    question,
                    &self.units[u * self.dimensions..(u + 1) * self.dimensions],
                )
            })
            .collect()
    }

    /// How near `question` is to row `row`: the passage as a whole, or its nearest unit.
    fn row_similarity(&self, row: usize, question: &[f32]) -> f32 {
        let d = self.dimensions;
        let whole = semantic::similarity(question, &self.vectors[row * d..(row + 1) * d]);
        (self.unit_start[row]..self.unit_start[row + 1])
            .map(|u| semantic::similarity(question, &self.units[u * d..(u + 1) * d]))
            .fold(whole, f32::max)
    }

    /// Similarity of `question` to each passage of lesson `l`, in lesson order.
    fn lesson_similarities(&self, l: u32, passages: usize, question: &[f32]) -> Vec<f32> {
        let first = self.first_row[l as usize];
        (first..first + passages)
            .map(|row| self.row_similarity(row, question))
            .collect()
    }

    /// The lesson other than `except` with the passage closest to `question`: (lesson index,
    /// similarity).
    fn closest_other(&self, except: u32, question: &[f32]) -> Option<(u32, f32)> {
        let mut best: Option<(u32, f32)> = None;
        for (l, &first) in self.first_row.iter().enumerate() {
            if l as u32 == except {
                continue;
            }
            let end = self
                .first_row
                .get(l + 1)
                .copied()
                .unwrap_or(self.vectors.len() / self.dimensions);
            for row in first..end {
                let s = self.row_similarity(row, question);
                if best.is_none_or(|(_, b)| s > b) {
                    best = Some((l as u32, s));
                }
            }
        }
        best
    }
}

/// Passages kept analysed for coverage: about 300 lessons' worth, a few megabytes.
const ANALYSED_PASSAGES: usize = 4096;

/// A term's hash in [`Retriever::passage_terms`]: the same on every run (fixed keys).
fn term_hash(term: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(term)
}

impl Retriever {
    /// Opens the index at `dir` for the given catalog.
    pub fn open(
        catalog: Arc<Catalog>,
        dir: &Path,
        settings: RetrievalSettings,
    ) -> Result<Retriever, IndexError> {
        Retriever::open_with(catalog, dir, settings, None)
    }

    /// [`Retriever::open`] with a semantic model: questions are then also matched by meaning,
    /// when the index holds passage vectors made by that model (otherwise by words alone, with
    /// a warning).
    pub fn open_with(
        catalog: Arc<Catalog>,
        dir: &Path,
        settings: RetrievalSettings,
        semantic: Option<Arc<Semantic>>,
    ) -> Result<Retriever, IndexError> {
        let (index, fields) = index::open(dir)?;
        let meaning = semantic.and_then(|semantic| Meaning::load(dir, &catalog, semantic));
        let lesson_index = catalog
            .lessons
            .iter()
            .enumerate()
            .map(|(l, lesson)| (lesson.id.clone(), l as u32))
            .collect();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|source| IndexError::Tantivy {
                path: dir.to_path_buf(),
                source,
            })?;
        let mut keys = HashMap::with_capacity(catalog.passage_count());
        for (l, lesson) in catalog.lessons.iter().enumerate() {
            for (p, passage) in lesson.passages.iter().enumerate() {
                keys.insert(index::passage_key(&passage.id), (l as u32, p as u32));
            }
        }
        let analyzers = index::Analyzers::new();
        // The word lists are English; their stems in every language are left out alike.
        let stems = |words: &[&str]| -> HashSet<String> {
            analyzers
                .iter()
                .flat_map(|(_, analyzer)| words.iter().flat_map(|w| analyzer.terms(w)))
                .chain(words.iter().map(|w| w.to_string()))
                .collect()
        };
        let question_words = stems(QUESTION_WORDS);
        let not_topic_words = stems(NOT_TOPIC_WORDS);
        Ok(Retriever {
            catalog,
            reader,
            fields,
            keys,
            analyzers,
            question_words,
            not_topic_words,
            settings,
            passage_terms: Memo::new(ANALYSED_PASSAGES),
            meaning,
            lesson_index,
        })
    }

    /// True when questions are matched by meaning too.
    pub fn semantic(&self) -> Option<&Arc<Semantic>> {
        self.meaning.as_ref().map(|m| &m.semantic)
    }

    /// The similarity of `vector` to each unit of a hit's passage (sentences, list items, table
    /// rows, in [`crate::text::units_of`] order); `None` without meaning.
    pub fn unit_similarities(&self, hit: &Hit, vector: Option<&[f32]>) -> Option<Vec<f32>> {
        let meaning = self.meaning.as_ref()?;
        Some(meaning.unit_similarities(hit.order.0, hit.order.1, vector?))
    }

    /// The vector the index holds for a text of a lesson's quiz (an item's question, its
    /// answer or an answer it accepts); `None` without a semantic model, or for other text.
    pub fn quiz_vector(&self, text: &str) -> Option<Vector> {
        self.meaning.as_ref()?.quiz.get(&text_key(text)).cloned()
    }

    /// A message's vector, batched with other learners' (`None` without a semantic model).
    pub async fn question_vector(&self, message: &str) -> Option<Vector> {
        self.meaning.as_ref()?.semantic.question(message).await
    }

    /// The catalog this retriever serves.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The settings in force.
    pub fn settings(&self) -> &RetrievalSettings {
        &self.settings
    }

    /// Analyzes text in `language` into index terms (stemmed, stop words removed).
    pub fn analyze(&self, text: &str, language: &str) -> Vec<String> {
        self.analyzers.get(language).terms(text)
    }

    /// The language of a lesson (English when there is no such lesson).
    fn language_of(&self, lesson_id: &str) -> &str {
        self.catalog
            .get(lesson_id)
            .map_or("en", |lesson| lesson.language.as_str())
    }

    /// The key terms of a text in `language`: analyzed, without question words, deduplicated.
    pub fn key_terms(&self, text: &str, language: &str) -> Vec<String> {
        let mut seen = HashSet::new();
        self.analyze(text, language)
            .into_iter()
            .filter(|t| !self.question_words.contains(t) && seen.insert(t.clone()))
            .collect()
    }

    fn idf(&self, searcher: &Searcher, term: &str) -> f32 {
        let total = searcher.num_docs().max(1) as f32;
        let df = searcher
            .doc_freq(&Term::from_field_text(self.fields.content, term))
            .unwrap_or(0) as f32;
        // A word the catalog never uses weighs like a rare one, not infinitely: learners use
        // their own words, and one unknown word must not sink an otherwise covered question.
        let df = df.max(1.0);
        (1.0 + (total - df + 0.5) / (df + 0.5)).ln()
    }

    /// Ranks `lesson_id`'s passages for a message, then applies the gate to the message itself.
    ///
    /// History only resolves what a follow-up refers to: it is read as one when the conversation
    /// has begun and the message names no topic of its own ("why?", "and the second one?") or
    /// points back with few words of its own ("what are its weaknesses?"). Then the earlier
    /// questions' terms join at a lower weight, the passage the previous answer stood on comes
    /// first when the message adds nothing it lacks, and the message's own topic words must
    /// still be found in the lesson: "what about pizza?" is refused whatever came before.
    pub fn retrieve(
        &self,
        lesson_id: &str,
        message: &str,
        earlier: &Earlier<'_>,
    ) -> Result<Retrieval, SearchFailed> {
        let vector = self.question_vector_blocking(message);
        self.retrieve_read(
            lesson_id,
            message,
            conversation::read(message),
            earlier,
            vector.as_deref(),
        )
    }

    /// A message's vector computed on this thread (`None` without a semantic model).
    pub fn question_vector_blocking(&self, message: &str) -> Option<Vector> {
        self.meaning.as_ref()?.semantic.question_blocking(message)
    }

    /// [`Retriever::retrieve`] for a message already read with [`conversation::read`], with its
    /// vector when a semantic model is in use.
    pub fn retrieve_read(
        &self,
        lesson_id: &str,
        message: &str,
        reading: Reading,
        earlier: &Earlier<'_>,
        vector: Option<&[f32]>,
    ) -> Result<Retrieval, SearchFailed> {
        let searcher = self.reader.searcher();
        let language = self.language_of(lesson_id);
        let message_terms = self.key_terms(message, language);
        let own_topic: Vec<String> = message_terms
            .iter()
            .filter(|t| !self.not_topic_words.contains(*t))
            .cloned()
            .collect();
        let has_history = !earlier.questions.is_empty() || earlier.previous_answer.is_some();
        let follow_up =
            has_history && (own_topic.is_empty() || (reading.refers_back && own_topic.len() <= 3));
        // A follow-up searches its topic words; "the second one" and "the catch" only point.
        let searched = if follow_up {
            own_topic.clone()
        } else {
            message_terms.clone()
        };
        let mut terms = self.query_terms(&searcher, searched, 1.0);
        let mut anchor = None;
        if follow_up {
            terms.extend(self.history_terms(&searcher, earlier, &message_terms, language));
            anchor = match earlier.previous_answer {
                Some(answer) => self.anchor(&searcher, lesson_id, answer)?,
                None => None,
            };
        }

        // Words of the answer asked for ("cost", "trade-off" for "what is the catch?") rank
        // passages and sentences a little, and never count for the gate.
        let wanted = self.wanted_terms(&searcher, reading.want, &terms, language);
        let ranking: Vec<QueryTerm> = terms.iter().chain(&wanted).cloned().collect();
        let mut hits = self.search_with(
            &searcher,
            Some(lesson_id),
            &ranking,
            self.settings.candidates,
        )?;
        let gate_terms: Vec<&QueryTerm> = if follow_up {
            terms.iter().collect()
        } else {
            terms.iter().filter(|t| t.weight >= 1.0).collect()
        };
        for hit in &mut hits {
            hit.coverage = self.coverage(&gate_terms, hit);
        }
        // Meaning: each passage's similarity to the message ranks beside BM25, so a question in
        // the learner's own words finds the passage that says it in the lesson's.
        let mut lexical_coverage = hits.iter().map(|h| h.coverage).fold(0.0, f32::max);
        let mut by_meaning = false;
        let similarity = match (&self.meaning, vector, self.lesson_index.get(lesson_id)) {
            (Some(meaning), Some(vector), Some(&l)) => {
                // Meaning ranks where words fail: a question whose words a passage holds
                // (`sure_coverage`) keeps the ranking its words give, and a follow-up's own words
                // are a poor query alone ("what are its weaknesses?"): it is ranked by its words
                // and the history's, as without a model.
                let (fused, best) = self.fuse(meaning, l, vector, &hits, &gate_terms);
                if !follow_up && lexical_coverage < self.settings.sure_coverage {
                    hits = fused;
                    by_meaning = true;
                }
                Some(best)
            }
            _ => None,
        };
        // A follow-up's own topic words (its weight-1 terms), judged alone: the history cannot
        // carry them.
        let own: Vec<&QueryTerm> = terms.iter().filter(|t| t.weight >= 1.0).collect();
        let own_coverage = if follow_up && !own.is_empty() {
            let alone: Vec<QueryTerm> = own.iter().map(|t| (*t).clone()).collect();
            let alone = self.search_with(&searcher, Some(lesson_id), &alone, 2)?;
            hits.iter()
                .chain(&alone)
                .chain(anchor.iter())
                .map(|hit| self.coverage(&own, hit))
                .fold(0.0, f32::max)
        } else {
            1.0
        };
        if let Some(mut anchor) = anchor.clone() {
            // The passage the last answer stood on answers "why?" and "the second one?"; a
            // follow-up with words of its own keeps it only when it holds them.
            if own.is_empty() || self.coverage(&own, &anchor) >= 0.5 {
                anchor.coverage = self.coverage(&gate_terms, &anchor);
                hits.retain(|h| h.passage != anchor.passage);
                hits.insert(0, anchor);
            }
        }
        // "The second one", "step 3": the whole section of the best passage, in order, so a
        // list cut across passages is read as one.
        if reading.ordinal.is_some() {
            hits = self.best_section_first(hits, &gate_terms);
        }
        hits.truncate(self.settings.candidates);
        lexical_coverage = hits
            .iter()
            .map(|h| h.coverage)
            .fold(lexical_coverage, f32::max);
        let mut coverage = lexical_coverage;
        if !wanted.is_empty() {
            // The gate judges the passages the message's own words find, as without them.
            for hit in
                self.search_with(&searcher, Some(lesson_id), &terms, self.settings.candidates)?
            {
                coverage = coverage.max(self.coverage(&gate_terms, &hit));
            }
        }
        let (covered, reason) = gate(
            &GateInput {
                arithmetic: reading.arithmetic,
                searchable: !gate_terms.is_empty(),
                own_coverage,
                coverage,
                follow_up,
                similarity,
            },
            &self.settings,
            || {
                Ok(OtherLesson {
                    coverage: self
                        .best_other_lesson(&searcher, &terms, lesson_id)?
                        .map(|(_, other)| other),
                    similarity: self.closest_other_lesson(lesson_id, vector).map(|(_, s)| s),
                })
            },
        )?;
        terms.extend(wanted);
        Ok(Retrieval {
            terms,
            hits,
            coverage,
            covered,
            reason,
            follow_up,
            anchor: anchor.map(|a| a.passage().id.clone()),
            reading,
            similarity,
            // The answerer weighs units by the message's meaning only when its passages were
            // ranked by it.
            vector: vector.filter(|_| by_meaning).map(Vector::from),
        })
    }

    /// The lesson's passages ranked by meaning and words together: each passage's similarity
    /// to the question plus `lexical_weight` times its BM25 score relative to the best BM25 hit.
    /// Returns the best `candidates` (their coverage computed) and the best similarity.
    fn fuse(
        &self,
        meaning: &Meaning,
        l: u32,
        vector: &[f32],
        lexical: &[Hit],
        gate_terms: &[&QueryTerm],
    ) -> (Vec<Hit>, f32) {
        let lesson = &self.catalog.lessons[l as usize];
        let similarities = meaning.lesson_similarities(l, lesson.passages.len(), vector);
        let best = similarities.iter().copied().fold(0.0, f32::max);
        let top = lexical.iter().map(|h| h.score).fold(0.0, f32::max);
        let mut scored: Vec<(f32, u32)> = similarities
            .iter()
            .enumerate()
            .map(|(p, s)| {
                let words = lexical
                    .iter()
                    .find(|h| h.passage == p)
                    .map_or(0.0, |h| if top > 0.0 { h.score / top } else { 0.0 });
                (s + self.settings.lexical_weight * words, p as u32)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.truncate(self.settings.candidates);
        let hits = scored
            .into_iter()
            .map(|(score, p)| {
                let mut hit = Hit {
                    lesson: lesson.clone(),
                    passage: p as usize,
                    score,
                    coverage: 0.0,
                    order: (l, p),
                };
                hit.coverage = lexical
                    .iter()
                    .find(|h| h.passage == p as usize)
                    .map_or_else(|| self.coverage(gate_terms, &hit), |h| h.coverage);
                hit
            })
            .collect();
        (hits, best)
    }

    /// The other lesson with the passage closest in meaning to `vector`.
    fn closest_other_lesson(
        &self,
        except: &str,
        vector: Option<&[f32]>,
    ) -> Option<(Arc<Lesson>, f32)> {
        let meaning = self.meaning.as_ref()?;
        let except = self.lesson_index.get(except).copied().unwrap_or(u32::MAX);
        let (l, s) = meaning.closest_other(except, vector?)?;
        Some((self.catalog.lessons[l as usize].clone(), s))
    }

    /// A follow-up's words from the learner's earlier questions (the most recent first, three
    /// turns, at most 24 terms), at the history weight, leaving out the message's own.
    fn history_terms(
        &self,
        searcher: &Searcher,
        earlier: &Earlier<'_>,
        message_terms: &[String],
        language: &str,
    ) -> Vec<QueryTerm> {
        let mut history: Vec<QueryTerm> = Vec::new();
        for turn in earlier.questions.iter().rev().take(3) {
            for t in self.key_terms(turn, language) {
                if !message_terms.contains(&t) && !history.iter().any(|h| h.term == t) {
                    history.push(self.query_term(searcher, t, self.settings.history_weight));
                }
            }
        }
        history.truncate(24);
        history
    }

    /// `hits` with the whole section of the best one first, its passages in lesson order (up
    /// to the passages an answer reads), so a list cut across passages is read as one.
    fn best_section_first(&self, mut hits: Vec<Hit>, gate_terms: &[&QueryTerm]) -> Vec<Hit> {
        let Some(top) = hits.first().cloned() else {
            return hits;
        };
        let section = top.passage().section;
        let mut ordered: Vec<Hit> = top
            .lesson
            .passages
            .iter()
            .enumerate()
            .filter(|(_, p)| p.section == section)
            .map(|(i, _)| {
                let mut hit = Hit {
                    passage: i,
                    order: (top.order.0, i as u32),
                    ..top.clone()
                };
                hit.coverage = self.coverage(gate_terms, &hit);
                hit
            })
            .take(self.settings.passages)
            .collect();
        hits.retain(|h| !ordered.iter().any(|o| o.passage == h.passage));
        ordered.append(&mut hits);
        ordered
    }

    /// Terms of the kind of answer a question wants, at a low weight, that it does not have.
    fn wanted_terms(
        &self,
        searcher: &Searcher,
        want: Want,
        have: &[QueryTerm],
        language: &str,
    ) -> Vec<QueryTerm> {
        let words = match want {
            Want::Catch => "trade-off downside cost burden risk weakness drawback lock-in",
            Want::Reason => "because reason therefore means",
            _ => return Vec::new(),
        };
        let mut out: Vec<QueryTerm> = Vec::new();
        for term in self.analyze(words, language) {
            if !have.iter().chain(&out).any(|t| t.term == term) {
                out.push(self.query_term(searcher, term, WANTED_WEIGHT));
            }
        }
        out
    }

    /// The passage of the lesson a previous answer stood on: the one holding most of the
    /// answer's terms (at least [`ANCHOR_MIN_SHARE`] of their weight), if any.
    fn anchor(
        &self,
        searcher: &Searcher,
        lesson_id: &str,
        answer: &str,
    ) -> Result<Option<Hit>, SearchFailed> {
        // Citation markers ("[2]") are not words of the answer.
        let words: Vec<String> = self
            .key_terms(answer, self.language_of(lesson_id))
            .into_iter()
            .filter(|t| !t.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        if words.len() < 2 {
            return Ok(None);
        }
        // The rarest words identify the passage; a dozen keep the search cheap.
        let mut terms = self.query_terms(searcher, words, 1.0);
        terms.sort_by(|a, b| b.idf.total_cmp(&a.idf));
        terms.truncate(ANCHOR_TERMS);
        let refs: Vec<&QueryTerm> = terms.iter().collect();
        Ok(self
            .search_with(searcher, Some(lesson_id), &terms, 3)?
            .into_iter()
            .map(|mut hit| {
                hit.coverage = self.coverage(&refs, &hit);
                hit
            })
            .filter(|hit| hit.coverage >= ANCHOR_MIN_SHARE)
            .max_by(|a, b| a.coverage.total_cmp(&b.coverage)))
    }

    /// Finds the best other lesson that covers the question, for a refusal's pointer.
    pub fn lesson_covering(
        &self,
        message: &str,
        except: &str,
    ) -> Result<Option<Arc<Lesson>>, SearchFailed> {
        let searcher = self.reader.searcher();
        let terms = self.query_terms(
            &searcher,
            self.key_terms(message, self.language_of(except)),
            1.0,
        );
        if let Some((lesson, _)) = self
            .best_other_lesson(&searcher, &terms, except)?
            .filter(|(_, coverage)| *coverage >= self.settings.sure_coverage)
        {
            return Ok(Some(lesson));
        }
        // In other words than the lessons': the lesson whose passage means most nearly the same.
        let vector = self.question_vector_blocking(message);
        Ok(self
            .closest_other_lesson(except, vector.as_deref())
            .filter(|(_, similarity)| *similarity >= self.settings.min_similarity)
            .map(|(lesson, _)| lesson))
    }

    /// The lesson other than `except` whose best passage covers the message's terms most
    /// (ties broken by BM25), with that coverage.
    fn best_other_lesson(
        &self,
        searcher: &Searcher,
        terms: &[QueryTerm],
        except: &str,
    ) -> Result<Option<(Arc<Lesson>, f32)>, SearchFailed> {
        let main: Vec<QueryTerm> = terms.iter().filter(|t| t.weight >= 1.0).cloned().collect();
        if main.is_empty() {
            return Ok(None);
        }
        let gate_terms: Vec<&QueryTerm> = main.iter().collect();
        let mut best: Option<(f32, f32, Arc<Lesson>)> = None;
        for mut hit in self.search_with(searcher, None, &main, 10)? {
            if hit.lesson.id == except {
                continue;
            }
            hit.coverage = self.coverage(&gate_terms, &hit);
            if best
                .as_ref()
                .is_none_or(|(c, s, _)| (hit.coverage, hit.score) > (*c, *s))
            {
                best = Some((hit.coverage, hit.score, hit.lesson.clone()));
            }
        }
        Ok(best.map(|(coverage, _, lesson)| (lesson, coverage)))
    }

    /// Plain search for `/v1/search`, the report and evaluations: BM25 hits, no gate (so
    /// `coverage` is left at 0: nothing reads it, and computing it re-analyzes every hit).
    pub fn search(
        &self,
        lesson_id: Option<&str>,
        text: &str,
        k: usize,
    ) -> Result<Vec<Hit>, SearchFailed> {
        let searcher = self.reader.searcher();
        let mut seen = HashSet::new();
        let words = self
            .analyze(text, lesson_id.map_or("en", |id| self.language_of(id)))
            .into_iter()
            .filter(|t| seen.insert(t.clone()));
        let terms = self.query_terms(&searcher, words, 1.0);
        self.search_with(&searcher, lesson_id, &terms, k)
    }

    /// A term with its catalog idf and a weight.
    fn query_term(&self, searcher: &Searcher, term: String, weight: f32) -> QueryTerm {
        QueryTerm {
            idf: self.idf(searcher, &term),
            term,
            weight,
        }
    }

    /// [`Retriever::query_term`] for each of `terms`.
    fn query_terms(
        &self,
        searcher: &Searcher,
        terms: impl IntoIterator<Item = String>,
        weight: f32,
    ) -> Vec<QueryTerm> {
        terms
            .into_iter()
            .map(|t| self.query_term(searcher, t, weight))
            .collect()
    }

    fn search_with(
        &self,
        searcher: &Searcher,
        lesson_id: Option<&str>,
        terms: &[QueryTerm],
        k: usize,
    ) -> Result<Vec<Hit>, SearchFailed> {
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(terms.len() * 2);
        for term in terms {
            for (field, boost) in [
                (self.fields.content, term.weight),
                (
                    self.fields.section,
                    term.weight * self.settings.section_boost,
                ),
            ] {
                let query = TermQuery::new(
                    Term::from_field_text(field, &term.term),
                    IndexRecordOption::WithFreqs,
                );
                should.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(query), boost)),
                ));
            }
        }
        let text_query: Box<dyn Query> = Box::new(BooleanQuery::new(should));
        let query: Box<dyn Query> = match lesson_id {
            Some(id) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, text_query),
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(
                        Box::new(TermQuery::new(
                            Term::from_field_text(self.fields.lesson_id, id),
                            IndexRecordOption::Basic,
                        )),
                        0.0,
                    )),
                ),
            ])),
            None => text_query,
        };
        // A few more than asked, so that ties at the cut are broken by lesson order below
        // rather than by where the passages landed in the index's segments.
        // A failed search is an error, never "nothing found": the learner would see a refusal.
        let top = searcher
            .search(&query, &TopDocs::with_limit(k + 4).order_by_score())
            .map_err(|error| SearchFailed(error.to_string()))?;
        let mut hits = Vec::with_capacity(top.len());
        // Each segment's key column, opened once for all its hits.
        let mut columns = vec![None; searcher.segment_readers().len()];
        for (score, address) in top {
            let ord = address.segment_ord as usize;
            if columns[ord].is_none() {
                columns[ord] = searcher
                    .segment_reader(address.segment_ord)
                    .fast_fields()
                    .u64("key")
                    .ok();
            }
            let Some(column) = &columns[ord] else {
                continue;
            };
            let Some(key) = column.first(address.doc_id) else {
                continue;
            };
            // Passages of lessons that no longer parse may linger in the index; skip them.
            let Some(&(l, p)) = self.keys.get(&key) else {
                continue;
            };
            hits.push(Hit {
                lesson: self.catalog.lessons[l as usize].clone(),
                passage: p as usize,
                score,
                coverage: 0.0,
                order: (l, p),
            });
        }
        // Equal scores are common (a term in two passages of equal length); order them as the
        // lesson does, so the same question always gets the same answer.
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.order.cmp(&b.order)));
        hits.truncate(k);
        Ok(hits)
    }

    /// Share of the terms' weighted idf found in the hit's passage or section title.
    fn coverage(&self, terms: &[&QueryTerm], hit: &Hit) -> f32 {
        let total: f32 = terms.iter().map(|t| t.idf * t.weight).sum();
        if total <= 0.0 {
            return 0.0;
        }
        let analysed = self.passage_terms.get_or_make(&hit.order, || {
            let mut analyzer = self
                .analyzers
                .get(&hit.lesson.language)
                .text_analyzer()
                .clone();
            let passage = hit.passage();
            let mut hashes = Vec::new();
            for text in [
                passage.text.as_str(),
                hit.lesson.section_of(passage).title.as_str(),
            ] {
                let mut stream = analyzer.token_stream(text);
                while stream.advance() {
                    hashes.push(term_hash(&stream.token().text));
                }
            }
            hashes.sort_unstable();
            hashes.dedup();
            hashes.into()
        });
        let covered: f32 = terms
            .iter()
            .filter(|t| analysed.binary_search(&term_hash(&t.term)).is_ok())
            .map(|t| t.idf * t.weight)
            .sum();
        covered / total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_decides_on_coverage_and_asks_other_lessons_only_when_in_doubt() {
        let settings = RetrievalSettings::default(); // sure 0.5, min 0.35, margin 0.2
        let first = |coverage: f32| GateInput {
            arithmetic: false,
            searchable: true,
            own_coverage: 1.0,
            coverage,
            follow_up: false,
            similarity: None,
        };
        // (input, other lesson's coverage, expected, whether the other lesson was asked)
        type Case = (GateInput, Option<f32>, (bool, GateReason), bool);
        let cases: Vec<Case> = vec![
            (first(0.9), Some(1.0), (true, GateReason::Covered), false),
            (first(0.5), Some(1.0), (true, GateReason::Covered), false),
            (first(0.2), None, (false, GateReason::NotCovered), false),
            (first(0.4), None, (true, GateReason::Covered), true),
            (first(0.4), Some(0.55), (true, GateReason::Covered), true),
            (
                first(0.4),
                Some(0.6),
                (false, GateReason::BetterElsewhere),
                true,
            ),
            (
                GateInput {
                    follow_up: true,
                    ..first(0.4)
                },
                Some(1.0),
                (true, GateReason::Covered),
                false,
            ),
            (
                GateInput {
                    own_coverage: 0.3,
                    follow_up: true,
                    ..first(0.9)
                },
                None,
                (false, GateReason::NotCovered),
                false,
            ),
            (
                GateInput {
                    searchable: false,
                    ..first(0.9)
                },
                None,
                (false, GateReason::NoSearchableWords),
                false,
            ),
            (
                GateInput {
                    arithmetic: true,
                    ..first(1.0)
                },
                None,
                (false, GateReason::NotCovered),
                false,
            ),
        ];
        for (input, other, expected, asks) in cases {
            let mut asked = false;
            let decided = gate::<()>(&input, &settings, || {
                asked = true;
                Ok(OtherLesson {
                    coverage: other,
                    similarity: None,
                })
            })
            .expect("no search error");
            assert_eq!(decided, expected, "{input:?}");
            assert_eq!(asked, asks, "{input:?}");
        }
        // Meaning (sure 0.5, min 0.35, elsewhere 0.2): it vouches for a question whose words
        // fail, but only when sure if not one word is found, and yields to a lesson clearly
        // closer in meaning.
        let meant = |coverage: f32, similarity: f32| GateInput {
            similarity: Some(similarity),
            ..first(coverage)
        };
        let other = |coverage: f32, similarity: f32| OtherLesson {
            coverage: Some(coverage),
            similarity: Some(similarity),
        };
        type Meant = (GateInput, OtherLesson, (bool, GateReason), bool);
        let cases: Vec<Meant> = vec![
            (
                meant(0.9, 0.1),
                other(1.0, 0.9),
                (true, GateReason::Covered),
                false,
            ),
            (
                meant(0.2, 0.6),
                other(0.0, 0.1),
                (true, GateReason::Covered),
                true,
            ),
            (
                meant(0.2, 0.4),
                other(0.0, 0.1),
                (true, GateReason::Covered),
                true,
            ),
            (
                meant(0.0, 0.4),
                other(0.0, 0.1),
                (false, GateReason::NotCovered),
                false,
            ),
            (
                meant(0.0, 0.55),
                other(0.0, 0.1),
                (true, GateReason::Covered),
                true,
            ),
            (
                meant(0.2, 0.3),
                other(0.0, 0.1),
                (false, GateReason::NotCovered),
                false,
            ),
            (
                meant(0.2, 0.4),
                other(0.1, 0.65),
                (false, GateReason::BetterElsewhere),
                true,
            ),
            (
                meant(0.2, 0.4),
                other(0.1, 0.55),
                (true, GateReason::Covered),
                true,
            ),
            // Words in doubt yield only when the other lesson is better on both signals.
            (
                meant(0.4, 0.4),
                other(0.7, 0.5),
                (true, GateReason::Covered),
                true,
            ),
            (
                meant(0.4, 0.4),
                other(0.7, 0.65),
                (false, GateReason::BetterElsewhere),
                true,
            ),
            // A follow-up's own words may be carried by its own meaning, never by history.
            (
                GateInput {
                    own_coverage: 0.0,
                    follow_up: true,
                    ..meant(0.9, 0.4)
                },
                other(0.0, 0.0),
                (true, GateReason::Covered),
                false,
            ),
            (
                GateInput {
                    own_coverage: 0.0,
                    follow_up: true,
                    ..meant(0.9, 0.2)
                },
                other(0.0, 0.0),
                (false, GateReason::NotCovered),
                false,
            ),
        ];
        for (input, other, expected, asks) in cases {
            let mut asked = false;
            let decided = gate::<()>(&input, &settings, || {
                asked = true;
                Ok(other)
            })
            .expect("no search error");
            assert_eq!(decided, expected, "{input:?} against {other:?}");
            assert_eq!(asked, asks, "{input:?}");
        }
        // A failed catalog search is the gate's error, not a decision.
        assert!(gate(&first(0.4), &settings, || Err("search failed")).is_err());
    }
}
