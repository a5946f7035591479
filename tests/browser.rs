//! The widget, the lesson pages and LTI launches in a real browser: headless Chromium driven by
//! Playwright (`tests/browser/`), against the built `tutor` binary, a fake streaming model and a
//! fake LMS on 127.0.0.1. `run.sh` installs Debian's Chromium and the pinned npm packages when
//! missing.

use std::process::Command;

#[test]
fn the_widget_streams_cites_persists_and_is_accessible_in_chromium() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/run.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_tutor"))
        .status()
        .expect("bash runs the browser tests");
    assert!(status.success(), "the browser tests failed: {status}");
}
