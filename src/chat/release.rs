//! Verified release: a model's text, arriving in pieces, becomes the text a learner sees one
//! whole, verified sentence at a time. Nothing is released before the sentence it belongs to is
//! complete and judged; nothing released is ever taken back.
//!
//! The JSON path feeds the whole answer in one piece and the stream feeds it as it comes, through
//! the same [`Release`]: the learner sees the same text either way, however the stream is cut.

use super::citations::{Marker, parse_marker, take_markers, with_markers};
use super::verify::{Unsupported, Verdict};
use crate::prompts::NOT_IN_LESSON;
use crate::text::cut;

/// A sentence longer than this (in bytes) without an end is cut at a space and judged as it is.
const MAX_SENTENCE: usize = 1200;

/// Judges one sentence (markers taken out) that cites some passages.
pub trait Judge {
    /// The verdict on `sentence`, which cited `cited` (numbers as written, valid or not);
    /// `Unsupported(Leak)` when it repeats the tutor's own instructions, which ends the release.
    fn judge(&self, sentence: &str, cited: &[usize]) -> Verdict;
}

/// Why the model's text stopped being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The model said `NOT_IN_LESSON`.
    NotInLesson,
    /// The model repeated the tutor's instructions.
    Leak,
}

/// A sentence of the model's answer and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The sentence as the model wrote it, markers taken out.
    pub text: String,
    pub verdict: Verdict,
}

/// A judged sentence not released yet.
#[derive(Debug)]
struct Held {
    /// White space that stood before it (a line break is kept as one).
    lead: &'static str,
    /// Index into `Release::judged`.
    judged: usize,
}

/// The state of one answer's release.
#[derive(Debug)]
pub struct Release {
    /// Model text not judged yet.
    buffer: String,
    /// Released text.
    shown: String,
    /// The passages the released text cites, in the order the learner first sees them: a
    /// passage's shown number is its place here plus one, so shown markers count from `[1]`
    /// in order of appearance whatever numbers the model wrote.
    cited: Vec<usize>,
    /// Every sentence judged so far, in order.
    judged: Vec<Judged>,
    /// Friendly sentences waiting for a sentence that answers (released with it, or never).
    neutral: Vec<Held>,
    /// With a second opinion: sentences from the first undecided one on, waiting for it.
    queued: Vec<Held>,
    second_opinion: bool,
    /// A sentence that answers was released.
    answered: bool,
    /// The sentence before the next one was removed.
    after_removed: bool,
    stop: Option<Stop>,
}

impl Release {
    /// A new release. With `second_opinion`, undecided sentences (and those after them) wait for
    /// [`Release::settle`]; without, they are removed at once.
    pub fn new(second_opinion: bool) -> Release {
        Release {
            buffer: String::new(),
            shown: String::new(),
            cited: Vec::new(),
            judged: Vec::new(),
            neutral: Vec::new(),
            queued: Vec::new(),
            second_opinion,
            answered: false,
            after_removed: false,
            stop: None,
        }
    }

    /// Takes the next piece of model text; returns the text that may be shown now (often empty).
    pub fn push(&mut self, piece: &str, judge: &impl Judge) -> String {
        if self.stop.is_some() {
            return String::new();
        }
        self.buffer.push_str(piece);
        let mut out = String::new();
        while self.stop.is_none() {
            let Some(end) = sentence_end(&self.buffer, false) else {
                break;
            };
            let rest = self.buffer.split_off(end);
            let sentence = std::mem::replace(&mut self.buffer, rest);
            self.sentence(&sentence, judge, &mut out);
        }
        if self.stop.is_some() {
            self.buffer.clear();
        }
        out
    }

    /// Ends the model's text; returns what may be shown of its last sentence.
    pub fn finish(&mut self, judge: &impl Judge) -> String {
        let mut out = String::new();
        if self.stop.is_none() {
            while let Some(end) = sentence_end(&self.buffer, true) {
                let rest = self.buffer.split_off(end);
                let sentence = std::mem::replace(&mut self.buffer, rest);
                self.sentence(&sentence, judge, &mut out);
                if self.stop.is_some() {
                    break;
                }
            }
        }
        self.buffer.clear();
        out
    }

