//! Which language a learner writes in. Lessons declare theirs (`language:` in the front matter,
//! `en` by default); a question in another language is not "not covered", it is in another
//! language, and the tutor says so in the learner's language (or, with a model, translates).
//!
//! Detection combines whatlang's trigram model with the function words of the languages the
//! tutor speaks, because a short question ("¿Qué es un token?") is too short for trigrams alone
//! and is full of technical words shared with English. When in doubt, it is the lesson's
//! language: a false "please ask in English" is worse than answering.

use serde::Serialize;
use whatlang::{Detector, Lang, Script};

/// Languages the tutor's own texts are written in (templates in `prompts/`), as ISO 639-1.
pub const SPOKEN: &[&str] = &["en", "es", "fr", "de", "pt", "it"];

/// Function words of each spoken language: short questions are told apart by these.
const FUNCTION_WORDS: &[(&str, &[&str])] = &[
    (
        "en",
        &[
            "the", "is", "are", "what", "how", "why", "does", "do", "which", "who", "when", "of",
            "and", "to", "in", "a", "an", "can", "should", "i", "my", "it", "this", "that", "with",
            "for", "about", "mean", "means", "was", "were", "did", "there", "you", "where",
            "between", "from", "be", "or", "not", "on", "by", "if",
        ],
    ),
    (
        "es",
        &[
            "qué",
            "que",
            "es",
            "el",
            "los",
            "las",
            "una",
            "cómo",
            "por",
            "para",
            "cuál",
            "cuáles",
            "del",
            "se",
            "son",
            "está",
            "están",
            "y",
            "lo",
            "significa",
            "puedo",
            "debo",
            "cuándo",
            "dónde",
            "mi",
            "hay",
            "sirve",
            "sobre",
            "pero",
            "muy",
            "más",
            "entre",
            "quién",
            "según",
            "sin",
            "también",
            "usar",
            "hace",
            "tiene",
        ],
    ),
    (
        "fr",
        &[
            "qu'est", "est", "le", "les", "une", "des", "du", "comment", "pourquoi", "quel",
            "quelle", "quels", "quelles", "ce", "c'est", "qui", "et", "je", "dois", "peut",
            "signifie", "sont", "au", "aux", "avec", "pour", "veut", "dire", "qu'un", "qu'une",
            "entre", "sur", "mais", "très", "plus", "pas", "faut", "peux", "d'un", "d'une", "l'",
            "quoi",
        ],
    ),
    (
        "de",
        &[
            "was", "ist", "der", "die", "das", "ein", "eine", "einen", "wie", "warum", "welche",
            "welcher", "welches", "wer", "wann", "und", "ich", "sind", "bedeutet", "kann", "soll",
            "mit", "für", "den", "dem", "des", "nicht", "es", "gibt", "zwischen", "über", "bei",
            "wozu", "wieso", "weshalb", "man", "auf", "oder", "auch", "sich",
        ],
    ),
    (
        "pt",
        &[
            "o",
            "que",
            "é",
            "um",
            "uma",
            "os",
            "como",
            "por",
            "porque",
            "qual",
            "quais",
            "do",
            "da",
            "dos",
            "das",
            "são",
            "significa",
            "posso",
            "devo",
            "em",
            "no",
            "na",
            "e",
            "para",
            "quando",
            "não",
            "isso",
            "sobre",
            "entre",
            "mais",
            "quem",
            "onde",
            "tem",
            "serve",
            "fazer",
            "pode",
        ],
    ),
    (
        "it",
        &[
            "che",
            "cos'è",
            "cosa",
            "è",
            "il",
            "lo",
            "gli",
            "le",
            "un",
            "una",
            "come",
            "perché",
            "quale",
            "quali",
            "del",
            "della",
            "sono",
            "significa",
            "posso",
            "devo",
            "per",
            "di",
            "e",
            "quando",
            "chi",
            "cos",
            "dei",
            "delle",
            "nel",
            "nella",
            "tra",
            "fra",
            "non",
            "anche",
            "serve",
            "può",
            "fare",
            "con",
            "i",
            "c'è",
            "ci",
            "qualche",
            "questo",
            "questa",
            "al",
            "alla",
            "ai",
            "agli",
            "su",
            "sulla",
            "quanto",
        ],
    ),
];

