//! Small text helpers shared by the parser, the extractive answerer and the verifier: sentence
//! splitting, words, the numbers a text states, negations, the letters-only skeleton used to
//! find a repeated prompt, and line numbers. Pure functions over `&str`; no I/O, no index.

use unicode_normalization::UnicodeNormalization;

/// A table row's `(header, cell)` pairs, as the lesson parser writes the row (`Header: cell;
/// Header: cell.`).
pub fn table_cells(line: &str) -> Vec<(&str, &str)> {
    line.trim_end_matches('.')
        .split("; ")
        .filter_map(|part| part.split_once(": "))
        .map(|(h, c)| (h.trim(), c.trim()))
        .collect()
}

/// A table row as the lesson parser writes it: `Header: cell; Header: cell.`, two cells at
/// least.
pub fn is_table_row(line: &str) -> bool {
    let mut parts = 0;
    for part in line.trim().split("; ") {
        if !part.contains(": ") {
            return false;
        }
        parts += 1;
    }
    parts >= 2
}

/// The part of `text` in `range`, or `""` when the range does not fall on character
/// boundaries. Offsets into learner or model text are cut through here or `str::get`: a wrong
/// offset costs a word, never the request. Debug builds (the tests) still stop at one.
pub fn cut<R>(text: &str, range: R) -> &str
where
    R: std::slice::SliceIndex<str, Output = str> + std::fmt::Debug + Clone,
{
    let part = text.get(range.clone());
    debug_assert!(part.is_some(), "{range:?} cuts {text:?} inside a character");
    part.unwrap_or_default()
}

/// The largest offset at most `at` that starts a character of `text` (or its end).
pub fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

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
            if followed_by_space && !(c == '.' && is_abbreviation(cut(text, start..at))) {
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
                    let sentence = cut(text, start..byte_end).trim();
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
    let rest = cut(text, start..).trim();
    if !rest.is_empty() {
        sentences.push(rest);
    }
    sentences
}

/// True when the text before a period ends with an abbreviation or an initial.
pub fn is_abbreviation(before: &str) -> bool {
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

/// The words of a text with their byte offsets: runs of letters and digits, split exactly as the
/// index's tokenizer splits them (so "Llama-3" and "Llama 3" are the same two words).
pub fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        // Each word is a slice of `text`: its offset is the distance between them.
        .map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

/// A number a text states, with the byte range of its words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number {
    pub value: f64,
    pub start: usize,
    pub end: usize,
}

/// Number words that state a quantity. "one" is left out: it is mostly a pronoun ("the one
/// that ...").
const NUMBER_WORDS: &[(&str, f64)] = &[
    ("two", 2.0),
    ("three", 3.0),
    ("four", 4.0),
    ("five", 5.0),
    ("six", 6.0),
    ("seven", 7.0),
    ("eight", 8.0),
    ("nine", 9.0),
    ("ten", 10.0),
    ("eleven", 11.0),
    ("twelve", 12.0),
    ("dozen", 12.0),
    ("fifteen", 15.0),
    ("twenty", 20.0),
    ("thirty", 30.0),
    ("forty", 40.0),
    ("fifty", 50.0),
    ("hundred", 100.0),
];

/// Scale words and suffixes: "32 thousand", "32k", "7B", "1.5 million".
fn scale(word: &str) -> Option<f64> {
    Some(match word.to_ascii_lowercase().as_str() {
        "thousand" | "k" => 1e3,
        "million" | "m" | "mn" => 1e6,
        "billion" | "b" | "bn" => 1e9,
        "trillion" | "t" | "tn" => 1e12,
        _ => return None,
    })
}

