//! Any text a learner or a model writes gets an answer or a clean error. Every function that
//! cuts text is fed arbitrary Unicode (combining marks, characters of two to four bytes,
//! right-to-left scripts, emoji, byte-order marks, empty and very long text) and must neither
//! panic nor break what it promises; then the same text goes through `/v1/chat` from the learner's
//! side and from the model's.

use crate::helpers::{Behaviour, FakeModel, spawn_app};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use std::sync::Mutex;
use tutor::chat::citations::{parse_marker, take_markers, with_markers};
use tutor::chat::release::{Judge, Release, sentence_end};
use tutor::chat::verify::{Context, Source, Verdict, Verifier};
use tutor::index::Analyzer;
use tutor::index::{WordSet, filler_terms};
use tutor::text;

const LESSON: &str = "hybrid-routing";

/// Pieces that have broken text code before, or could: multi-byte letters where a byte offset
/// counted for ASCII lands, combining marks, scripts written right to left, joined emoji, and
/// the punctuation, markers and particles the cutting code looks for.
const PIECES: &[&str] = &[
    " ",
    ". ",
    "! ",
    "? ",
    "\n",
    "\n\n",
    ", ",
    ": ",
    "\t",
    "\u{a0}",
    "\u{202f}",
    "\u{feff}",
    "[1]",
    "[2, 3]",
    "[1][2]",
    "[",
    "]",
    "[12",
    "[999999]",
    "(3)",
    "e\u{301}",
    "\u{301}",
    "\u{20e3}",
    "ö",
    "Ö",
    "ß",
    "ẞ",
    "İ",
    "\u{212a}",
    "€",
    "𝔘",
    "😀",
    "👩\u{200d}💻",
    "🇫🇷",
    "שלום",
    "مرحبا",
    "\u{200f}",
    "\u{202e}",
    "日本語",
    "Ελληνικά",
    "Yes, ",
    "No. ",
    "Sí, ",
    "Möngke ",
    "Ögedei's ",
    "Also, ",
    "e.g. ",
    "Dr. ",
    "U.S. ",
    "3.5",
    "200,000",
    "32k ",
    "7B ",
    "- ",
    "* ",
    "1. ",
    "2) ",
    "| a | b |\n",
    "**",
    "`",
    "> ",
    "## ",
    "NOT IN LESSON",
];

fn unicode_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => prop::sample::select(PIECES).prop_map(str::to_string),
        2 => "[a-zA-Z]{1,9}",
        1 => "\\PC{1,6}",
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|pieces| pieces.concat())
}

/// Where `part` (a slice of `text`) starts in it.
fn offset_in(text: &str, part: &str) -> usize {
    part.as_ptr() as usize - text.as_ptr() as usize
}

struct Lesson {
    analyzer: Analyzer,
    filler: WordSet,
    sources: Vec<Source>,
    context: Context,
}

impl Lesson {
    fn new() -> Lesson {
        let analyzer = Analyzer::new();
        let sources = vec![
            Source::new(
                "Fallbacks",
                "A fallback answers when the first model fails. Möngke Khan succeeded Ögedei's son; 200,000 requests a day reach the cheaper model [sic].",
            ),
            Source::new(
                "Costs",
                "Sí, el modelo pequeño cuesta menos. Routing keeps 3.5 percent of traffic on the large model.",
            ),
        ];
        let context = Context::new(&analyzer, "What are fallbacks for?", "Hybrid routing");
        Lesson {
            filler: filler_terms(&analyzer),
            analyzer,
            sources,
            context,
        }
    }
}

