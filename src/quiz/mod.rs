//! What the tutor does with quizzes, beside answering: recognise a quiz's own question (quiz
//! integrity), spot a quiz answer in a sentence about to be shown, pick the next question to
//! ask ("quiz me"), build items from a lesson without a quiz, grade replies ([`grade`]) and
//! write hints that point to a section without quoting its answer. Pure: the index's analysis
//! in, decisions out; `chat` turns them into replies.

pub mod grade;

use crate::index::Analyzer;
use crate::index::{WordSet, filler_terms};
use crate::lessons::quiz::QuizItem;
use crate::lessons::{Lesson, Passage};
use crate::text::cut;
use grade::Expected;

/// Words that ask rather than say ("quick question: what about ..."), and function words the
/// analyzer keeps, beside the verifier's friendly words and the retriever's question words.
const ASKING: &[&str] = &[
    "it",
    "its",
    "itself",
    "own",
    "they",
    "them",
    "their",
    "this",
    "that",
    "these",
    "those",
    "about",
    "tell",
    "quick",
    "know",
    "wonder",
    "please",
    "remind",
    "again",
    "roughly",
    "around",
    "approximately",
    "exactly",
    "is",
    "are",
    "was",
    "were",
    "from",
    "each",
    "need",
    "needs",
    "someone",
    "somebody",
    "any",
    "some",
    "have",
    "has",
    "had",
    "get",
    "gets",
    "from",
    "doing",
    "there",
    "then",
    "than",
    "also",
    "still",
    "even",
    "like",
];

/// A lesson language's analyzer and the words that carry no content, built once.
#[derive(Clone)]
pub struct Words {
    pub analyzer: Analyzer,
    filler: WordSet,
}

impl Words {
    pub fn new(analyzer: Analyzer) -> Words {
        let mut filler = filler_terms(&analyzer);
        let listed = ASKING.iter().chain(crate::retrieve::QUESTION_WORDS);
        for word in listed {
            filler.extend(analyzer.terms(word));
            filler.insert(word.to_string());
        }
        Words { analyzer, filler }
    }

    /// The key terms of a text, in order, each once: analyzed, without filler (all of them
    /// when the text is nothing but filler).
    pub fn terms(&self, text: &str) -> Vec<String> {
        self.tokens(text).into_iter().map(|(_, t)| t).collect()
    }

    /// [`Words::terms`] with the byte offset of the word each came from.
    pub fn tokens(&self, text: &str) -> Vec<(usize, String)> {
        let all = self.analyzer.tokens(text);
        let mut seen = WordSet::default();
        let kept: Vec<(usize, String)> = all
            .iter()
            .filter(|(_, t)| !self.filler.contains(t) && seen.insert(t.clone()))
            .cloned()
            .collect();
        if !kept.is_empty() {
            return kept;
        }
        let mut seen = WordSet::default();
        all.into_iter()
            .filter(|(_, t)| seen.insert(t.clone()))
            .collect()
    }
}

/// What a question asks for, when its question word says so. Two questions that ask for
/// different kinds ("When was the constant first measured?", "Who first measured the
/// constant?") are different questions, however many words they share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    Person,
    Time,
    Place,
    Amount,
    Reason,
}

/// Question words of the six lesson languages with the kind each asks for (`None`: "what",
/// "which", "how", whose kind the next word may tell).
const QUESTION_KINDS: &[(&str, Option<AnswerKind>)] = &[
    ("who", Some(AnswerKind::Person)),
    ("whom", Some(AnswerKind::Person)),
    ("whose", Some(AnswerKind::Person)),
    ("quién", Some(AnswerKind::Person)),
    ("quiénes", Some(AnswerKind::Person)),
    ("qui", Some(AnswerKind::Person)),
    ("wer", Some(AnswerKind::Person)),
    ("wem", Some(AnswerKind::Person)),
    ("quem", Some(AnswerKind::Person)),
    ("chi", Some(AnswerKind::Person)),
    ("when", Some(AnswerKind::Time)),
    ("cuándo", Some(AnswerKind::Time)),
    ("quand", Some(AnswerKind::Time)),
    ("wann", Some(AnswerKind::Time)),
    ("quando", Some(AnswerKind::Time)),
    ("where", Some(AnswerKind::Place)),
    ("dónde", Some(AnswerKind::Place)),
    ("où", Some(AnswerKind::Place)),
    ("wo", Some(AnswerKind::Place)),
    ("onde", Some(AnswerKind::Place)),
    ("dove", Some(AnswerKind::Place)),
    ("why", Some(AnswerKind::Reason)),
    ("pourquoi", Some(AnswerKind::Reason)),
    ("warum", Some(AnswerKind::Reason)),
    ("perché", Some(AnswerKind::Reason)),
    ("cuántos", Some(AnswerKind::Amount)),
    ("cuántas", Some(AnswerKind::Amount)),
    ("cuánto", Some(AnswerKind::Amount)),
    ("combien", Some(AnswerKind::Amount)),
    ("wieviel", Some(AnswerKind::Amount)),
    ("wieviele", Some(AnswerKind::Amount)),
    ("quantos", Some(AnswerKind::Amount)),
    ("quantas", Some(AnswerKind::Amount)),
    ("quanti", Some(AnswerKind::Amount)),
    ("quante", Some(AnswerKind::Amount)),
    ("what", None),
    ("which", None),
    ("how", None),
    ("qué", None),
    ("cuál", None),
    ("cómo", None),
    ("por", None),
    ("quel", None),
    ("quelle", None),
    ("comment", None),
    ("was", None),
    ("welche", None),
    ("welcher", None),
    ("wie", None),
    ("qual", None),
    ("como", None),
    ("quale", None),
    ("come", None),
];

