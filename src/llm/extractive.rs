//! The embedded answerer: picks the one to three sentences of the retrieved passages that best
//! answer the question and cites each. Every word it says comes from the lesson; it needs no
//! network and no key, so a fresh clone answers out of the box.

use super::{ChatModel, ModelError, ModelRequest, Reply, ReplyStream};
use crate::conversation::{Ordinal, Want};
use crate::index::{Analyzer, Analyzers};
use crate::retrieve::QueryTerm;
use crate::text::{Shape, units_of};
use futures::future::BoxFuture;
use std::collections::HashSet;

/// Longest answer, in characters, before no more sentences are added.
const MAX_ANSWER_CHARS: usize = 420;
const MAX_SENTENCES: usize = 3;
/// A list read out whole (steps, "which …?") may be longer.
const MAX_LIST_CHARS: usize = 560;
const MAX_LIST_ITEMS: usize = 5;

/// Words that give a reason, for "why" questions.
const REASON_WORDS: &[&str] = &[
    "because",
    "since",
    "so",
    "therefore",
    "thus",
    "means",
    "reason",
    "due",
    "order",
    "avoid",
    "result",
    "lets",
    "allows",
    "helps",
    "otherwise",
    "why",
    "cause",
    "causes",
    "caused",
];
/// Words of contrast and cost, for "what is the catch" questions.
const CATCH_WORDS: &[&str] = &[
    "but",
    "however",
    "although",
    "though",
    "yet",
    "downside",
    "trade",
    "tradeoff",
    "cost",
    "costs",
    "risk",
    "risks",
    "weakness",
    "burden",
    "lock",
    "expensive",
    "harder",
    "hard",
    "only",
    "must",
    "whether",
    "limits",
    "limit",
    "fails",
    "lose",
    "loses",
    "catch",
    "unless",
    "while",
    "idle",
    "instead",
    "drawback",
];
/// Beginnings of table-header words that name a weakness or a cost.
const CATCH_HEADERS: &[&str] = &[
    "trade", "weak", "downside", "risk", "burden", "cost", "catch", "drawback", "concern", "limit",
    "cons",
];
/// Number words, for "how many" and "when" questions.
const NUMBER_WORDS: &[&str] = &[
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "hundred",
    "hundreds",
    "thousand",
    "thousands",
    "million",
    "millions",
    "billion",
    "dozen",
    "half",
    "century",
    "centuries",
    "decade",
    "decades",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// What the embedded answerer is called in `backend`.
pub const NAME: &str = "extractive";

/// The extractive answerer.
#[derive(Clone, Default)]
pub struct Extractive {
    /// The index's analyzers: a lesson's sentences are read in its language.
    analyzers: Analyzers,
}

/// A sentence, list item or table row of a passage.
#[derive(Debug)]
struct Unit<'a> {
    n: usize,
    rank: usize,
    relevance: f32,
    position: usize,
    text: &'a str,
    /// The title of the passage's section.
    section: &'a str,
    shape: Shape,
    /// The tutor's last answer quoted it.
    said: bool,
    terms: HashSet<String>,
    /// Terms of the section title, which every sentence of the section stands under.
    context: &'a HashSet<String>,
    /// Its similarity to the question in meaning (0 without a semantic model).
    meaning: f32,
    score: f32,
}

impl Extractive {
    /// A new answerer.
    pub fn new() -> Extractive {
        Extractive::default()
    }

    /// Composes the answer: the sentences, list items or table rows that answer the question
    /// as it is asked (a reason for "why", the list for "which", the item for "the second
    /// one"), in lesson order, each with its `[n]`.
    pub fn answer(&self, request: &ModelRequest) -> Vec<String> {
        self.compose(request, false)
    }

    /// The answer as the embedded answerer says it: [`Extractive::answer`], or `NOT_IN_LESSON`
    /// when the question only a number answers ("how many …?", "how much does … cost?") finds
    /// no number in the sentences that would answer it, besides those the question itself
    /// states. Quoting "multiply by each vendor's prices" to "how much does Groq charge?"
    /// would look like an answer and teach nothing; the lesson simply does not say.
    pub fn reply(&self, request: &ModelRequest) -> Vec<String> {
        self.compose(request, true)
    }

