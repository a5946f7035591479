//! The verifier's perturbation suite: a stand-in model answers in-lesson questions faithfully or
//! with one thing wrong, and we count what reaches the learner, over JSON and over streams.
//!
//! ```text
//! cargo run --release --example verify-eval -- [SQUAD_DIR] [--json]
//! ```
//!
//! Sets, kept apart: the sample course's hand-written cases (`examples/verify-cases/`, a tuning
//! file and a held-out file of other lessons) and SQuAD 2.0 dev articles (`SQUAD_DIR`, default
//! `../shared/eval/squad2-dev`): the first four articles (alphabetically) for tuning, the last
//! four held out. Thresholds in `src/chat/verify.rs` were tuned on the tuning sets only.
//!
//! Per answerable question the stand-in model answers seven ways: the lesson's sentence
//! verbatim; a faithful paraphrase (hand-written for the course; for SQuAD, synonym swaps and a
//! friendly opening); a terse answer; the sentence with its key fact swapped for one from
//! another lesson (course: hand-written wrong fact); the sentence plus a claim from elsewhere;
//! the sentence negated; the sentence with the wrong citation.

#[path = "support/setup.rs"]
mod setup;
#[path = "support/squad.rs"]
mod squad;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use squad::{SquadQuestion, ratio};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tutor::chat::second::SecondOpinion;
use tutor::chat::{Answer, ChatEvent, Plan, Question, Tutor};
use tutor::lessons::load_catalog;
use tutor::llm::{ChatModel, ModelError, ModelRequest, Reply, ReplyStream};
use tutor::prompts::Prompts;
use tutor::retrieve::RetrievalSettings;

/// A stand-in model that answers whatever it was last told to.
#[derive(Default)]
struct Scripted {
    text: Mutex<String>,
}

impl Scripted {
    fn say(&self, text: &str) {
        *self.text.lock().expect("lock") = text.to_string();
    }
    fn text(&self) -> String {
        self.text.lock().expect("lock").clone()
    }
}

impl ChatModel for Scripted {
    fn name(&self) -> String {
        "openai:stand-in".to_string()
    }
    fn complete<'a>(&'a self, _: &'a ModelRequest) -> BoxFuture<'a, Result<Reply, ModelError>> {
        let text = self.text();
        Box::pin(async move {
            Ok(Reply {
                backend: self.name(),
                text,
            })
        })
    }
    fn stream<'a>(&'a self, _: &'a ModelRequest) -> BoxFuture<'a, Result<ReplyStream, ModelError>> {
        // Token-sized pieces, as a provider streams them.
        let chars: Vec<char> = self.text().chars().collect();
        let pieces: Vec<String> = chars.chunks(3).map(|c| c.iter().collect()).collect();
        Box::pin(async move { Ok(ReplyStream::of_pieces(self.name(), pieces)) })
    }
}

/// A second-opinion model that judges right: it is told whether the answer it is about to see
/// is faithful, and counts the claims it is sent. It measures what the lexical verifier leaves
/// to a second opinion, and what one that judges well would catch.
#[derive(Default)]
struct Oracle {
    faithful: AtomicBool,
    answers_asking: AtomicUsize,
}

impl ChatModel for Oracle {
    fn name(&self) -> String {
        "openai:oracle".to_string()
    }
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<Reply, ModelError>> {
        self.answers_asking.fetch_add(1, Ordering::Relaxed);
        // "Judge the N claims above."
        let claims: usize = request
            .message
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or(1);
        let word = if self.faithful.load(Ordering::Relaxed) {
            "SUPPORTED"
        } else {
            "UNSUPPORTED"
        };
        let text = (1..=claims).map(|n| format!("{n}: {word}\n")).collect();
        Box::pin(async move {
            Ok(Reply {
                backend: self.name(),
                text,
            })
        })
    }
    fn stream<'a>(&'a self, _: &'a ModelRequest) -> BoxFuture<'a, Result<ReplyStream, ModelError>> {
        Box::pin(async { Err(ModelError::Upstream("the oracle only judges".to_string())) })
    }
}

#[derive(Deserialize)]
struct CourseCases {
    cases: Vec<CourseCase>,
}

#[derive(Deserialize)]
struct CourseCase {
    lesson: String,
    question: String,
    verbatim: String,
    paraphrase: String,
    terse: String,
    negated: String,
    fact: String,
    swap: String,
    added: String,
}