/// The kind of answer `question` asks for, by its first question word (and, after "what",
/// "which", "how", "wie" or "por", the word that follows: "what year", "how many", "por qué").
/// `None` when it does not say.
pub fn answer_kind(question: &str) -> Option<AnswerKind> {
    let words = crate::conversation::message_words(question);
    let (at, kind) = words.iter().enumerate().find_map(|(at, w)| {
        QUESTION_KINDS
            .iter()
            .find(|(q, _)| q == w)
            .map(|(_, kind)| (at, *kind))
    })?;
    if kind.is_some() {
        return kind;
    }
    let next = words.get(at + 1).map_or("", String::as_str);
    match (words[at].as_str(), next) {
        ("how" | "wie", "many" | "much" | "viele" | "viel") => Some(AnswerKind::Amount),
        ("por", "qué" | "que") => Some(AnswerKind::Reason),
        ("what" | "which", "year" | "century" | "decade" | "date" | "day" | "month" | "time") => {
            Some(AnswerKind::Time)
        }
        ("what" | "which", "person" | "people" | "man" | "woman") => Some(AnswerKind::Person),
        ("what" | "which", "city" | "country" | "place" | "region" | "state" | "town") => {
            Some(AnswerKind::Place)
        }
        _ => None,
    }
}

/// The form of a question, beside the kind of answer it wants: a yes/no question ("Can someone
/// remove the safety training?") or one asking what a term means ("What does open weights
/// mean?") asks no quiz question of another form, however near in meaning ("What would someone
/// need to remove the safety training?"). Read on the words after a lead-in ("Quick question:")
/// and a polite frame ("can you tell me ..." is not a yes/no question). English only: other
/// languages read as neither, which constrains nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    pub whether: bool,
    pub meaning: bool,
}

const AUXILIARIES: &[&str] = &[
    "can", "could", "does", "do", "did", "is", "are", "was", "were", "will", "would", "should",
    "has", "have", "had", "may", "might", "must", "shall",
];

/// The [`Form`] of a question.
pub fn form(question: &str) -> Form {
    let asked = match question.split_once(':') {
        Some((lead, rest)) if lead.len() <= 30 && !rest.trim().is_empty() => rest,
        _ => question,
    };
    let words = crate::conversation::message_words(asked);
    let first = words.first().map_or("", String::as_str);
    let polite = matches!(
        (
            words.get(1).map(String::as_str),
            words.get(2).map(String::as_str)
        ),
        (
            Some("you"),
            Some("tell" | "explain" | "say" | "remind" | "show" | "know" | "list" | "name")
        ) | (Some("i"), Some("ask" | "know"))
    );
    let whether = AUXILIARIES.contains(&first) && !polite;
    let meaning = words.iter().any(|w| {
        matches!(
            w.as_str(),
            "mean" | "means" | "meaning" | "meant" | "definition" | "define" | "defined"
        )
    });
    Form { whether, meaning }
}

/// True when a question of form `asked` cannot be a rewording of a quiz question of form `item`:
/// one asks whether and the other does not, or one asks what something means and the item
/// asks something else.
pub fn forms_differ(asked: Form, item: Form) -> bool {
    asked.whether != item.whether || (asked.meaning && !item.meaning)
}

/// True when both questions say what kind of answer they want and the kinds differ.
pub fn kinds_differ(a: Option<AnswerKind>, b: Option<AnswerKind>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a != b)
}

/// Share of a quiz question's key terms a learner's question must hold to be taken for it.
///
/// Tuned on the quiz evaluation's tuning sets (`examples/quiz-eval.rs`); see BENCHMARKS.md.
pub const ASKED_ITEM_SHARE: f32 = 0.67;

/// Share of the learner's own key terms that must be the quiz question's: a longer question
/// that merely mentions a quiz question's words asks something else.
pub const ASKED_QUESTION_SHARE: f32 = 0.6;

/// Share of a quiz question's key terms a learner's question must hold for the quiz answer to
/// be kept out of the reply (the reply is given, without the sentences that hold it).
pub const NEAR_ITEM_SHARE: f32 = 0.3;

/// Key terms of a quiz question a learner's question may share with it to come near it,
/// whatever their share: a long quiz question asked in other words keeps only a couple of its
/// words ("how many bits can weights be quantized to" for "To what lower precision can weights be
/// quantized to cut memory sharply?").
pub const NEAR_ITEM_TERMS: usize = 2;

/// Share of a quiz question's key terms (by [`Weights`]) a question must hold to get the quiz
/// item's hint when every sentence of its answer gave that item's answer away; a question
/// further from it is answered from the rest of the passages.
pub const HINT_NEAR_SHARE: f32 = 0.65;