/// The language of a message, when it can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Detected {
    /// One of [`SPOKEN`].
    Spoken(&'static str),
    /// Another language or script (its ISO 639-3 code), which the tutor has no texts for.
    Other(&'static str),
}

impl Detected {
    /// The ISO code: 639-1 for spoken languages, 639-3 otherwise.
    pub fn code(self) -> &'static str {
        match self {
            Detected::Spoken(code) | Detected::Other(code) => code,
        }
    }
}

/// Detects the language of a learner's message. `None` when it cannot be told (a few technical
/// words, numbers): such a message is read in the lesson's language.
pub fn detect(message: &str) -> Option<Detected> {
    let letters = message.chars().filter(|c| c.is_alphabetic()).count();
    if letters < 2 {
        return None;
    }
    let script = whatlang::detect_script(message)?;
    if script != Script::Latin {
        // Another script is another language, whatever its words.
        return whatlang::detect_lang(message).map(|lang| Detected::Other(lang.code()));
    }
    let words: Vec<String> = crate::conversation::message_words(message)
        .into_iter()
        .map(|w| w.replace('’', "'"))
        .collect();
    // Each word's languages, looked up once for all of them.
    let table = function_words();
    let languages: Vec<u32> = words
        .iter()
        .map(|w| table.get(w.as_str()).copied().unwrap_or(0))
        .collect();
    let counts: Vec<(&'static str, usize)> = FUNCTION_WORDS
        .iter()
        .enumerate()
        .map(|(i, (code, _))| {
            let n = words
                .iter()
                .zip(&languages)
                .filter(|(w, languages)| *languages & (1 << i) != 0 || elided_article(w, code))
                .count();
            (*code, n)
        })
        .collect();
    let english = counts[0].1;
    let best_other = counts[1..].iter().map(|(_, n)| *n).max().unwrap_or(0);
    let marked = accent_language(message);
    if best_other == 0 && marked.is_none() {
        return (english > 0).then_some(Detected::Spoken("en"));
    }
    if english >= best_other && english >= 2 && marked.is_none() {
        return Some(Detected::Spoken("en"));
    }
    // Candidates: the languages with the most function words (and the one its accents mark).
    let candidates: Vec<&'static str> = counts[1..]
        .iter()
        .filter(|(code, n)| (*n == best_other && *n > 0) || Some(*code) == marked)
        .map(|(code, _)| *code)
        .collect();
    let chosen = if candidates.len() == 1 {
        candidates[0]
    } else {
        let allow: Vec<Lang> = candidates.iter().filter_map(|c| lang_of(c)).collect();
        Detector::with_allowlist(allow)
            .detect_lang(message)
            .and_then(|lang| SPOKEN.iter().find(|c| lang_of(c) == Some(lang)).copied())
            .unwrap_or(candidates[0])
    };
    let chosen_count = counts.iter().find(|(c, _)| *c == chosen).map_or(0, |c| c.1);
    if chosen_count + usize::from(marked == Some(chosen)) <= english {
        return Some(Detected::Spoken("en"));
    }
    Some(Detected::Spoken(chosen))
}

/// [`FUNCTION_WORDS`] by word: a bit per language (its place in the list) that uses it.
fn function_words() -> &'static std::collections::HashMap<&'static str, u32> {
    static WORDS: std::sync::OnceLock<std::collections::HashMap<&'static str, u32>> =
        std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        let mut words = std::collections::HashMap::new();
        for (i, (_, list)) in FUNCTION_WORDS.iter().enumerate() {
            for word in *list {
                *words.entry(*word).or_insert(0) |= 1 << i;
            }
        }
        words
    })
}

/// French and Italian elide articles into the next word ("l'architecture", "dell'IA").
fn elided_article(word: &str, code: &str) -> bool {
    match code {
        "fr" => ["l'", "d'", "qu'", "n'", "c'", "j'"]
            .iter()
            .any(|p| word.starts_with(p)),
        "it" => ["dell'", "all'", "nell'", "un'", "quest'"]
            .iter()
            .any(|p| word.starts_with(p)),
        _ => false,
    }
}

/// A language some letters or marks belong to alone.
fn accent_language(message: &str) -> Option<&'static str> {
    if message.contains(['¿', '¡', 'ñ', 'Ñ']) {
        Some("es")
    } else if message.contains(['ß', 'ä', 'ö', 'ü', 'Ä', 'Ö', 'Ü']) {
        Some("de")
    } else if message.contains(['ã', 'õ', 'Ã', 'Õ']) {
        Some("pt")
    } else if message.contains(['ç', 'œ', 'ê', 'î', 'û', 'ë', 'ï', 'Ç']) {
        Some("fr")
    } else {
        None
    }
}

