//! What the evaluation examples share: SQuAD 2.0 questions as `../shared/eval/squad2-dev` lays
//! them out, and ratios rounded for reports.

use serde::Deserialize;
use std::path::Path;

/// One line of `questions.jsonl`.
#[derive(Deserialize)]
pub struct SquadQuestion {
    pub lesson: String,
    pub q: String,
    /// The slug of the section that answers it (`part-N`).
    pub section: String,
    /// Accepted answer spans, each verbatim in that section.
    pub answers: Vec<String>,
    /// Written to look answerable from the section, but not answerable from it.
    pub refuse: bool,
}

/// Reads `DIR/questions.jsonl`.
pub fn questions(dir: &Path) -> anyhow::Result<Vec<SquadQuestion>> {
    let text = std::fs::read_to_string(dir.join("questions.jsonl"))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// `hits / total`, rounded to three decimals (0 when there is nothing to count).
pub fn ratio(hits: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        (hits as f64 / total as f64 * 1000.0).round() / 1000.0
    }
}
