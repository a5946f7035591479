//! The tutor as an OpenAI-compatible model, used by the official `openai` Python package
//! (installed from PyPI by `tests/python/run.sh` when missing). Each check of
//! `tests/python/openai_client.py` is a test of its own, so a failure names it; they run one at
//! a time (the first may install the package).

use std::process::Command;
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn check(name: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_tutor"))
        .arg(name)
        .output()
        .expect("bash runs the Python client test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.lines().any(|l| l == format!("ok {name}")),
        "{name}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        /// Every check in the script has its test here.
        #[test]
        fn every_python_check_is_run() {
            let listed = [$(stringify!($name)),*];
            let source = std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/python/openai_client.py"
            ))
            .expect("the script");
            let defined: Vec<&str> = source
                .lines()
                .filter_map(|l| l.strip_prefix("def check_")?.split('(').next())
                .collect();
            assert!(!defined.is_empty());
            for name in defined {
                assert!(listed.contains(&name), "`{name}` has no test in tests/openai_python.rs");
            }
        }
    };
}

checks! {
    lessons_are_listed_as_models,
    an_answer_is_grounded_and_cited_whatever_the_system_prompt_says,
    a_question_the_lesson_does_not_cover_is_refused,
    a_stream_starts_with_the_role_and_ends_with_usage,
    an_unknown_model_is_not_found,
}