fn lang_of(code: &str) -> Option<Lang> {
    Some(match code {
        "en" => Lang::Eng,
        "es" => Lang::Spa,
        "fr" => Lang::Fra,
        "de" => Lang::Deu,
        "pt" => Lang::Por,
        "it" => Lang::Ita,
        _ => return None,
    })
}

/// Words that negate a statement in each spoken language.
const NEGATIONS: &[(&str, &[&str])] = &[
    (
        "en",
        &[
            "not", "no", "never", "cannot", "without", "none", "nothing", "neither", "nor",
            "nobody", "nowhere",
        ],
    ),
    (
        "es",
        &[
            "no", "nunca", "jamás", "sin", "ningún", "ninguna", "ninguno", "nada", "ni", "nadie",
            "tampoco",
        ],
    ),
    (
        "fr",
        &[
            "ne", "n", "pas", "jamais", "sans", "aucun", "aucune", "rien", "ni", "non",
        ],
    ),
    (
        "de",
        &[
            "nicht", "kein", "keine", "keinen", "keinem", "keiner", "keines", "nie", "niemals",
            "ohne", "nichts", "weder", "niemand",
        ],
    ),
    (
        "pt",
        &[
            "não", "nunca", "jamais", "sem", "nenhum", "nenhuma", "nada", "nem", "ninguém",
        ],
    ),
    (
        "it",
        &[
            "non", "mai", "senza", "nessun", "nessuno", "nessuna", "niente", "nulla", "né",
        ],
    ),
];

/// True when `text`, in the spoken language `code`, holds a negation ("not", "n't", "no",
/// "ne … pas", "nicht", "kein" …). Unknown languages are read as English.
pub fn negated(text: &str, code: &str) -> bool {
    let words = NEGATIONS
        .iter()
        .find(|(c, _)| *c == code)
        .unwrap_or(&NEGATIONS[0])
        .1;
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !c.is_alphabetic())
        .any(|w| words.contains(&w))
        || (code == "en" && (lower.contains("n't") || lower.contains("n’t")))
}

/// The English name of a spoken language, for prompts ("Spanish").
pub fn name(code: &str) -> &'static str {
    lang_of(code).map_or("the lesson's language", |l| l.eng_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoken(message: &str) -> Option<&'static str> {
        match detect(message) {
            Some(Detected::Spoken(code)) => Some(code),
            Some(Detected::Other(code)) => Some(code),
            None => None,
        }
    }

    #[test]
    fn short_questions_are_told_apart_by_their_function_words() {
        let cases: &[(&str, Option<&str>)] = &[
            ("¿Qué es un token?", Some("es")),
            ("Qué significa open weights?", Some("es")),
            ("¿Cuáles son los riesgos de un modelo abierto?", Some("es")),
            ("Qu'est-ce qu'un routeur ?", Some("fr")),
            ("Pourquoi utiliser un modèle hébergé ?", Some("fr")),
            ("Comment estimer le coût ?", Some("fr")),
            ("Was ist ein Router?", Some("de")),
            ("Warum sollte man Modelle selbst hosten?", Some("de")),
            ("Welche Risiken gibt es bei offenen Gewichten?", Some("de")),
            ("O que é quantização?", Some("pt")),
            ("Quais são os riscos de um modelo aberto?", Some("pt")),
            ("Cos'è un modello aperto?", Some("it")),
            ("Perché usare un router?", Some("it")),
            ("Quali sono i rischi della quantizzazione?", Some("it")),
            ("C'è qualche garanzia con i pesi aperti?", Some("it")),
            ("What is a token?", Some("en")),
            ("What does open weights mean?", Some("en")),
            ("Why route at all?", Some("en")),
            ("Is self-hosting cheaper than a closed API?", Some("en")),
            ("Was the Apache 2.0 license used?", Some("en")),
            ("quantization?", None),
            ("RLHF", None),
            ("2+2", None),
            ("Что такое токен?", Some("rus")),
        ];
        for (message, expected) in cases {
            assert_eq!(spoken(message), *expected, "{message}");
        }
    }

    #[test]
    fn names_of_spoken_languages() {
        assert_eq!(name("es"), "Spanish");
        assert_eq!(name("de"), "German");
        assert_eq!(name("xx"), "the lesson's language");
    }
}
