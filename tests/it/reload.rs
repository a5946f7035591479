//! Live reload: lessons and prompts edited while the tutor serves, under load.

use crate::helpers::{
    PATIENCE, eventually_true, sample_lessons, spawn_app_with, watcher_looked_again,
};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

async fn wait_for(check: impl AsyncFnMut() -> bool) -> bool {
    eventually_true(PATIENCE, check).await
}

/// A tutor over `lessons` (and `prompts`, when given) with its watcher following what
/// `follow` names every `every`; returns the app and the configuration it runs with.
async fn watched(
    lessons: &Path,
    prompts: Option<&Path>,
    every: Duration,
    follow: tutor::app::Follow,
) -> (crate::helpers::App, tutor::config::Config) {
    let (lessons_dir, prompts_dir) = (lessons.to_path_buf(), prompts.map(Path::to_path_buf));
    let config_slot = Arc::new(std::sync::Mutex::new(None));
    let slot = config_slot.clone();
    let app = spawn_app_with(
        None,
        move |mut config| {
            config.lessons_dir = lessons_dir;
            if let Some(prompts) = prompts_dir {
                config.prompts_dir = prompts;
            }
            *slot.lock().expect("lock") = Some(config.clone());
            config
        },
        |state| state,
    )
    .await;
    let config = config_slot
        .lock()
        .expect("lock")
        .take()
        .expect("config captured");
    tokio::spawn(tutor::app::watch(
        config.clone(),
        app.state(),
        every,
        follow,
    ));
    (app, config)
}

#[tokio::test]
async fn edits_are_served_with_no_failed_request_and_broken_edits_keep_the_last_good_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = dir.path().join("lessons");
    let prompts = dir.path().join("prompts");
    copy_dir(&sample_lessons(), &lessons);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
        &prompts,
    );
    let (app, _) = watched(
        &lessons,
        Some(&prompts),
        Duration::from_millis(100),
        tutor::app::Follow::Everything,
    )
    .await;

    // Load: eight clients asking without pause for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (client, url) = (app.client.clone(), format!("{}/v1/chat", app.base));
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let response = client
                    .post(&url)
                    .json(&json!({"lesson_id": "hybrid-routing", "message": "What are fallbacks for?"}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    let ask = |message: &'static str| {
        let (client, url) = (app.client.clone(), format!("{}/v1/chat", app.base));
        async move {
            let response = client
                .post(url)
                .json(&json!({"lesson_id": "hybrid-routing", "message": message}))
                .send()
                .await
                .expect("sent");
            response.json::<Value>().await.expect("json")
        }
    };
    let zebra = "What do zebra crossings teach about routing?";
    assert_eq!(ask(zebra).await["refused"], true, "not in the lesson yet");

    // An edit: a new section appears.
    let path = lessons.join("hybrid-routing.md");
    let original = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        format!("{original}\n## Zebra crossings\n\nZebra crossings teach routing: every walker waits for a clear signal before crossing.\n"),
    )
    .expect("write");
    assert!(
        wait_for(async || ask(zebra).await["refused"] == false).await,
        "the edit is served"
    );

    // A broken edit: reported, and the last good version keeps serving.
    std::fs::write(&path, format!("---\ntitle: [broken\n---\n{original}")).expect("write");
    assert!(
        wait_for(async || {
            let page = app
                .client
                .get(format!("{}/", app.base))
                .send()
                .await
                .expect("sent");
            page.text()
                .await
                .expect("html")
                .contains("hybrid-routing.md")
        })
        .await,
        "the broken file is reported on the catalog page"
    );
    let still = ask(zebra).await;
    assert_eq!(
        still["refused"], false,
        "the last good version still serves: {still}"
    );

    // A prompt edit is picked up too.
    std::fs::write(prompts.join("refusal.j2"), "Not in this lesson, sorry.").expect("write");
    assert!(
        wait_for(
            async || ask("How do I bake bread?").await["answer"] == "Not in this lesson, sorry."
        )
        .await,
        "the prompt edit is served"
    );

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    assert!(done.load(Ordering::Relaxed) > 50, "the load ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during the swaps"
    );
}

