//! The quiz evaluation: quiz integrity, grading without a model, and hints, on the sample
//! course's quizzes and on SQuAD articles turned into quizzes.
//!
//! ```text
//! cargo run --release --example quiz-eval -- [SQUAD_DIR] [--json]
//! ```
//!
//! Sets, kept apart: the sample course's quizzes (`lessons/*.quiz.toml`) with hand-written
//! learner questions and replies (`examples/quiz-cases/course.toml`), tuning lessons and
//! held-out lessons, and two later sets of questions on the held-out lessons that chose nothing
//! (`course-fresh.toml`, `course-fresh-2.toml`, integrity only); and SQuAD 2.0 dev articles
//! (`SQUAD_DIR`, default `../shared/eval/squad2-dev`), the first half of the articles for tuning and the rest held out, where every other
//! answerable question becomes a quiz item (its shortest answer expected) and the others stay
//! ordinary questions. Learner paraphrases of SQuAD quiz questions are made by reordering and
//! synonym swaps. The thresholds in `src/quiz/` were tuned on the tuning sets only.
//!
//! Figures (the embedded answerer answers, as on a fresh clone):
//! - integrity: quiz questions asked in other words whose expected answer reaches the learner;
//!   other in-lesson questions turned into hints (and answers that lost a sentence to a guard),
//!   and, on SQuAD, other questions whose gold answer reaches the learner, with the quizzes and
//!   from the same articles without them;
//! - grading: gold answers graded `correct`, another question's answer graded `not_yet`, half of
//!   a multi-word answer not graded `correct`;
//! - hints (`mode: "hint"` on the quiz questions): the expected answer absent from the hint, and
//!   the hint citing the item's section.

#[path = "support/setup.rs"]
mod setup;
#[path = "support/squad.rs"]
mod squad;

use serde::Deserialize;
use serde_json::json;
use squad::ratio;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tutor::chat::{Answer, Mode, Question, ReplyKind, Tutor};
use tutor::index::Analyzer;
use tutor::lessons::quiz::{Integrity, Quiz, QuizItem};
use tutor::lessons::{Catalog, load_catalog};
use tutor::quiz::grade::{Grade, grade, plain};
use tutor::quiz::{Weights, Words};

const COURSE_TUNE: &[&str] = &[
    "hybrid-routing",
    "the-policy-layer",
    "what-open-means",
    "the-case-for-openness",
];

#[derive(Deserialize)]
struct CourseCases {
    paraphrases: Vec<Paraphrase>,
    others: Vec<Other>,
    #[serde(default)]
    answers: Vec<Replies>,
}

#[derive(Deserialize)]
struct Paraphrase {
    lesson: String,
    item: String,
    q: String,
}

#[derive(Deserialize)]
struct Other {
    lesson: String,
    section: String,
    q: String,
}

#[derive(Deserialize)]
struct Replies {
    lesson: String,
    item: String,
    correct: Vec<String>,
    partial: Vec<String>,
    wrong: Vec<String>,
}

/// One set to measure: quiz items by lesson, learner questions, and replies to grade.
#[derive(Default)]
struct Set {
    /// (lesson, item) for each quiz item.
    items: Vec<(String, QuizItem)>,
    /// (lesson, item id, question in other words, every accepted answer).
    paraphrases: Vec<(String, String, String, Vec<String>)>,
    /// (lesson, section, question, its gold answers when known) that are no quiz item.
    others: Vec<(String, String, String, Vec<String>)>,
    /// (lesson, item id, reply, what it should not be graded / should be graded).
    replies: Vec<(String, String, String, Reply)>,
    /// (lesson, item id, reply in the learner's own words, whether it is right).
    reworded: Vec<(String, String, String, bool)>,
}

#[derive(Deserialize)]
struct RewordedCases {
    replies: Vec<Reworded>,
}