/// Share of an answer's key terms (and all of its numbers) a sentence must hold to give the
/// answer away (all of them for answers of one or two terms).
pub const REVEAL_SHARE: f32 = 0.75;

/// How much each term of a lesson tells its questions apart: a word in every passage of the
/// lesson (its topic: "complexity" in a lesson on complexity theory) says little about which
/// of its questions is asked; a rare one says much. BM25's inverse document frequency, over
/// the lesson's passages.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    passages: f32,
    frequency: rustc_hash::FxHashMap<String, u32>,
}

impl Weights {
    /// Counts, for each term, the passages of `lesson` that use it.
    pub fn of(words: &Words, lesson: &Lesson) -> Weights {
        let mut frequency: rustc_hash::FxHashMap<String, u32> = Default::default();
        for passage in &lesson.passages {
            for term in words.terms(&passage.text) {
                *frequency.entry(term).or_default() += 1;
            }
        }
        Weights {
            passages: lesson.passages.len() as f32,
            frequency,
        }
    }

    /// The weight of one term (a term the lesson never uses weighs the most).
    pub fn weight(&self, term: &str) -> f32 {
        let df = self.frequency.get(term).copied().unwrap_or(0) as f32;
        (1.0 + (self.passages - df + 0.5) / (df + 0.5))
            .ln()
            .max(0.05)
    }

    /// (share of `item`'s weight that `asked` holds, share of `asked`'s weight that is
    /// `item`'s), for two lists of key terms.
    pub fn shares(&self, asked: &[String], item: &[String]) -> (f32, f32) {
        let total = |terms: &[String]| terms.iter().map(|t| self.weight(t)).sum::<f32>();
        let shared: f32 = item
            .iter()
            .filter(|t| asked.contains(t))
            .map(|t| self.weight(t))
            .sum();
        (
            shared / total(item).max(f32::EPSILON),
            shared / total(asked).max(f32::EPSILON),
        )
    }
}

/// How near in meaning a question is to each quiz item's question (cosine similarities, in the
/// order of [`QuizIndex::items`]), and the similarities at which it asks an item or comes near
/// one. Meaning sees what words miss: "what's the quickest way to get top-tier model quality"
/// asks "What is the fastest route to frontier-level quality?" with one word in common.
#[derive(Debug, Clone, Default)]
pub struct Nearness {
    pub similarities: Vec<f32>,
    /// At or above this, the question asks the item.
    pub asked: f32,
    /// At or above this, the question comes near the item (its answer is kept out).
    pub near: f32,
    /// How much nearer the item must be than every other item: a question on the same topic
    /// as several items (a dense quiz) asks none of them by meaning.
    pub margin: f32,
}

impl Nearness {
    fn of(&self, i: usize) -> f32 {
        self.similarities.get(i).copied().unwrap_or(0.0)
    }

    /// True when item `i` is at `threshold` or nearer and nearer than every other item by
    /// [`Nearness::margin`].
    fn stands_out(&self, i: usize, threshold: f32) -> bool {
        let own = self.of(i);
        let other = self
            .similarities
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| *s)
            .fold(f32::MIN, f32::max);
        own >= threshold && own - other >= self.margin
    }
}

/// A lesson's quiz analysed once, for every question on the lesson: each item's key terms and
/// answer guard, the lesson's term weights, and the items "quiz me" draws from.
#[derive(Debug, Clone)]
pub struct QuizIndex {
    weights: Weights,
    /// Each item with its question's key terms, its answer's guard and the kind of answer it
    /// asks for.
    items: Vec<(QuizItem, Vec<String>, Guard, Option<AnswerKind>)>,
    /// Each item question's [`Form`], in the same order.
    forms: Vec<Form>,
    /// See [`items_of`]; built once, since recall items analyse the whole lesson.
    to_ask: Vec<QuizItem>,
}

impl QuizIndex {
    /// Analyses `lesson`'s quiz (none: no items to guard).
    pub fn new(words: &Words, lesson: &Lesson) -> QuizIndex {
        let weights = Weights::of(words, lesson);
        let to_ask = items_of(words, &weights, lesson);
        let items = lesson.quiz.iter().flat_map(|q| &q.items);
        QuizIndex::of_items(words, weights, items, to_ask)
    }

