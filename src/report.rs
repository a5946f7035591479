//! `tutor report`: what learners asked, per lesson and per section, from the conversation log:
//! questions asked, refusal rate, thumbs-down rate, and the questions a lesson could not answer,
//! grouped into clusters of similar questions (shared key terms), biggest first, each with the
//! nearest section as the likely place to add the explanation. Markdown to-do lists (default),
//! JSON or CSV.

use crate::conversation_log::{Rating, Record};
use crate::retrieve::Retriever;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Figures of one section.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SectionReport {
    pub id: String,
    pub title: String,
    /// Answers citing this section.
    pub answered: usize,
    pub thumbs_down: usize,
    /// Hints pointing to this section, quiz questions on it, and how replies to them were
    /// graded: where learners struggle.
    #[serde(skip_serializing_if = "QuizFigures::is_empty")]
    pub quiz: QuizFigures,
}

/// Hints, quiz questions and grades of one section.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QuizFigures {
    pub hints: usize,
    pub asked: usize,
    /// First tries not yet right that got another try (their grade is counted once, on the
    /// last try).
    pub retried: usize,
    pub correct: usize,
    pub partly: usize,
    pub not_yet: usize,
}

impl QuizFigures {
    pub fn is_empty(&self) -> bool {
        *self == QuizFigures::default()
    }

    fn count(&mut self, record: &Record) {
        match (record.kind.as_deref(), record.outcome.as_deref()) {
            (Some("hint"), _) => self.hints += 1,
            (Some("quiz_question"), _) => self.asked += 1,
            (Some("grade"), Some("retry")) => self.retried += 1,
            (Some("grade"), Some("correct")) => self.correct += 1,
            (Some("grade"), Some("partly")) => self.partly += 1,
            (Some("grade"), _) => self.not_yet += 1,
            _ => {}
        }
    }
}

/// True for records of quiz questions, graded replies and hints (not answers).
fn is_quiz(record: &Record) -> bool {
    matches!(
        record.kind.as_deref(),
        Some("hint" | "quiz_question" | "grade")
    )
}

/// Similar questions the lesson could not answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Gap {
    pub questions: Vec<String>,
    /// Terms most of the questions share.
    pub key_terms: Vec<String>,
    /// The section closest to them: the likely place to add the explanation.
    pub nearest_section: Option<SectionRef>,
}

/// A section named in a report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SectionRef {
    pub id: String,
    pub title: String,
}

/// Figures of one lesson.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LessonReport {
    pub lesson_id: String,
    pub title: String,
    pub asked: usize,
    pub refused: usize,
    pub refusal_rate: f64,
    pub thumbs_down: usize,
    pub thumbs_down_rate: f64,
    pub sections: Vec<SectionReport>,
    pub gaps: Vec<Gap>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub lessons: Vec<LessonReport>,
}

fn rate(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 1000.0).round() / 1000.0
    }
}