/// The numbers a text states, normalised to their value: "200,000", "200 000" and "200
/// thousand" are all 200000; "7B" is 7e9; "1.5" is 1.5; "three" is 3. A word mixing digits and
/// other letters ("GPT-4o", "1560s", "3rd") is a name, not a number.
pub fn numbers(text: &str) -> Vec<Number> {
    let words: Vec<(usize, &str)> = words(text).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (start, word) = words[i];
        let mut end = start + word.len();
        let digits = word.bytes().take_while(u8::is_ascii_digit).count();
        let value = if digits == word.len() {
            word.parse::<f64>().ok()
        } else if digits > 0 {
            // "32k", "7B": digits and a scale suffix.
            let (digits, suffix) = word.split_at_checked(digits).unwrap_or((word, ""));
            scale(suffix).and_then(|s| Some(digits.parse::<f64>().ok()? * s))
        } else {
            let lower = word.to_lowercase();
            NUMBER_WORDS
                .iter()
                .find(|(w, _)| *w == lower)
                .map(|(_, v)| *v)
        };
        let Some(mut number) = value else {
            i += 1;
            continue;
        };
        let plain_digits = digits == word.len();
        i += 1;
        if plain_digits {
            // Thousands groups: "200,000", "200 000" (a group of one to three digits first).
            let mut grouped = word.len() <= 3;
            while grouped && i < words.len() {
                let (next_start, next) = words[i];
                let gap = cut(text, end..next_start);
                if next.len() == 3
                    && next.bytes().all(|b| b.is_ascii_digit())
                    && matches!(gap, "," | " " | "\u{a0}" | "\u{202f}" | "\u{2009}" | "'")
                {
                    number = number * 1000.0 + next.parse::<f64>().unwrap_or(0.0);
                    end = next_start + next.len();
                    i += 1;
                } else {
                    grouped = false;
                }
            }
            // A decimal part: "1.5".
            if i < words.len() {
                let (next_start, next) = words[i];
                if cut(text, end..next_start) == "."
                    && next.bytes().all(|b| b.is_ascii_digit())
                    && let Ok(fraction) = format!("0.{next}").parse::<f64>()
                {
                    number += fraction;
                    end = next_start + next.len();
                    i += 1;
                }
            }
        }
        // "32 thousand", "1.5 million".
        if i < words.len() {
            let (next_start, next) = words[i];
            if next.len() > 2
                && cut(text, end..next_start).trim().is_empty()
                && let Some(s) = scale(next)
            {
                number *= s;
                end = next_start + next.len();
                i += 1;
            }
        }
        out.push(Number {
            value: number,
            start,
            end,
        });
    }
    out
}

/// True when two stated numbers are the same quantity.
pub fn same_number(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Words that negate a statement. "n't" is found separately (the word split cuts "don't" into
/// "don" and "t").
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "without", "cannot", "none", "nothing", "neither", "nor", "nobody",
    "nowhere", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "cant", "couldnt",
    "wont", "wouldnt", "shouldnt", "havent", "hasnt", "hadnt", "mustnt", "lacks", "lack",
];

/// True when a sentence contains a negation ("not", "never", "no", "n't", "without", "cannot").
pub fn is_negated(sentence: &str) -> bool {
    let mut previous = ' ';
    let mut chars = sentence.chars().peekable();
    while let Some(c) = chars.next() {
        // "n't" and "n’t", in any case.
        if matches!(c, '\'' | '’')
            && previous.eq_ignore_ascii_case(&'n')
            && chars.peek().is_some_and(|t| t.eq_ignore_ascii_case(&'t'))
        {
            return true;
        }
        previous = c;
    }
    words(&sentence.to_lowercase()).any(|(_, w)| NEGATIONS.contains(&w))
}

/// True for invisible formatting characters (zero-width spaces and joiners, direction marks,
/// soft hyphens, variation selectors, tags): they change nothing a reader sees, so they must not
/// hide a repetition either.
pub fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
        | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
        | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}' | '\u{e0000}'..='\u{e0fff}')
}

/// Unicode-normalised text (NFKC) without invisible formatting characters.
pub fn normalise(text: &str) -> String {
    if text.is_ascii() {
        // ASCII is its own NFKC form and holds no formatting characters.
        return text.to_string();
    }
    text.nfkc().filter(|c| !is_format_char(*c)).collect()
}

/// The letters and digits of a [`normalise`]d text, lower-cased: the form in which one text is
/// searched inside another whatever spacing, punctuation, width or invisible characters were put
/// between its letters.
pub fn skeleton(normalised: &str) -> String {
    if normalised.is_ascii() {
        return normalised
            .bytes()
            .filter(u8::is_ascii_alphanumeric)
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect();
    }
    normalised
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A line without its list marker ("- ", "* ", "1. ", "2) ").
pub fn without_list_marker(line: &str) -> &str {
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed
        .strip_prefix("- ")
        .or_else(|| trimmed.strip_prefix("* "))
        .or_else(|| trimmed.strip_prefix("• "))
    {
        return rest;
    }
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=2).contains(&digits)
        && let Some((_, after)) = trimmed.split_at_checked(digits)
        && let Some(rest) = after
            .strip_prefix(". ")
            .or_else(|| after.strip_prefix(") "))
    {
        return rest;
    }
    trimmed
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

/// What a unit of a passage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Sentence,
    /// The `index`th item (0-based) of list `list` of the passage.
    Item {
        list: usize,
        index: usize,
    },
    /// A table row (`Header: cell; Header: cell.`), the `index`th of table `list`.
    Row {
        list: usize,
        index: usize,
    },
}