    fn of_items<'a>(
        words: &Words,
        weights: Weights,
        items: impl Iterator<Item = &'a QuizItem>,
        to_ask: Vec<QuizItem>,
    ) -> QuizIndex {
        let items: Vec<_> = items.collect();
        QuizIndex {
            weights,
            forms: items.iter().map(|item| form(&item.question)).collect(),
            items: items
                .into_iter()
                .map(|item| {
                    (
                        item.clone(),
                        words.terms(&item.question),
                        Guard::new(words, Some(item.id.clone()), &item.answer),
                        answer_kind(&item.question),
                    )
                })
                .collect(),
            to_ask,
        }
    }

    /// The items "quiz me" draws from.
    pub fn to_ask(&self) -> &[QuizItem] {
        &self.to_ask
    }

    /// The lesson's own quiz items, in the order [`Nearness`] follows.
    pub fn items(&self) -> impl Iterator<Item = &QuizItem> {
        self.items.iter().map(|(item, ..)| item)
    }

    /// The quiz item a question (its key terms, the kind of answer it asks for) asks, when it
    /// is (a paraphrase of) one: most of the item's key terms (by [`Weights`]), and mostly the
    /// item's, are in it, and it does not ask for another kind of answer.
    ///
    /// With [`Nearness`], a question that asks no item by its words asks the one nearest in
    /// meaning, at [`Nearness::asked`] or closer and clearly nearer than the others (and not
    /// for another kind of answer).
    pub fn asked(
        &self,
        asked: &[String],
        kind: Option<AnswerKind>,
        nearness: Option<&Nearness>,
    ) -> Option<&QuizItem> {
        self.asked_in_form(asked, kind, None, nearness)
    }

    /// [`QuizIndex::asked`], with the question's [`Form`]: meaning never makes a question ask
    /// an item of another form.
    pub fn asked_in_form(
        &self,
        asked: &[String],
        kind: Option<AnswerKind>,
        question_form: Option<Form>,
        nearness: Option<&Nearness>,
    ) -> Option<&QuizItem> {
        let by_words = (!asked.is_empty())
            .then(|| {
                self.items
                    .iter()
                    .filter(|(_, _, _, item_kind)| !kinds_differ(kind, *item_kind))
                    .filter_map(|(item, terms, _, _)| {
                        let shared = terms.iter().filter(|t| asked.contains(t)).count();
                        let (item_share, question_share) = self.weights.shares(asked, terms);
                        (shared >= terms.len().min(2)
                            && item_share >= ASKED_ITEM_SHARE
                            && question_share >= ASKED_QUESTION_SHARE)
                            .then_some((item, item_share + question_share))
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(item, _)| item)
            })
            .flatten();
        by_words.or_else(|| {
            let nearness = nearness?;
            self.items
                .iter()
                .enumerate()
                .filter(|(i, (_, _, _, item_kind))| {
                    nearness.stands_out(*i, nearness.asked)
                        && !kinds_differ(kind, *item_kind)
                        && !question_form.is_some_and(|f| forms_differ(f, self.forms[*i]))
                })
                .max_by(|a, b| nearness.of(a.0).total_cmp(&nearness.of(b.0)))
                .map(|(_, (item, ..))| item)
        })
    }

    /// True when a question (its key terms, the kind of answer it asks for) whose answering
    /// sentences all gave `item`'s answer away is close enough to it to get the item's hint:
    /// [`HINT_NEAR_SHARE`] of the item question's key terms by weight, and not another kind of
    /// answer. A question further from it is answered from the rest of the passages.
    pub fn hinted_after_removal(
        &self,
        asked: &[String],
        kind: Option<AnswerKind>,
        item: &QuizItem,
    ) -> bool {
        self.items
            .iter()
            .find(|(indexed, ..)| indexed.id == item.id)
            .is_some_and(|(_, terms, _, item_kind)| {
                !kinds_differ(kind, *item_kind)
                    && self.weights.shares(asked, terms).0 >= HINT_NEAR_SHARE
            })
    }

    /// The items a question (its key terms) comes near, as their guards and their answers: it
    /// holds at least [`NEAR_ITEM_SHARE`] of the item question's key terms, all counted alike
    /// (a learner who leaves out a quiz question's rare words still asks it). Their answers are
    /// kept out of the tutor's reply.
    ///
    /// With [`Nearness`], an item whose question is at [`Nearness::near`] or closer in meaning,
    /// and clearly nearer than the others, is near too.
    pub fn near(&self, asked: &[String], nearness: Option<&Nearness>) -> (Vec<Guard>, Vec<String>) {
        self.items
            .iter()
            .enumerate()
            .filter(|(i, (_, terms, _, _))| {
                let shared = terms.iter().filter(|t| asked.contains(t)).count();
                let by_words = !terms.is_empty()
                    && (shared as f32 >= NEAR_ITEM_SHARE * terms.len() as f32
                        || shared >= NEAR_ITEM_TERMS);
                by_words || nearness.is_some_and(|n| n.stands_out(*i, n.near))
            })
            .map(|(_, item)| item)
            .map(|(item, _, guard, _)| (guard.clone(), item.answer.clone()))
            .unzip()
    }
}

/// A sentence analysed once for every guard it is checked against.
pub struct Said {
    plain: String,
    expected: Expected,
}

impl Said {
    pub fn new(words: &Words, sentence: &str) -> Said {
        Said {
            plain: format!(" {} ", grade::plain(sentence)),
            expected: Expected::new(words, sentence),
        }
    }
}

/// An answer to keep out of a reply, analysed once.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The quiz item it answers (`None` for the answer sentence a hint must not quote).
    pub item: Option<String>,
    expected: Expected,
    /// The answer's plain words with a space either side, for a whole-word search.
    spaced: String,
}

impl Guard {
    pub fn new(words: &Words, item: Option<String>, answer: &str) -> Guard {
        let expected = Expected::new(words, answer);
        Guard {
            item,
            spaced: format!(" {} ", expected.plain),
            expected,
        }
    }