/// One question and the stand-in's answers to it (sentences without markers).
struct Case {
    lesson: String,
    question: String,
    /// Text that must be in the passage the answer should cite.
    anchor: String,
    verbatim: String,
    paraphrase: String,
    terse: String,
    /// The swapped sentence and the wrong fact in it.
    swapped: Option<(String, String)>,
    added: String,
    negated: String,
}

#[derive(Default)]
struct Tally {
    cases: usize,
    gate_refused: usize,
    verbatim: usize,
    paraphrase: usize,
    terse: usize,
    swapped_cases: usize,
    swapped: usize,
    /// Swaps of a number, a date or a capitalised name (the rest swap ordinary words).
    swapped_fact_cases: usize,
    swapped_fact: usize,
    added: usize,
    negated: usize,
    corrected: usize,
    wrong_cite_cases: usize,
    /// Stream text that differed from its `done` answer (taken back or added later).
    unverified_streamed: usize,
    /// With the oracle: faithful answers (verbatim, paraphrase, terse, wrong citation) and
    /// perturbed ones, and how many of each were sent to the second opinion.
    faithful_answers: usize,
    faithful_asking: usize,
    perturbed_answers: usize,
    perturbed_asking: usize,
}

fn main() -> anyhow::Result<()> {
    let (squad, as_json) = setup::squad_args();
    let runtime = tokio::runtime::Runtime::new()?;
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut report = serde_json::Map::new();
    for (name, file) in [
        ("course_tune", "course-tune.toml"),
        ("course_holdout", "course-holdout.toml"),
    ] {
        let cases: CourseCases = toml::from_str(&std::fs::read_to_string(
            here.join("examples/verify-cases").join(file),
        )?)?;
        let cases = cases.cases.into_iter().map(course_case).collect();
        let result = run(&runtime, &here.join("lessons"), cases)?;
        report.insert(name.to_string(), result);
    }
    if squad.join("questions.jsonl").exists() {
        let (tune, holdout) = squad_cases(&squad)?;
        for (name, cases) in [("squad_tune", tune), ("squad_holdout", holdout)] {
            let result = run(&runtime, &squad.join("lessons"), cases)?;
            report.insert(name.to_string(), result);
        }
    } else {
        eprintln!("no SQuAD set at {}: course sets only", squad.display());
    }
    setup::print_sets(&serde_json::Value::Object(report), as_json, 7)
}

fn course_case(c: CourseCase) -> Case {
    let swapped = c
        .verbatim
        .contains(&c.fact)
        .then(|| (c.verbatim.replacen(&c.fact, &c.swap, 1), c.swap.clone()));
    Case {
        anchor: c.verbatim.clone(),
        lesson: c.lesson,
        question: c.question,
        verbatim: c.verbatim,
        paraphrase: c.paraphrase,
        terse: c.terse,
        swapped,
        added: c.added,
        negated: c.negated,
    }
}