/// Splits a passage into answerable units: list items and table rows whole, prose by sentence.
pub fn units_of(text: &str) -> Vec<(&str, Shape)> {
    let mut units = Vec::new();
    let mut list = 0;
    let mut index = 0;
    let mut in_list = false;
    for line in text.lines() {
        let line = line.trim();
        let shape = if let Some(item) = line.strip_prefix("- ") {
            Some((item.trim(), false))
        } else if crate::text::is_table_row(line) {
            Some((line, true))
        } else {
            None
        };
        match shape {
            Some((item, row)) => {
                if !in_list {
                    list += 1;
                    index = 0;
                    in_list = true;
                }
                let shape = if row {
                    Shape::Row { list, index }
                } else {
                    Shape::Item { list, index }
                };
                units.push((item, shape));
                index += 1;
            }
            None if !line.is_empty() => {
                in_list = false;
                units.extend(
                    split_sentences(line)
                        .into_iter()
                        .map(|s| (s, Shape::Sentence)),
                );
            }
            None => {}
        }
    }
    units
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
    fn words_split_on_anything_but_letters_and_digits() {
        let found: Vec<&str> = words("Llama-3 and GPT-4o; naïve, 200,000!")
            .map(|w| w.1)
            .collect();
        assert_eq!(
            found,
            vec!["Llama", "3", "and", "GPT", "4o", "naïve", "200", "000"]
        );
        assert_eq!(words("  ...  ").count(), 0);
    }

    #[test]
    fn numbers_are_read_as_values_whatever_their_spelling() {
        let cases: &[(&str, &[f64])] = &[
            ("about 32,000 tokens", &[32000.0]),
            ("about 32 000 tokens", &[32000.0]),
            ("about 32\u{202f}000 tokens", &[32000.0]),
            ("about 32 thousand tokens", &[32000.0]),
            ("about 32k tokens", &[32000.0]),
            ("a 7B model and a 70 billion one", &[7e9, 70e9]),
            ("from 1562 to 1598", &[1562.0, 1598.0]),
            ("in 2019 200 people", &[2019.0, 200.0]),
            ("3.5 percent, 40%", &[3.5, 40.0]),
            ("three configurations, a dozen tests", &[3.0, 12.0]),
            ("GPT-4o in the 1560s, the 3rd", &[]),
            ("one of them", &[]),
            ("1,234,567 rows", &[1234567.0]),
        ];
        for (text, expected) in cases {
            let found: Vec<f64> = numbers(text).iter().map(|n| n.value).collect();
            assert_eq!(&found, expected, "{text}");
        }
    }

    #[test]
    fn negations_are_found_in_any_spelling() {
        for text in [
            "It is not free.",
            "It never starts there.",
            "You don't need one.",
            "You don’t need one.",
            "It cannot run offline.",
            "It runs without a GPU.",
            "No vendor sees the data.",
        ] {
            assert!(is_negated(text), "{text}");
        }
        for text in [
            "It is free.",
            "Nothingness",
            "Knot theory",
            "Notable models",
        ] {
            assert!(!is_negated(text), "{text}");
        }
    }

    #[test]
    fn the_skeleton_ignores_spacing_width_and_invisible_characters() {
        let plain = skeleton(&normalise("Use only what the numbered passages say."));
        assert_eq!(plain, "useonlywhatthenumberedpassagessay");
        assert_eq!(
            skeleton(&normalise(
                "U\u{200b}se\u{200b} only\u{2060} what the ｎｕｍｂｅｒｅｄ passages say"
            )),
            plain
        );
        assert_eq!(normalise("a\u{200b}b\u{feff}c ｆ"), "abc f");
    }

    #[test]
    fn list_markers_are_taken_off() {
        assert_eq!(without_list_marker("- Build a set"), "Build a set");
        assert_eq!(without_list_marker("  2. Score it"), "Score it");
        assert_eq!(without_list_marker("3) Plot"), "Plot");
        assert_eq!(without_list_marker("2019 was a year"), "2019 was a year");
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