    /// True when `sentence` gives the answer away: its words side by side, or most of its key
    /// terms and all of its numbers.
    pub fn revealed_by(&self, words: &Words, sentence: &str) -> bool {
        self.revealed_in(&Said::new(words, sentence))
    }

    /// [`Guard::revealed_by`] for a sentence analysed already.
    pub fn revealed_in(&self, said: &Said) -> bool {
        if !self.expected.plain.is_empty() && said.plain.contains(&self.spaced) {
            return true;
        }
        let said = &said.expected;
        let (found, of) = self.expected.found_in(said);
        of > 0
            && self.expected.numbers_all_in(said)
            && if of <= 2 {
                found == of
            } else {
                found as f32 / of as f32 >= REVEAL_SHARE
            }
    }
}

/// Where a sentence may be cut between two things it says.
const CLAUSE_BREAKS: &[&str] = &[", and ", "; ", ", but ", ", while ", ", whereas ", ", so "];

/// Fewest words a shortened sentence keeps (shorter, it says too little to be worth quoting).
const MIN_KEPT_WORDS: usize = 5;

/// `sentence` without what gives one of `guards` away, when the rest still says something: a
/// table row without its revealing cells (its first cell, which names the row, kept), or a
/// sentence cut before its first revealing clause ("fine-tuning can remove refusals, and
/// editing activations can too" keeps its first half when the second is a quiz answer).
/// The sentence whole when it gives nothing away; `None` when nothing worth keeping is left.
/// What is kept is the lesson's own words, in order, so it is still a quote of the passage.
pub fn without_revealing(words: &Words, guards: &[Guard], sentence: &str) -> Option<String> {
    let reveals = |text: &str| {
        let said = Said::new(words, text);
        guards.iter().any(|g| g.revealed_in(&said))
    };
    if !reveals(sentence) {
        return Some(sentence.to_string());
    }
    let enough = |text: &str| text.split_whitespace().count() >= MIN_KEPT_WORDS;
    if crate::text::is_table_row(sentence) {
        let cells: Vec<&str> = sentence.trim().split("; ").collect();
        if reveals(cells[0]) {
            return None;
        }
        let kept: Vec<&str> = std::iter::once(cells[0])
            .chain(cells[1..].iter().copied().filter(|cell| !reveals(cell)))
            .collect();
        let row = kept.join("; ");
        return (kept.len() >= 2 && enough(&row)).then_some(row);
    }
    // Cut at the last break whose start gives nothing away: the longest clean start.
    CLAUSE_BREAKS
        .iter()
        .flat_map(|brk| {
            sentence
                .match_indices(brk)
                .map(|(at, _)| cut(sentence, ..at))
        })
        .filter(|head| enough(head) && !reveals(head))
        .max_by_key(|head| head.len())
        .map(|head| format!("{}.", head.trim_end_matches([',', ';', ' '])))
}

/// The next question to ask: the first item not asked yet in this session, or, when every one
/// was, the one asked longest ago.
pub fn next_item<'a>(items: &'a [QuizItem], asked: &[String]) -> Option<&'a QuizItem> {
    items
        .iter()
        .find(|i| !asked.contains(&i.id))
        .or_else(|| {
            asked
                .iter()
                .find_map(|id| items.iter().find(|i| &i.id == id))
        })
        .or_else(|| items.first())
}

/// Quiz items for a lesson without an author's quiz: its golden questions that name a section
/// and a phrase the answer must hold (the phrase is the expected answer). Ids are stable while
/// the questions file does not change: `golden-N`, N counting answerable questions from 1.
pub fn built_items(lesson: &Lesson) -> Vec<QuizItem> {
    lesson
        .questions
        .iter()
        .filter(|q| !q.refuse && q.after.is_empty())
        .enumerate()
        .filter_map(|(i, q)| {
            Some(QuizItem {
                id: format!("golden-{}", i + 1),
                question: q.q.clone(),
                answer: q.must.first()?.clone(),
                accept: Vec::new(),
                choices: Vec::new(),
                section: q.section.clone()?,
                line: 0,
            })
        })
        .collect()
}

/// The items "quiz me" draws from: the author's; else those built from the golden questions;
/// else recall questions built from the lesson's key sentences ([`recall_items`]).
pub fn items_of(words: &Words, weights: &Weights, lesson: &Lesson) -> Vec<QuizItem> {
    match &lesson.quiz {
        Some(quiz) if !quiz.items.is_empty() => quiz.items.clone(),
        _ => {
            let built = built_items(lesson);
            if built.is_empty() {
                recall_items(words, weights, lesson)
            } else {
                built
            }
        }
    }
}

/// Most recall questions built for one lesson.
const MAX_RECALL_ITEMS: usize = 12;

