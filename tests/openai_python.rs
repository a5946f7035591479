//! The tutor as an OpenAI-compatible model, used by the official `openai` Python package
//! (installed from PyPI by `tests/python/run.sh` when missing).

use std::process::Command;

#[test]
fn the_official_openai_python_client_lists_models_and_chats_with_a_lesson() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/run.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_tutor"))
        .status()
        .expect("bash runs the Python client test");
    assert!(
        status.success(),
        "the openai Python client test failed: {status}"
    );
}