    fn compose(&self, request: &ModelRequest, needs_quantity: bool) -> Vec<String> {
        let terms = &request.terms[..];
        let reading = &request.reading;
        let analyzer = self.analyzers.get(&request.language);
        let titles: Vec<HashSet<String>> = request
            .passages
            .iter()
            .map(|p| analyzer.terms(&p.section).into_iter().collect())
            .collect();
        let units = scored_units(request, analyzer, &titles);
        let render_all = |chosen: Vec<usize>| -> Vec<String> {
            chosen
                .into_iter()
                .map(|i| render(&units[i], terms, reading.want, analyzer))
                .collect()
        };
        if let Some(ordinal) = reading.ordinal
            && let Some(i) = nth_item(&units, ordinal)
        {
            return render_all(vec![i]);
        }
        let Some(best) = units
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i)
        else {
            return Vec::new();
        };
        // A sentence that only leads into a list ("The downsides are real, though:") says
        // nothing without it; steps and "which …?" want the whole list.
        let leads = units[best].shape == Shape::Sentence && units[best].text.ends_with(':');
        let chosen = match whole_list(&units, best) {
            Some(list) if leads || matches!(reading.want, Want::Steps | Want::List) => list,
            _ => pick(&units, best, terms),
        };
        if needs_quantity
            && asks_for_quantity(&request.message)
            // The numbers the question states itself, which answer nothing.
            && let asked = crate::text::numbers(&request.message)
                .iter()
                .map(|n| n.value)
                .collect::<Vec<f64>>()
            && !chosen
                .iter()
                .any(|&i| states_a_new_number(units[i].text, &asked))
        {
            // The best unit that states a number answers instead when it is nearly as good;
            // otherwise the lesson does not say.
            let Some(numbered) = units
                .iter()
                .enumerate()
                .filter(|(_, u)| {
                    u.score >= QUANTITY_SCORE * units[best].score
                        && states_a_new_number(u.text, &asked)
                })
                .max_by(|a, b| a.1.score.total_cmp(&b.1.score).then(b.0.cmp(&a.0)))
                .map(|(i, _)| i)
            else {
                return vec![crate::prompts::NOT_IN_LESSON.to_string()];
            };
            return render_all(pick(&units, numbered, terms));
        }
        render_all(chosen)
    }
}

/// Every sentence, list item and table row of the request's passages, scored for its question.
fn scored_units<'a>(
    request: &'a ModelRequest,
    analyzer: &Analyzer,
    titles: &'a [HashSet<String>],
) -> Vec<Unit<'a>> {
    let terms = &request.terms[..];
    let want = request.reading.want;
    let total: f32 = terms.iter().map(|t| t.idf * t.weight).sum();
    // What the tutor just said, so "tell me more" and "why?" get something new.
    // Lower-cased: a list item read out opens with a capital the lesson may not have.
    let said = super::last_answer(&request.history)
        .unwrap_or("")
        .to_lowercase();
    let mut units = Vec::new();
    for (rank, passage) in request.passages.iter().enumerate() {
        for (position, (text, shape)) in units_of(&passage.text).into_iter().enumerate() {
            let analyzed = analyzer.terms(text);
            let defines = defines_question_terms(&analyzed, terms);
            let unit_terms: HashSet<String> = analyzed.into_iter().collect();
            let mut unit = Unit {
                n: passage.n,
                rank,
                relevance: passage.relevance,
                position,
                text,
                section: &passage.section,
                shape,
                said: !said.is_empty() && said.contains(&unit_body(text).to_lowercase()),
                terms: unit_terms,
                context: &titles[rank],
                meaning: passage
                    .meaning
                    .as_ref()
                    .and_then(|m| m.get(position))
                    .map_or(0.0, |s| s.max(0.0)),
                score: 0.0,
            };
            unit.score = score(&unit, terms, total)
                + if defines && want != Want::Reason {
                    0.25
                } else {
                    0.0
                }
                + meaning_score(unit.meaning, passage.relevance);
            unit.score = fits(&unit, want, unit.score);
            if unit.said {
                unit.score *= 0.5;
            }
            units.push(unit);
        }
    }
    units
}

