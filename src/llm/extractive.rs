//! The embedded answerer: picks the one to three sentences of the retrieved passages that best
//! answer the question and cites each. Every word it says comes from the lesson; it needs no
//! network and no key, so a fresh clone answers out of the box.

use super::{ChatModel, ModelError, ModelRequest, NumberedPassage, Reply, ReplyStream, TextStream};
use crate::index::Analyzer;
use crate::retrieve::QueryTerm;
use crate::text::split_sentences;
use futures::future::BoxFuture;
use std::collections::HashSet;

/// Longest answer, in characters, before no more sentences are added.
const MAX_ANSWER_CHARS: usize = 420;
const MAX_SENTENCES: usize = 3;

/// The extractive answerer.
#[derive(Clone, Default)]
pub struct Extractive {
    analyzer: Analyzer,
}

/// A sentence, list item or table row of a passage.
#[derive(Debug)]
struct Unit<'a> {
    n: usize,
    rank: usize,
    relevance: f32,
    position: usize,
    text: &'a str,
    terms: HashSet<String>,
    /// Terms of the section title, which every sentence of the section stands under.
    context: &'a HashSet<String>,
    score: f32,
}

impl Extractive {
    /// A new answerer.
    pub fn new() -> Extractive {
        Extractive::default()
    }

    /// Composes the answer: the best-scoring sentences, in lesson order, each with its `[n]`.
    pub fn answer(&self, passages: &[NumberedPassage], terms: &[QueryTerm]) -> Vec<String> {
        let total: f32 = terms.iter().map(|t| t.idf * t.weight).sum();
        let titles: Vec<HashSet<String>> = passages
            .iter()
            .map(|p| self.analyzer.terms(&p.section).into_iter().collect())
            .collect();
        let mut units = Vec::new();
        for (rank, passage) in passages.iter().enumerate() {
            for (position, text) in units_of(&passage.text).into_iter().enumerate() {
                let analyzed = self.analyzer.terms(text);
                let defines = defines_question_terms(&analyzed, terms);
                let unit_terms: HashSet<String> = analyzed.into_iter().collect();
                let mut unit = Unit {
                    n: passage.n,
                    rank,
                    relevance: passage.relevance,
                    position,
                    text,
                    terms: unit_terms,
                    context: &titles[rank],
                    score: 0.0,
                };
                unit.score = score(&unit, terms, total) + if defines { 0.25 } else { 0.0 };
                units.push(unit);
            }
        }
        let Some(best) = units
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i)
        else {
            return Vec::new();
        };
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
        let mut chosen = picked.chosen;
        chosen.sort_by_key(|&i| (units[i].rank, units[i].position));
        chosen
            .into_iter()
            .map(|i| format!("{} [{}]", with_full_stop(units[i].text), units[i].n))
            .collect()
    }
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

/// Splits a passage into answerable units: list items and table rows whole, prose by sentence.
fn units_of(text: &str) -> Vec<&str> {
    let mut units = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(item) = line.strip_prefix("- ") {
            units.push(item.trim());
        } else if !line.is_empty() {
            units.extend(split_sentences(line));
        }
    }
    units
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
        "extractive".to_string()
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<Reply, ModelError>> {
        let sentences = self.answer(&request.passages, &request.terms);
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
        let sentences = self.answer(&request.passages, &request.terms);
        let pieces: Vec<Result<String, ModelError>> = sentences
            .into_iter()
            .enumerate()
            .map(|(i, s)| Ok(if i == 0 { s } else { format!(" {s}") }))
            .collect();
        Box::pin(async move {
            let text: TextStream = Box::pin(futures::stream::iter(pieces));
            Ok(ReplyStream {
                backend: self.name(),
                text,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(term: &str, idf: f32) -> QueryTerm {
        QueryTerm {
            term: term.to_string(),
            idf,
            weight: 1.0,
        }
    }

    fn passage(n: usize, text: &str) -> NumberedPassage {
        NumberedPassage {
            n,
            section: "S".to_string(),
            text: text.to_string(),
            relevance: 1.0,
        }
    }

    #[test]
    fn the_best_sentence_is_chosen_and_cited() {
        let answerer = Extractive::new();
        let answer = answerer.answer(
            &[
                passage(1, "Closed models are reached through an API. Nothing else is released."),
                passage(2, "Open weights can be downloaded and run on your own hardware. Training data usually stays private."),
            ],
            &[term("open", 1.0), term("weight", 2.0), term("download", 3.0)],
        );
        assert_eq!(
            answer[0],
            "Open weights can be downloaded and run on your own hardware. [2]"
        );
    }

    #[test]
    fn list_items_and_rows_are_whole_units_and_get_a_full_stop() {
        let answerer = Extractive::new();
        let answer = answerer.answer(
            &[passage(3, "The cases for openness:\n- Reproducibility: science cannot check what it cannot rerun\n- Security: more eyes find flaws")],
            &[term("reproduc", 3.0)],
        );
        assert_eq!(
            answer,
            vec!["Reproducibility: science cannot check what it cannot rerun. [3]"]
        );
    }

    #[test]
    fn a_second_sentence_is_added_only_when_it_covers_new_question_words() {
        let answerer = Extractive::new();
        let answer = answerer.answer(
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
