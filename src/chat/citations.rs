//! Citation markers: `[n]` in a model's text. A sentence's markers are taken out before it is
//! verified and put back, corrected, at its end; a marker naming a passage the model was not
//! given never reaches the learner. Streams are cut into sentences before this runs, so a marker
//! split across chunks (`[`, `1`, `2]`) is always whole here (see [`parse_marker`]).

/// The longest marker kept back while deciding (`[` + digits + `]`).
const MAX_MARKER: usize = 6;

use crate::text::cut;

/// What a `[` starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker {
    /// Not a marker: emit the `[` as text.
    Not,
    /// Could still become a marker when more text arrives.
    Incomplete,
    /// `[1]`, `[1, 2]` or `[1][2]`-style numbers, and the marker's byte length.
    Numbers(Vec<usize>, usize),
}

/// Reads a marker at the start of `text` (which starts with `[`): `[n]` or `[n, m]`.
pub fn parse_marker(text: &str) -> Marker {
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

/// Takes the markers out of a sentence: its plain text (without the white space that stood
/// before each marker) and every passage number it cited, in order, valid or not.
pub fn take_markers(sentence: &str) -> (String, Vec<usize>) {
    let mut plain = String::with_capacity(sentence.len());
    let mut cited = Vec::new();
    let mut rest = sentence;
    while let Some((before, _)) = rest.split_once('[') {
        let open = before.len();
        plain.push_str(before);
        match parse_marker(cut(rest, open..)) {
            Marker::Numbers(numbers, len) => {
                let kept = plain.trim_end().len();
                plain.truncate(kept);
                for n in numbers {
                    if !cited.contains(&n) {
                        cited.push(n);
                    }
                }
                rest = cut(rest, open + len..);
            }
            Marker::Not | Marker::Incomplete => {
                plain.push('[');
                rest = cut(rest, open + 1..);
            }
        }
    }
    plain.push_str(rest);
    (plain.trim().to_string(), cited)
}

/// Puts markers at the end of a sentence, before its closing punctuation: `Text [1][2].`
pub fn with_markers(plain: &str, cites: &[usize]) -> String {
    if cites.is_empty() {
        return plain.to_string();
    }
    let body = plain.trim_end_matches(['.', '!', '?', ':', ';', ',']);
    let closing = cut(plain, body.len()..);
    let markers: String = cites.iter().map(|n| format!("[{n}]")).collect();
    format!("{} {markers}{closing}", body.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_taken_out_with_the_space_before_them() {
        let cases: &[(&str, &str, &[usize])] = &[
            (
                "Open weights are downloadable [1].",
                "Open weights are downloadable.",
                &[1],
            ),
            ("Both [1, 2] and [3].", "Both and.", &[1, 2, 3]),
            ("Arrays like a[i] stay [1]", "Arrays like a[i] stay", &[1]),
            ("Zero [0] is never valid.", "Zero is never valid.", &[0]),
            ("Unclosed [1 at the end", "Unclosed [1 at the end", &[]),
            ("Twice [2][2].", "Twice.", &[2]),
        ];
        for (input, plain, cited) in cases {
            let (text, numbers) = take_markers(input);
            assert_eq!(text, *plain, "{input}");
            assert_eq!(numbers, cited.to_vec(), "{input}");
        }
    }

    #[test]
    fn markers_go_back_before_the_closing_punctuation() {
        assert_eq!(with_markers("It is free.", &[1, 3]), "It is free [1][3].");
        assert_eq!(with_markers("- Build a set", &[2]), "- Build a set [2]");
        assert_eq!(with_markers("Good question!", &[]), "Good question!");
    }

    #[test]
    fn markers_are_recognised_or_left_as_text() {
        assert_eq!(parse_marker("[12] x"), Marker::Numbers(vec![12], 4));
        assert_eq!(parse_marker("[1, 2]"), Marker::Numbers(vec![1, 2], 6));
        assert_eq!(parse_marker("[1"), Marker::Incomplete);
        assert_eq!(parse_marker("[a]"), Marker::Not);
        assert_eq!(parse_marker("[]"), Marker::Not);
    }
}
