//! Keeps a model's `[n]` markers honest: a marker that does not name a passage the model was
//! given never reaches the learner, in a whole answer or in a stream whose chunks may split a
//! marker anywhere (`[`, `1`, `2]`).

use std::collections::BTreeSet;

/// The longest marker kept back while deciding (`[` + digits + `]`).
const MAX_MARKER: usize = 6;

/// Filters markers from text arriving in pieces.
#[derive(Debug)]
pub struct CitationFilter {
    valid: BTreeSet<usize>,
    pending: String,
    used: BTreeSet<usize>,
    /// White space not shown yet: it is dropped with a removed marker that follows it, so the
    /// visible text is the same however the stream is cut.
    deferred: String,
}

impl CitationFilter {
    /// A filter accepting markers `[1]` to `[passages]`.
    pub fn new(passages: usize) -> CitationFilter {
        CitationFilter {
            valid: (1..=passages).collect(),
            pending: String::new(),
            used: BTreeSet::new(),
            deferred: String::new(),
        }
    }

    /// Takes the next piece of text; returns what can safely be shown now.
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        let mut out = String::new();
        loop {
            let Some(open) = self.pending.find('[') else {
                let text = std::mem::take(&mut self.pending);
                self.emit(&mut out, &text);
                break;
            };
            let before = self.pending[..open].to_string();
            self.emit(&mut out, &before);
            let rest = self.pending[open..].to_string();
            match parse_marker(&rest) {
                Marker::Incomplete => {
                    self.pending = rest;
                    break;
                }
                Marker::Not => {
                    self.emit(&mut out, "[");
                    self.pending = rest[1..].to_string();
                }
                Marker::Numbers(numbers, len) => {
                    let kept: Vec<usize> = numbers
                        .into_iter()
                        .filter(|n| self.valid.contains(n))
                        .collect();
                    if kept.is_empty() {
                        // Drop the marker and the space before it.
                        self.deferred.clear();
                    } else {
                        let marker: String = kept.iter().map(|n| format!("[{n}]")).collect();
                        self.used.extend(kept);
                        self.emit(&mut out, &marker);
                    }
                    self.pending = rest[len..].to_string();
                }
            }
        }
        out
    }

    /// Ends the stream, returning anything held back (but trailing white space).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        let mut out = String::new();
        self.emit(&mut out, &rest);
        self.deferred.clear();
        out
    }

    /// The passage numbers the answer cited, in order.
    pub fn used(&self) -> Vec<usize> {
        self.used.iter().copied().collect()
    }

    fn emit(&mut self, out: &mut String, text: &str) {
        for c in text.chars() {
            if c.is_whitespace() {
                self.deferred.push(c);
            } else {
                out.push_str(&self.deferred);
                self.deferred.clear();
                out.push(c);
            }
        }
    }
}

enum Marker {
    /// Not a marker: emit the `[` as text.
    Not,
    /// Could still become a marker when more text arrives.
    Incomplete,
    /// `[1]`, `[1, 2]` or `[1][2]`-style numbers, and the marker's byte length.
    Numbers(Vec<usize>, usize),
}

/// Reads a marker at the start of `text` (which starts with `[`): `[n]` or `[n, m]`.
fn parse_marker(text: &str) -> Marker {
    let mut numbers = Vec::new();
    let mut current = String::new();
    for (i, c) in text.char_indices().skip(1) {
        if i > MAX_MARKER * 3 {
            return Marker::Not;
        }
        match c {
            '0'..='9' => {
                current.push(c);
                if current.len() > 3 {
                    return Marker::Not;
                }
            }
            ',' | ' ' if !current.is_empty() || (c == ' ' && !numbers.is_empty()) => {
                if let Ok(n) = current.parse() {
                    numbers.push(n);
                }
                current.clear();
            }
            ']' => {
                if let Ok(n) = current.parse() {
                    numbers.push(n);
                }
                return if numbers.is_empty() {
                    Marker::Not
                } else {
                    Marker::Numbers(numbers, i + 1)
                };
            }
            _ => return Marker::Not,
        }
    }
    Marker::Incomplete
}

/// Filters a whole answer at once; returns the text and the passage numbers it cites.
pub fn filter_answer(text: &str, passages: usize) -> (String, Vec<usize>) {
    let mut filter = CitationFilter::new(passages);
    let mut out = filter.push(text);
    out.push_str(&filter.finish());
    (out.trim().to_string(), filter.used())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_of_passages_not_given_are_removed() {
        let cases = [
            (
                "Open weights are downloadable [1].",
                2,
                "Open weights are downloadable [1].",
                vec![1],
            ),
            ("Made up [9]. True [2].", 2, "Made up. True [2].", vec![2]),
            ("Both [1, 2] and [3].", 2, "Both [1][2] and.", vec![1, 2]),
            (
                "Arrays like a[i] stay [1]",
                1,
                "Arrays like a[i] stay [1]",
                vec![1],
            ),
            (
                "Zero [0] is never valid.",
                3,
                "Zero is never valid.",
                vec![],
            ),
            (
                "Unclosed [1 at the end",
                3,
                "Unclosed [1 at the end",
                vec![],
            ),
        ];
        for (input, passages, expected, used) in cases {
            let (text, cited) = filter_answer(input, passages);
            assert_eq!(text, expected, "{input}");
            assert_eq!(cited, used, "{input}");
        }
    }

    #[test]
    fn markers_split_across_chunks_are_filtered_the_same() {
        let answer = "Hosting costs less [2] but [7] control is yours [1].";
        let (whole, whole_used) = filter_answer(answer, 2);
        // Every way of cutting the answer in three gives the same visible text.
        for a in 0..answer.len() {
            for b in a..answer.len() {
                if !answer.is_char_boundary(a) || !answer.is_char_boundary(b) {
                    continue;
                }
                let mut filter = CitationFilter::new(2);
                let mut out = filter.push(&answer[..a]);
                out.push_str(&filter.push(&answer[a..b]));
                out.push_str(&filter.push(&answer[b..]));
                out.push_str(&filter.finish());
                assert_eq!(out.trim(), whole, "cut at {a} and {b}");
                assert_eq!(filter.used(), whole_used);
            }
        }
    }
}