/// Weight of a unit's similarity to the question beside its words, with a semantic model
/// (tuned on `examples/reword-cases/tune.toml`: 1.0 answered 0.491 right, 3.0 0.509; words
/// alone 0.302).
const MEANING_WEIGHT: f32 = 3.0;

/// A unit's similarity to the question (`meaning`, 0 without a semantic model), weighted and
/// nudged by its passage's `relevance`.
fn meaning_score(meaning: f32, relevance: f32) -> f32 {
    MEANING_WEIGHT * meaning * (0.6 + 0.4 * relevance.clamp(0.0, 1.0))
}

/// A sentence joins the answer for its meaning alone when it is this close to the question,
/// relative to the best sentence and in absolute terms (tuned on
/// `examples/reword-cases/tune.toml`: ratios 0.7 to 0.85 and floors 0.3 to 0.4 answered 0.528
/// right, against 0.509 without; limited to the best sentence's passage, 0.509).
const COMPANION_MEANING: f32 = 0.8;
const MIN_COMPANION_MEANING: f32 = 0.3;

/// The units an answer quotes, starting from the `best` one, in lesson order.
fn pick(units: &[Unit<'_>], best: usize, terms: &[QueryTerm]) -> Vec<usize> {
    let mut picked = Picked::default();
    picked.take(best, &units[best], terms);

    // A short best sentence that the next one continues ("It ...", "This ...") keeps it.
    if units[best].text.len() < 140
        && let Some(next) = units.get(best + 1)
        && next.n == units[best].n
        && starts_with_reference(next.text)
    {
        picked.add(best + 1, next);
    }

    // An answer drawn from a lower-ranked passage also quotes the best-ranked passage when
    // that has a sentence nearly as good: retrieval ranks whole passages better than
    // single sentences can.
    if units[best].rank != 0
        && let Some((i, _)) = units
            .iter()
            .enumerate()
            .filter(|(i, u)| {
                u.rank == 0
                    && !picked.chosen.contains(i)
                    && u.score >= 0.5 * units[best].score
                    && picked.length + u.text.len() <= MAX_ANSWER_CHARS
            })
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score))
    {
        picked.take(i, &units[i], terms);
    }

    // Then sentences that add question words not yet covered, while they score well.
    while picked.chosen.len() < MAX_SENTENCES {
        let candidate = units
            .iter()
            .enumerate()
            .filter(|(i, u)| {
                !picked.chosen.contains(i)
                    && u.score >= 0.5 * units[best].score
                    && u.score > 0.15
                    && picked.length + u.text.len() <= MAX_ANSWER_CHARS
            })
            .map(|(i, u)| {
                let gain: f32 = terms
                    .iter()
                    .filter(|t| u.terms.contains(&t.term) && !picked.covered.contains(&t.term))
                    .map(|t| t.idf * t.weight)
                    .sum();
                (i, gain)
            })
            .filter(|(_, gain)| *gain > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, _)) = candidate else { break };
        picked.take(i, &units[i], terms);
    }

    // A question in other words shares few words with its answer, so the loop above adds
    // little: a sentence nearly as close in meaning as the best one may say the rest of it.
    if picked.chosen.len() < MAX_SENTENCES
        && let Some((i, _)) = units
            .iter()
            .enumerate()
            .filter(|(i, u)| {
                !picked.chosen.contains(i)
                    && u.meaning >= COMPANION_MEANING * units[best].meaning
                    && u.meaning >= MIN_COMPANION_MEANING
                    && picked.length + u.text.len() <= MAX_ANSWER_CHARS
            })
            .max_by(|a, b| a.1.meaning.total_cmp(&b.1.meaning))
    {
        picked.take(i, &units[i], terms);
    }
    let mut chosen = picked.chosen;
    chosen.sort_by_key(|&i| (units[i].rank, units[i].position));
    chosen
}

/// The units chosen so far, the question terms they cover, and their length.
#[derive(Default)]
struct Picked {
    chosen: Vec<usize>,
    covered: HashSet<String>,
    length: usize,
}

