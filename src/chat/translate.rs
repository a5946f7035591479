//! Questions in another language than the lesson's, with a model configured: the question is
//! translated into the lesson's language for retrieval, the gate and the answer (one short call,
//! cached per message), the answer is verified in the lesson's language like any other, and only
//! then rendered in the learner's language. The rendering is checked against the verified draft
//! before it is shown ([`faithful`]): the same citations in the same order, the same numbers and
//! model names, the same negations sentence by sentence. A rendering that fails is not shown; the
//! verified draft is.

use crate::llm::{ChatModel, ModelError, ModelRequest};
use crate::prompts::Prompts;
use crate::text::cut;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// Translated questions remembered (the same question asked again costs no call).
const CACHE_ENTRIES: usize = 4096;

/// Translates questions and answers with the tutor's model.
pub struct Translator {
    model: Arc<dyn ChatModel>,
    /// (from, to, message) → translation.
    cache: Mutex<lru::LruCache<(&'static str, String, String), String>>,
}

/// Why a translation was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untranslated {
    /// The model failed, timed out, or only the embedded answerer was left to reply.
    #[error("the model could not translate: {0}")]
    Failed(String),
    /// The rendering differs from the verified draft in what it must keep.
    #[error("the translation is not faithful: {0}")]
    Unfaithful(&'static str),
}

impl Untranslated {
    /// The outcome label of `tutor_translations_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Untranslated::Failed(_) => "failed",
            Untranslated::Unfaithful(_) => "unfaithful",
        }
    }
}

impl Translator {
    pub fn new(model: Arc<dyn ChatModel>) -> Translator {
        Translator {
            model,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CACHE_ENTRIES).expect("non-zero"),
            )),
        }
    }

    /// The learner's question in the lesson's language (`to`). Returns the translation and
    /// whether it came from the cache.
    pub async fn question(
        &self,
        prompts: &Prompts,
        message: &str,
        from: &'static str,
        to: &str,
    ) -> Result<(String, bool), Untranslated> {
        let key = (from, to.to_string(), message.to_string());
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok((hit.clone(), true));
        }
        let text = self
            .call(prompts, "question", message, from, to)
            .await?
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .trim_matches(['"', '“', '”', '«', '»'])
            .trim()
            .to_string();
        let chars = text.chars().count();
        if chars == 0 || chars > message.chars().count() * 3 + 40 {
            return Err(Untranslated::Failed(
                "the reply is not a translation of the question".to_string(),
            ));
        }
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, text.clone());
        Ok((text, false))
    }

    /// A verified answer (`draft`, in the lesson's language `from`) in the learner's language
    /// `to`, checked by [`faithful`] and for repeated instructions.
    pub async fn answer(
        &self,
        prompts: &Prompts,
        draft: &str,
        from: &str,
        to: &'static str,
    ) -> Result<String, Untranslated> {
        let text = self.call(prompts, "answer", draft, from, to).await?;
        let text = text.trim().to_string();
        faithful(draft, &text, from, to).map_err(Untranslated::Unfaithful)?;
        if prompts.reveals_rules(&text) {
            return Err(Untranslated::Unfaithful("it repeats the instructions"));
        }
        Ok(text)
    }

    async fn call(
        &self,
        prompts: &Prompts,
        kind: &str,
        text: &str,
        from: &str,
        to: &str,
    ) -> Result<String, Untranslated> {
        let system = prompts
            .translate(kind, from, to)
            .map_err(|e| Untranslated::Failed(e.to_string()))?;
        let request = ModelRequest {
            system,
            history: Vec::new(),
            message: text.to_string(),
            passages: Vec::new(),
            terms: Vec::new(),
            // Short and mechanical: routing may send it to the cheaper provider.
            easy: true,
            reading: crate::conversation::read(""),
            language: to.to_string(),
        };
        let reply = self.model.complete(&request).await.map_err(|e| match e {
            ModelError::Upstream(why) | ModelError::Timeout(why) => Untranslated::Failed(why),
        })?;
        if reply.backend == crate::llm::extractive::NAME {
            // A chain whose providers all failed fell back to the embedded answerer, which
            // quotes lessons and cannot translate.
            return Err(Untranslated::Failed(
                "no model provider answered".to_string(),
            ));
        }
        Ok(reply.text)
    }
}

/// Checks that `translation` (in `to`) says what the verified `draft` (in `from`) says, as far as
/// can be told without understanding both languages: the same citation markers in the same
/// order, the same numbers, the same words mixing letters and digits ("GPT-4", "10^25"), and, in
/// each stretch of text a citation closes, a negation exactly when the draft has one there.
/// Returns what differs.
pub fn faithful(draft: &str, translation: &str, from: &str, to: &str) -> Result<(), &'static str> {
    let (draft_chars, translated_chars) = (draft.chars().count(), translation.chars().count());
    if translated_chars * 2 < draft_chars || translated_chars > draft_chars * 3 {
        return Err("its length is far from the draft's");
    }
    let (draft_parts, translated_parts) = (cited_parts(draft), cited_parts(translation));
    let markers = |parts: &[(&str, Vec<usize>)]| -> Vec<usize> {
        parts.iter().flat_map(|(_, m)| m.iter().copied()).collect()
    };
    if markers(&draft_parts) != markers(&translated_parts)
        || draft_parts.len() != translated_parts.len()
    {
        return Err("its citations differ");
    }
    if numbers(draft) != numbers(translation) {
        return Err("its numbers differ");
    }
    let mixed = |text: &str| -> Vec<String> {
        let mut found: Vec<String> = text
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '"'))
            .map(|w| w.trim_end_matches(['.', ':', '?', '!']))
            .filter(|w| w.chars().any(char::is_alphabetic) && w.chars().any(|c| c.is_ascii_digit()))
            .filter(|w| !w.starts_with('['))
            .map(str::to_string)
            .collect();
        found.sort();
        found
    };
    if mixed(draft) != mixed(translation) {
        return Err("its names differ");
    }
    for ((d, _), (t, _)) in draft_parts.iter().zip(&translated_parts) {
        if crate::language::negated(d, from) != crate::language::negated(t, to) {
            return Err("a negation was added or lost");
        }
    }
    Ok(())
}

