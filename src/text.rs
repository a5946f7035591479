//! Small text helpers shared by the parser and the extractive answerer: sentence splitting and
//! line numbers. Pure functions over `&str`; no I/O, no index.

/// Splits prose into sentences, keeping each sentence's closing punctuation.
///
/// A boundary is `.`, `!` or `?` (optionally followed by a closing quote or bracket), then white
/// space, then something that can start a sentence. Common abbreviations ("e.g.", "U.S.", "Dr.")
/// and single initials do not end a sentence.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if matches!(c, '.' | '!' | '?') {
            let mut end = i + 1;
            while end < chars.len() && matches!(chars[end].1, '"' | '\'' | '”' | '’' | ')' | ']')
            {
                end += 1;
            }
            let followed_by_space = end < chars.len() && chars[end].1.is_whitespace();
            if followed_by_space && !(c == '.' && is_abbreviation(&text[start..at])) {
                let mut next = end;
                while next < chars.len() && chars[next].1.is_whitespace() {
                    next += 1;
                }
                let starts_sentence = next < chars.len() && {
                    let n = chars[next].1;
                    n.is_uppercase()
                        || n.is_numeric()
                        || matches!(n, '"' | '“' | '‘' | '(' | '[' | '*' | '-')
                        || !n.is_alphabetic()
                };
                if starts_sentence {
                    let byte_end = if end < chars.len() {
                        chars[end].0
                    } else {
                        text.len()
                    };
                    let sentence = text[start..byte_end].trim();
                    if !sentence.is_empty() {
                        sentences.push(sentence);
                    }
                    start = if next < chars.len() {
                        chars[next].0
                    } else {
                        text.len()
                    };
                    i = next;
                    continue;
                }
            }
        }
        i += 1;
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        sentences.push(rest);
    }
    sentences
}

/// True when the text before a period ends with an abbreviation or an initial.
fn is_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    let bare = word.trim_start_matches(['"', '“', '(']);
    if bare.chars().count() == 1 && bare.chars().all(char::is_alphabetic) {
        return true;
    }
    const ABBREVIATIONS: &[&str] = &[
        "e.g", "i.e", "etc", "vs", "cf", "mr", "mrs", "ms", "dr", "prof", "st", "no", "approx",
        "inc", "ltd", "co", "jr", "sr", "fig", "u.s", "u.k", "e.u", "a.m", "p.m", "ca", "al",
    ];
    let lower = bare.to_lowercase();
    ABBREVIATIONS.contains(&lower.as_str())
}

/// Maps byte offsets of a text to 1-based line numbers.
pub struct LineIndex {
    starts: Vec<usize>,
    /// True when the text ends with a newline (which ends the last line, not starts one).
    trailing_newline: bool,
}

impl LineIndex {
    /// Indexes the line starts of `text`.
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            starts,
            trailing_newline: text.ends_with('\n'),
        }
    }

    /// The 1-based line holding byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    /// The number of lines (a trailing newline does not start a new one).
    pub fn last_line(&self) -> usize {
        self.starts.len() - usize::from(self.trailing_newline && self.starts.len() > 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_terminal_punctuation_only() {
        assert_eq!(
            split_sentences("Open weights are downloadable. Code may not be! Is data? Rarely."),
            vec![
                "Open weights are downloadable.",
                "Code may not be!",
                "Is data?",
                "Rarely."
            ]
        );
    }

    #[test]
    fn abbreviations_and_initials_do_not_end_sentences() {
        assert_eq!(
            split_sentences(
                "Labs (e.g. OLMo) publish data. The U.S. issued an order. J. Smith agreed."
            ),
            vec![
                "Labs (e.g. OLMo) publish data.",
                "The U.S. issued an order.",
                "J. Smith agreed."
            ]
        );
    }

    #[test]
    fn a_quote_closing_a_sentence_stays_with_it() {
        assert_eq!(
            split_sentences("She said \"open is a direction.\" Then she left."),
            vec!["She said \"open is a direction.\"", "Then she left."]
        );
    }

    #[test]
    fn line_index_counts_from_one() {
        assert_eq!(LineIndex::new("a\nb\n").last_line(), 2);
        let index = LineIndex::new("a\nbc\n\nd");
        assert_eq!(index.line(0), 1);
        assert_eq!(index.line(2), 2);
        assert_eq!(index.line(5), 3);
        assert_eq!(index.line(6), 4);
        assert_eq!(index.last_line(), 4);
    }
}