impl Picked {
    /// Adds unit `i` to the answer.
    fn add(&mut self, i: usize, unit: &Unit<'_>) {
        self.length += unit.text.len();
        self.chosen.push(i);
    }

    /// Adds unit `i` and counts the question terms it covers.
    fn take(&mut self, i: usize, unit: &Unit<'_>, terms: &[QueryTerm]) {
        self.add(i, unit);
        self.covered.extend(
            terms
                .iter()
                .filter(|t| unit.terms.contains(&t.term))
                .map(|t| t.term.clone()),
        );
    }
}

/// Weighted share of the question's terms in the unit, nudged towards better-ranked passages
/// and away from fragments.
fn score(unit: &Unit<'_>, terms: &[QueryTerm], total: f32) -> f32 {
    if total <= 0.0 {
        return 0.0;
    }
    let found: f32 = terms
        .iter()
        .map(|t| {
            if unit.terms.contains(&t.term) {
                t.idf * t.weight
            } else if unit.context.contains(&t.term) {
                0.5 * t.idf * t.weight
            } else {
                0.0
            }
        })
        .sum();
    // The passage's retrieval score carries the context a single sentence lacks.
    let mut score = (found / total) * (0.6 + 0.4 * unit.relevance.clamp(0.0, 1.0))
        + 0.02 / (unit.rank as f32 + 1.0);
    let length = unit.text.len();
    if length < 30 {
        score *= 0.6;
    } else if length > 360 {
        score *= 0.85;
    }
    score
}

/// Raises the score of a unit that has the shape of the answer asked for: a reason for "why",
/// a contrast or cost for "what is the catch", a number for "how many" and "when", a name for
/// "who", a table row for "compare".
fn fits(unit: &Unit<'_>, want: Want, score: f32) -> f32 {
    let words = || crate::conversation::message_words(unit.text);
    match want {
        Want::Reason if words().iter().any(|w| REASON_WORDS.contains(&w.as_str())) => score * 1.25,
        Want::Catch => {
            let row_has_catch = matches!(unit.shape, Shape::Row { .. })
                && crate::text::table_cells(unit.text)
                    .iter()
                    .any(|(h, _)| is_catch_header(h));
            if row_has_catch || words().iter().any(|w| CATCH_WORDS.contains(&w.as_str())) {
                score * 1.25
            } else {
                score
            }
        }
        Want::Number => {
            let words = words();
            let has_number = !crate::text::numbers(unit.text).is_empty()
                || words.iter().any(|w| {
                    NUMBER_WORDS.contains(&w.as_str()) || w.bytes().any(|b| b.is_ascii_digit())
                });
            if has_number {
                score * 1.3
            } else {
                score * 0.75
            }
        }
        Want::Person => {
            // A capitalised word after the first: a name.
            let named = unit
                .text
                .split_whitespace()
                .skip(1)
                .any(|w| w.chars().next().is_some_and(char::is_uppercase));
            if named { score * 1.15 } else { score * 0.9 }
        }
        Want::Compare if matches!(unit.shape, Shape::Row { .. }) => score * 1.2,
        _ => score,
    }
}

/// "How many …?", "how much …?" (not "how much of …?"), "what percentage …?", "what year …?":
/// a question that only a number answers. ("When …?", "how long …?" and "how old …?" are
/// often answered in words: "once the weights are public", "for decades".)
fn asks_for_quantity(message: &str) -> bool {
    let words = crate::conversation::message_words(message);
    words.windows(2).enumerate().any(|(i, pair)| match pair {
        [a, b] if a == "how" && b == "many" => true,
        [a, b] if a == "how" && b == "much" => words.get(i + 2).is_none_or(|w| w != "of"),
        [a, b] if (a == "what" || a == "which") && (b == "percentage" || b == "year") => true,
        _ => false,
    })
}

/// How good, against the best unit, a unit stating a number must be to answer a question only
/// a number answers when the best one states none.
const QUANTITY_SCORE: f32 = 0.5;