/// Recall questions for a lesson with neither a quiz nor golden questions: per section, its
/// first sentence of 8 to 40 words (not a table row), with its key term (the word of five
/// letters or more rarest in the lesson, not in the section's title) left blank. Ids are
/// `recall-SECTION`, stable while the section's slug is.
pub fn recall_items(words: &Words, weights: &Weights, lesson: &Lesson) -> Vec<QuizItem> {
    let mut items = Vec::new();
    for section in lesson.sections.iter().filter(|s| s.level > 0) {
        let Some(passage) = lesson
            .passages
            .iter()
            .find(|p| lesson.section_of(p).slug == section.slug)
        else {
            continue;
        };
        let sentence = passage
            .text
            .lines()
            .filter(|line| !crate::text::is_table_row(line))
            .flat_map(crate::text::split_sentences)
            .map(|s| crate::text::without_list_marker(s).trim())
            .find(|s| (8..=40).contains(&s.split_whitespace().count()));
        let Some(sentence) = sentence else {
            continue;
        };
        let title = words.terms(&section.title);
        let key = words
            .tokens(sentence)
            .into_iter()
            .filter(|(_, term)| !title.contains(term))
            .filter_map(|(at, term)| {
                let word = crate::text::words(cut(sentence, at..)).next()?.1;
                (word.chars().count() >= 5 && word.chars().all(char::is_alphabetic))
                    .then(|| (at, word, weights.weight(&term)))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2));
        let Some((at, word, _)) = key else {
            continue;
        };
        let blanked = format!(
            "{}_____{}",
            cut(sentence, ..at),
            cut(sentence, at + word.len()..)
        );
        let mut id = format!("recall-{}", section.slug);
        id.truncate(crate::text::floor_boundary(&id, 64));
        items.push(QuizItem {
            id,
            question: format!("Fill in the blank, from \"{}\": {}", section.title, blanked),
            answer: word.to_string(),
            accept: Vec::new(),
            choices: Vec::new(),
            section: section.slug.clone(),
            line: 0,
        });
        if items.len() == MAX_RECALL_ITEMS {
            break;
        }
    }
    items
}

/// The passage of `item`'s section that best holds its answer (the section's first passage
/// when none holds it).
pub fn passage_for<'a>(words: &Words, lesson: &'a Lesson, item: &QuizItem) -> Option<&'a Passage> {
    let expected = Expected::new(words, &item.answer);
    lesson
        .passages
        .iter()
        .filter(|p| lesson.section_of(p).slug == item.section)
        .map(|p| {
            let (found, _) = expected.found_in(&Expected::new(words, &p.text));
            (p, found)
        })
        .fold(
            None,
            |best: Option<(&Passage, usize)>, (p, found)| match best {
                Some((_, most)) if most >= found => best,
                _ => Some((p, found)),
            },
        )
        .map(|(p, _)| p)
}

/// The sentence of `text` that best holds `answer` (for quoting it after a graded reply).
pub fn answer_sentence<'a>(words: &Words, text: &'a str, answer: &str) -> Option<&'a str> {
    let expected = Expected::new(words, answer);
    text.lines()
        .flat_map(crate::text::split_sentences)
        .map(|s| {
            let (found, _) = expected.found_in(&Expected::new(words, s));
            (s, found)
        })
        .filter(|(_, found)| *found > 0)
        .fold(None, |best: Option<(&str, usize)>, (s, found)| match best {
            Some((_, most)) if most >= found => best,
            _ => Some((s, found)),
        })
        .map(|(s, _)| crate::text::without_list_marker(s).trim())
}

