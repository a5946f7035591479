//! The optional second opinion: sentences the lexical verifier cannot decide (numbers, names and
//! polarity supported, but only part of the words) are sent, all in one call, to a verifier model
//! with a strict supported/unsupported prompt (`prompts/verify.j2`). Its failures and timeouts
//! fall back to the lexical verdict (removal) and are counted.

use super::Citation;
use crate::llm::{ChatModel, ModelError, ModelRequest};
use crate::prompts::{PromptPassage, Prompts};
use crate::telemetry;
use std::sync::Arc;
use std::time::Duration;

/// A verifier model and how long to wait for it.
pub struct SecondOpinion {
    model: Arc<dyn ChatModel>,
    timeout: Duration,
}

impl SecondOpinion {
    /// Asks `model`, waiting at most `timeout` for its whole reply.
    pub fn new(model: Arc<dyn ChatModel>, timeout: Duration) -> SecondOpinion {
        SecondOpinion { model, timeout }
    }

    /// Judges `undecided` sentences (index, text, cited passage numbers) against the passages
    /// given for the answer. Returns (index, supported) for each sentence the model judged; an
    /// empty list when it failed or timed out.
    pub async fn judge(
        &self,
        prompts: &Prompts,
        undecided: &[(usize, String, Vec<usize>)],
        passages: &[Citation],
    ) -> Vec<(usize, bool)> {
        let shown: Vec<PromptPassage<'_>> = passages.iter().map(Citation::prompt_passage).collect();
        let claims: Vec<(String, Vec<usize>)> = undecided
            .iter()
            .map(|(_, text, cites)| (text.clone(), cites.clone()))
            .collect();
        let system = match prompts.verify(&shown, &claims) {
            Ok(system) => system,
            Err(error) => {
                tracing::warn!(%error, "the verify prompt did not render; lexical verdicts kept");
                telemetry::second_opinion("error");
                return Vec::new();
            }
        };
        let request = ModelRequest {
            system,
            history: Vec::new(),
            message: format!(
                "Judge the {} claim{} above.",
                claims.len(),
                if claims.len() == 1 { "" } else { "s" }
            ),
            passages: Vec::new(),
            terms: Vec::new(),
            easy: false,
            reading: Default::default(),
            language: "en".to_string(),
        };
        let reply = match tokio::time::timeout(self.timeout, self.model.complete(&request)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                let outcome = match error {
                    ModelError::Timeout(_) => "timeout",
                    ModelError::Upstream(_) => "error",
                };
                tracing::warn!(%error, "the verifier model failed; lexical verdicts kept");
                telemetry::second_opinion(outcome);
                return Vec::new();
            }
            Err(_) => {
                tracing::warn!("the verifier model timed out; lexical verdicts kept");
                telemetry::second_opinion("timeout");
                return Vec::new();
            }
        };
        telemetry::second_opinion("ok");
        parse_opinions(&reply.text, claims.len())
            .into_iter()
            .map(|(claim, supported)| (undecided[claim].0, supported))
            .collect()
    }
}

/// Reads lines such as `1: SUPPORTED` or `2 - UNSUPPORTED` (claim numbers from 1); returns
/// (claim index from 0, supported). A claim judged twice, or not at all, is left out.
pub fn parse_opinions(text: &str, claims: usize) -> Vec<(usize, bool)> {
    let mut seen: Vec<Option<bool>> = vec![None; claims];
    let mut twice = vec![false; claims];
    for line in text.lines() {
        let line = line.trim().trim_start_matches(['-', '*', '#', ' ']);
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        let Some((number, verdict)) = line.split_at_checked(digits) else {
            continue;
        };
        let Ok(n) = number.parse::<usize>() else {
            continue;
        };
        if n == 0 || n > claims {
            continue;
        }
        let verdict = verdict.to_ascii_uppercase();
        let supported = if verdict.contains("UNSUPPORTED") || verdict.contains("NOT SUPPORTED") {
            false
        } else if verdict.contains("SUPPORTED") {
            true
        } else {
            continue;
        };
        if seen[n - 1].is_some() {
            twice[n - 1] = true;
        }
        seen[n - 1] = Some(supported);
    }
    seen.into_iter()
        .enumerate()
        .filter(|(i, _)| !twice[*i])
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_opinions;

    #[test]
    fn opinions_are_read_line_by_line_and_ambiguity_keeps_the_lexical_verdict() {
        type Case<'a> = (&'a str, usize, &'a [(usize, bool)]);
        let cases: &[Case<'_>] = &[
            ("1: SUPPORTED\n2: UNSUPPORTED", 2, &[(0, true), (1, false)]),
            (
                "- 2 - supported\n1 — not supported",
                2,
                &[(0, false), (1, true)],
            ),
            (
                "1: SUPPORTED\n1: UNSUPPORTED\n2: SUPPORTED",
                2,
                &[(1, true)],
            ),
            ("3: SUPPORTED\n0: SUPPORTED\nSUPPORTED", 2, &[]),
            ("I think they are fine.", 1, &[]),
        ];
        for (text, claims, expected) in cases {
            assert_eq!(parse_opinions(text, *claims), expected.to_vec(), "{text}");
        }
    }
}