impl Judge for Lesson {
    fn judge(&self, sentence: &str, cited: &[usize]) -> Verdict {
        Verifier::new(&self.analyzer, &self.filler, &self.sources, &self.context)
            .judge(sentence, cited)
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn sentences_words_and_numbers_stay_inside_the_text() {
    runner(512)
        .run(&unicode_text(), |text| {
            let mut last = 0;
            for sentence in text::split_sentences(&text) {
                prop_assert!(!sentence.is_empty());
                prop_assert_eq!(sentence, sentence.trim());
                let at = offset_in(&text, sentence);
                prop_assert!(at >= last, "sentences in order");
                last = at + sentence.len();
            }
            for (at, word) in text::words(&text) {
                prop_assert!(text.get(at..).is_some_and(|rest| rest.starts_with(word)));
            }
            for number in text::numbers(&text) {
                prop_assert!(number.start <= number.end && number.end <= text.len());
                prop_assert!(text.is_char_boundary(number.start));
                prop_assert!(text.is_char_boundary(number.end));
            }
            for line in text.lines() {
                prop_assert!(line.ends_with(text::without_list_marker(line)));
            }
            for (unit, _) in text::units_of(&text) {
                prop_assert!(text.contains(unit));
            }
            let _ = text::is_negated(&text);
            let _ = text::skeleton(&text::normalise(&text));
            Ok(())
        })
        .expect("text cutting holds");
}

#[test]
fn citation_markers_come_out_whole_and_go_back_at_the_end() {
    runner(512)
        .run(&unicode_text(), |text| {
            let _ = parse_marker(&text);
            let (plain, cited) = take_markers(&text);
            prop_assert_eq!(plain.as_str(), plain.trim());
            // What is left is plain text: taking markers again finds none.
            let (again, none) = take_markers(&plain);
            prop_assert_eq!(&again, &plain);
            prop_assert!(none.is_empty(), "{plain:?} still cites {none:?}");
            let marked = with_markers(&plain, &cited);
            let (back, cited_back) = take_markers(&marked);
            // Put back at the end, the markers change no word of the sentence.
            let words = |t: &str| {
                text::words(t)
                    .map(|(_, w)| w.to_string())
                    .collect::<Vec<_>>()
            };
            prop_assert_eq!(words(&back), words(&plain));
            prop_assert_eq!(cited_back, cited);
            let _ = tutor::chat::second::parse_opinions(&text, 3)
                .into_iter()
                .map(|(claim, _)| assert!(claim < 3))
                .count();
            let _ = tutor::conversation_log::redact(&text);
            let _ = tutor::prompts::fence(&text);
            Ok(())
        })
        .expect("markers hold");
}

/// The release shows the same text however the model's stream is cut, and never takes back
/// what it showed; every sentence end it finds is a character boundary.
#[test]
fn the_release_never_takes_back_what_it_showed_however_the_stream_is_cut() {
    let lesson = Lesson::new();
    let strategy = (
        unicode_text(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    );
    runner(256)
        .run(&strategy, |(text, cuts)| {
            for at_end in [false, true] {
                if let Some(end) = sentence_end(&text, at_end) {
                    prop_assert!(end <= text.len() && text.is_char_boundary(end));
                }
            }
            let mut whole = Release::new(false);
            let mut expected = whole.push(&text, &lesson);
            expected.push_str(&whole.finish(&lesson));

            let bounds: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| bounds[c.index(bounds.len())]).collect();
            cuts.sort_unstable();
            cuts.push(text.len());
            let mut release = Release::new(false);
            let mut shown = String::new();
            let mut from = 0;
            for cut in cuts {
                let piece = text.get(from..cut).expect("cuts on boundaries");
                shown.push_str(&release.push(piece, &lesson));
                // What was shown is what the pieces returned, and only grows.
                prop_assert_eq!(release.shown(), shown.as_str());
                from = cut;
            }
            shown.push_str(&release.finish(&lesson));
            prop_assert_eq!(&shown, &expected, "cut differently, shown differently");
            Ok(())
        })
        .expect("the release holds");
}

#[test]
fn any_sentence_gets_a_verdict() {
    let lesson = Lesson::new();
    let strategy = (unicode_text(), prop::collection::vec(0usize..5, 0..3));
    runner(512)
        .run(&strategy, |(sentence, cited)| {
            let verdict = lesson.judge(&sentence, &cited);
            // Nothing in the lesson is said by an empty sentence.
            if sentence.trim().is_empty() {
                prop_assert!(!matches!(verdict, Verdict::Supported { .. }), "{verdict:?}");
            }
            Ok(())
        })
        .expect("verdicts");
}

#[test]
fn very_long_text_is_cut_without_a_panic() {
    let long: String = PIECES.iter().cycle().take(40_000).copied().collect();
    assert!(long.len() > 100_000, "{}", long.len());
    let sentences = text::split_sentences(&long);
    assert!(sentences.len() > 100);
    let lesson = Lesson::new();
    let mut release = Release::new(false);
    let mut shown = release.push(&long, &lesson);
    shown.push_str(&release.finish(&lesson));
    let (plain, _) = take_markers(&long);
    assert!(plain.len() < long.len());
    assert!(!text::numbers(&long).is_empty());
}

/// What the model says in the next request (the fake model reads it).
static MODEL_SAYS: Mutex<String> = Mutex::new(String::new());

fn says_what_it_is_told(_system: &str, _user: &str) -> String {
    MODEL_SAYS.lock().expect("lock").clone()
}

/// The status and body of a JSON chat, or the events of a streamed one, whatever the text.
async fn ask(app: &crate::helpers::App, body: Value) -> Result<(), TestCaseError> {
    let (status, reply) = app.chat(body.clone()).await;
    prop_assert!(
        status == 200 || (400..500).contains(&status),
        "{status} for {body}: {reply}"
    );
    if status != 200 {
        prop_assert!(
            reply["error"]["code"].is_string(),
            "the error shape: {reply}"
        );
    }
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (status, events) = app.chat_stream(streamed.clone()).await;
    if status == 200 {
        let last = events.last().map(|(name, _)| name.as_str());
        prop_assert!(
            last == Some("done"),
            "a stream ends with done, not {last:?}: {streamed} {events:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_learner_message_gets_an_answer_or_a_clean_error() {
    let app = spawn_app(None).await;
    let (_, asked) = app.chat(json!({"lesson_id": LESSON, "mode": "quiz"})).await;
    let item = asked["quiz"]["item_id"]
        .as_str()
        .expect("an item")
        .to_string();
    let mut runner = runner(64);
    let mut cases = Vec::new();
    for _ in 0..64 {
        cases.push(
            unicode_text()
                .new_tree(&mut runner)
                .expect("a case")
                .current(),
        );
    }
    cases.push(String::new());
    cases.push("é".repeat(1999));
    for message in cases {
        for body in [
            json!({"lesson_id": LESSON, "message": message}),
            json!({"lesson_id": LESSON, "mode": "hint", "message": message}),
            json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": item, "message": message}),
            json!({"lesson_id": LESSON, "message": "And the second one?",
                   "history": [{"role": "user", "content": message},
                               {"role": "assistant", "content": message}]}),
        ] {
            ask(&app, body).await.expect("answered");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_model_text_is_verified_and_released_or_refused() {
    let model = FakeModel::start(Behaviour::Script(says_what_it_is_told)).await;
    let app = spawn_app(Some(&model)).await;
    let mut runner = runner(48);
    let mut cases = vec![
        "Möngke Khan succeeded Ögedei's son [1].".to_string(),
        "Sí, a fallback answers when the first model fails [1].".to_string(),
        "Yes, 200,000 requests a day [2].".to_string(),
    ];
    for _ in 0..48 {
        cases.push(
            unicode_text()
                .new_tree(&mut runner)
                .expect("a case")
                .current(),
        );
    }
    for text in cases {
        *MODEL_SAYS.lock().expect("lock") = text.clone();
        let (status, reply) = app
            .chat(json!({"lesson_id": LESSON, "message": "What are fallbacks for?"}))
            .await;
        assert_eq!(status, 200, "the model said {text:?}: {reply}");
        assert!(reply["answer"].is_string(), "{reply}");
        ask(
            &app,
            json!({"lesson_id": LESSON, "message": "What are fallbacks for?"}),
        )
        .await
        .expect("answered");
    }
}
