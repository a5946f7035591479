//! Grading a learner's reply to a quiz item without a model: the reply against the expected
//! answer, after the index's own analysis (case, punctuation, plurals and word forms do not
//! matter), numbers by value ("32000" = "32,000" = "32 thousand"), and polarity (a reply that
//! negates the answer is not it). Pure and table-tested.

use super::Words;
use crate::lessons::quiz::QuizItem;
use crate::text;

/// Share of the expected answer's key terms a reply must hold to be correct.
///
/// Tuned on the quiz evaluation's tuning sets (`examples/quiz-eval.rs`: the sample course's
/// tuning lessons and SQuAD articles 1 to 4): see BENCHMARKS.md ("Quizzes").
pub const CORRECT_SHARE: f32 = 0.75;

/// Share of the key terms that makes a reply partly right (below it: not yet).
pub const PARTLY_SHARE: f32 = 0.4;

/// How a reply was graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    Correct,
    Partly,
    NotYet,
}

impl Grade {
    /// A stable word for metrics, logs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Correct => "correct",
            Grade::Partly => "partly",
            Grade::NotYet => "not_yet",
        }
    }
}

/// What an answer is made of, for grading and for spotting it in other text.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Analyzed key terms, deduplicated, in order.
    pub terms: Vec<String>,
    /// Numbers, by value.
    pub numbers: Vec<f64>,
    /// Lower-cased letters and digits, one space between words (for answers that are only
    /// stop words, such as "to be").
    pub plain: String,
    /// The answer denies what it names ("No, it cannot be recalled"); a contrast that only
    /// rules something else out ("tokens, not words") does not count (see [`polarity`]).
    pub negated: bool,
    /// The key terms of the answer's first clause with any: what it mainly asserts, which a
    /// reply's negation must touch to deny it.
    pub main: Vec<String>,
}

impl Expected {
    /// Analyses an answer.
    pub fn new(words: &Words, answer: &str) -> Expected {
        let numbers: Vec<text::Number> = text::numbers(answer);
        let terms = words
            .tokens(answer)
            .into_iter()
            .filter(|(at, _)| !numbers.iter().any(|n| (n.start..n.end).contains(at)))
            .map(|(_, term)| term)
            .collect();
        let main = clauses(answer)
            .map(|clause| words.terms(clause))
            .find(|terms| !terms.is_empty())
            .unwrap_or_default();
        Expected {
            negated: polarity(words, answer, &main),
            terms,
            numbers: numbers.iter().map(|n| n.value).collect(),
            plain: plain(answer),
            main,
        }
    }

    /// Whether `reply` denies what this answer mainly asserts ([`polarity`] about its main
    /// terms): "tokens, not words" does not deny "tokens"; "not tokens" does.
    pub fn denied_by(&self, words: &Words, reply: &str) -> bool {
        polarity(words, reply, &self.main)
    }

    /// True when `other` states every number this states (by value).
    pub fn numbers_all_in(&self, other: &Expected) -> bool {
        self.numbers
            .iter()
            .all(|n| other.numbers.iter().any(|o| text::same_number(*n, *o)))
    }

    /// How many of the key terms (and numbers) `reply` holds, of how many.
    pub fn found_in(&self, reply: &Expected) -> (usize, usize) {
        let terms = self
            .terms
            .iter()
            .filter(|t| reply.terms.contains(t))
            .count();
        let numbers = self
            .numbers
            .iter()
            .filter(|n| reply.numbers.iter().any(|r| text::same_number(**n, *r)))
            .count();
        (terms + numbers, self.terms.len() + self.numbers.len())
    }
}

/// Words that start a contrasting clause: what follows is a clause of its own.
const CONTRASTS: &[&str] = &[
    "but", "rather", "instead", "however", "though", "although", "whereas", "while",
];