/// The word to look for, for a hint: a word of the learner's question (or, failing that, of the
/// quiz question) that the passage also uses and that is no part of the answer, the longest
/// such word. `None` when there is none.
pub fn key_word(words: &Words, asked: &str, passage: &str, avoid: Option<&str>) -> Option<String> {
    let in_passage = words.terms(passage);
    let avoided = avoid.map(|a| words.terms(a)).unwrap_or_default();
    let avoided_plain = avoid.map(grade::plain).unwrap_or_default();
    words
        .tokens(asked)
        .into_iter()
        .filter(|(_, term)| in_passage.contains(term) && !avoided.contains(term))
        .filter_map(|(at, _)| crate::text::words(cut(asked, at..)).next().map(|(_, w)| w))
        .map(str::to_lowercase)
        .filter(|w| {
            w.chars().count() > 2 && !format!(" {avoided_plain} ").contains(&format!(" {w} "))
        })
        .max_by_key(|w| w.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, question: &str, answer: &str) -> QuizItem {
        QuizItem {
            id: id.into(),
            question: question.into(),
            answer: answer.into(),
            accept: Vec::new(),
            choices: Vec::new(),
            section: "routing-strategies".into(),
            line: 1,
        }
    }

    #[test]
    fn a_quiz_question_is_recognised_in_other_words_and_a_topic_is_not() {
        let words = Words::new(Analyzer::new());
        let items = [
            item(
                "weakness",
                "What is the main weakness of a cascade?",
                "escalated requests take longer",
            ),
            item(
                "labels",
                "When training a learned router, what do you label for each request?",
                "whether the cheap answer was good enough",
            ),
        ];
        let index = QuizIndex::of_items(&words, Weights::default(), items.iter(), Vec::new());
        let cases: &[(&str, Option<&str>)] = &[
            ("What is the main weakness of a cascade?", Some("weakness")),
            ("whats the main weakness of cascades", Some("weakness")),
            (
                "quick question: the main weakness of a cascade?",
                Some("weakness"),
            ),
            (
                "what do you label for each request when training a learned router",
                Some("labels"),
            ),
            // Same topic, another question.
            (
                "How does a cascade decide when to escalate a request?",
                None,
            ),
            ("What is a learned router?", None),
            (
                "What are the weaknesses and strengths of rules, learned routers and cascades compared with each other?",
                None,
            ),
            ("hello", None),
        ];
        for (question, expected) in cases {
            let found = index
                .asked(&words.terms(question), answer_kind(question), None)
                .map(|i| i.id.as_str());
            assert_eq!(found, *expected, "{question}");
        }
    }

    #[test]
    fn the_question_word_tells_what_kind_of_answer_is_asked_for() {
        use AnswerKind::*;
        let cases: &[(&str, Option<AnswerKind>)] = &[
            ("Who first measured the constant?", Some(Person)),
            ("When was the constant first measured?", Some(Time)),
            ("In what year did Harvard end early admission?", Some(Time)),
            ("Where is the company based?", Some(Place)),
            ("How many bits can weights be quantized to?", Some(Amount)),
            ("Why did Harvard end early admission?", Some(Reason)),
            ("What is the fastest route to frontier quality?", None),
            ("Which cost is easy to forget?", None),
            ("How does a cascade decide?", None),
            // The first question word decides: "who" here only describes people.
            ("What do you call people who strip safeguards?", None),
            ("explain cascades", None),
            ("¿Quién midió la constante por primera vez?", Some(Person)),
            (
                "¿Por qué terminó Harvard la admisión temprana?",
                Some(Reason),
            ),
            ("Quand la constante a-t-elle été mesurée ?", Some(Time)),
            ("Wie viele Bits braucht man?", Some(Amount)),
            ("Dove ha sede l'azienda?", Some(Place)),
        ];
        for (question, kind) in cases {
            assert_eq!(answer_kind(question), *kind, "{question}");
        }
        assert!(kinds_differ(Some(Person), Some(Time)));
        assert!(!kinds_differ(Some(Time), Some(Time)));
        assert!(!kinds_differ(None, Some(Time)) && !kinds_differ(Some(Person), None));
    }

    #[test]
    fn a_yes_no_or_a_definition_question_has_its_own_form() {
        let cases: &[(&str, bool, bool)] = &[
            (
                "Can someone remove the safety training from a downloaded model?",
                true,
                false,
            ),
            ("Is self-hosting cheaper?", true, false),
            (
                "Can you tell me which deployment choice is the most complex?",
                false,
                false,
            ),
            ("Quick question: does the lesson mention LoRA?", true, false),
            (
                "Quick question: which bit widths does the lesson mention?",
                false,
                false,
            ),
            ("What does open weights actually mean?", false, true),
            (
                "what would someone need to remove the safety training?",
                false,
                false,
            ),
            (
                "¿Puede alguien quitar el entrenamiento de seguridad?",
                false,
                false,
            ),
        ];
        for (question, whether, meaning) in cases {
            assert_eq!(
                form(question),
                Form {
                    whether: *whether,
                    meaning: *meaning
                },
                "{question}"
            );
        }
        let yes_no = form("Can someone remove the safety training from a downloaded model?");
        let what =
            form("What would someone need to remove the safety training from a closed model?");
        assert!(forms_differ(yes_no, what) && forms_differ(what, yes_no));
        assert!(forms_differ(form("What does open weights mean?"), what));
        assert!(!forms_differ(
            what,
            form("What does the open weights tier leave out?")
        ));
    }

    #[test]
    fn a_question_asking_for_another_kind_of_answer_is_not_the_quiz_question() {
        let words = Words::new(Analyzer::new());
        let items = [item(
            "who-measured",
            "Who made the first measurement of the gravitational constant?",
            "Henry Cavendish",
        )];
        let index = QuizIndex::of_items(&words, Weights::default(), items.iter(), Vec::new());
        let asked = |question: &str| {
            index
                .asked(&words.terms(question), answer_kind(question), None)
                .map(|i| i.id.clone())
        };
        assert_eq!(
            asked("who made the first measurement of the gravitational constant").as_deref(),
            Some("who-measured")
        );
        assert_eq!(
            asked("Which person made the first measurement of the gravitational constant?")
                .as_deref(),
            Some("who-measured")
        );
        assert_eq!(
            asked("When was the first measurement of the gravitational constant made?"),
            None
        );
        // Its answer is still kept out of the reply: the question comes near the item.
        let near = index
            .near(
                &words.terms("When was the first measurement of the gravitational constant made?"),
                None,
            )
            .1;
        assert_eq!(near, ["Henry Cavendish"]);
    }

    #[test]
    fn a_question_comes_near_a_quiz_item_by_a_share_or_by_two_of_its_words() {
        let words = Words::new(Analyzer::new());
        let items = [
            item(
                "bits",
                "To what lower precision can weights be quantized to cut memory sharply?",
                "8 or 4 bits",
            ),
            item(
                "weakness",
                "What is the main weakness of a cascade?",
                "latency",
            ),
        ];
        let index = QuizIndex::of_items(&words, Weights::default(), items.iter(), Vec::new());
        let near = |question: &str| -> Vec<String> { index.near(&words.terms(question), None).1 };
        // Two words of a long quiz question, well under its share.
        assert_eq!(
            near("how many bits can you quantize weights down to"),
            ["8 or 4 bits"]
        );
        // A share of a short one.
        assert_eq!(near("why are cascades slow, what weakness?"), ["latency"]);
        // One word in common is only the topic.
        assert!(near("How much memory does a 70B model need?").is_empty());
        assert!(near("What does quantization cost in quality?").is_empty());
    }

    #[test]
    fn a_sentence_keeps_what_does_not_give_a_quiz_answer_away() {
        let words = Words::new(Analyzer::new());
        let guards = [
            Guard::new(&words, Some("a".into()), "editing internal activations"),
            Guard::new(
                &words,
                Some("b".into()),
                "stolen weights or a working jailbreak",
            ),
        ];
        let keep = |s: &str| without_revealing(&words, &guards, s);
        assert_eq!(
            keep(
                "Fine-tuning can largely remove refusals, and editing internal activations can too."
            )
            .as_deref(),
            Some("Fine-tuning can largely remove refusals.")
        );
        assert_eq!(
            keep("Concern: Safety training removed; Closed model: Needs stolen weights or a working jailbreak; Open-weight model: Possible with modest fine-tuning").as_deref(),
            Some("Concern: Safety training removed; Open-weight model: Possible with modest fine-tuning")
        );
        // Nothing revealed: the sentence as it is.
        assert_eq!(
            keep("Closed systems stack several layers of protection.").as_deref(),
            Some("Closed systems stack several layers of protection.")
        );
        // The answer first, or too little left: nothing.
        assert_eq!(
            keep("Editing internal activations works, and so does tuning."),
            None
        );
        assert_eq!(
            keep("It works, and editing internal activations can too."),
            None
        );
    }

    #[test]
    fn a_sentence_gives_an_answer_away_by_its_words_or_its_numbers() {
        let words = Words::new(Analyzer::new());
        let guard = Guard::new(&words, Some("w".into()), "escalated requests take longer");
        assert!(guard.revealed_by(&words, "In a cascade, escalated requests take longer [1]."));
        assert!(guard.revealed_by(&words, "An escalated request will take longer."));
        assert!(!guard.revealed_by(&words, "Look for what it says about escalated requests."));
        let number = Guard::new(&words, None, "about 200,000 tokens");
        assert!(number.revealed_by(&words, "It reaches 200 000 tokens."));
        assert!(!number.revealed_by(&words, "Look at what it says about tokens."));
        let name = Guard::new(&words, None, "Denver Broncos");
        assert!(name.revealed_by(&words, "The Broncos from Denver won."));
        assert!(!name.revealed_by(&words, "Look at the team from Denver."));
    }

    #[test]
    fn a_lesson_without_quiz_or_golden_questions_gets_recall_questions() {
        let words = Words::new(Analyzer::new());
        let lesson = crate::lessons::parse_lesson(
            "---\nid: l\ntitle: Routing\nsummary: S\n---\nIntro.\n\n## Cascades\n\nA cascade sends each request to the inexpensive model first and escalates on failure.\n\n## Routers\n\nShort.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
            "l",
        )
        .expect("lesson");
        let weights = Weights::of(&words, &lesson);
        let items = items_of(&words, &weights, &lesson);
        assert_eq!(items.len(), 1, "{items:?}");
        let item = &items[0];
        assert_eq!(
            (item.id.as_str(), item.section.as_str()),
            ("recall-cascades", "cascades")
        );
        assert!(item.question.contains("_____"), "{}", item.question);
        assert!(!item.question.contains(&item.answer), "{item:?}");
        // The blank is the answer, graded like any other.
        assert_eq!(
            grade::grade(&words, item, &item.answer.to_uppercase()),
            grade::Grade::Correct
        );
    }

    #[test]
    fn quiz_me_goes_through_the_items_then_starts_over() {
        let items = vec![item("a", "A?", "a"), item("b", "B?", "b")];
        let ids = |asked: &[&str]| {
            let asked: Vec<String> = asked.iter().map(|s| s.to_string()).collect();
            next_item(&items, &asked).map(|i| i.id.clone())
        };
        assert_eq!(ids(&[]).as_deref(), Some("a"));
        assert_eq!(ids(&["a"]).as_deref(), Some("b"));
        assert_eq!(ids(&["a", "b"]).as_deref(), Some("a"));
        assert_eq!(ids(&["b", "a"]).as_deref(), Some("b"));
        assert!(next_item(&[], &[]).is_none());
    }

    #[test]
    fn the_key_word_comes_from_the_question_and_is_never_the_answer() {
        let words = Words::new(Analyzer::new());
        let passage = "Cascade: try the cheap model first, escalate if a check fails. Escalated requests take longer.";
        assert_eq!(
            key_word(
                &words,
                "What is the weakness of a cascade?",
                passage,
                Some("escalated requests take longer")
            )
            .as_deref(),
            Some("cascade")
        );
        assert_eq!(
            key_word(
                &words,
                "Do escalated requests take longer?",
                passage,
                Some("escalated requests take longer")
            ),
            None
        );
    }
}