/// The text split after each run of citation markers: each stretch with the markers closing it.
fn cited_parts(text: &str) -> Vec<(&str, Vec<usize>)> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut markers = Vec::new();
    let mut stretch_end = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'['
            && let Some(len) = cut(text, i + 1..).find(']')
            && let Ok(n) = cut(text, i + 1..i + 1 + len).parse::<usize>()
        {
            if markers.is_empty() {
                stretch_end = i;
            }
            markers.push(n);
            i += len + 2;
            continue;
        }
        if !markers.is_empty() && !bytes[i].is_ascii_whitespace() && !b".,;:!?".contains(&bytes[i])
        {
            parts.push((cut(text, start..stretch_end), std::mem::take(&mut markers)));
            start = i;
        }
        i += 1;
    }
    if !markers.is_empty() {
        parts.push((cut(text, start..stretch_end), markers));
    } else if !cut(text, start..).trim().is_empty() {
        parts.push((cut(text, start..), Vec::new()));
    }
    parts
}

/// The numbers of a text with their group separators removed ("200,000", "200.000" and
/// "200 000" are all 200000), sorted; citation markers are not numbers.
fn numbers(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if chars[i].is_ascii_digit() {
            let mut digits = String::new();
            while i < chars.len() {
                let c = chars[i];
                let joins = matches!(c, ',' | '.' | ' ' | '\u{a0}' | '\u{202f}' | '\'')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                    && !digits.is_empty();
                if c.is_ascii_digit() {
                    digits.push(c);
                } else if !joins {
                    break;
                }
                i += 1;
            }
            found.push(digits);
            continue;
        }
        i += 1;
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faithful_rendering_keeps_citations_numbers_names_and_negations() {
        let draft = "Byte-pair encoding merges pairs until the vocabulary reaches 32,000 tokens [1]. \
                     It does not start from whole words [1][2].";
        let cases: &[(&str, Result<(), &str>)] = &[
            (
                "La codificación por pares de bytes fusiona pares hasta que el vocabulario llega a 32.000 tokens [1]. No empieza por palabras completas [1][2].",
                Ok(()),
            ),
            (
                "La codificación por pares de bytes fusiona pares hasta que el vocabulario llega a 500.000 tokens [1]. No empieza por palabras completas [1][2].",
                Err("its numbers differ"),
            ),
            (
                "La codificación por pares de bytes fusiona pares hasta que el vocabulario llega a 32.000 tokens [1]. Empieza por palabras completas [1][2].",
                Err("a negation was added or lost"),
            ),
            (
                "La codificación por pares de bytes fusiona pares hasta que el vocabulario llega a 32.000 tokens [2]. No empieza por palabras completas [1][2].",
                Err("its citations differ"),
            ),
            (
                "La codificación por pares de bytes fusiona pares hasta 32.000 tokens y no empieza por palabras completas [1][1][2].",
                Err("its citations differ"),
            ),
            (
                "Sí [1]. No [1][2].",
                Err("its length is far from the draft's"),
            ),
        ];
        for (translation, expected) in cases {
            assert_eq!(
                faithful(draft, translation, "en", "es"),
                *expected,
                "{translation}"
            );
        }
    }

    #[test]
    fn names_with_digits_must_survive_the_rendering() {
        let draft = "GPT-2 was released in stages in 2019 [1].";
        assert_eq!(
            faithful(
                draft,
                "GPT-2 wurde 2019 schrittweise veröffentlicht [1].",
                "en",
                "de"
            ),
            Ok(())
        );
        assert_eq!(
            faithful(
                draft,
                "GPT-3 wurde 2019 schrittweise veröffentlicht [1].",
                "en",
                "de"
            ),
            Err("its numbers differ")
        );
        assert_eq!(
            faithful(
                draft,
                "GPT2 wurde 2019 schrittweise veröffentlicht [1].",
                "en",
                "de"
            ),
            Err("its names differ")
        );
    }

    #[test]
    fn negations_are_read_in_each_language() {
        let draft = "Open weights cannot be recalled after release [1].";
        for (to, translation) in [
            (
                "fr",
                "Les poids ouverts ne peuvent pas être rappelés après leur publication [1].",
            ),
            (
                "de",
                "Offene Gewichte können nach der Veröffentlichung nicht zurückgerufen werden [1].",
            ),
            (
                "pt",
                "Os pesos abertos não podem ser recolhidos depois de publicados [1].",
            ),
            (
                "it",
                "I pesi aperti non possono essere richiamati dopo il rilascio [1].",
            ),
        ] {
            assert_eq!(faithful(draft, translation, "en", to), Ok(()), "{to}");
        }
        assert_eq!(
            faithful(
                draft,
                "Offene Gewichte können nach der Veröffentlichung zurückgerufen werden [1].",
                "en",
                "de"
            ),
            Err("a negation was added or lost")
        );
    }

    #[test]
    fn numbers_ignore_group_separators_and_citations() {
        assert_eq!(
            numbers("200,000 and 200 000 [3] and 10^25"),
            vec!["10", "200000", "200000", "25"]
        );
        assert_eq!(numbers("32.000 tokens [12]"), vec!["32000"]);
    }
}