#[tokio::test]
async fn plain_serve_picks_up_tutor_index_but_not_a_bare_edit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = dir.path().join("lessons");
    copy_dir(&sample_lessons(), &lessons);
    let (app, config) = watched(
        &lessons,
        None,
        Duration::from_millis(50),
        tutor::app::Follow::Index,
    )
    .await;
    let ask = async || {
        app.client
            .post(format!("{}/v1/chat", app.base))
            .json(&json!({"lesson_id": "hybrid-routing", "message": "What do zebra crossings teach about routing?"}))
            .send()
            .await
            .expect("sent")
            .json::<Value>()
            .await
            .expect("json")
    };
    assert_eq!(ask().await["refused"], true, "not in the lesson yet");

    let path = lessons.join("hybrid-routing.md");
    let original = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        format!("{original}\n## Zebra crossings\n\nZebra crossings teach routing: every walker waits for a clear signal before crossing.\n"),
    )
    .expect("write");
    // The watcher looks again and leaves it: an edit alone is not followed by plain `serve`.
    assert!(
        watcher_looked_again(&app.client, &app.base).await,
        "the watcher keeps looking"
    );
    assert_eq!(ask().await["refused"], true, "a bare edit is not served");

    // `tutor index` (the same function the command runs) is.
    let index_config = config.clone();
    tokio::task::spawn_blocking(move || tutor::app::index(&index_config))
        .await
        .expect("index task")
        .expect("indexed");
    assert!(
        wait_for(async || ask().await["refused"] == false).await,
        "the re-indexed lesson is served"
    );
}

#[tokio::test]
async fn an_edited_quiz_is_served_and_a_broken_one_keeps_the_lesson() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = dir.path().join("lessons");
    copy_dir(&sample_lessons(), &lessons);
    let (app, _) = watched(
        &lessons,
        None,
        Duration::from_millis(100),
        tutor::app::Follow::Everything,
    )
    .await;
    let first_question = || {
        let (client, url) = (app.client.clone(), format!("{}/v1/chat", app.base));
        async move {
            let response = client
                .post(url)
                .json(&json!({"lesson_id": "hybrid-routing", "mode": "quiz"}))
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("JSON");
            body["quiz"]["item_id"].as_str().unwrap_or("").to_string()
        }
    };
    assert_ne!(first_question().await, "edited-item");

    // The author adds an item at the top: "quiz me" asks it without a restart.
    let path = lessons.join("hybrid-routing.quiz.toml");
    let quiz = std::fs::read_to_string(&path).expect("quiz");
    let edited = quiz.replacen(
        "[[items]]",
        "[[items]]\nid = \"edited-item\"\nquestion = \"What does a cascade try first?\"\nanswer = \"the cheap model\"\nsection = \"routing-strategies\"\n\n[[items]]",
        1,
    );
    std::fs::write(&path, &edited).expect("write");
    assert!(
        wait_for(async || first_question().await == "edited-item").await,
        "the edited quiz is served"
    );

    // A broken item: the lesson and the quiz's other items stay.
    let broken = edited.replacen(
        "section = \"routing-strategies\"",
        "section = \"nowhere\"",
        1,
    );
    std::fs::write(&path, broken).expect("write");
    let (client, base) = (app.client.clone(), app.base.clone());
    assert!(
        wait_for(async || {
            let reply = client
                .post(format!("{base}/v1/chat"))
                .json(&json!({"lesson_id": "hybrid-routing", "mode": "quiz"}))
                .send()
                .await
                .expect("sent");
            let body: Value = reply.json().await.expect("JSON");
            body["kind"] == "quiz_question" && body["quiz"]["item_id"] != "edited-item"
        })
        .await,
        "the broken item is left out and the rest still served"
    );
}
