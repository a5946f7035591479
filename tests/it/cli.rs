//! The `tutor` binary, run as an author would, in a temporary folder.

use crate::helpers::{PATIENCE, eventually, eventually_true, sample_lessons, watcher_looked_again};
use std::path::Path;
use std::process::{Command, Output};

fn tutor(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tutor"))
        .current_dir(dir)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("TUTOR_MODEL")
        .env_remove("TUTOR_LESSONS")
        .env_remove("TUTOR_INDEX")
        .args(args)
        .output()
        .expect("tutor runs")
}

/// Reads a `tutor serve` child's stderr on a thread until it says where it listens (it binds
/// port 0, so no port is picked first and bound later); returns that base URL and the thread,
/// which returns the whole log once the child exits.
pub(crate) fn listening(
    child: &mut std::process::Child,
) -> (String, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(base) = line.strip_prefix("tutor: listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(base.to_string());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let base = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the server says where it listens");
    (base, reader)
}

/// Ends a server the test started if the test fails before stopping it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// Starts `tutor serve` over the sample lessons in `dir` on a free port, with `env` set and the
/// developer's model settings removed, and waits until it is ready (a first start embeds the
/// lessons for the semantic model: seconds in a test build). Returns the child, the guard that
/// kills it, its base URL and the thread collecting its log.
async fn serve_ready(
    dir: &Path,
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    KillOnDrop,
    String,
    std::thread::JoinHandle<String>,
) {
    serve_ready_over(dir, &sample_lessons(), env).await
}