/// Builds the report from log records, using the retriever for key terms and nearest sections.
pub fn build(records: &[Record], retriever: &Retriever) -> Report {
    let mut by_lesson: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in records {
        by_lesson.entry(&record.lesson_id).or_default().push(record);
    }
    let catalog = retriever.catalog();
    let mut lessons = Vec::new();
    for (lesson_id, records) in by_lesson {
        let lesson = catalog.get(lesson_id);
        let title = lesson.map_or_else(|| lesson_id.to_string(), |l| l.title.clone());
        let asked = records.len();
        let refused = records.iter().filter(|r| r.refused).count();
        let down = records
            .iter()
            .filter(|r| r.rating == Some(Rating::Down))
            .count();
        let mut sections: Vec<SectionReport> = lesson
            .map(|l| {
                l.sections
                    .iter()
                    .map(|s| SectionReport {
                        id: s.slug.clone(),
                        title: s.title.clone(),
                        answered: 0,
                        thumbs_down: 0,
                        quiz: QuizFigures::default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for record in records.iter().filter(|r| !r.refused) {
            let mut cited: BTreeSet<&str> =
                record.cited.iter().filter_map(|p| section_of(p)).collect();
            if record.kind.as_deref() == Some("quiz_question") {
                cited.extend(record.outcome.as_deref());
            }
            for slug in cited {
                if let Some(section) = sections.iter_mut().find(|s| s.id == slug) {
                    if is_quiz(record) {
                        section.quiz.count(record);
                        continue;
                    }
                    section.answered += 1;
                    if record.rating == Some(Rating::Down) {
                        section.thumbs_down += 1;
                    }
                }
            }
        }
        sections.retain(|s| s.answered > 0 || !s.quiz.is_empty());
        sections.sort_by(|a, b| b.answered.cmp(&a.answered).then(a.id.cmp(&b.id)));
        let unanswered: Vec<&str> = records
            .iter()
            .filter(|r| r.refused)
            .map(|r| r.question.as_str())
            .collect();
        let language = lesson.map_or("en", |l| l.language.as_str());
        let gaps = clusters(&unanswered, retriever, language)
            .into_iter()
            .map(|(questions, key_terms)| {
                let probe = questions.join(" ");
                let nearest_section = lesson.and_then(|l| {
                    let hits = retriever
                        .search(Some(&l.id), &probe, 1)
                        .inspect_err(|error| {
                            tracing::warn!(%error, "no nearest section for a gap");
                        })
                        .ok()?;
                    hits.first().map(|hit| {
                        let section = hit.lesson.section_of(hit.passage());
                        SectionRef {
                            id: section.slug.clone(),
                            title: section.title.clone(),
                        }
                    })
                });
                Gap {
                    questions,
                    key_terms,
                    nearest_section,
                }
            })
            .collect();
        lessons.push(LessonReport {
            lesson_id: lesson_id.to_string(),
            title,
            asked,
            refused,
            refusal_rate: rate(refused, asked),
            thumbs_down: down,
            thumbs_down_rate: rate(down, asked),
            sections,
            gaps,
        });
    }
    Report { lessons }
}

/// `LESSON#SECTION-N` → `SECTION`.
fn section_of(passage_id: &str) -> Option<&str> {
    let (_, rest) = passage_id.split_once('#')?;
    rest.rsplit_once('-').map(|(slug, _)| slug)
}

/// Groups questions that share key terms: a question joins the cluster it shares the most
/// terms with when that is at least half of the smaller term set; biggest clusters first.
fn clusters(
    questions: &[&str],
    retriever: &Retriever,
    language: &str,
) -> Vec<(Vec<String>, Vec<String>)> {
    let mut groups: Vec<(Vec<String>, Vec<BTreeSet<String>>)> = Vec::new();
    for question in questions {
        let terms: BTreeSet<String> = retriever
            .key_terms(question, language)
            .into_iter()
            .collect();
        let best = groups
            .iter()
            .enumerate()
            .map(|(i, (_, sets))| {
                let shared = sets
                    .iter()
                    .map(|s| s.intersection(&terms).count() * 2 >= s.len().min(terms.len()).max(1))
                    .filter(|close| *close)
                    .count();
                (i, shared)
            })
            .filter(|(_, shared)| *shared > 0)
            .max_by_key(|(_, shared)| *shared)
            .map(|(i, _)| i);
        match best {
            Some(i) if !terms.is_empty() => {
                groups[i].0.push(question.to_string());
                groups[i].1.push(terms);
            }
            _ => groups.push((vec![question.to_string()], vec![terms])),
        }
    }
    let mut out: Vec<(Vec<String>, Vec<String>)> = groups
        .into_iter()
        .map(|(questions, sets)| {
            let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
            for set in &sets {
                for term in set {
                    *counts.entry(term).or_default() += 1;
                }
            }
            let mut key: Vec<(&String, usize)> = counts
                .into_iter()
                .filter(|(_, n)| n * 2 >= sets.len())
                .collect();
            key.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            // Show each stem as a word the learners used ("caching", not "cach").
            let key_terms = key
                .into_iter()
                .take(5)
                .map(|(stem, _)| surface_word(stem, &questions, retriever, language))
                .collect();
            (questions, key_terms)
        })
        .collect();
    out.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
    out
}

/// The first word of the questions whose analyzed form is `stem`, lower-cased.
fn surface_word(stem: &str, questions: &[String], retriever: &Retriever, language: &str) -> String {
    questions
        .iter()
        .flat_map(|q| q.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .find(|w| {
            retriever
                .analyze(w, language)
                .first()
                .is_some_and(|t| t == stem)
        })
        .map_or_else(|| stem.to_string(), str::to_lowercase)
}

/// The report as Markdown to-do lists.
pub fn markdown(report: &Report) -> String {
    let mut out = String::from("# What learners asked\n");
    if report.lessons.is_empty() {
        out.push_str("\nNo questions in the log for this period.\n");
    }
    for lesson in &report.lessons {
        let _ = writeln!(out, "\n## {} (`{}`)\n", lesson.title, lesson.lesson_id);
        let _ = writeln!(
            out,
            "{} questions; {} refused ({:.0}%); {} rated down ({:.0}%).",
            lesson.asked,
            lesson.refused,
            lesson.refusal_rate * 100.0,
            lesson.thumbs_down,
            lesson.thumbs_down_rate * 100.0
        );
        if lesson.sections.iter().any(|s| s.answered > 0) {
            out.push_str("\n| section | answers citing it | rated down |\n|---|---|---|\n");
            for s in lesson.sections.iter().filter(|s| s.answered > 0) {
                let _ = writeln!(
                    out,
                    "| {} (`{}`) | {} | {} |",
                    s.title, s.id, s.answered, s.thumbs_down
                );
            }
        }
        if lesson.sections.iter().any(|s| !s.quiz.is_empty()) {
            out.push_str(
                "\n### Hints and quizzes\n\n| section | hints | quiz questions | second tries | correct | partly | not yet |\n|---|---|---|---|---|---|---|\n",
            );
            for s in lesson.sections.iter().filter(|s| !s.quiz.is_empty()) {
                let q = &s.quiz;
                let _ = writeln!(
                    out,
                    "| {} (`{}`) | {} | {} | {} | {} | {} | {} |",
                    s.title, s.id, q.hints, q.asked, q.retried, q.correct, q.partly, q.not_yet
                );
            }
        }
        if !lesson.gaps.is_empty() {
            out.push_str("\n### Questions the lesson could not answer\n\n");
            for gap in &lesson.gaps {
                let place = gap.nearest_section.as_ref().map_or_else(
                    || "a new section".to_string(),
                    |s| format!("section \"{}\" (`{}`)", s.title, s.id),
                );
                let _ = writeln!(
                    out,
                    "- [ ] {} asked about **{}**: consider explaining it in {}",
                    plural(gap.questions.len()),
                    gap.key_terms.join(", "),
                    place
                );
                for question in &gap.questions {
                    let _ = writeln!(out, "  - \"{question}\"");
                }
            }
        }
    }
    out
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 question".to_string()
    } else {
        format!("{n} questions")
    }
}

/// The report as CSV: one row per section and one per gap (`kind` tells which).
pub fn csv(report: &Report) -> String {
    fn field(text: &str) -> String {
        format!("\"{}\"", text.replace('"', "\"\""))
    }
    let mut out = String::from(
        "kind,lesson_id,section_id,answered,thumbs_down,questions,key_terms,examples\n",
    );
    for lesson in &report.lessons {
        for s in &lesson.sections {
            let _ = writeln!(
                out,
                "section,{},{},{},{},,,",
                field(&lesson.lesson_id),
                field(&s.id),
                s.answered,
                s.thumbs_down
            );
            // Quiz figures ride in the example column as `key=value` pairs.
            let q = &s.quiz;
            if !q.is_empty() {
                let _ = writeln!(
                    out,
                    "quiz,{},{},,,,,{}",
                    field(&lesson.lesson_id),
                    field(&s.id),
                    field(&format!(
                        "hints={} asked={} retried={} correct={} partly={} not_yet={}",
                        q.hints, q.asked, q.retried, q.correct, q.partly, q.not_yet
                    ))
                );
            }
        }
        for gap in &lesson.gaps {
            let _ = writeln!(
                out,
                "gap,{},{},,,{},{},{}",
                field(&lesson.lesson_id),
                field(gap.nearest_section.as_ref().map_or("", |s| s.id.as_str())),
                gap.questions.len(),
                field(&gap.key_terms.join(" ")),
                field(&gap.questions.join(" | "))
            );
        }
    }
    out
}

/// Unix seconds from `--since`: `YYYY-MM-DD` (midnight UTC) or `Nd` (N days before `now`).
pub fn parse_since(since: &str, now: u64) -> Result<u64, String> {
    let since = since.trim();
    if let Some(days) = since.strip_suffix('d') {
        let days: u64 = days
            .parse()
            .map_err(|_| "`--since Nd` takes a whole number of days".to_string())?;
        return Ok(now.saturating_sub(days.saturating_mul(86_400)));
    }
    let form = || "`--since` takes YYYY-MM-DD or Nd".to_string();
    let parts: Vec<i64> = since
        .split('-')
        .map(|p| p.parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|_| form())?;
    let [y, m, d] = parts[..] else {
        return Err(form());
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return Err(format!("`--since`: there is no date {since}"));
    }
    // Days from the civil date (Howard Hinnant's algorithm), then seconds.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(u64::try_from(days * 86_400).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_reads_dates_and_day_counts() {
        let now = 1_764_374_400; // 2025-11-29T00:00:00Z
        let cases: &[(&str, Result<u64, ()>)] = &[
            ("1970-01-01", Ok(0)),
            ("2000-03-01", Ok(951_868_800)),
            ("2024-02-29", Ok(1_709_164_800)),
            ("2025-11-29", Ok(now)),
            ("7d", Ok(now - 7 * 86_400)),
            ("0d", Ok(now)),
            ("99999d", Ok(0)),
            ("2023-02-29", Err(())),
            ("2025-13-01", Err(())),
            ("2025-04-31", Err(())),
            ("yesterday", Err(())),
            ("7days", Err(())),
            ("2025-11", Err(())),
        ];
        for (since, expected) in cases {
            assert_eq!(
                parse_since(since, now).map_err(|_| ()),
                *expected,
                "{since}"
            );
        }
    }
}