/// Words that state an amount without a figure ("third" and "quarter" are left out: "a third
/// party", "last quarter").
const AMOUNT_WORDS: &[&str] = &[
    "half",
    "dozen",
    "dozens",
    "hundreds",
    "thousands",
    "millions",
    "billions",
    "free",
    "none",
    "zero",
    "twice",
    "double",
];

/// True when `text` states a number besides the question's own `asked` ones (a figure, a number
/// word or an amount word): "7B" in the answer to "how long does tuning a 7B model take?"
/// answers nothing.
fn states_a_new_number(text: &str, asked: &[f64]) -> bool {
    crate::text::numbers(text)
        .iter()
        .any(|n| !asked.contains(&n.value))
        || crate::conversation::message_words(text)
            .iter()
            .any(|w| AMOUNT_WORDS.contains(&w.as_str()))
}

/// The unit that is the requested item, of the list the last answer read from, or else of the
/// best-ranked passage's first list long enough (lists of items before tables).
fn nth_item(units: &[Unit<'_>], ordinal: Ordinal) -> Option<usize> {
    let mut lists: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        let list = match unit.shape {
            Shape::Item { list, .. } | Shape::Row { list, .. } => list,
            Shape::Sentence => continue,
        };
        match lists.last_mut() {
            Some((rank, l, items)) if *rank == unit.rank && *l == list => items.push(i),
            // A list cut across two passages of one section goes on in the next.
            Some((rank, l, items))
                if unit.position == 0
                    && items.last() == Some(&(i - 1))
                    && units[i - 1].section == unit.section =>
            {
                *rank = unit.rank;
                *l = list;
                items.push(i);
            }
            _ => lists.push((unit.rank, list, vec![i])),
        }
    }
    // The list the tutor just read from is the one "the second one" means; else a list of
    // items before a table.
    let was_said = |items: &Vec<usize>| items.iter().any(|&i| units[i].said);
    let is_row = |items: &Vec<usize>| matches!(units[items[0]].shape, Shape::Row { .. });
    let mut candidates: Vec<&Vec<usize>> = lists
        .iter()
        .map(|(_, _, items)| items)
        .filter(|items| ordinal.index(items.len()).is_some())
        .collect();
    candidates.sort_by_key(|items| (!was_said(items), is_row(items)));
    candidates
        .first()
        .and_then(|items| ordinal.index(items.len()).map(|k| items[k]))
}

/// For steps and "which …?": the whole list the best unit belongs to (or leads into, when it
/// is the sentence just before one), with its lead sentence, in order.
fn whole_list(units: &[Unit<'_>], best: usize) -> Option<Vec<usize>> {
    let unit = &units[best];
    let (rank, list, lead) = match unit.shape {
        Shape::Item { list, .. } => (unit.rank, list, None),
        Shape::Sentence => {
            let next = units.get(best + 1)?;
            match next.shape {
                Shape::Item { list, index: 0 } if next.rank == unit.rank => {
                    (unit.rank, list, Some(best))
                }
                _ => return None,
            }
        }
        Shape::Row { .. } => return None,
    };
    let items: Vec<usize> = units
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            u.rank == rank && matches!(u.shape, Shape::Item { list: l, .. } if l == list)
        })
        .map(|(i, _)| i)
        .collect();
    if items.len() < 2 {
        return None;
    }
    let mut out: Vec<usize> = lead.into_iter().collect();
    let mut length: usize = out.iter().map(|&i| units[i].text.len()).sum();
    for i in items {
        if out.len() >= MAX_LIST_ITEMS + usize::from(lead.is_some())
            || length + units[i].text.len() > MAX_LIST_CHARS
        {
            break;
        }
        length += units[i].text.len();
        out.push(i);
    }
    (out.len() >= 2).then_some(out)
}

fn is_catch_header(header: &str) -> bool {
    crate::conversation::message_words(header)
        .iter()
        .any(|w| CATCH_HEADERS.iter().any(|h| w.starts_with(h)))
}