    /// The undecided sentences waiting for a second opinion: (index, text, cited passages).
    pub fn undecided(&self) -> Vec<(usize, String, Vec<usize>)> {
        self.queued
            .iter()
            .filter_map(|held| match &self.judged[held.judged].verdict {
                Verdict::Undecided { cites, .. } => Some((
                    held.judged,
                    self.judged[held.judged].text.clone(),
                    cites.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Applies second opinions (`supported` for each index from [`Release::undecided`]; missing
    /// ones keep the lexical verdict: removal, or shown for a mere doubt) and releases what was
    /// waiting.
    pub fn settle(&mut self, supported: &[(usize, bool)]) -> String {
        for held in &self.queued {
            let judged = &mut self.judged[held.judged];
            if let Verdict::Undecided { cites, why } = &judged.verdict {
                let yes = supported.iter().any(|(i, ok)| *i == held.judged && *ok);
                judged.verdict = if yes {
                    Verdict::Supported {
                        cites: cites.clone(),
                    }
                } else if supported.iter().any(|(i, _)| *i == held.judged) {
                    Verdict::Unsupported(Unsupported::SecondOpinion)
                } else if why.passes_lexically() {
                    Verdict::Supported {
                        cites: cites.clone(),
                    }
                } else {
                    Verdict::Unsupported(why.clone())
                };
            }
        }
        let queued = std::mem::take(&mut self.queued);
        let mut out = String::new();
        for held in queued {
            self.place(held, &mut out);
        }
        out
    }

    /// Everything released so far.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// True once a sentence that answers was released.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Why the model's text stopped being read, if it did.
    pub fn stop(&self) -> Option<Stop> {
        self.stop
    }

    /// True when nothing more of the model's text will be used.
    pub fn stopped(&self) -> bool {
        self.stop.is_some()
    }

    /// Every sentence judged, in order.
    pub fn judged(&self) -> &[Judged] {
        &self.judged
    }

    /// The passages the released text cites (numbers as given to the model), in order of
    /// first appearance: the passage shown as `[k]` is the `k`-th.
    pub fn cited(&self) -> &[usize] {
        &self.cited
    }

    /// The number the learner sees for passage `n`, given on its first appearance.
    fn shown_number(&mut self, n: usize) -> usize {
        match self.cited.iter().position(|&c| c == n) {
            Some(i) => i + 1,
            None => {
                self.cited.push(n);
                self.cited.len()
            }
        }
    }

    fn sentence(&mut self, raw: &str, judge: &impl Judge, out: &mut String) {
        let lead = lead_of(raw);
        let (plain, cited) = take_markers(raw);
        if plain.is_empty() {
            return;
        }
        if plain.contains(NOT_IN_LESSON) {
            self.stop = Some(Stop::NotInLesson);
            return;
        }
        let verdict = match judge.judge(&plain, &cited) {
            // Only a doubt, and nobody to ask: the lexical verdict keeps it.
            Verdict::Undecided { cites, why } if why.passes_lexically() && !self.second_opinion => {
                Verdict::Supported { cites }
            }
            verdict => verdict,
        };
        if verdict == Verdict::Unsupported(Unsupported::Leak) {
            self.stop = Some(Stop::Leak);
        }
        let held = Held {
            lead,
            judged: self.judged.len(),
        };
        let undecided = matches!(verdict, Verdict::Undecided { .. });
        self.judged.push(Judged {
            text: plain,
            verdict,
        });
        if !self.queued.is_empty() || (undecided && self.second_opinion) {
            self.queued.push(held);
        } else {
            self.place(held, out);
        }
    }

    /// Releases a judged sentence, holds it (a friendly phrase before any answer), or drops it.
    fn place(&mut self, held: Held, out: &mut String) {
        let judged = &self.judged[held.judged];
        match &judged.verdict {
            Verdict::Supported { cites } | Verdict::Corrected { to: cites, .. } => {
                let text = if self.after_removed || !self.answered {
                    without_dangling_connective(&judged.text)
                } else {
                    judged.text.clone()
                };
                let cites = cites.clone();
                let shown: Vec<usize> = cites.iter().map(|&n| self.shown_number(n)).collect();
                let text = with_markers(&text, &shown);
                for neutral in std::mem::take(&mut self.neutral) {
                    let neutral_text = self.judged[neutral.judged].text.clone();
                    self.emit(neutral.lead, &neutral_text, out);
                }
                self.emit(held.lead, &text, out);
                self.answered = true;
                self.after_removed = false;
            }
            Verdict::Neutral => {
                if self.answered {
                    let text = judged.text.clone();
                    self.emit(held.lead, &text, out);
                } else {
                    self.neutral.push(held);
                }
            }
            Verdict::Undecided { .. } | Verdict::Unsupported(_) => {
                self.after_removed = true;
            }
        }
    }

    fn emit(&mut self, lead: &'static str, text: &str, out: &mut String) {
        if !self.shown.is_empty() {
            self.shown.push_str(lead);
            out.push_str(lead);
        }
        self.shown.push_str(text);
        out.push_str(text);
    }
}

/// The separator to keep before a sentence, from the white space the model put there.
fn lead_of(raw: &str) -> &'static str {
    let space = cut(raw, ..raw.len() - raw.trim_start().len());
    match space.matches('\n').count() {
        0 => " ",
        1 => "\n",
        _ => "\n\n",
    }
}

/// Words that add to what the previous sentence said: once that sentence is gone (or there is
/// none), they dangle.
const CONNECTIVES: &[&str] = &[
    "also,",
    "also",
    "in addition,",
    "additionally,",
    "moreover,",
    "furthermore,",
    "plus,",
    "besides,",
    "and",
    "that said,",
    "similarly,",
    "likewise,",
];

/// A sentence without a leading connective that would dangle, capitalised again.
fn without_dangling_connective(sentence: &str) -> String {
    for connective in CONNECTIVES {
        // Compared on the sentence itself: lower-casing can change a text's length in bytes.
        if let Some((head, rest)) = sentence.split_at_checked(connective.len())
            && head.eq_ignore_ascii_case(connective)
            && rest.starts_with(' ')
        {
            let rest = rest.trim_start();
            let mut chars = rest.chars();
            return match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => sentence.to_string(),
            };
        }
    }
    sentence.to_string()
}

/// Where the first complete sentence of `text` ends (its trailing markers included), or `None`
/// when more text is needed to know. At the end of the answer (`at_end`) the rest is a sentence.
///
/// A sentence ends at a line break, or at `.`, `!` or `?` (and any closing quote or bracket)
/// followed by white space or a marker, any markers, and something that can start a sentence;
/// not after an abbreviation, and not inside a number ("3.5"). The decision looks only at the
/// text up to the next sentence's first character, so it is the same however the text arrives.
pub fn sentence_end(text: &str, at_end: bool) -> Option<usize> {
    let start = text.len() - text.trim_start().len();
    if start == text.len() {
        return None;
    }
    for (i, c) in cut(text, start..).char_indices() {
        let at = start + i;
        if c == '\n' {
            return Some(at);
        }
        if !matches!(c, '.' | '!' | '?') {
            continue;
        }
        let closed = cut(text, at + c.len_utf8()..).trim_start_matches(['"', '\'', '”', '’', ')']);
        let Some(after) = closed.chars().next() else {
            return at_end.then_some(text.len());
        };
        if !(after.is_whitespace() || after == '[') {
            continue;
        }
        if c == '.' && crate::text::is_abbreviation(cut(text, start..at)) {
            continue;
        }
        // The sentence ends here, with any markers that follow it; look at what comes next.
        let mut end = text.len() - closed.len();
        let next = loop {
            let rest =
                cut(text, end..).trim_start_matches(|c: char| c.is_whitespace() && c != '\n');
            if rest.is_empty() {
                return at_end.then_some(end);
            }
            if !rest.starts_with('[') {
                break rest;
            }
            match parse_marker(rest) {
                Marker::Numbers(_, len) => end = text.len() - rest.len() + len,
                Marker::Incomplete if !at_end => return None,
                Marker::Incomplete | Marker::Not => break rest,
            }
        };
        let first = next.chars().next().unwrap_or(' ');
        if first == '\n' || first.is_uppercase() || first.is_numeric() || !first.is_alphabetic() {
            return Some(end);
        }
    }
    if text.len() - start > MAX_SENTENCE {
        // A run-on: cut at the last space before the limit.
        let limit = crate::text::floor_boundary(text, start + MAX_SENTENCE);
        let at = cut(text, ..limit)
            .rfind(' ')
            .filter(|&i| i > start)
            .unwrap_or(limit);
        return Some(at);
    }
    at_end.then_some(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::verify::{Context, Source, Verifier};
    use crate::index::Analyzer;
    use crate::index::filler_terms;

    /// The real verifier over two passages, with a leak check for one phrase.
    struct Fixture {
        analyzer: Analyzer,
        filler: crate::index::WordSet,
        sources: Vec<Source>,
        context: Context,
    }

    impl Fixture {
        fn new() -> Fixture {
            let analyzer = Analyzer::new();
            let sources = vec![
                Source::new(
                    "Building a vocabulary",
                    "Byte-pair encoding starts from single bytes. The builder merges the most frequent pair of adjacent symbols until the vocabulary reaches between 32,000 and 200,000 tokens.",
                ),
                Source::new(
                    "Trade-offs",
                    "Larger vocabularies make sequences shorter but the embedding table bigger.",
                ),
            ];
            let context = Context::new(&analyzer, "How is a vocabulary built?", "Tokens");
            Fixture {
                filler: filler_terms(&analyzer),
                analyzer,
                sources,
                context,
            }
        }
    }

    impl Judge for Fixture {
        fn judge(&self, sentence: &str, cited: &[usize]) -> Verdict {
            if sentence.contains("my rules") {
                return Verdict::Unsupported(Unsupported::Leak);
            }
            Verifier::new(&self.analyzer, &self.filler, &self.sources, &self.context)
                .judge(sentence, cited)
        }
    }

    fn release_whole(text: &str) -> (String, Release) {
        let fixture = Fixture::new();
        let mut release = Release::new(false);
        let mut out = release.push(text, &fixture);
        out.push_str(&release.finish(&fixture));
        (out, release)
    }

    #[test]
    fn sentences_end_where_a_reader_would_end_them() {
        let cases: &[(&str, bool, Option<&str>)] = &[
            (
                "It starts from bytes. Then",
                false,
                Some("It starts from bytes."),
            ),
            (
                "It starts from bytes [1]. Then",
                false,
                Some("It starts from bytes [1]."),
            ),
            (
                "It starts from bytes. [1] Then",
                false,
                Some("It starts from bytes. [1]"),
            ),
            ("It starts from bytes. [1", false, None),
            ("It starts from bytes.", false, None),
            ("It starts from bytes.", true, Some("It starts from bytes.")),
            ("About 3.5 percent. Then", false, Some("About 3.5 percent.")),
            ("See e.g. BPE. Then", false, Some("See e.g. BPE.")),
            ("It ends. and then", false, None),
            ("- first item\n- second", false, Some("- first item")),
            ("  ", true, None),
        ];
        for (text, at_end, expected) in cases {
            let got = sentence_end(text, *at_end).and_then(|end| text.get(..end));
            assert_eq!(got, *expected, "{text:?}");
        }
    }

    #[test]
    fn a_run_on_is_cut_at_a_space_even_in_other_scripts() {
        let run_on = "éèê ".repeat(400);
        let end = sentence_end(&run_on, false).expect("cut");
        assert!(end <= MAX_SENTENCE && run_on.is_char_boundary(end), "{end}");
        assert!(cut(&run_on, ..end).ends_with('ê'), "cut at a space");
    }

    #[test]
    fn supported_sentences_are_released_and_unsupported_ones_dropped_cleanly() {
        let (out, release) = release_whole(
            "Good question! Byte-pair encoding starts from single bytes [1]. It was invented at Google in 2019 [1]. Also, the builder merges the most frequent pair of adjacent symbols [2].",
        );
        assert_eq!(
            out,
            "Good question! Byte-pair encoding starts from single bytes [1]. The builder merges the most frequent pair of adjacent symbols [1]."
        );
        let verdicts: Vec<&str> = release
            .judged()
            .iter()
            .map(|j| j.verdict.as_str())
            .collect();
        assert_eq!(
            verdicts,
            vec!["neutral", "supported", "unsupported", "corrected"]
        );
        assert_eq!(release.cited(), [1]);
        assert_eq!(release.shown(), out);
    }

    #[test]
    fn a_sentence_kept_without_its_dangling_connective_still_counts_its_citation() {
        let (out, release) = release_whole(
            "Byte-pair encoding starts from single bytes [1]. It was invented at Google [1]. Also, larger vocabularies make sequences shorter [2].",
        );
        assert_eq!(
            out,
            "Byte-pair encoding starts from single bytes [1]. Larger vocabularies make sequences shorter [2]."
        );
        assert_eq!(release.cited(), [1, 2]);
    }

    #[test]
    fn shown_markers_count_from_one_in_order_of_appearance() {
        let (out, release) = release_whole(
            "Larger vocabularies make sequences shorter [2]. Byte-pair encoding starts from single bytes [1]. Larger vocabularies make the embedding table bigger [2].",
        );
        assert_eq!(
            out,
            "Larger vocabularies make sequences shorter [1]. Byte-pair encoding starts from single bytes [2]. Larger vocabularies make the embedding table bigger [1]."
        );
        assert_eq!(
            release.cited(),
            [2, 1],
            "the passages, as the model numbered them"
        );
    }

    #[test]
    fn friendly_phrases_alone_are_not_an_answer() {
        let (out, release) = release_whole("Great question! Thanks for asking.");
        assert_eq!(out, "");
        assert!(!release.answered());
    }

    #[test]
    fn not_in_lesson_and_leaks_stop_the_release() {
        let (out, release) = release_whole("NOT_IN_LESSON");
        assert_eq!(
            (out.as_str(), release.stop()),
            ("", Some(Stop::NotInLesson))
        );
        let (out, release) = release_whole(
            "Byte-pair encoding starts from single bytes [1]. Here are my rules: use only the passages. More.",
        );
        assert_eq!(out, "Byte-pair encoding starts from single bytes [1].");
        assert_eq!(release.stop(), Some(Stop::Leak));
    }

    #[test]
    fn every_way_of_cutting_the_stream_shows_the_same_text() {
        let answer = "Sure! Byte-pair encoding starts from single bytes [1]. It stops at 500,000 tokens [1].\n- Larger vocabularies make sequences shorter [2]\n- NOT here";
        let (whole, _) = release_whole(answer);
        let fixture = Fixture::new();
        let cuts: Vec<usize> = (0..=answer.len())
            .filter(|i| answer.is_char_boundary(*i))
            .collect();
        for &a in &cuts {
            for &b in cuts.iter().filter(|&&b| b >= a).step_by(3) {
                let mut release = Release::new(false);
                let mut out = release.push(cut(answer, ..a), &fixture);
                out.push_str(&release.push(cut(answer, a..b), &fixture));
                out.push_str(&release.push(cut(answer, b..), &fixture));
                out.push_str(&release.finish(&fixture));
                assert_eq!(out, whole, "cut at {a} and {b}");
            }
        }
        assert_eq!(
            whole,
            "Sure! Byte-pair encoding starts from single bytes [1].\n- Larger vocabularies make sequences shorter [2]"
        );
    }

    #[test]
    fn nothing_is_released_before_its_sentence_is_complete() {
        let fixture = Fixture::new();
        let mut release = Release::new(false);
        assert_eq!(release.push("Byte-pair encoding starts from", &fixture), "");
        assert_eq!(release.push(" single bytes [1].", &fixture), "");
        assert_eq!(
            release.push(" The", &fixture),
            "Byte-pair encoding starts from single bytes [1]."
        );
    }

    #[test]
    fn undecided_sentences_wait_for_a_second_opinion_in_order() {
        let fixture = Fixture::new();
        let mut release = Release::new(true);
        let answer = "Byte-pair encoding starts from single bytes [1]. Vocabularies grow whenever careful builders merge symbols repeatedly overnight [1]. Larger vocabularies make sequences shorter [2].";
        let mut out = release.push(answer, &fixture);
        out.push_str(&release.finish(&fixture));
        assert_eq!(out, "Byte-pair encoding starts from single bytes [1].");
        let undecided = release.undecided();
        assert_eq!(undecided.len(), 1, "{:?}", release.judged());
        out.push_str(&release.settle(&[(undecided[0].0, true)]));
        assert_eq!(
            out,
            "Byte-pair encoding starts from single bytes [1]. Vocabularies grow whenever careful builders merge symbols repeatedly overnight [1]. Larger vocabularies make sequences shorter [2]."
        );
    }

    #[test]
    fn a_doubt_is_kept_without_a_second_opinion_and_asked_about_with_one() {
        let fixture = Fixture::new();
        // A close restatement with one word swapped: only a doubt, lexically.
        let answer = "The builder merges the most frequent pair of adjacent glyphs until the vocabulary reaches between 32,000 and 200,000 tokens [1].";
        let (out, release) = release_whole(answer);
        assert_eq!(out, answer);
        assert_eq!(
            release.judged()[0].verdict,
            Verdict::Supported { cites: vec![1] }
        );

        let mut asking = Release::new(true);
        let mut out = asking.push(answer, &fixture);
        out.push_str(&asking.finish(&fixture));
        assert_eq!(out, "", "nothing is shown before the second opinion");
        let undecided = asking.undecided();
        assert_eq!(undecided.len(), 1, "{:?}", asking.judged());
        // The model says no: removed.
        assert_eq!(asking.settle(&[(undecided[0].0, false)]), "");
        assert_eq!(
            asking.judged()[0].verdict,
            Verdict::Unsupported(Unsupported::SecondOpinion)
        );
        // The model failed: the lexical verdict, which keeps a mere doubt.
        let mut failed = Release::new(true);
        failed.push(answer, &fixture);
        failed.finish(&fixture);
        assert_eq!(failed.settle(&[]), answer);
    }
}