/// SQuAD cases: the sentence holding the gold answer, and perturbations made from it.
fn squad_cases(dir: &Path) -> anyhow::Result<(Vec<Case>, Vec<Case>)> {
    let catalog = load_catalog(&dir.join("lessons"))?;
    let tune_ids = setup::tune_articles(&catalog);
    let questions = squad::questions(dir)?;
    let answerable: Vec<&SquadQuestion> = questions.iter().filter(|q| !q.refuse).collect();
    // Claims from elsewhere: sentences of other lessons with a number or a name in them.
    let mut foreign: Vec<(String, String)> = Vec::new();
    for lesson in &catalog.lessons {
        for passage in lesson.passages.iter().step_by(3) {
            for sentence in tutor::text::split_sentences(&passage.text) {
                let words = sentence.split_whitespace().count();
                if (8..30).contains(&words) && sentence.ends_with('.') {
                    foreign.push((lesson.id.clone(), sentence.to_string()));
                    break;
                }
            }
        }
    }
    let (mut tune, mut holdout) = (Vec::new(), Vec::new());
    for (i, q) in answerable.iter().enumerate() {
        let Some(lesson) = catalog.get(&q.lesson) else {
            continue;
        };
        let Some(answer) = q.answers.iter().min_by_key(|a| a.len()) else {
            continue;
        };
        let sentence = lesson
            .passages
            .iter()
            .filter(|p| lesson.section_of(p).slug == q.section)
            .flat_map(|p| tutor::text::split_sentences(&p.text))
            .find(|s| s.contains(answer.as_str()));
        let Some(sentence) = sentence else {
            continue;
        };
        let sentence = sentence.to_string();
        // A fact of the same kind from another lesson's question.
        let numeric = answer.chars().any(|c| c.is_ascii_digit());
        let swap = answerable
            .iter()
            .cycle()
            .skip(i * 7 + 1)
            .take(answerable.len())
            .filter(|o| o.lesson != q.lesson)
            .flat_map(|o| o.answers.first())
            .find(|a| {
                a.chars().any(|c| c.is_ascii_digit()) == numeric
                    && a.chars().next().is_some_and(char::is_uppercase)
                        == answer.chars().next().is_some_and(char::is_uppercase)
                    && a.split_whitespace().count() <= 3
                    && !sentence.contains(a.as_str())
            });
        let swapped = swap.map(|s| (sentence.replacen(answer.as_str(), s, 1), s.clone()));
        let added = foreign
            .iter()
            .cycle()
            .skip(i * 13)
            .take(foreign.len())
            .find(|(l, _)| l != &q.lesson)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let case = Case {
            lesson: q.lesson.clone(),
            question: q.q.clone(),
            anchor: sentence.clone(),
            paraphrase: paraphrase(&sentence),
            terse: format!("It's {}.", answer.trim_end_matches('.')),
            negated: negate(&sentence),
            swapped,
            added,
            verbatim: sentence,
        };
        if tune_ids.contains(&q.lesson) {
            tune.push(case);
        } else {
            holdout.push(case);
        }
    }
    Ok((tune, holdout))
}

/// A mechanical paraphrase: a friendly opening and common synonyms swapped.
fn paraphrase(sentence: &str) -> String {
    const SWAPS: &[(&str, &str)] = &[
        (" began ", " started "),
        (" begin ", " start "),
        (" large ", " big "),
        (" many ", " numerous "),
        (" used ", " employed "),
        (" important ", " significant "),
        (" however, ", " though, "),
        (" also ", " as well "),
        (" called ", " known as "),
        (" known as ", " called "),
        (" about ", " around "),
        (" because ", " since "),
        (" often ", " frequently "),
        (" main ", " principal "),
        (" show ", " demonstrate "),
        (" made ", " produced "),
        (" help ", " assist "),
        (" very ", " highly "),
        (" but ", " yet "),
        (" several ", " a number of "),
    ];
    let mut text = format!(" {} ", sentence.trim_end_matches('.'));
    for (from, to) in SWAPS {
        text = text.replace(from, to);
    }
    let text = text.trim();
    let mut chars = text.chars();
    let lowered: String = match chars.next() {
        // Keep names capitalised: only lower an ordinary first word.
        Some(first)
            if text.split_whitespace().next().is_some_and(|w| {
                matches!(
                    w,
                    "The"
                        | "A"
                        | "An"
                        | "In"
                        | "It"
                        | "This"
                        | "These"
                        | "They"
                        | "Its"
                        | "On"
                        | "At"
                )
            }) =>
        {
            first.to_lowercase().chain(chars).collect()
        }
        Some(first) => std::iter::once(first).chain(chars).collect(),
        None => String::new(),
    };
    format!("Put simply, {lowered}.")
}

/// The sentence negated at its first auxiliary verb, or as a whole.
fn negate(sentence: &str) -> String {
    const AUXILIARIES: &[&str] = &[
        "is", "was", "are", "were", "has", "have", "had", "can", "will", "could", "would",
        "should", "may", "must", "does", "did", "do",
    ];
    let words: Vec<&str> = sentence.split(' ').collect();
    if let Some(i) = words.iter().position(|w| AUXILIARIES.contains(w)) {
        let mut out = words.clone();
        out.insert(i + 1, "not");
        return out.join(" ");
    }
    let mut chars = sentence.chars();
    let rest: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("It is not true that {rest}")
}

fn with_marker(sentence: &str, n: usize) -> String {
    let body = sentence.trim_end_matches(['.', '!', '?']);
    format!("{body} [{n}].")
}