/// A unit as the answer says it, with its citation: a sentence with a full stop, or a table
/// row read out as a sentence ("For Cascade, weakness: escalated requests take longer.").
fn render(unit: &Unit<'_>, terms: &[QueryTerm], want: Want, analyzer: &Analyzer) -> String {
    let text = match unit.shape {
        Shape::Row { .. } => spoken_row(unit.text, terms, want, analyzer),
        // A list item read out on its own is a sentence: "keep a second host" opens with a capital.
        Shape::Item { .. } => upper_first(&with_full_stop(unit.text)),
        _ => with_full_stop(unit.text),
    };
    format!("{text} [{}]", unit.n)
}

/// A table row as a person would say it: the row's name, then the columns that answer.
fn spoken_row(line: &str, terms: &[QueryTerm], want: Want, analyzer: &Analyzer) -> String {
    let cells = crate::text::table_cells(line);
    let Some(((_, name), rest)) = cells.split_first() else {
        return with_full_stop(line);
    };
    let mentions = |h: &str, c: &str| {
        let found: HashSet<String> = analyzer.terms(&format!("{h} {c}")).into_iter().collect();
        terms
            .iter()
            .any(|t| t.weight >= 1.0 && found.contains(&t.term))
    };
    let mut chosen: Vec<&(&str, &str)> = match want {
        Want::Catch => rest.iter().filter(|(h, _)| is_catch_header(h)).collect(),
        Want::Compare | Want::Definition | Want::List | Want::Plain => rest.iter().collect(),
        _ => rest.iter().filter(|(h, c)| mentions(h, c)).collect(),
    };
    if chosen.is_empty() {
        chosen = rest.iter().collect();
    }
    let parts: Vec<String> = chosen
        .iter()
        .map(|(h, c)| format!("{}: {}", lower_first(h), lower_first(c)))
        .collect();
    format!("For {name}, {}.", parts.join("; "))
}

/// Lower-cases the first letter of an ordinary word ("Usually none" → "usually none"), and
/// leaves acronyms and names written with more capitals ("GPUs", "API") alone.
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    let first = chars.next();
    let rest = chars.as_str();
    match (first, rest.chars().next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            let mut out: String = first.to_lowercase().collect();
            out.push_str(rest);
            out
        }
        _ => text.to_string(),
    }
}

fn upper_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if first.is_lowercase() => first.to_uppercase().chain(chars).collect(),
        _ => text.to_string(),
    }
}

/// A unit's text without the full stop a rendering may add, to find it in an earlier answer.
fn unit_body(text: &str) -> &str {
    text.trim().trim_end_matches(['.', ':', ';', ','])
}

/// True when a unit opens with every main question term, as definitions do ("Open weights
/// means ...", "A router is ...").
fn defines_question_terms(analyzed: &[String], terms: &[QueryTerm]) -> bool {
    let main: Vec<&QueryTerm> = terms.iter().filter(|t| t.weight >= 1.0).collect();
    if main.is_empty() || main.len() > 3 {
        return false;
    }
    let head = &analyzed[..analyzed.len().min(main.len() + 2)];
    main.iter().all(|t| head.contains(&t.term))
}

fn starts_with_reference(text: &str) -> bool {
    let first = text.split_whitespace().next().unwrap_or("");
    matches!(
        first,
        "It" | "This" | "That" | "They" | "These" | "Those" | "Such" | "Its" | "Their"
    )
}

fn with_full_stop(text: &str) -> String {
    let text = text.trim();
    if text.ends_with(['.', '!', '?', '"', '”', ')']) {
        text.to_string()
    } else {
        format!("{}.", text.trim_end_matches([':', ';', ',']))
    }
}

