//! What a learner's message is, read before any search: small talk, a follow-up that leans on
//! the conversation before it, which item of a list it asks for, and what kind of answer it
//! wants. Pure functions over the message's words; table-tested.
//!
//! The gate uses [`Reading::refers_back`] to decide whether history may fill in what a message
//! leaves out; the embedded answerer uses [`Want`] and [`Ordinal`] to pick the sentences that
//! answer rather than the ones that merely share words.

use serde::Serialize;

/// A message that is not a question about the lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmallTalk {
    Greeting,
    /// Thanks or an acknowledgement ("ok", "got it").
    Thanks,
    Goodbye,
    /// "help", "what can you do?", "who are you?".
    Help,
}

impl SmallTalk {
    /// The kind as a stable word, for templates, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SmallTalk::Greeting => "greeting",
            SmallTalk::Thanks => "thanks",
            SmallTalk::Goodbye => "goodbye",
            SmallTalk::Help => "help",
        }
    }
}

/// Which item of a list a message asks for ("the second one", "step 3", "the last").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordinal {
    /// 1-based.
    Nth(usize),
    Last,
}

impl Ordinal {
    /// The 0-based index of this item in a list of `len` items, if there is one.
    pub fn index(self, len: usize) -> Option<usize> {
        match self {
            Ordinal::Nth(n) if n >= 1 && n <= len => Some(n - 1),
            Ordinal::Last if len > 0 => Some(len - 1),
            _ => None,
        }
    }
}

/// The kind of answer a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    /// "What is X?", "What does X mean?"
    Definition,
    /// "Why …?": sentences that give reasons.
    Reason,
    /// "What is the catch / downside / trade-off / weakness?"
    Catch,
    /// "How do I …?": steps, in order.
    Steps,
    /// "Which …?", "What are the …?", "List …": the list itself.
    List,
    /// "When …?", "How many …?": the sentence with the date or number.
    Number,
    /// "Who …?": the sentence with the name.
    Person,
    /// "Compare …", "difference between …": table rows and contrasts.
    Compare,
    #[default]
    Plain,
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Reading {
    pub small_talk: Option<SmallTalk>,
    /// Pronouns, ellipsis, ordinals or an opening "and …?": the message leans on what was said.
    pub refers_back: bool,
    pub ordinal: Option<Ordinal>,
    pub want: Want,
    /// Sums to work out ("2+2", "7 times 8"): never a lesson's topic.
    pub arithmetic: bool,
}

/// Words that point back at something said before.
const REFERENCE_WORDS: &[&str] = &[
    "it",
    "its",
    "that",
    "this",
    "those",
    "these",
    "them",
    "they",
    "their",
    "theirs",
    "one",
    "ones",
    "former",
    "latter",
    "another",
    "other",
    "others",
    "same",
    "else",
    "more",
    "further",
    "elaborate",
    "example",
    "examples",
    "next",
    "previous",
    "he",
    "she",
    "his",
    "her",
    "him",
    "there",
    "then",
    "such",
];

/// First words that continue the conversation ("and the second?", "but why?").
const CONTINUING_OPENERS: &[&str] = &["and", "but", "so", "also", "or", "then", "what's", "whats"];

/// Two-word openers that continue the conversation.
const CONTINUING_PAIRS: &[(&str, &str)] = &[
    ("what", "about"),
    ("how", "about"),
    ("what", "else"),
    ("why", "not"),
    ("how", "come"),
    ("go", "on"),
    ("say", "more"),
    ("tell", "more"),
    ("in", "what"),
];

const ORDINALS: &[(&str, usize)] = &[
    ("first", 1),
    ("second", 2),
    ("third", 3),
    ("fourth", 4),
    ("fifth", 5),
    ("sixth", 6),
    ("seventh", 7),
    ("eighth", 8),
    ("ninth", 9),
    ("tenth", 10),
    ("1st", 1),
    ("2nd", 2),
    ("3rd", 3),
    ("4th", 4),
    ("5th", 5),
    ("6th", 6),
    ("7th", 7),
    ("8th", 8),
    ("9th", 9),
    ("10th", 10),
];

/// Nouns after which a number names an item ("step 3", "question 2").
const ITEM_NOUNS: &[&str] = &[
    "step", "item", "point", "question", "number", "no", "rule", "option", "row", "tip",
];