/// A text's clauses: split at punctuation and at the words that start a contrast.
fn clauses(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', ';', ':', '.', '!', '?', '(', ')', '—', '–'])
        .flat_map(|part| {
            let mut pieces = Vec::new();
            let mut start = 0;
            for (at, word) in text::words(part) {
                if at > start && CONTRASTS.contains(&word.to_lowercase().as_str()) {
                    pieces.push(part.get(start..at).unwrap_or(""));
                    start = at;
                }
            }
            pieces.push(part.get(start..).unwrap_or(""));
            pieces
        })
        .filter(|clause| !clause.trim().is_empty())
}

/// Whether `text` is negated about `about` (key terms): any of its clauses that holds one of
/// them is negated. When no clause holds one, whether the text holds a negation at all ("no" to
/// an answer that says "No, it cannot").
pub fn polarity(words: &Words, text: &str, about: &[String]) -> bool {
    let mut touched = false;
    for clause in clauses(text) {
        let terms = words.terms(clause);
        if terms.iter().any(|t| about.contains(t)) {
            touched = true;
            if text::is_negated(clause) {
                return true;
            }
        }
    }
    !touched && text::is_negated(text)
}

/// Lower-cased letters and digits with single spaces.
pub fn plain(text: &str) -> String {
    text::words(text)
        .map(|(_, w)| w.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Grades `reply` against `item`: the best grade against its answer and each answer it also
/// accepts. A multiple-choice reply may be the choice's text or its letter or number ("b",
/// "2"); a free-text reply is graded by the share of an answer's key terms and numbers it
/// holds.
pub fn grade(words: &Words, item: &QuizItem, reply: &str) -> Grade {
    let graded = grade_against(words, item, &item.answer, reply);
    if graded == Grade::Correct || !item.choices.is_empty() {
        return graded;
    }
    item.accept
        .iter()
        .map(|answer| grade_against(words, item, answer, reply))
        .fold(graded, |best, g| match (best, g) {
            (Grade::Correct, _) | (_, Grade::Correct) => Grade::Correct,
            (Grade::Partly, _) | (_, Grade::Partly) => Grade::Partly,
            _ => Grade::NotYet,
        })
}

fn grade_against(words: &Words, item: &QuizItem, answer: &str, reply: &str) -> Grade {
    let said = plain(reply);
    if said.is_empty() {
        return Grade::NotYet;
    }
    if !item.choices.is_empty() {
        if let Some(chosen) = chosen_choice(&item.choices, &said) {
            return if item.choices[chosen].trim() == item.answer.trim() {
                Grade::Correct
            } else {
                Grade::NotYet
            };
        }
        // Another choice named in full is a wrong pick, even among extra words.
        let right = plain(&item.answer);
        let other = item.choices.iter().map(|c| plain(c)).any(|c| {
            c != right && !right.contains(&c) && contains_words(&said, &c) && !said.contains(&right)
        });
        if other {
            return Grade::NotYet;
        }
    }
    let expected = Expected::new(words, answer);
    let given = Expected::new(words, reply);
    if expected.negated != expected.denied_by(words, reply) || reverses(answer, reply) {
        return Grade::NotYet;
    }
    if !expected.plain.is_empty() && contains_words(&said, &expected.plain) {
        return Grade::Correct;
    }
    // A number stated otherwise is wrong, whatever the words.
    let wrong_number = !expected.numbers.is_empty()
        && !given.numbers.is_empty()
        && !expected.numbers_all_in(&given);
    let (found, of) = expected.found_in(&given);
    if of == 0 {
        return Grade::NotYet;
    }
    let share = found as f32 / of as f32;
    if share >= CORRECT_SHARE && !wrong_number && (of > 2 || found == of) {
        Grade::Correct
    } else if share >= PARTLY_SHARE && found > 0 {
        Grade::Partly
    } else {
        Grade::NotYet
    }
}

/// How near a reply is in meaning to the answers of its lesson's quiz.
#[derive(Debug, Clone, Copy)]
pub struct Nearness {
    /// To the expected answer or one it accepts (the best of them).
    pub answer: f32,
    /// To the nearest answer of another item of the lesson (0 when there is none).
    pub others: f32,
}

/// How near a reply must be to count as the answer in other words.
#[derive(Debug, Clone, Copy)]
pub struct MeaningRule {
    /// Nearness to the answer at or above which it may.
    pub threshold: f32,
    /// How much nearer to the answer than to every other item's it must be.
    pub margin: f32,
}

/// [`grade`] with meaning as one more signal: a free-text reply that words alone do not find
/// correct is correct when it is near enough in meaning to the expected answer or one it
/// accepts, clearly nearer to it than to the lesson's other quiz answers (a small model scores
/// "closed API models" near "fully open models": near in topic, opposite in fact), says it in
/// words of its own (a fragment of the answer's own words is as partial as words alone found
/// it), and does not contradict it (a negation, another number). A choice is graded by the
/// choice picked, never by meaning.
pub fn grade_with_meaning(
    words: &Words,
    item: &QuizItem,
    reply: &str,
    nearness: Option<Nearness>,
    rule: MeaningRule,
) -> Grade {
    let lexical = grade(words, item, reply);
    let own_words = || {
        let expected: Vec<String> = std::iter::once(&item.answer)
            .chain(&item.accept)
            .flat_map(|answer| words.terms(answer))
            .collect();
        words.terms(reply).iter().any(|t| !expected.contains(t))
    };
    match nearness {
        Some(near)
            if lexical != Grade::Correct
                && item.choices.is_empty()
                && near.answer >= rule.threshold
                && near.answer - near.others >= rule.margin
                && !plain(reply).is_empty()
                && own_words()
                && !contradicts(words, item, reply) =>
        {
            Grade::Correct
        }
        _ => lexical,
    }
}

/// True when `reply` says something the expected answer contradicts: it negates what the answer
/// states (or states what it negates), or it gives a number and none of the answer's. A model's
/// grade of such a reply is not taken over the lexical one.
pub fn contradicts(words: &Words, item: &QuizItem, reply: &str) -> bool {
    let expected = Expected::new(words, &item.answer);
    let given = Expected::new(words, reply);
    reverses(&item.answer, reply)
        || expected.negated != expected.denied_by(words, reply)
        || (!expected.numbers.is_empty()
            && !given.numbers.is_empty()
            && !expected
                .numbers
                .iter()
                .any(|n| given.numbers.iter().any(|g| text::same_number(*n, *g))))
}

/// Opposites a reply may swap in while keeping every other word: a sentence model scores "raise
/// prices and tighten terms" close to "lower prices and loosen terms" (English).
const OPPOSITES: &[(&str, &str)] = &[
    ("open", "closed"),
    ("lower", "raise"),
    ("lower", "higher"),
    ("loosen", "tighten"),
    ("looser", "tighter"),
    ("more", "less"),
    ("more", "fewer"),
    ("increase", "decrease"),
    ("cheap", "expensive"),
    ("cheaper", "dearer"),
    ("small", "large"),
    ("smaller", "larger"),
    ("public", "private"),
    ("before", "after"),
    ("allow", "forbid"),
    ("strong", "weak"),
    ("stronger", "weaker"),
    ("fast", "slow"),
    ("faster", "slower"),
];

/// True when `reply` puts the opposite of a word of `answer` before the same next word: "closed
/// weights with open data" for "open weights with closed data", "raise prices" for "lower
/// prices".
fn reverses(answer: &str, reply: &str) -> bool {
    let pairs = |text: &str| -> Vec<(String, String)> {
        let said = plain(text);
        let words: Vec<&str> = said.split(' ').collect();
        words
            .windows(2)
            .map(|w| (w[0].to_string(), w[1].to_string()))
            .collect()
    };
    let opposite = |word: &str| {
        OPPOSITES.iter().find_map(|&(a, b)| {
            if word == a {
                Some(b)
            } else if word == b {
                Some(a)
            } else {
                None
            }
        })
    };
    let said = pairs(reply);
    pairs(answer).iter().any(|(word, next)| {
        opposite(word).is_some_and(|other| said.iter().any(|(w, n)| w == other && n == next))
    })
}

/// The choice a reply names by its letter, its number or its whole text, if any.
fn chosen_choice(choices: &[String], said: &str) -> Option<usize> {
    let letters = "abcdefgh";
    if said.len() == 1 {
        let c = said.chars().next()?;
        if let Some(i) = letters.find(c).filter(|i| *i < choices.len()) {
            return Some(i);
        }
        if let Some(d) = c.to_digit(10).map(|d| d as usize)
            && (1..=choices.len()).contains(&d)
        {
            return Some(d - 1);
        }
    }
    choices.iter().position(|c| plain(c) == said)
}

/// True when `needle`'s words occur in `haystack` as whole words, in order, side by side.
fn contains_words(haystack: &str, needle: &str) -> bool {
    !needle.is_empty() && format!(" {haystack} ").contains(&format!(" {needle} "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(answer: &str, choices: &[&str]) -> QuizItem {
        QuizItem {
            id: "q".into(),
            question: "?".into(),
            answer: answer.into(),
            accept: Vec::new(),
            choices: choices.iter().map(|c| c.to_string()).collect(),
            section: "s".into(),
            line: 1,
        }
    }

    fn assert_grades(words: &Words, cases: &[(&QuizItem, &str, Grade)]) {
        for (item, reply, expected) in cases {
            assert_eq!(
                grade(words, item, reply),
                *expected,
                "{reply:?} for {:?}",
                item.answer
            );
        }
    }

    #[test]
    fn replies_and_their_grades() {
        let words = Words::new(crate::index::Analyzer::new());
        let free = item("escalated requests take longer", &[]);
        let number = item("between 32,000 and 200,000 tokens", &[]);
        let single = item("Denver Broncos", &[]);
        let choices = item(
            "whether the cheap answer was good enough",
            &[
                "which model is cheaper",
                "whether the cheap answer was good enough",
                "how long each answer took",
            ],
        );
        let cases: &[(&QuizItem, &str, Grade)] = &[
            // Written differently: case, punctuation, word forms, extra words.
            (&free, "Escalated requests take longer.", Grade::Correct),
            (
                &free,
                "the escalated REQUESTS, they take longer!",
                Grade::Correct,
            ),
            (
                &free,
                "I think escalated requests would take a bit longer",
                Grade::Correct,
            ),
            (&free, "an escalated request takes longer", Grade::Correct),
            // Half of it, nothing of it, its negation.
            (&free, "escalated requests", Grade::Partly),
            (&free, "they cost more money", Grade::NotYet),
            (&free, "escalated requests don't take longer", Grade::NotYet),
            (&free, "", Grade::NotYet),
            // Numbers by value, however written.
            (&number, "32000 to 200000 tokens", Grade::Correct),
            (&number, "between 32 thousand and 200 000", Grade::Correct),
            (&number, "between 32,000 and 500,000 tokens", Grade::Partly),
            (&number, "about 8,000 tokens", Grade::NotYet),
            // A short name: all of it, or not correct.
            (&single, "the denver broncos", Grade::Correct),
            (&single, "Broncos", Grade::Partly),
            (&single, "Carolina Panthers", Grade::NotYet),
            // Choices: by text, letter or number; another choice is wrong.
            (
                &choices,
                "Whether the cheap answer was good enough",
                Grade::Correct,
            ),
            (&choices, "b", Grade::Correct),
            (&choices, "2", Grade::Correct),
            (&choices, "a", Grade::NotYet),
            (&choices, "which model is cheaper", Grade::NotYet),
            (&choices, "I'd say which model is cheaper", Grade::NotYet),
            (
                &choices,
                "whether the cheap model's answer was good enough",
                Grade::Correct,
            ),
        ];
        assert_grades(&words, cases);
    }

    #[test]
    fn a_not_that_rules_something_else_out_is_no_negation_of_the_answer() {
        let words = Words::new(crate::index::Analyzer::new());
        let tokens = item("tokens", &[]);
        let contrast = item("tokens, not words", &[]);
        let denial = item("No, it cannot be recalled", &[]);
        let cases: &[(&QuizItem, &str, Grade)] = &[
            (&tokens, "tokens, not words", Grade::Correct),
            (&tokens, "not words but tokens", Grade::Correct),
            (&tokens, "No, it's tokens", Grade::Correct),
            (&tokens, "not tokens", Grade::NotYet),
            (&tokens, "words, not tokens", Grade::NotYet),
            // The expected answer's own "not" is a contrast too.
            (&contrast, "tokens", Grade::Correct),
            (&contrast, "in tokens rather than words", Grade::Correct),
            (&contrast, "words, not tokens", Grade::NotYet),
            // An answer that denies: a reply must deny it too.
            (&denial, "no, it cannot be recalled at all", Grade::Correct),
            (&denial, "yes, it can be recalled", Grade::NotYet),
        ];
        assert_grades(&words, cases);
    }

    #[test]
    fn meaning_makes_a_reworded_reply_correct_unless_it_contradicts() {
        let words = Words::new(crate::index::Analyzer::new());
        let own = item("your own evaluation set", &[]);
        let bits = item("8 or 4 bits", &[]);
        let choice = item("Hybrid", &["Closed API", "Hybrid"]);
        let rule = MeaningRule {
            threshold: 0.7,
            margin: 0.3,
        };
        let near = |answer: f32, others: f32| Some(Nearness { answer, others });
        let graded = |item: &QuizItem, reply: &str, similarity: f32| {
            grade_with_meaning(&words, item, reply, near(similarity, 0.2), rule)
        };
        assert_eq!(graded(&own, "run my own evals", 0.8), Grade::Correct);
        assert_eq!(graded(&own, "run my own evals", 0.5), Grade::NotYet);
        assert_eq!(
            grade_with_meaning(&words, &own, "run my own evals", None, rule),
            Grade::NotYet,
            "no meaning, words alone"
        );
        // Near the answer, but nearly as near another item's: not told apart, not taken.
        assert_eq!(
            grade_with_meaning(&words, &own, "run my own evals", near(0.8, 0.55), rule),
            Grade::NotYet
        );
        assert_eq!(
            grade_with_meaning(&words, &own, "run my own evals", near(0.8, 0.5), rule),
            Grade::Correct
        );
        assert_eq!(
            graded(&own, "don't use your own evaluation set", 0.9),
            Grade::NotYet
        );
        assert_eq!(
            graded(&bits, "16 bits", 0.9),
            Grade::NotYet,
            "another number"
        );
        assert_eq!(
            graded(&choice, "Closed API", 0.9),
            Grade::NotYet,
            "choices by choice"
        );
        assert_eq!(graded(&own, "   ", 0.9), Grade::NotYet);
        // The opposite word before the same thing is another answer, however near in meaning.
        let compromise = item("open weights with closed data", &[]);
        assert_eq!(
            graded(&compromise, "closed weights with open data", 0.9),
            Grade::NotYet
        );
        assert_eq!(
            graded(
                &compromise,
                "weights released openly, data kept closed",
                0.9
            ),
            Grade::Correct
        );
        let pressure = item("lower prices and loosen terms", &[]);
        assert_eq!(
            graded(&pressure, "to raise prices and tighten terms", 0.9),
            Grade::NotYet
        );
        assert_eq!(
            graded(&pressure, "cheaper prices and looser terms", 0.9),
            Grade::Correct
        );
    }
}