impl ChatModel for Extractive {
    fn name(&self) -> String {
        NAME.to_string()
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<Reply, ModelError>> {
        let sentences = self.reply(request);
        Box::pin(async move {
            Ok(Reply {
                backend: self.name(),
                text: sentences.join(" "),
            })
        })
    }

    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ReplyStream, ModelError>> {
        let pieces: Vec<String> = self
            .reply(request)
            .into_iter()
            .enumerate()
            .map(|(i, s)| if i == 0 { s } else { format!(" {s}") })
            .collect();
        Box::pin(async move { Ok(ReplyStream::of_pieces(self.name(), pieces)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::NumberedPassage;

    fn term(term: &str, idf: f32) -> QueryTerm {
        QueryTerm {
            term: term.to_string(),
            idf,
            weight: 1.0,
        }
    }

    fn ask(
        answerer: &Extractive,
        passages: &[NumberedPassage],
        terms: &[QueryTerm],
    ) -> Vec<String> {
        ask_as(answerer, "", passages, terms)
    }

    /// Asks with the message read as the tutor reads it (its kind of answer, its ordinal).
    fn ask_as(
        answerer: &Extractive,
        message: &str,
        passages: &[NumberedPassage],
        terms: &[QueryTerm],
    ) -> Vec<String> {
        answerer.answer(&ModelRequest {
            system: String::new(),
            history: Vec::new(),
            message: message.to_string(),
            passages: passages.to_vec(),
            terms: terms.to_vec(),
            easy: false,
            reading: crate::conversation::read(message),
            language: "en".to_string(),
        })
    }

    #[test]
    fn the_second_one_reads_from_the_list_just_read_out_even_with_capitals_added() {
        let answerer = Extractive::new();
        let passages = [
            passage(1, "- Alpha goes first.\n- Beta goes second."),
            passage(
                2,
                "Teams make these mistakes:\n- tuning on the wrong data\n- ignoring drift",
            ),
        ];
        // The last answer read the second list out, each item opening with a capital.
        let history = vec![
            crate::llm::Turn {
                role: crate::llm::Role::User,
                content: "What mistakes do teams make?".to_string(),
            },
            crate::llm::Turn {
                role: crate::llm::Role::Assistant,
                content: "Teams make these mistakes [2]. Tuning on the wrong data [2]. Ignoring drift [2]."
                    .to_string(),
            },
        ];
        let message = "and the second one?";
        let answer = answerer.answer(&ModelRequest {
            system: String::new(),
            history,
            message: message.to_string(),
            passages: passages.to_vec(),
            terms: Vec::new(),
            easy: false,
            reading: crate::conversation::read(message),
            language: "en".to_string(),
        });
        assert_eq!(answer, vec!["Ignoring drift. [2]"]);
    }

    fn reply_to(answerer: &Extractive, message: &str, passages: &[NumberedPassage]) -> Vec<String> {
        let terms: Vec<QueryTerm> = crate::conversation::message_words(message)
            .iter()
            .filter(|w| w.len() > 3)
            .map(|w| term(w, 1.0))
            .collect();
        answerer.reply(&ModelRequest {
            system: String::new(),
            history: Vec::new(),
            message: message.to_string(),
            passages: passages.to_vec(),
            terms,
            easy: false,
            reading: crate::conversation::read(message),
            language: "en".to_string(),
        })
    }

    #[test]
    fn a_question_only_a_number_answers_is_not_answered_without_one() {
        let answerer = Extractive::new();
        let prices = [passage(
            1,
            "To compare costs, estimate your monthly tokens. Multiply them by each vendor's per-token prices.",
        )];
        let not_in_lesson = vec![crate::prompts::NOT_IN_LESSON.to_string()];
        // The words match, but no sentence says how much.
        assert_eq!(
            reply_to(
                &answerer,
                "How much does a vendor charge per million tokens?",
                &prices
            ),
            not_in_lesson
        );
        // The answer's own sentences without the check.
        assert!(
            !answerer
                .answer(&ModelRequest {
                    system: String::new(),
                    history: Vec::new(),
                    message: "How much does a vendor charge per million tokens?".to_string(),
                    passages: prices.to_vec(),
                    terms: vec![term("vendor", 1.0), term("tokens", 1.0)],
                    easy: false,
                    reading: crate::conversation::read("How much does a vendor charge?"),
                    language: "en".to_string(),
                })
                .is_empty()
        );
        // A number the question states answers nothing.
        let tuning = [passage(
            1,
            "Tuning a 7B model with adapters needs a single GPU.",
        )];
        assert_eq!(
            reply_to(
                &answerer,
                "How many hours does tuning a 7B model take?",
                &tuning
            ),
            not_in_lesson
        );
        // A sentence stating the number, nearly as good as the best, answers instead.
        let counted = [passage(
            1,
            "Routers choose a model for every request. A router needs about 2,000 labelled requests to train.",
        )];
        assert_eq!(
            reply_to(
                &answerer,
                "How many labelled requests does a router need?",
                &counted
            ),
            vec!["A router needs about 2,000 labelled requests to train. [1]"]
        );
        // Not a question of quantity: answered as before.
        assert_eq!(
            reply_to(&answerer, "How do vendors charge for tokens?", &prices).len(),
            1
        );
        // An amount in words answers too.
        let free = [passage(
            1,
            "Hosts charge per token. The smallest model is free to use.",
        )];
        assert_eq!(
            reply_to(&answerer, "How much does the smallest model cost?", &free),
            vec!["The smallest model is free to use. [1]"]
        );
    }

    fn passage(n: usize, text: &str) -> NumberedPassage {
        NumberedPassage {
            n,
            section: "S".to_string(),
            text: text.to_string(),
            relevance: 1.0,
            meaning: None,
        }
    }

    #[test]
    fn the_best_sentence_is_chosen_and_cited() {
        let answerer = Extractive::new();
        let answer = ask(
            &answerer,
            &[
                passage(
                    1,
                    "Closed models are reached through an API. Nothing else is released.",
                ),
                passage(
                    2,
                    "Open weights can be downloaded and run on your own hardware. Training data usually stays private.",
                ),
            ],
            &[
                term("open", 1.0),
                term("weight", 2.0),
                term("download", 3.0),
            ],
        );
        assert_eq!(
            answer[0],
            "Open weights can be downloaded and run on your own hardware. [2]"
        );
    }

    #[test]
    fn list_items_and_rows_are_whole_units_and_get_a_full_stop() {
        let answerer = Extractive::new();
        let answer = ask(
            &answerer,
            &[passage(
                3,
                "The cases for openness:\n- Reproducibility: science cannot check what it cannot rerun\n- Security: more eyes find flaws",
            )],
            &[term("reproduc", 3.0)],
        );
        assert_eq!(
            answer,
            vec!["Reproducibility: science cannot check what it cannot rerun. [3]"]
        );
    }

    #[test]
    fn a_sentence_nearly_as_close_in_meaning_joins_the_answer_and_a_distant_one_does_not() {
        let answerer = Extractive::new();
        let text = "Keep the serving stack patched. Pin the exact file you evaluated by its checksum. Record who approved the model.";
        let with = |meaning: Vec<f32>| NumberedPassage {
            meaning: Some(meaning),
            ..passage(2, text)
        };
        // No words in common: meaning alone chooses, and the second-closest sentence joins.
        let answer = ask(&answerer, &[with(vec![0.2, 0.62, 0.55])], &[]);
        assert_eq!(
            answer,
            vec![
                "Pin the exact file you evaluated by its checksum. [2]",
                "Record who approved the model. [2]"
            ]
        );
        // Well below the best one (0.3 < 0.8 × 0.62): the answer stays one sentence.
        let answer = ask(&answerer, &[with(vec![0.2, 0.62, 0.3])], &[]);
        assert_eq!(
            answer,
            vec!["Pin the exact file you evaluated by its checksum. [2]"]
        );
        // Close to each other but far from the question: no companion for meaning alone.
        let answer = ask(&answerer, &[with(vec![0.1, 0.28, 0.27])], &[]);
        assert_eq!(answer.len(), 1, "{answer:?}");
    }

    #[test]
    fn a_second_sentence_is_added_only_when_it_covers_new_question_words() {
        let answerer = Extractive::new();
        let answer = ask(
            &answerer,
            &[passage(
                1,
                "Hosted open weights cost less per token. Self-hosting gives full data control. The weather is nice.",
            )],
            &[term("cost", 2.0), term("control", 2.0), term("data", 1.0)],
        );
        assert_eq!(answer.len(), 2, "{answer:?}");
        assert!(answer[0].starts_with("Hosted"));
        assert!(answer[1].starts_with("Self-hosting"));
    }
}