#[derive(Deserialize)]
struct Reworded {
    lesson: String,
    item: String,
    right: Vec<String>,
    wrong: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Reply {
    /// A right answer, written some way: should be `correct`.
    Gold,
    /// Half of the answer: should not be `correct`.
    Partial,
    /// Another question's answer, or a wrong one: should be `not_yet`.
    Other,
}

#[derive(Default)]
struct Tally {
    paraphrases: usize,
    leaked: usize,
    paraphrase_hinted: usize,
    others: usize,
    others_hinted: usize,
    others_trimmed: usize,
    /// Other questions with known gold answers, and how many got one with the quiz and
    /// without it.
    others_with_gold: usize,
    others_gold_reached: usize,
    others_gold_reached_without_quiz: usize,
    gold: usize,
    gold_correct: usize,
    partial: usize,
    partial_not_correct: usize,
    other_answers: usize,
    other_not_yet: usize,
    hints: usize,
    hint_without_answer: usize,
    hint_right_section: usize,
    reworded_right: usize,
    reworded_right_correct: usize,
    reworded_wrong: usize,
    reworded_wrong_not_correct: usize,
}

fn main() -> anyhow::Result<()> {
    let (squad_dir, as_json) = setup::squad_args();
    let runtime = tokio::runtime::Runtime::new()?;
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut report = serde_json::Map::new();

    let catalog = load_catalog(&here.join("lessons"))?;
    anyhow::ensure!(catalog.problems.is_empty(), "{:?}", catalog.problems);
    let cases: CourseCases = toml::from_str(&std::fs::read_to_string(
        here.join("examples/quiz-cases/course.toml"),
    )?)?;
    let (mut tune, mut holdout) = course_sets(&catalog, &cases);
    let reworded: RewordedCases = toml::from_str(&std::fs::read_to_string(
        here.join("examples/quiz-cases/replies-reworded.toml"),
    )?)?;
    for r in &reworded.replies {
        let set = if COURSE_TUNE.contains(&r.lesson.as_str()) {
            &mut tune
        } else {
            &mut holdout
        };
        for (replies, right) in [(&r.right, true), (&r.wrong, false)] {
            for reply in replies {
                set.reworded
                    .push((r.lesson.clone(), r.item.clone(), reply.clone(), right));
            }
        }
    }
    // Written after the thresholds were last chosen, the second after the first was measured:
    // held-out lessons only, integrity only.
    let fresh = fresh_set(
        &catalog,
        &here.join("examples/quiz-cases/course-fresh.toml"),
    )?;
    let fresh_2 = fresh_set(
        &catalog,
        &here.join("examples/quiz-cases/course-fresh-2.toml"),
    )?;
    let (retriever, _dir) = setup::index(catalog, setup::tuned_settings()?)?;
    let tutor = setup::extractive_tutor(retriever);
    for (name, set) in [
        ("course_tune", tune),
        ("course_holdout", holdout),
        ("course_fresh", fresh),
        ("course_fresh_2", fresh_2),
    ] {
        if std::env::var_os("QUIZ_EVAL_SHARES").is_some() {
            eprintln!("SET {name}");
        }
        report.insert(name.to_string(), run(&runtime, &tutor, None, &set)?);
    }

    if squad_dir.join("questions.jsonl").exists() {
        let mut catalog = load_catalog(&squad_dir.join("lessons"))?;
        // The same articles without quizzes, to see what integrity costs other questions.
        let (plain_retriever, _plain_dir) =
            setup::index(catalog.clone(), setup::tuned_settings()?)?;
        let without_quiz = setup::extractive_tutor(plain_retriever);
        let (tune, holdout) = squad_sets(&mut catalog, &squad_dir)?;
        let (retriever, _dir) = setup::index(catalog, setup::tuned_settings()?)?;
        let tutor = setup::extractive_tutor(retriever);
        for (name, set) in [("squad_tune", tune), ("squad_holdout", holdout)] {
            if std::env::var_os("QUIZ_EVAL_SHARES").is_some() {
                eprintln!("SET {name}");
            }
            report.insert(
                name.to_string(),
                run(&runtime, &tutor, Some(&without_quiz), &set)?,
            );
        }
    } else {
        eprintln!("no SQuAD set at {}: course sets only", squad_dir.display());
    }
    setup::print_sets(&serde_json::Value::Object(report), as_json, 10)
}

/// A later set of questions on the held-out lessons (`path`), for integrity only: its
/// paraphrases and other questions, none of the quiz items' grading or hints again.
fn fresh_set(catalog: &Catalog, path: &Path) -> anyhow::Result<Set> {
    let cases: CourseCases = toml::from_str(&std::fs::read_to_string(path)?)?;
    let (_, mut held_out) = course_sets(catalog, &cases);
    held_out.items.clear();
    Ok(held_out)
}

/// The sample course's quizzes and hand-written cases, split into tuning and held-out lessons.
fn course_sets(catalog: &Catalog, cases: &CourseCases) -> (Set, Set) {
    // [tune, held-out], chosen by the lesson.
    let mut sets = [Set::default(), Set::default()];
    let of = |lesson: &str| usize::from(!COURSE_TUNE.contains(&lesson));
    let mut answers: HashMap<(String, String), String> = HashMap::new();
    for lesson in &catalog.lessons {
        for item in lesson.quiz.iter().flat_map(|q| &q.items) {
            answers.insert((lesson.id.clone(), item.id.clone()), item.answer.clone());
            sets[of(&lesson.id)]
                .items
                .push((lesson.id.clone(), item.clone()));
        }
    }
    for p in &cases.paraphrases {
        let answer = answers
            .get(&(p.lesson.clone(), p.item.clone()))
            .cloned()
            .unwrap_or_default();
        sets[of(&p.lesson)].paraphrases.push((
            p.lesson.clone(),
            p.item.clone(),
            p.q.clone(),
            vec![answer],
        ));
    }
    for o in &cases.others {
        sets[of(&o.lesson)].others.push((
            o.lesson.clone(),
            o.section.clone(),
            o.q.clone(),
            Vec::new(),
        ));
    }
    for r in &cases.answers {
        let kinds = [
            (&r.correct, Reply::Gold),
            (&r.partial, Reply::Partial),
            (&r.wrong, Reply::Other),
        ];
        for (replies, kind) in kinds {
            for reply in replies {
                sets[of(&r.lesson)].replies.push((
                    r.lesson.clone(),
                    r.item.clone(),
                    reply.clone(),
                    kind,
                ));
            }
        }
    }
    let [tune, holdout] = sets;
    (tune, holdout)
}

/// SQuAD articles as quizzes: every other answerable question becomes an item of its lesson's
/// quiz (attached to the catalog here), the rest stay ordinary questions.
fn squad_sets(catalog: &mut Catalog, dir: &Path) -> anyhow::Result<(Set, Set)> {
    let tune_ids = setup::tune_articles(catalog);
    let questions = squad::questions(dir)?;
    let answerable: Vec<&squad::SquadQuestion> = questions.iter().filter(|q| !q.refuse).collect();
    let (mut tune, mut holdout) = (Set::default(), Set::default());
    let mut quizzes: HashMap<String, Vec<QuizItem>> = HashMap::new();
    for (i, q) in answerable.iter().enumerate() {
        let set = if tune_ids.contains(&q.lesson) {
            &mut tune
        } else {
            &mut holdout
        };
        let Some(answer) = q.answers.iter().min_by_key(|a| a.len()) else {
            continue;
        };
        if i % 2 == 1 {
            // SQuAD asks some facts twice: a question whose answer is a quiz item's answer is
            // that quiz question in other words, not another question.
            let same_fact = answerable.iter().enumerate().any(|(j, o)| {
                j % 2 == 0
                    && o.lesson == q.lesson
                    && o.answers.iter().any(|a| {
                        q.answers.iter().any(|b| {
                            let (a, b) = (plain(a), plain(b));
                            a.contains(&b) || b.contains(&a)
                        })
                    })
            });
            if !same_fact {
                set.others.push((
                    q.lesson.clone(),
                    q.section.clone(),
                    q.q.clone(),
                    q.answers.clone(),
                ));
            }
            continue;
        }
        let item = QuizItem {
            id: format!("q{i}"),
            question: q.q.clone(),
            answer: answer.clone(),
            // SQuAD's other gold answers, as an author lists what else is right.
            accept: q.answers.iter().filter(|a| *a != answer).cloned().collect(),
            choices: Vec::new(),
            section: q.section.clone(),
            line: 0,
        };
        quizzes
            .entry(q.lesson.clone())
            .or_default()
            .push(item.clone());
        set.paraphrases.push((
            q.lesson.clone(),
            item.id.clone(),
            paraphrase(&q.q, i),
            q.answers.clone(),
        ));
        for gold in &q.answers {
            set.replies
                .push((q.lesson.clone(), item.id.clone(), gold.clone(), Reply::Gold));
        }
        let words: Vec<&str> = answer.split_whitespace().collect();
        if words.len() >= 2 {
            let half = words[..words.len() / 2].join(" ");
            set.replies
                .push((q.lesson.clone(), item.id.clone(), half, Reply::Partial));
        }
        // Another question's answer, from the same article, that is not this one's.
        let other = answerable
            .iter()
            .filter(|o| o.lesson == q.lesson && o.q != q.q)
            .flat_map(|o| o.answers.first())
            .find(|a| {
                let a = plain(a);
                !q.answers.iter().any(|g| {
                    let g = plain(g);
                    g.contains(&a) || a.contains(&g)
                })
            });
        if let Some(other) = other {
            set.replies.push((
                q.lesson.clone(),
                item.id.clone(),
                other.clone(),
                Reply::Other,
            ));
        }
        set.items.push((q.lesson.clone(), item));
    }
    let lessons = std::mem::take(&mut catalog.lessons);
    catalog.lessons = lessons
        .into_iter()
        .map(|mut lesson| {
            if let Some(items) = quizzes.remove(&lesson.id) {
                Arc::make_mut(&mut lesson).quiz = Some(Quiz {
                    integrity: Integrity::Hint,
                    items,
                });
            }
            lesson
        })
        .collect();
    Ok((tune, holdout))
}

/// A learner's version of a quiz question: synonyms swapped and the words reordered, in one of
/// a few ways (chosen by `n`).
fn paraphrase(question: &str, n: usize) -> String {
    const SWAPS: &[(&str, &str)] = &[
        (" began ", " started "),
        (" begin ", " start "),
        (" large ", " big "),
        (" used ", " employed "),
        (" important ", " significant "),
        (" called ", " known as "),
        (" known as ", " called "),
        (" because ", " since "),
        (" often ", " frequently "),
        (" main ", " principal "),
        (" show ", " demonstrate "),
        (" made ", " produced "),
        (" help ", " assist "),
        (" several ", " a number of "),
        (" happened ", " took place "),
        (" type ", " kind "),
        (" name ", " title "),
        (" year ", " date "),
    ];
    let body = question.trim().trim_end_matches('?').trim();
    let mut text = format!(" {body} ");
    for (from, to) in SWAPS {
        text = text.replace(from, to);
    }
    let text = text.trim().to_string();
    let lowered = {
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect::<String>(),
            None => String::new(),
        }
    };
    match n % 4 {
        0 => format!("quick question: {lowered}?"),
        1 => format!("can you tell me {lowered}"),
        // Reordered: the clause after a comma first, or the question word last.
        2 => match text.split_once(", ") {
            Some((a, b)) => format!("{b}, {a}?"),
            None => match text.split_once(' ') {
                Some((wh, rest)) => format!("{rest} — {}?", wh.to_lowercase()),
                None => format!("{text}?"),
            },
        },
        _ => format!("{lowered}?"),
    }
}

