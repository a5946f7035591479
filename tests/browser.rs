//! The widget, the lesson pages and LTI launches in a real browser: headless Chromium driven by
//! Playwright (`tests/browser/`), against the built `tutor` binary, a fake streaming model and a
//! fake LMS on 127.0.0.1. `run.sh` installs Debian's Chromium and the pinned npm packages when
//! missing. Each scenario is a test of its own, so a failure names it; they run one at a time
//! (each starts a browser and a tutor).

use std::process::Command;
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs the one scenario of `file` named `name`, and checks that it ran and passed.
fn scenario(file: &str, name: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/run.sh");
    let pattern = format!("^{}$", regex::escape(name));
    let output = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_tutor"))
        .arg(file)
        .arg(&pattern)
        .output()
        .expect("bash runs the browser tests");
    let tap = String::from_utf8_lossy(&output.stdout);
    let count = |what: &str| -> usize {
        tap.lines()
            .find_map(|l| l.strip_prefix(&format!("# {what} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(
        output.status.success() && count("pass") == 1 && count("fail") == 0,
        "{name}: {}\n{tap}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

macro_rules! scenarios {
    ($($test:ident: $file:literal, $name:literal;)*) => {
        $(
            #[test]
            fn $test() {
                scenario($file, $name);
            }
        )*

        /// Every scenario in the suites has its test here (a new one cannot be left out).
        #[test]
        fn every_browser_scenario_is_run() {
            let listed: Vec<(&str, &str)> = vec![$(($file, $name)),*];
            for file in ["widget.test.mjs", "lti.test.mjs"] {
                let path = format!("{}/tests/browser/{file}", env!("CARGO_MANIFEST_DIR"));
                let source = std::fs::read_to_string(&path).expect("the suite");
                let names: Vec<&str> = source
                    .lines()
                    .filter_map(|l| l.strip_prefix("test(\""))
                    .filter_map(|l| l.split("\", {").next())
                    .collect();
                assert!(!names.is_empty(), "{file} has scenarios");
                for name in names {
                    assert!(listed.contains(&(file, name)), "{file}: `{name}` has no test in tests/browser.rs");
                }
            }
        }
    };
}

scenarios! {
    an_answer_streams_in_cites_and_jumps_to_its_section:
        "widget.test.mjs", "an answer streams in, cites the lesson, and its citation jumps to the host page's section";
    a_reload_keeps_the_conversation_and_clear_empties_it:
        "widget.test.mjs", "a reload keeps the conversation, and Clear empties it";
    an_off_topic_question_is_refused_without_the_model:
        "widget.test.mjs", "an off-topic question is refused, visibly, without asking the model";
    an_answer_is_rated_by_keyboard_and_the_rating_outlives_a_reload:
        "widget.test.mjs", "an answer is rated by keyboard, with a comment, and the rating outlives a reload";
    the_widget_works_by_keyboard_alone:
        "widget.test.mjs", "the widget works by keyboard alone";
    hostile_host_css_changes_nothing:
        "widget.test.mjs", "hostile host CSS changes nothing in the widget";
    the_widget_and_page_have_no_serious_accessibility_violations:
        "widget.test.mjs", "the open widget and the lesson page have no serious accessibility violations";
    the_lesson_page_is_served_with_its_sections_and_the_widget:
        "widget.test.mjs", "the lesson page is served with its sections and the widget";
    screenshots_on_a_phone_and_a_desktop:
        "widget.test.mjs", "screenshots of the widget on a phone and on a desktop";
    the_widget_speaks_the_pages_language:
        "widget.test.mjs", "the widget speaks the page's language, every word of it";
    a_host_page_places_the_tutor_inline:
        "widget.test.mjs", "a host page places the tutor inline, in a named element or where its script is";
    on_lesson_pages_the_tutor_never_covers_the_text:
        "widget.test.mjs", "on lesson pages the tutor sits beside the text or after it, and never covers it";
    events_split_across_chunks_still_make_one_answer:
        "widget.test.mjs", "events split across network chunks, CRLF lines and keep-alives still make one answer";
    failures_show_a_friendly_message_with_retry:
        "widget.test.mjs", "failures show a friendly message with Retry, and never a dead panel";
    feedback_that_cannot_be_sent_says_so:
        "widget.test.mjs", "feedback that cannot be sent says so, and the panel goes on working";
    quiz_me_and_hint_work_by_keyboard_and_keep_the_score:
        "widget.test.mjs", "Quiz me and Hint work by keyboard, grade the reply, keep the score, and pass axe";
    after_an_lms_launch_the_widget_sends_its_session_token:
        "widget.test.mjs", "after an LMS launch the widget sends its session token, not a key";
    a_learner_launched_from_the_lms_gets_the_lesson_in_an_iframe:
        "lti.test.mjs", "a learner launched from the LMS gets the lesson and answers, inside the course page's iframe";
    an_instructor_picks_a_lesson_and_the_platform_verifies_the_link:
        "lti.test.mjs", "an instructor picks a lesson and the platform receives a link it can verify";
}