/// Small-talk phrases, as lower-case word sequences, in several languages.
const GREETINGS: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "hiya",
    "howdy",
    "yo",
    "greetings",
    "good morning",
    "good afternoon",
    "good evening",
    "hola",
    "buenos dias",
    "buenos días",
    "buenas",
    "bonjour",
    "salut",
    "hallo",
    "guten tag",
    "moin",
    "servus",
    "olá",
    "ola",
    "oi",
    "bom dia",
    "ciao",
    "buongiorno",
    "salve",
    "how are you",
    "how is it going",
    "how's it going",
    "whats up",
    "what's up",
    "sup",
];
const THANKS: &[&str] = &[
    "thanks",
    "thank you",
    "thank u",
    "thx",
    "ty",
    "tysm",
    "cheers",
    "much appreciated",
    "appreciate it",
    "great",
    "awesome",
    "cool",
    "nice",
    "perfect",
    "got it",
    "ok",
    "okay",
    "k",
    "i see",
    "makes sense",
    "that makes sense",
    "understood",
    "good",
    "excellent",
    "wonderful",
    "brilliant",
    "gracias",
    "merci",
    "danke",
    "vielen dank",
    "obrigado",
    "obrigada",
    "grazie",
];
const GOODBYES: &[&str] = &[
    "bye",
    "goodbye",
    "good bye",
    "see you",
    "see ya",
    "later",
    "good night",
    "adios",
    "adiós",
    "hasta luego",
    "au revoir",
    "tschüss",
    "tschuss",
    "auf wiedersehen",
    "tchau",
    "arrivederci",
];
const HELP: &[&str] = &[
    "help",
    "help me",
    "what can you do",
    "what do you do",
    "what can i ask",
    "what can i ask you",
    "what should i ask",
    "what are you",
    "who are you",
    "how does this work",
    "how do i use this",
    "how do you work",
    "are you a bot",
    "are you human",
    "are you a human",
    "are you real",
    "what is this",
    "can you help",
    "can you help me",
    "ayuda",
    "aide",
    "hilfe",
    "ajuda",
    "aiuto",
];
/// Every small-talk phrase as words, with its kind, longest first: "good morning" is a
/// greeting before "good" is thanks.
static PHRASES: std::sync::LazyLock<Vec<(Vec<&'static str>, SmallTalk)>> =
    std::sync::LazyLock::new(|| {
        let mut phrases: Vec<(Vec<&str>, SmallTalk)> = [
            (SmallTalk::Help, HELP),
            (SmallTalk::Thanks, THANKS),
            (SmallTalk::Goodbye, GOODBYES),
            (SmallTalk::Greeting, GREETINGS),
        ]
        .iter()
        .flat_map(|(kind, list)| list.iter().map(|p| (p.split(' ').collect(), *kind)))
        .collect();
        phrases.sort_by_key(|(phrase, _)| std::cmp::Reverse(phrase.len()));
        phrases
    });

/// Examples of small talk in other words than [`PHRASES`] (English, as the embedded sentence
/// model is): a short message near one of these in meaning, and nearer to it than to the
/// lesson, is small talk of its kind ("hello, can you help me with this lesson?", "thanks,
/// that cleared it up").
pub const SMALL_TALK_EXAMPLES: &[(&str, SmallTalk)] = &[
    ("hello there, nice to meet you", SmallTalk::Greeting),
    ("hi, good morning", SmallTalk::Greeting),
    ("hey, I have a question", SmallTalk::Greeting),
    ("thanks, that helped a lot", SmallTalk::Thanks),
    ("great, that makes sense now", SmallTalk::Thanks),
    ("perfect, I understand it now", SmallTalk::Thanks),
    ("okay, cool", SmallTalk::Thanks),
    ("bye, see you later", SmallTalk::Goodbye),
    ("that's all for today, goodbye", SmallTalk::Goodbye),
    ("nice, that clears things up", SmallTalk::Thanks),
    ("see you, I'm done", SmallTalk::Goodbye),
    ("can you help me with this lesson?", SmallTalk::Help),
    ("what is this lesson about?", SmallTalk::Help),
    ("what can you do for me?", SmallTalk::Help),
    ("how do I use this chat?", SmallTalk::Help),
    ("where should I start?", SmallTalk::Help),
    ("can you explain this lesson to me?", SmallTalk::Help),
    ("give me a summary of this lesson", SmallTalk::Help),
    ("I'm lost and don't understand any of this", SmallTalk::Help),
];

/// Messages longer than this are questions, whatever they are near.
pub const SMALL_TALK_MAX_WORDS: usize = 12;

/// Small talk by meaning: the kind of the example nearest `vector` (the message's), when it is
/// at `threshold` or nearer and the message is short. `examples` are
/// [`SMALL_TALK_EXAMPLES`]' vectors, in order.
pub fn small_talk_by_meaning(
    message: &str,
    vector: &[f32],
    examples: &[crate::semantic::Vector],
    threshold: f32,
) -> Option<(SmallTalk, f32)> {
    let words = message_words(message).len();
    if words == 0 || words > SMALL_TALK_MAX_WORDS {
        return None;
    }
    SMALL_TALK_EXAMPLES
        .iter()
        .zip(examples)
        .map(|((_, kind), example)| (*kind, crate::semantic::similarity(vector, example)))
        .filter(|(_, similarity)| *similarity >= threshold)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Words that may surround small talk without making it a question ("thanks so much!").
const FILLER: &[&str] = &[
    "so", "very", "much", "a", "lot", "you", "u", "again", "there", "tutor", "bot", "all",
    "really", "for", "the", "help", "that", "this", "oh", "ah", "well", "and", "now", "then",
    "too", "everyone", "folks", "friend", "mate", "please", "pls", "me", "it", "was", "is",
    "helpful", "just", "super", "lots", "many", "muchas", "beaucoup", "schön", "mille", "tanto",
    "muito", "sehr", "bien", "fine", "alright", "yes", "yeah", "yep", "sure", "wow", "hmm", "um",
    "uh", "i", "am", "i'm", "im", "good", "doing", "today", "dear",
];

/// The message's words: lower-case runs of letters and digits (apostrophes kept inside words).
pub fn message_words(message: &str) -> Vec<String> {
    message
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .map(|w| w.trim_matches(['\'', '’']).replace('’', "'"))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// Reads a message.
pub fn read(message: &str) -> Reading {
    let words = message_words(message);
    let small_talk = small_talk(&words);
    let ordinal = ordinal(&words);
    let refers_back = ordinal.is_some() || refers_back(&words);
    Reading {
        small_talk,
        refers_back,
        ordinal,
        want: want(&words),
        arithmetic: arithmetic(message, &words),
    }
}

/// "2+2", "7 * 8", "what is 7 times 8": numbers joined by an operator ("10^25 FLOP" and "24/7"
/// are not sums).
fn arithmetic(message: &str, words: &[String]) -> bool {
    let chars: Vec<char> = message.chars().filter(|c| !c.is_whitespace()).collect();
    let symbol = chars.windows(3).any(|w| {
        w[0].is_ascii_digit() && matches!(w[1], '+' | '*' | '×' | '÷') && w[2].is_ascii_digit()
    });
    let spelled = words.windows(3).any(|w| {
        w[0].parse::<f64>().is_ok()
            && matches!(w[1].as_str(), "times" | "plus" | "minus" | "divided" | "x")
            && (w[2].parse::<f64>().is_ok() || w[2] == "by")
    });
    symbol || spelled
}

/// Small talk: every word belongs to a small-talk phrase or is filler, and at least one phrase
/// is there. "thanks, what is quantization?" is a question, not small talk.
fn small_talk(words: &[String]) -> Option<SmallTalk> {
    if words.is_empty() || words.len() > 10 {
        return None;
    }
    let mut used = vec![false; words.len()];
    let mut found: Vec<SmallTalk> = Vec::new();
    for (phrase, kind) in PHRASES.iter() {
        let mut i = 0;
        while i + phrase.len() <= words.len() {
            let here = (0..phrase.len()).all(|k| !used[i + k] && words[i + k] == phrase[k]);
            if here {
                (i..i + phrase.len()).for_each(|k| used[k] = true);
                if !found.contains(kind) {
                    found.push(*kind);
                }
                i += phrase.len();
            } else {
                i += 1;
            }
        }
    }
    let rest_is_filler = words
        .iter()
        .zip(&used)
        .all(|(w, used)| *used || FILLER.contains(&w.as_str()));
    if !rest_is_filler {
        return None;
    }
    [
        SmallTalk::Help,
        SmallTalk::Thanks,
        SmallTalk::Goodbye,
        SmallTalk::Greeting,
    ]
    .into_iter()
    .find(|kind| found.contains(kind))
}

fn refers_back(words: &[String]) -> bool {
    let Some(first) = words.first() else {
        return false;
    };
    if CONTINUING_OPENERS.contains(&first.as_str()) {
        return true;
    }
    if let Some(second) = words.get(1)
        && CONTINUING_PAIRS.contains(&(first.as_str(), second.as_str()))
    {
        return true;
    }
    // "why?", "how so?", "really?": a bare question word leans on the last answer.
    if words.len() <= 2
        && matches!(
            first.as_str(),
            "why" | "how" | "really" | "when" | "where" | "who" | "which" | "what"
        )
    {
        return true;
    }
    words.iter().any(|w| REFERENCE_WORDS.contains(&w.as_str()))
}

fn ordinal(words: &[String]) -> Option<Ordinal> {
    for (i, word) in words.iter().enumerate() {
        if let Some((_, n)) = ORDINALS.iter().find(|(w, _)| w == word) {
            return Some(Ordinal::Nth(*n));
        }
        if matches!(word.as_str(), "last" | "final") {
            return Some(Ordinal::Last);
        }
        if ITEM_NOUNS.contains(&word.as_str())
            && let Some(n) = words.get(i + 1).and_then(|w| w.parse::<usize>().ok())
            && (1..=20).contains(&n)
        {
            return Some(Ordinal::Nth(n));
        }
    }
    None
}

fn want(words: &[String]) -> Want {
    let has = |w: &str| words.iter().any(|x| x == w);
    let pair = |a: &str, b: &str| words.windows(2).any(|p| p[0] == a && p[1] == b);
    let starts = |w: &str| words.first().is_some_and(|x| x == w);
    if has("why") || pair("how", "come") || has("reason") || has("reasons") || pair("what", "for") {
        return Want::Reason;
    }
    const CATCH: &[&str] = &[
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
        "weakness",
        "weaknesses",
        "weak",
        "cons",
        "limitation",
        "limitations",
        "pitfall",
        "pitfalls",
        "danger",
        "dangers",
        "risk",
        "risks",
        "problem",
        "problems",
        "wrong",
        "worse",
    ];
    if words.iter().any(|w| CATCH.contains(&w.as_str())) {
        return Want::Catch;
    }
    const COMPARE: &[&str] = &[
        "compare",
        "compared",
        "comparison",
        "difference",
        "differences",
        "differ",
        "differs",
        "versus",
        "vs",
        "between",
        "better",
    ];
    if words.iter().any(|w| COMPARE.contains(&w.as_str())) {
        return Want::Compare;
    }
    if has("when")
        || pair("how", "many")
        || (pair("how", "much")
            && !words
                .windows(3)
                .any(|w| w[0] == "how" && w[1] == "much" && w[2] == "of"))
        || pair("how", "long")
        || pair("how", "old")
        || pair("what", "year")
        || pair("which", "year")
        || pair("what", "percentage")
        || pair("what", "date")
    {
        return Want::Number;
    }
    if has("who") || has("whom") || has("whose") {
        return Want::Person;
    }
    if pair("how", "do")
        || pair("how", "to")
        || pair("how", "can")
        || pair("how", "should")
        || pair("how", "would")
        || has("steps")
        || has("step")
        || has("process")
        || has("procedure")
        || pair("what", "order")
    {
        return Want::Steps;
    }
    if starts("which")
        || starts("list")
        || pair("what", "are")
        || pair("what", "kinds")
        || pair("what", "types")
        || pair("name", "the")
        || has("examples")
    {
        return Want::List;
    }
    if (starts("what") || starts("what's") || starts("whats"))
        && (words.len() <= 6 || has("mean") || has("means") || has("meaning"))
        || has("define")
        || has("definition")
        || has("meaning")
    {
        return Want::Definition;
    }
    Want::Plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_talk_is_recognised_and_questions_are_not() {
        let cases: &[(&str, Option<SmallTalk>)] = &[
            ("hi", Some(SmallTalk::Greeting)),
            ("Hello there!", Some(SmallTalk::Greeting)),
            ("hey tutor :)", Some(SmallTalk::Greeting)),
            ("good morning", Some(SmallTalk::Greeting)),
            ("Hola", Some(SmallTalk::Greeting)),
            ("thanks!", Some(SmallTalk::Thanks)),
            (
                "Thank you so much, that was helpful",
                Some(SmallTalk::Thanks),
            ),
            ("ok got it", Some(SmallTalk::Thanks)),
            ("merci beaucoup", Some(SmallTalk::Thanks)),
            ("danke schön", Some(SmallTalk::Thanks)),
            ("bye!", Some(SmallTalk::Goodbye)),
            ("thanks, bye", Some(SmallTalk::Thanks)),
            ("help", Some(SmallTalk::Help)),
            ("What can you do?", Some(SmallTalk::Help)),
            ("hi, who are you?", Some(SmallTalk::Help)),
            ("how does this work?", Some(SmallTalk::Help)),
            ("thanks, what is quantization?", None),
            ("hi, what does open weights mean?", None),
            ("can you help me with licences?", None),
            ("What is a cascade?", None),
            ("how does a cascade work?", None),
            ("great, and the second one?", None),
            ("", None),
        ];
        for (message, expected) in cases {
            assert_eq!(read(message).small_talk, *expected, "{message}");
        }
    }

    #[test]
    fn follow_ups_are_recognised_by_references_openers_and_ordinals() {
        let cases: &[(&str, bool)] = &[
            ("and the second one?", true),
            ("What about pizza?", true),
            ("why?", true),
            ("How so?", true),
            ("What are its weaknesses?", true),
            ("Can you give an example?", true),
            ("tell me more", true),
            ("And for large ones?", true),
            ("What is the second question?", true),
            ("What does step 3 say?", true),
            ("How do I cook risotto?", false),
            ("What is 2+2?", false),
            ("What is a cascade?", false),
            ("What does open weights mean?", false),
            ("Which models can be self-hosted?", false),
        ];
        assert!(read("What is 2+2?").arithmetic);
        assert!(read("and what is 7 times 8?").arithmetic);
        assert!(!read("What does Apache 2.0 allow?").arithmetic);
        assert!(!read("Is GPT-4 closed?").arithmetic);
        assert!(!read("What does crossing 10^25 FLOP trigger?").arithmetic);
        assert!(!read("Is the service up 24/7?").arithmetic);
        for (message, expected) in cases {
            assert_eq!(read(message).refers_back, *expected, "{message}");
        }
    }

    #[test]
    fn ordinals_name_list_items() {
        let cases: &[(&str, Option<Ordinal>)] = &[
            ("and the second one?", Some(Ordinal::Nth(2))),
            ("What is the 3rd step?", Some(Ordinal::Nth(3))),
            ("what does step 4 say", Some(Ordinal::Nth(4))),
            ("and the last one?", Some(Ordinal::Last)),
            ("question 2?", Some(Ordinal::Nth(2))),
            ("What is a cascade?", None),
            ("How many steps are there?", None),
        ];
        for (message, expected) in cases {
            assert_eq!(read(message).ordinal, *expected, "{message}");
        }
        assert_eq!(Ordinal::Nth(2).index(5), Some(1));
        assert_eq!(Ordinal::Nth(6).index(5), None);
        assert_eq!(Ordinal::Last.index(5), Some(4));
        assert_eq!(Ordinal::Last.index(0), None);
    }

    #[test]
    fn questions_say_what_kind_of_answer_they_want() {
        let cases: &[(&str, Want)] = &[
            ("Why route at all?", Want::Reason),
            ("What is the catch with self-hosting?", Want::Catch),
            ("What are the downsides of closed APIs?", Want::Catch),
            ("What is the main trade-off of a hybrid setup?", Want::Catch),
            ("How do I estimate cost?", Want::Steps),
            ("What steps does the security review take?", Want::Steps),
            ("Which questions should I work through?", Want::List),
            ("What are the cases for openness?", Want::List),
            ("When was the model released?", Want::Number),
            ("How many tokens are in the vocabulary?", Want::Number),
            ("How much does a GPU hour cost?", Want::Number),
            (
                "How can I check how much of the recipe is published?",
                Want::Steps,
            ),
            ("Who bears liability?", Want::Person),
            ("Compare cascades and learned routers", Want::Compare),
            (
                "What is the difference between open weights and open source?",
                Want::Compare,
            ),
            ("What is quantization?", Want::Definition),
            ("What does vendor lock-in mean?", Want::Definition),
            ("Tell me about safetensors", Want::Plain),
        ];
        for (message, expected) in cases {
            assert_eq!(read(message).want, *expected, "{message}");
        }
    }
}