/// [`serve_ready`] over the lessons in `lessons`.
async fn serve_ready_over(
    dir: &Path,
    lessons: &Path,
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    KillOnDrop,
    String,
    std::thread::JoinHandle<String>,
) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tutor"));
    command
        .current_dir(dir)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("TUTOR_MODEL");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .args([
            "--lessons",
            lessons.to_str().expect("path"),
            "--index",
            "idx",
            "serve",
            "--addr",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tutor starts");
    let stop = KillOnDrop(child.id());
    let (base, log) = listening(&mut child);
    let client = reqwest::Client::new();
    let ready = eventually_true(PATIENCE * 2, async || {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "the server became ready");
    (child, stop, base, log)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn index_then_index_again_rewrites_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = sample_lessons();
    let lessons = lessons.to_str().expect("utf-8 path");
    let first = tutor(
        dir.path(),
        &["--lessons", lessons, "--index", "idx", "index"],
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("built from scratch"));
    let second = tutor(
        dir.path(),
        &["--lessons", lessons, "--index", "idx", "index"],
    );
    assert!(
        text(&second.stdout).contains("0 added, 0 updated, 0 removed"),
        "{}",
        text(&second.stdout)
    );
}

#[test]
fn ask_prints_the_answer_citations_and_the_gate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = sample_lessons();
    let lessons = lessons.to_str().expect("utf-8 path");
    let out = tutor(
        dir.path(),
        &[
            "--lessons",
            lessons,
            "--index",
            "idx",
            "ask",
            "--lesson",
            "the-policy-layer",
            "Can",
            "a",
            "country",
            "restrict",
            "exporting",
            "model",
            "weights?",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("[1]") || stdout.contains("[2]"), "{stdout}");
    assert!(stdout.contains("gate: answer"), "{stdout}");
    assert!(
        stdout.contains("the-policy-layer#export-controls-on-model-weights"),
        "{stdout}"
    );

    let out = tutor(
        dir.path(),
        &[
            "--lessons",
            lessons,
            "--index",
            "idx",
            "ask",
            "--json",
            "--lesson",
            "the-policy-layer",
            "Who painted the Mona Lisa?",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(json["refused"], true);
    assert_eq!(json["retrieval"]["gate"]["covered"], false);

    let out = tutor(
        dir.path(),
        &[
            "--lessons",
            lessons,
            "--index",
            "idx",
            "ask",
            "--lesson",
            "nope",
            "hi",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no lesson `nope`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_passes_on_the_sample_course() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = sample_lessons();
    let out = tutor(
        dir.path(),
        &[
            "--lessons",
            lessons.to_str().expect("path"),
            "--index",
            "idx",
            "check",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn check_fails_and_names_the_broken_file_and_the_failing_question() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = dir.path().join("lessons");
    std::fs::create_dir(&lessons).expect("mkdir");
    std::fs::write(
        lessons.join("good.md"),
        "---\nid: good\ntitle: Good\n---\n## Tides\n\nThe moon's gravity pulls the oceans into tides.\n",
    )
    .expect("write");
    std::fs::write(
        lessons.join("good.questions.toml"),
        "[[questions]]\nq = \"What causes tides?\"\nsection = \"tides\"\nmust = [\"the Moon's  gravity\"]\nmust_not = [\"sun\"]\n\n[[questions]]\nq = \"Why do oceans have tides?\"\nrefuse = true\n\n[[questions]]\nq = \"What pulls the oceans?\"\nsection = \"tides\"\nmust = [\"the sun\", \"gravity\"]\nmust_not = [\"oceans\"]\n",
    )
    .expect("write");
    std::fs::write(
        lessons.join("broken.md"),
        "---\nid: broken\ntitle: [oops\n---\n## A\n\nText.\n",
    )
    .expect("write");
    let out = tutor(dir.path(), &["check"]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("broken.md:3:"), "{stdout}");
    assert!(stdout.contains("1 passed, 2 failed"), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    // The phrase check names what was missing and what should not have been said.
    assert!(
        stdout.contains("missing \"the sun\", says \"oceans\""),
        "{stdout}"
    );

    // `tutor index` indexes the good lesson and still exits non-zero, naming the broken one.
    let out = tutor(dir.path(), &["index"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("indexed 1 lessons"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("broken.md:3:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_judges_follow_ups_asked_after_earlier_questions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = dir.path().join("lessons");
    std::fs::create_dir(&lessons).expect("mkdir");
    std::fs::write(
        lessons.join("steps.md"),
        "---\nid: steps\ntitle: Bread\n---\n## Making bread\n\nTo make bread, follow these steps:\n\n- Mix flour, water and yeast.\n- Knead the dough for ten minutes.\n- Bake it in a hot oven.\n",
    )
    .expect("write");
    std::fs::write(
        lessons.join("steps.questions.toml"),
        "[[questions]]\nq = \"and the second one?\"\nafter = [\"What are the steps to make bread?\"]\nsection = \"making-bread\"\nmust = [\"knead the dough\"]\nmust_not = [\"bake\"]\n",
    )
    .expect("write");
    let out = tutor(dir.path(), &["check"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_lets_streams_in_flight_finish_and_exits_zero() {
    use crate::helpers::{Behaviour, FakeModel, parse_sse};
    use std::time::Duration;
    let model = FakeModel::start(Behaviour::SlowStream {
        chunks: 10,
        delay: Duration::from_millis(100),
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://{}/v1", model.addr);
    let (mut child, _stop, base, _log) = serve_ready(
        dir.path(),
        &[
            ("OPENAI_BASE_URL", url.as_str()),
            ("OPENAI_API_KEY", "test"),
            ("TUTOR_MODEL", "fake-model"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let mut stream = client
        .post(format!("{base}/v1/chat"))
        .header("accept", "text/event-stream")
        .json(&serde_json::json!({"lesson_id": "hybrid-routing", "message": "What are fallbacks for?"}))
        .send()
        .await
        .expect("stream starts");
    let mut body =
        String::from_utf8_lossy(&stream.chunk().await.expect("reads").expect("first event"))
            .into_owned();

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    // The listener closes once the signal is handled: new connections are refused from then on.
    let refused = eventually_true(Duration::from_secs(10), async || {
        reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    })
    .await;
    assert!(refused, "no new connections after SIGTERM");

    while let Some(chunk) = stream
        .chunk()
        .await
        .expect("the stream in flight keeps going")
    {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = parse_sse(&body);
    assert_eq!(
        events.last().expect("events").0,
        "done",
        "the answer in flight finished: {body}"
    );
    let status = child.wait().expect("exits");
    assert!(status.success(), "exit status {status}");
}

const LTI_TOML: &str = r#"
[lti]
url = "https://tutor.example.edu"
keys_dir = "keys"

[[lti.platforms]]
issuer = "https://moodle.example.edu"
client_id = "abc"
auth_url = "https://moodle.example.edu/mod/lti/auth.php"
jwks_url = "https://moodle.example.edu/mod/lti/certs.php"
deployments = ["1"]
"#;

#[test]
fn lti_key_generates_the_first_key_and_rotation_adds_a_signing_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("tutor.toml"), LTI_TOML).expect("config");
    let first = tutor(dir.path(), &["lti-key"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let listed = text(&first.stdout);
    let kids: Vec<&str> = listed.lines().filter(|l| l.contains('\t')).collect();
    assert_eq!(kids.len(), 1, "{listed}");
    assert!(kids[0].ends_with("\tsigns"));
    assert!(listed.contains("https://tutor.example.edu/.well-known/jwks.json"));
    let files: Vec<_> = std::fs::read_dir(dir.path().join("keys"))
        .expect("keys dir")
        .flatten()
        .collect();
    assert_eq!(files.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = files[0].metadata().expect("metadata").permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by its owner only"
        );
    }

    let rotated = tutor(dir.path(), &["lti-key", "--new"]);
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    let listed = text(&rotated.stdout);
    let lines: Vec<&str> = listed.lines().filter(|l| l.contains('\t')).collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert_eq!(
        lines[0],
        kids[0].replace("signs", "published"),
        "the old key stays published"
    );
    assert!(lines[1].ends_with("\tsigns"));

    // Copying the folder elsewhere may give the old key the newer modification time: the
    // newer key (by the time in its name) still signs.
    let old_key = std::fs::File::options()
        .append(true)
        .open(files[0].path())
        .expect("old key");
    old_key
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .expect("touch");
    let again = tutor(dir.path(), &["lti-key"]);
    let listed_again = text(&again.stdout);
    let lines_again: Vec<&str> = listed_again.lines().filter(|l| l.contains('\t')).collect();
    assert_eq!(lines_again, lines, "{listed_again}");
}

#[test]
fn a_broken_lti_section_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("tutor.toml"),
        LTI_TOML.replace("https://tutor.example.edu", "not a url"),
    )
    .expect("config");
    let output = tutor(dir.path(), &["lti-key"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("lti.url"),
        "{}",
        text(&output.stderr)
    );
    let no_lti = tempfile::tempdir().expect("temp dir");
    let output = tutor(no_lti.path(), &["lti-key"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("[lti]"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn serve_with_lti_and_no_keys_refuses_to_start_unless_told_to_run_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("tutor.toml"), LTI_TOML).expect("config");
    let lessons = sample_lessons();
    let out = tutor(
        dir.path(),
        &[
            "--lessons",
            lessons.to_str().expect("path"),
            "--index",
            "idx",
            "serve",
            "--addr",
            "127.0.0.1:0",
        ],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no API keys are configured") && stderr.contains("allow_open_api"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_with_lti_generates_its_key_publishes_it_and_warns_when_the_api_is_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("tutor.toml"),
        format!("allow_open_api = true\n{LTI_TOML}"),
    )
    .expect("config");
    let lessons = sample_lessons();
    // Started with the common soft limit of 1,024 open files (the shell execs into the tutor,
    // so the pid is the tutor's).
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 1024 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_tutor"))
        .current_dir(dir.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("TUTOR_MODEL")
        .args([
            "--lessons",
            lessons.to_str().expect("path"),
            "--index",
            "idx",
        ])
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tutor starts");
    let _stop = KillOnDrop(child.id());
    let (base, log) = listening(&mut child);
    let jwks = eventually(PATIENCE, async || {
        let response = reqwest::get(format!("{base}/.well-known/jwks.json"))
            .await
            .ok()?;
        Some(response.json::<serde_json::Value>().await.expect("JSON"))
    })
    .await
    .expect("the key set is served");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0]["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(dir.path().join("keys").is_dir(), "generated on first run");

    // The open-files limit was raised to the hard limit.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).expect("limits");
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line")
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect();
    assert_eq!(open_files[0], open_files[1], "soft = hard: {limits}");

    // Request values reach the log escaped: no forged line, no terminal escape.
    let hostile = reqwest::get(format!(
        "{base}/lti/login?iss=x%1B%5B2J%0AFORGED-LINE%E2%80%A8&login_hint=a&target_link_uri=x"
    ))
    .await
    .expect("sent");
    assert!(hostile.status().is_client_error(), "{}", hostile.status());

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    child.wait().expect("tutor exits");
    let log = log.join().expect("the log reader");
    assert!(log.contains("LTI 1.3 enabled"), "{log}");
    assert!(log.contains("no API keys are configured"), "{log}");
    assert!(log.contains("LTI launch rejected"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "a terminal escape reached the log: {log:?}"
    );
    assert!(!log.contains('\u{2028}'), "{log:?}");
    assert!(
        log.lines().all(|l| !l.starts_with("FORGED-LINE")),
        "a forged line reached the log: {log}"
    );
    assert!(log.contains("\\u{a}FORGED-LINE"), "{log}");
}

#[test]
fn ask_takes_a_history_file_for_follow_ups_and_names_a_bad_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = sample_lessons();
    let lessons = lessons.to_str().expect("utf-8 path");
    std::fs::write(
        dir.path().join("history.json"),
        r#"[{"role": "user", "content": "Which questions should I work through to choose a deployment?"},
            {"role": "assistant", "content": "Work through these questions in order. May the data leave your network?"}]"#,
    )
    .expect("write history");
    let args = |history: &'static str| {
        vec![
            "--lessons",
            lessons,
            "--index",
            "idx",
            "ask",
            "--lesson",
            "choosing-a-deployment",
            "--history",
            history,
            "and the second one?",
        ]
    };
    let out = tutor(dir.path(), &args("history.json"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("very best reasoning"), "{stdout}");
    assert!(stdout.contains("a-decision-guide"), "{stdout}");

    std::fs::write(dir.path().join("bad.json"), r#"[{"role": "bot"}]"#).expect("write");
    let out = tutor(dir.path(), &args("bad.json"));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.json:1"), "{stderr}");
    assert!(stderr.contains("history"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_answers_keeps_every_record_of_the_conversation_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("log.sqlite");
    let log_db = log.display().to_string();
    let (mut child, _stop, base, log_lines) =
        serve_ready(dir.path(), &[("TUTOR_LOG_DB", log_db.as_str())]).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..10 {
        let answer: serde_json::Value = client
            .post(format!("{base}/v1/chat"))
            .json(&serde_json::json!({"lesson_id": "hybrid-routing",
                                      "message": format!("What are fallbacks for? ({n})")}))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        ids.push(answer["answer_id"].as_str().expect("an id").to_string());
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("waits")
        .expect("exits");
    assert!(status.success(), "{status}");
    let stderr = log_lines.join().expect("log");
    assert!(stderr.contains("conversation log written"), "{stderr}");
    assert!(
        !stderr.contains("ERROR"),
        "a graceful stop logs no error: {stderr}"
    );
    let store = tutor::conversation_log::LogTarget::parse(&log.display().to_string())
        .expect("target")
        .open()
        .expect("opens");
    let records = store.records(0, None).expect("records");
    for id in &ids {
        assert!(
            records.iter().any(|r| r.answer_id == *id),
            "answer {id} is in the log ({} records)",
            records.len()
        );
    }
}

/// `tutor check` (and `ask`) never change what learners get: they work on a scratch copy of the
/// index. Only `tutor index` publishes, and the running server's reload log names the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_never_publishes_an_edit_and_index_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = dir.path().join("lessons");
    std::fs::create_dir(&lessons).expect("lessons dir");
    for entry in std::fs::read_dir(sample_lessons()).expect("sample lessons") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), lessons.join(entry.file_name())).expect("copies");
    }
    let (mut child, _stop, base, log) = serve_ready_over(dir.path(), &lessons, &[]).await;
    let client = reqwest::Client::new();
    let question = "What do quokkas do on Tuesdays?";
    let refused = || async {
        let answer: serde_json::Value = client
            .post(format!("{base}/v1/chat"))
            .json(&serde_json::json!({"lesson_id": "hybrid-routing", "message": question}))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        answer["refused"].as_bool().expect("refused")
    };
    assert!(refused().await, "nothing about quokkas yet");
    let published = std::fs::read_to_string(dir.path().join("idx/CURRENT")).expect("CURRENT");

    // An edit with a golden question that fails.
    let page = lessons.join("hybrid-routing.md");
    let lesson = std::fs::read_to_string(&page).expect("lesson");
    std::fs::write(
        &page,
        format!(
            "{lesson}\n## Quokkas\n\nOn Tuesdays the quokkas route every request to the cheapest model.\n"
        ),
    )
    .expect("edit");
    let golden = lessons.join("hybrid-routing.questions.toml");
    let questions = std::fs::read_to_string(&golden).expect("questions");
    std::fs::write(
        &golden,
        format!("{questions}\n[[questions]]\nq = \"What do quokkas eat?\"\nsection = \"quokkas\"\nmust = [\"eucalyptus\"]\n"),
    )
    .expect("golden");
    let args = [
        "--lessons",
        "lessons",
        "--index",
        "idx",
        "check",
        "--lesson",
        "hybrid-routing",
    ];
    let out = tutor(dir.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
    assert!(
        text(&out.stdout).contains("What do quokkas eat?"),
        "{}",
        text_of(&out)
    );
    // The check saw the edit: the new section answered its own question.
    let ask = tutor(
        dir.path(),
        &[
            "--lessons",
            "lessons",
            "--index",
            "idx",
            "ask",
            "--lesson",
            "hybrid-routing",
            question,
        ],
    );
    assert!(ask.status.success(), "{}", text_of(&ask));
    assert!(text(&ask.stdout).contains("quokkas"), "{}", text_of(&ask));

    // Nothing was published: the same version, no scratch left, the server answers as before.
    let after = std::fs::read_to_string(dir.path().join("idx/CURRENT")).expect("CURRENT");
    assert_eq!(after, published);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("idx"))
        .expect("idx")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".build"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The server looks for a new version again, and finds none.
    assert!(
        watcher_looked_again(&client, &base).await,
        "the server keeps looking for a new index version"
    );
    assert!(
        refused().await,
        "an edit that was only checked is not served"
    );

    // `tutor index` publishes; the server reloads and says what changed.
    let out = tutor(
        dir.path(),
        &["--lessons", "lessons", "--index", "idx", "index"],
    );
    assert!(out.status.success(), "{}", text_of(&out));
    let served = eventually_true(PATIENCE, async || !refused().await).await;
    assert!(served, "the published edit is served");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let _ = child.wait();
    let log = log.join().expect("log");
    let reloaded = log
        .lines()
        .find(|l| l.contains("lessons reloaded"))
        .unwrap_or_else(|| panic!("a reload: {log}"));
    assert!(
        reloaded.contains("added=0")
            && reloaded.contains("updated=1")
            && reloaded.contains("removed=0"),
        "{reloaded}"
    );
}

fn text_of(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// `deploy/replica.toml` starts as shipped: it parses, and its keys (none until an operator
/// adds one) are well formed, so `serve` is not stopped by a placeholder.
#[test]
fn the_shipped_replica_configuration_loads_as_it_is() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/replica.toml");
    let config = tutor::config::Config::load_from(
        &tutor::config::Overrides {
            config: Some(path),
            ..Default::default()
        },
        &|_| None,
    )
    .expect("the shipped configuration loads");
    tutor::http::Keys::new(&config.keys).expect("its keys are well formed");
    assert!(config.index_read_only);
    assert!(
        config.limits.is_some(),
        "limits are on behind a load balancer"
    );
}