/// Lower-cased, markers and punctuation out, white space folded: for "is it shown" checks.
fn plain(text: &str) -> String {
    let (text, _) = tutor::chat::citations::take_markers(text);
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn shows(answer: &Answer, sentence: &str) -> bool {
    answer.backend != "extractive"
        && !answer.refused
        && plain(&answer.answer).contains(&plain(sentence))
}

fn run(
    runtime: &tokio::runtime::Runtime,
    lessons: &Path,
    cases: Vec<Case>,
) -> anyhow::Result<serde_json::Value> {
    // The verifier is measured on every case: a case that is also a quiz question would get a
    // hint (quiz integrity, measured by quiz-eval) and never reach the model.
    let catalog = setup::without_quizzes(load_catalog(lessons)?);
    let (retriever, _index) = setup::index(catalog, RetrievalSettings::default())?;
    let model = Arc::new(Scripted::default());
    let oracle = Arc::new(Oracle::default());
    let tutor = Tutor::new(
        retriever.clone(),
        Arc::new(Prompts::built_in()),
        model.clone(),
    );
    let second = Tutor::new(retriever, Arc::new(Prompts::built_in()), model.clone())
        .with_second_opinion(SecondOpinion::new(oracle.clone(), Duration::from_secs(5)));
    let (mut json_tally, mut stream_tally) = (Tally::default(), Tally::default());
    let mut second_tally = Tally::default();
    for case in &cases {
        let question = Question::parse(case.lesson.clone(), case.question.clone(), Vec::new())?;
        let (plan, _) = tutor.plan(&question)?;
        let Plan::Ask(asking) = plan else {
            json_tally.gate_refused += 1;
            stream_tally.gate_refused += 1;
            second_tally.gate_refused += 1;
            continue;
        };
        let anchor = plain(&case.anchor);
        let Some(right) = asking
            .citations
            .iter()
            .find(|c| plain(&c.text).contains(&anchor))
            .map(|c| c.n)
        else {
            // The sentence's passage was not retrieved: a retrieval miss, not the verifier's.
            json_tally.gate_refused += 1;
            stream_tally.gate_refused += 1;
            second_tally.gate_refused += 1;
            continue;
        };
        let other = asking.citations.iter().map(|c| c.n).find(|&n| n != right);
        for (tally, streamed, tutor) in [
            (&mut json_tally, false, &tutor),
            (&mut stream_tally, true, &tutor),
            (&mut second_tally, false, &second),
        ] {
            let mut ask = |text: String, faithful: bool| -> anyhow::Result<Answer> {
                model.say(&text);
                oracle.faithful.store(faithful, Ordering::Relaxed);
                let before = oracle.answers_asking.load(Ordering::Relaxed);
                let question =
                    Question::parse(case.lesson.clone(), case.question.clone(), Vec::new())?;
                let answer = runtime.block_on(async {
                    if !streamed {
                        return Ok(tutor.ask(question).await?.0);
                    }
                    use futures::StreamExt;
                    let mut events = tutor.ask_stream(question).await?;
                    let mut shown = String::new();
                    while let Some(event) = events.next().await {
                        match event {
                            ChatEvent::Delta(text) => shown.push_str(&text),
                            ChatEvent::Done(answer) => {
                                if answer.answer != shown {
                                    tally.unverified_streamed += 1;
                                }
                                // Judge what the learner saw.
                                return Ok(Answer {
                                    answer: shown,
                                    ..*answer
                                });
                            }
                            ChatEvent::Error(error) => return Err(error.into()),
                            ChatEvent::Citations(_) => {}
                        }
                    }
                    anyhow::bail!("the stream ended without done")
                })?;
                let asked = usize::from(oracle.answers_asking.load(Ordering::Relaxed) > before);
                if faithful {
                    tally.faithful_answers += 1;
                    tally.faithful_asking += asked;
                } else {
                    tally.perturbed_answers += 1;
                    tally.perturbed_asking += asked;
                }
                Ok(answer)
            };
            tally.cases += 1;
            let answer = ask(with_marker(&case.verbatim, right), true)?;
            tally.verbatim += usize::from(shows(&answer, &case.verbatim));
            let answer = ask(with_marker(&case.paraphrase, right), true)?;
            let shown = shows(&answer, &case.paraphrase);
            if !shown && std::env::var_os("VERIFY_EVAL_SHOW").is_some() {
                let why: Vec<String> = answer
                    .judged
                    .iter()
                    .map(|j| format!("{} {:?}", j.text, j.verdict))
                    .collect();
                eprintln!("paraphrase removed: {why:?}");
            }
            tally.paraphrase += usize::from(shown);
            let answer = ask(with_marker(&case.terse, right), true)?;
            let shown = shows(&answer, &case.terse);
            if !shown && std::env::var_os("VERIFY_EVAL_SHOW").is_some() {
                eprintln!(
                    "terse removed: {} {:?}",
                    case.terse,
                    answer.judged.first().map(|j| &j.verdict)
                );
            }
            tally.terse += usize::from(shown);
            if let Some((swapped, fact)) = &case.swapped {
                tally.swapped_cases += 1;
                let answer = ask(with_marker(swapped, right), false)?;
                let reached = plain(&answer.answer).contains(&plain(fact));
                if reached && std::env::var_os("VERIFY_EVAL_SHOW").is_some() {
                    eprintln!("swapped `{fact}` reached: {}", answer.answer);
                }
                tally.swapped += usize::from(reached);
                // A number, a date or a name: digits, or a capitalised word that is not just an
                // article opening the phrase ("A fundamental error" swaps ordinary words).
                let fact_like = fact.split_whitespace().enumerate().any(|(i, w)| {
                    w.chars().any(|c| c.is_ascii_digit())
                        || (w.chars().next().is_some_and(char::is_uppercase)
                            && !(i == 0 && matches!(w, "A" | "An" | "The")))
                });
                if fact_like {
                    tally.swapped_fact_cases += 1;
                    tally.swapped_fact += usize::from(reached);
                }
            }
            let answer = ask(
                format!(
                    "{} {}",
                    with_marker(&case.verbatim, right),
                    with_marker(&case.added, right)
                ),
                false,
            )?;
            let reached = plain(&answer.answer).contains(&plain(&case.added));
            if reached && std::env::var_os("VERIFY_EVAL_SHOW").is_some() {
                eprintln!(
                    "added reached: {:?}",
                    answer.judged.last().map(|j| &j.verdict)
                );
                eprintln!("  {}", case.added);
            }
            tally.added += usize::from(reached);
            let answer = ask(with_marker(&case.negated, right), false)?;
            tally.negated += usize::from(shows(&answer, &case.negated));
            if let Some(other) = other {
                tally.wrong_cite_cases += 1;
                let answer = ask(with_marker(&case.verbatim, other), true)?;
                let fixed = shows(&answer, &case.verbatim)
                    && answer.answer.contains(&format!("[{right}]"))
                    && !answer.answer.contains(&format!("[{other}]"));
                tally.corrected += usize::from(fixed);
            }
        }
    }
    let mut with_oracle = figures(&second_tally);
    with_oracle["faithful_sent_to_model"] = json!(ratio(
        second_tally.faithful_asking,
        second_tally.faithful_answers
    ));
    with_oracle["perturbed_sent_to_model"] = json!(ratio(
        second_tally.perturbed_asking,
        second_tally.perturbed_answers
    ));
    Ok(json!({
        "json": figures(&json_tally),
        "stream": figures(&stream_tally),
        "json_with_second_opinion": with_oracle,
    }))
}

fn figures(t: &Tally) -> serde_json::Value {
    json!({
        "cases": t.cases,
        "not_retrieved_or_refused": t.gate_refused,
        "verbatim_shown": ratio(t.verbatim, t.cases),
        "paraphrase_shown": ratio(t.paraphrase, t.cases),
        "terse_shown": ratio(t.terse, t.cases),
        "swapped_fact_reaching": ratio(t.swapped_fact, t.swapped_fact_cases),
        "swapped_fact_cases": t.swapped_fact_cases,
        "swapped_word_reaching": ratio(t.swapped - t.swapped_fact, t.swapped_cases - t.swapped_fact_cases),
        "added_reaching": ratio(t.added, t.cases),
        "negated_reaching": ratio(t.negated, t.cases),
        "citations_corrected": ratio(t.corrected, t.wrong_cite_cases),
        "unverified_streamed": t.unverified_streamed,
    })
}