fn ask(
    runtime: &tokio::runtime::Runtime,
    tutor: &Tutor,
    lesson: &str,
    message: &str,
    mode: Mode,
) -> anyhow::Result<Answer> {
    let question = Question::parse(lesson.to_string(), message.to_string(), Vec::new())?
        .with_mode(mode, None)?;
    Ok(runtime.block_on(tutor.ask(question))?.0)
}

/// The tutor's grade of `reply` to quiz item `id` (meaning included, as a learner gets it).
fn grade_by(
    runtime: &tokio::runtime::Runtime,
    tutor: &Tutor,
    lesson: &str,
    id: &str,
    reply: &str,
) -> anyhow::Result<Grade> {
    let question = Question::parse(lesson.to_string(), reply.to_string(), Vec::new())?
        .with_mode(Mode::Quiz, Some(id.to_string()))?;
    let answer = runtime.block_on(tutor.ask(question))?.0;
    Ok(answer.grade.unwrap_or(Grade::NotYet))
}

/// Prints, for tuning, each learner question's best (item share, question share) against the
/// quiz items of its lesson: the true item's for paraphrases, the closest item's for others.
fn shares(tutor: &Tutor, words: &Words, set: &Set) {
    let catalog = tutor.retriever().catalog();
    let weights: HashMap<&str, Weights> = catalog
        .lessons
        .iter()
        .map(|l| (l.id.as_str(), Weights::of(words, l)))
        .collect();
    let of = |lesson: &str, q: &str, item: &QuizItem| {
        weights[lesson].shares(&words.terms(q), &words.terms(&item.question))
    };
    for (lesson, id, q, _) in &set.paraphrases {
        if let Some((_, item)) = set.items.iter().find(|(l, i)| l == lesson && &i.id == id) {
            let (a, b) = of(lesson, q, item);
            eprintln!("SHARE paraphrase {a:.2} {b:.2}");
        }
    }
    // Meaning: each question's similarity to its lesson's quiz questions, with its word shares
    // of the same item: "MEANING kind own? similarity item_share question_share".
    let retriever = tutor.retriever();
    if let Some(semantic) = retriever.semantic() {
        let items: Vec<(&str, &QuizItem)> = catalog
            .lessons
            .iter()
            .flat_map(|l| {
                l.quiz
                    .iter()
                    .flat_map(|q| &q.items)
                    .map(|i| (l.id.as_str(), i))
            })
            .collect();
        let show = |kind: &str, lesson: &str, q: &str, own: Option<&str>| {
            let Some(v) = semantic.question_blocking(q) else {
                return;
            };
            let mut line = format!("MEANING {kind}");
            for (_, item) in items.iter().filter(|(l, _)| *l == lesson) {
                let Some(iv) = retriever.quiz_vector(&item.question) else {
                    continue;
                };
                let similarity = tutor::semantic::similarity(&v, &iv);
                let (a, b) = of(lesson, q, item);
                let mine = own == Some(item.id.as_str());
                let kinds = tutor::quiz::kinds_differ(
                    tutor::quiz::answer_kind(q),
                    tutor::quiz::answer_kind(&item.question),
                );
                line.push_str(&format!(
                    " {}:{similarity:.3}:{a:.2}:{b:.2}:{}",
                    u8::from(mine),
                    u8::from(kinds)
                ));
            }
            let best = items
                .iter()
                .filter(|(l, _)| *l == lesson)
                .filter_map(|(_, item)| {
                    let iv = retriever.quiz_vector(&item.question)?;
                    Some((tutor::semantic::similarity(&v, &iv), item.question.as_str()))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map_or("", |b| b.1);
            eprintln!("{line} | {q} | {best}");
        };
        for (lesson, id, q, _) in &set.paraphrases {
            show("paraphrase", lesson, q, Some(id));
        }
        // Replies: "GRADESIM kind similarity lexical-grade | reply | answer".
        let replies = set
            .replies
            .iter()
            .map(|(l, i, r, k)| {
                let kind = match k {
                    Reply::Gold => "gold",
                    Reply::Partial => "partial",
                    Reply::Other => "other",
                };
                (l, i, r, kind)
            })
            .chain(set.reworded.iter().map(|(l, i, r, right)| {
                (
                    l,
                    i,
                    r,
                    if *right {
                        "reworded-right"
                    } else {
                        "reworded-wrong"
                    },
                )
            }));
        for (lesson, id, reply, kind) in replies {
            let Some((_, item)) = items.iter().find(|(l, i)| l == lesson && &i.id == id) else {
                continue;
            };
            let (Some(v), Some(a)) = (
                semantic.question_blocking(reply),
                retriever.quiz_vector(&item.answer),
            ) else {
                continue;
            };
            let lexical = grade(words, item, reply);
            let similarity = tutor::semantic::similarity(&v, &a);
            eprintln!(
                "GRADESIM {kind} {similarity:.3} {} | {reply} | {}",
                lexical.as_str(),
                item.answer
            );
        }
        for (lesson, _, q, _) in &set.others {
            show("other", lesson, q, None);
        }
    }
    for (lesson, _, q, _) in &set.others {
        let best = set
            .items
            .iter()
            .filter(|(l, _)| l == lesson)
            .map(|(_, i)| of(lesson, q, i))
            .max_by(|x, y| (x.0 + x.1).total_cmp(&(y.0 + y.1)));
        if let Some((a, b)) = best {
            eprintln!("SHARE other {a:.2} {b:.2}");
        }
    }
}

fn contains_any(text: &str, answers: &[String]) -> bool {
    let said = format!(" {} ", plain(text));
    answers
        .iter()
        .map(|a| plain(a))
        .filter(|a| !a.is_empty())
        .any(|a| said.contains(&format!(" {a} ")))
}

/// The set's figures; `without_quiz` is the same lessons with no quiz, to measure what keeping
/// quiz answers out costs other questions whose gold answers are known.
fn run(
    runtime: &tokio::runtime::Runtime,
    tutor: &Tutor,
    without_quiz: Option<&Tutor>,
    set: &Set,
) -> anyhow::Result<serde_json::Value> {
    let show = std::env::var_os("QUIZ_EVAL_SHOW").is_some();
    let words = Words::new(Analyzer::new());
    let mut t = Tally::default();
    if std::env::var_os("QUIZ_EVAL_SHARES").is_some() {
        shares(tutor, &words, set);
    }
    for (lesson, item, q, answers) in &set.paraphrases {
        t.paraphrases += 1;
        let answer = ask(runtime, tutor, lesson, q, Mode::Answer)?;
        if answer.kind == ReplyKind::Hint {
            t.paraphrase_hinted += 1;
        } else if contains_any(&answer.answer, answers) {
            t.leaked += 1;
            if show {
                eprintln!("leaked {lesson}/{item}: {q}\n  -> {}", answer.answer);
            }
        }
    }
    for (lesson, _section, q, gold) in &set.others {
        t.others += 1;
        let answer = ask(runtime, tutor, lesson, q, Mode::Answer)?;
        if let (Some(plain_tutor), false) = (without_quiz, gold.is_empty()) {
            t.others_with_gold += 1;
            let reached = |a: &Answer| a.kind != ReplyKind::Hint && contains_any(&a.answer, gold);
            t.others_gold_reached += usize::from(reached(&answer));
            let plain = ask(runtime, plain_tutor, lesson, q, Mode::Answer)?;
            t.others_gold_reached_without_quiz += usize::from(reached(&plain));
        }
        if answer.kind == ReplyKind::Hint {
            t.others_hinted += 1;
            if show {
                eprintln!("hinted {lesson}: {q}\n  -> {}", answer.answer);
            }
        } else if answer.judged.iter().any(|j| {
            matches!(
                &j.verdict,
                tutor::chat::verify::Verdict::Unsupported(
                    tutor::chat::verify::Unsupported::QuizAnswer(_)
                )
            )
        }) {
            t.others_trimmed += 1;
        }
    }
    let items: HashMap<(&str, &str), &QuizItem> = set
        .items
        .iter()
        .map(|(l, i)| ((l.as_str(), i.id.as_str()), i))
        .collect();
    for (lesson, id, reply, kind) in &set.replies {
        let Some(item) = items.get(&(lesson.as_str(), id.as_str())) else {
            continue;
        };
        let graded = grade_by(runtime, tutor, lesson, id, reply)?;
        if graded != grade(&words, item, reply) && show {
            eprintln!("meaning graded {graded:?}: {reply:?} for {:?}", item.answer);
        }
        match kind {
            Reply::Gold => {
                t.gold += 1;
                t.gold_correct += usize::from(graded == Grade::Correct);
                if graded != Grade::Correct && show {
                    eprintln!("gold graded {graded:?}: {reply:?} for {:?}", item.answer);
                }
            }
            Reply::Partial => {
                t.partial += 1;
                t.partial_not_correct += usize::from(graded != Grade::Correct);
            }
            Reply::Other => {
                t.other_answers += 1;
                t.other_not_yet += usize::from(graded == Grade::NotYet);
                if graded != Grade::NotYet && show {
                    eprintln!("other graded {graded:?}: {reply:?} for {:?}", item.answer);
                }
            }
        }
    }
    for (lesson, id, reply, right) in &set.reworded {
        let graded = grade_by(runtime, tutor, lesson, id, reply)?;
        if *right {
            t.reworded_right += 1;
            t.reworded_right_correct += usize::from(graded == Grade::Correct);
        } else {
            t.reworded_wrong += 1;
            t.reworded_wrong_not_correct += usize::from(graded != Grade::Correct);
        }
        if show && (graded == Grade::Correct) != *right {
            eprintln!("reworded ({right}) graded {graded:?}: {reply:?} for {lesson}/{id}");
        }
    }
    for (lesson, item) in &set.items {
        t.hints += 1;
        let hint = ask(runtime, tutor, lesson, &item.question, Mode::Hint)?;
        let answers = vec![item.answer.clone()];
        let without = hint.kind == ReplyKind::Hint && !contains_any(&hint.answer, &answers);
        t.hint_without_answer += usize::from(without);
        t.hint_right_section +=
            usize::from(hint.citations.iter().any(|c| c.section_id == item.section));
        if show && !without {
            eprintln!("hint gave {:?} away: {}", item.answer, hint.answer);
        }
    }
    let mut integrity = json!({
        "paraphrased_quiz_questions": t.paraphrases,
        "answer_reaching_learner": ratio(t.leaked, t.paraphrases),
        "hinted": ratio(t.paraphrase_hinted, t.paraphrases),
        "other_questions": t.others,
        "others_turned_into_hints": ratio(t.others_hinted, t.others),
        "others_answered_without_a_sentence": ratio(t.others_trimmed, t.others),
    });
    if t.others_with_gold > 0 {
        integrity["others_gold_reaching_learner"] =
            json!(ratio(t.others_gold_reached, t.others_with_gold));
        integrity["others_gold_reaching_learner_without_quiz"] = json!(ratio(
            t.others_gold_reached_without_quiz,
            t.others_with_gold
        ));
    }
    if set.replies.is_empty() && set.items.is_empty() {
        return Ok(json!({ "integrity": integrity }));
    }
    Ok(json!({
        "integrity": integrity,
        "grading": {
            "gold_correct": ratio(t.gold_correct, t.gold),
            "gold_replies": t.gold,
            "other_answer_not_yet": ratio(t.other_not_yet, t.other_answers),
            "partial_not_correct": ratio(t.partial_not_correct, t.partial),
            "reworded_right_correct": ratio(t.reworded_right_correct, t.reworded_right),
            "reworded_right_replies": t.reworded_right,
            "reworded_wrong_not_correct": ratio(t.reworded_wrong_not_correct, t.reworded_wrong),
        },
        "hints": {
            "items": t.hints,
            "answer_absent": ratio(t.hint_without_answer, t.hints),
            "right_section": ratio(t.hint_right_section, t.hints),
        },
    }))
}
