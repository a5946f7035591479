//! Retrieval and the gate over the sample lessons, without HTTP.

use crate::helpers::config;
use std::sync::Arc;
use tutor::lessons::load_catalog;
use tutor::retrieve::{Earlier, GateReason, Retriever};

fn retriever() -> (Retriever, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(&dir);
    let catalog = load_catalog(&config.lessons_dir).expect("lessons load");
    assert!(catalog.problems.is_empty(), "{:?}", catalog.problems);
    tutor::index::refresh(&config.index_dir, &catalog).expect("index builds");
    let retriever = Retriever::open(
        Arc::new(catalog),
        &config.index_dir,
        config.retrieval.clone(),
    )
    .expect("index opens");
    (retriever, dir)
}

#[test]
fn every_golden_question_of_the_sample_catalog_is_gated_as_its_author_expects() {
    let (retriever, _dir) = retriever();
    let catalog = retriever.catalog().clone();
    let mut checked = 0;
    for lesson in &catalog.lessons {
        assert!(
            !lesson.questions.is_empty(),
            "{} has golden questions",
            lesson.id
        );
        // Follow-ups need the answers before them: `tutor check` runs those (cli tests).
        for golden in lesson.questions.iter().filter(|g| g.after.is_empty()) {
            let retrieval = retriever
                .retrieve(&lesson.id, &golden.q, &Earlier::NONE)
                .expect("retrieval");
            assert_eq!(
                retrieval.covered, !golden.refuse,
                "{}: {}",
                lesson.id, golden.q
            );
            if let Some(section) = &golden.section {
                let top3: Vec<&str> = retrieval
                    .hits
                    .iter()
                    .take(3)
                    .map(|h| h.lesson.section_of(h.passage()).slug.as_str())
                    .collect();
                assert!(
                    top3.contains(&section.as_str()),
                    "{}: {} -> {top3:?}",
                    lesson.id,
                    golden.q
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40);
}

#[test]
fn retrieval_only_returns_passages_of_the_asked_lesson() {
    let (retriever, _dir) = retriever();
    let retrieval = retriever
        .retrieve(
            "what-open-means",
            "export controls on model weights",
            &Earlier::NONE,
        )
        .expect("retrieval");
    assert!(
        !retrieval.hits.is_empty(),
        "the lesson has words of the query"
    );
    assert!(
        retrieval
            .hits
            .iter()
            .all(|h| h.lesson.id == "what-open-means")
    );
}

#[test]
fn a_message_without_searchable_words_is_not_covered() {
    let (retriever, _dir) = retriever();
    let retrieval = retriever
        .retrieve("what-open-means", "what is it?", &Earlier::NONE)
        .expect("retrieval");
    assert!(!retrieval.covered);
    assert_eq!(retrieval.reason, GateReason::NoSearchableWords);
}

#[test]
fn refreshing_an_unchanged_catalog_writes_nothing_and_a_changed_lesson_is_rewritten() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = dir.path().join("lessons");
    std::fs::create_dir(&lessons).expect("mkdir");
    for name in ["what-open-means.md", "hybrid-routing.md"] {
        std::fs::copy(
            crate::helpers::sample_lessons().join(name),
            lessons.join(name),
        )
        .expect("copy");
    }
    let index = dir.path().join("index");
    let first =
        tutor::index::refresh(&index, &load_catalog(&lessons).expect("load")).expect("build");
    assert!(first.rebuilt);
    assert_eq!(first.added, 2);
    let second =
        tutor::index::refresh(&index, &load_catalog(&lessons).expect("load")).expect("refresh");
    assert!(second.is_noop(), "{second:?}");
    let path = lessons.join("hybrid-routing.md");
    let text = std::fs::read_to_string(&path).expect("read")
        + "\n## Added later\n\nA new zebra paragraph.\n";
    std::fs::write(&path, text).expect("write");
    std::fs::remove_file(lessons.join("what-open-means.md")).expect("remove");
    let catalog = Arc::new(load_catalog(&lessons).expect("load"));
    let third = tutor::index::refresh(&index, &catalog).expect("refresh");
    assert_eq!(
        (third.added, third.updated, third.removed, third.unchanged),
        (0, 1, 1, 0)
    );
    let retriever = Retriever::open(catalog, &index, Default::default()).expect("open");
    let hits = retriever.search(None, "zebra", 5).expect("search");
    assert_eq!(hits[0].passage().id, "hybrid-routing#added-later-1");
    let hits = retriever
        .search(None, "openness spectrum", 5)
        .expect("search");
    assert!(!hits.is_empty(), "the words are in the catalog");
    assert!(hits.iter().all(|h| h.lesson.id == "hybrid-routing"));
}

#[test]
fn a_lesson_is_indexed_and_questioned_in_its_own_language() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lessons = dir.path().join("lessons");
    std::fs::create_dir(&lessons).expect("mkdir");
    std::fs::write(
        lessons.join("cuantizacion.md"),
        "---\nid: cuantizacion\ntitle: Cuantización de modelos\nlanguage: es\n---\n\
         ## Qué es la cuantización\n\nLa cuantización guarda los pesos de un modelo con menos bits, \
         por ejemplo ocho o cuatro en lugar de dieciséis.\n\n\
         ## Lo que se pierde\n\nCuantizar demasiado empeora las respuestas: con cuatro bits algunos \
         modelos pierden precisión en tareas de razonamiento.\n",
    )
    .expect("write");
    std::fs::copy(
        crate::helpers::sample_lessons().join("what-open-means.md"),
        lessons.join("what-open-means.md"),
    )
    .expect("copy");
    let index = dir.path().join("index");
    let catalog = Arc::new(load_catalog(&lessons).expect("load"));
    tutor::index::refresh(&index, &catalog).expect("build");
    let retriever = Retriever::open(catalog, &index, Default::default()).expect("open");

    // Spanish stop words ("qué", "los", "cuando", "se") are not topic words, and "pierden",
    // "cuantizan" meet "pierden", "cuantizar" under the Spanish stemmer: every topic word is
    // found. Read as English, the function words count as missing topic words (coverage 0.45).
    let retrieval = retriever
        .retrieve(
            "cuantizacion",
            "¿Qué pierden los modelos cuando se cuantizan demasiado?",
            &Earlier::NONE,
        )
        .expect("retrieval");
    assert!(retrieval.covered, "{:?}", retrieval.reason);
    assert!(retrieval.coverage >= 0.99, "{}", retrieval.coverage);
    assert_eq!(
        retrieval.hits[0].passage().id,
        "cuantizacion#lo-que-se-pierde-1"
    );
    // An English lesson beside it is still read in English.
    let english = retriever
        .retrieve(
            "what-open-means",
            "What does a fully open release include?",
            &Earlier::NONE,
        )
        .expect("retrieval");
    assert!(english.covered);
}

#[test]
fn coverage_is_the_same_whether_a_passage_was_analysed_before_or_not() {
    // One retriever answers every golden question of the catalog first, so that the passages
    // it reads are kept analysed; a fresh one answers each question cold. Both must judge each
    // hit alike: the kept analysis is the passage's, not the question's that first read it.
    let (warm, dir) = retriever();
    let catalog = warm.catalog().clone();
    let settings = config(&dir);
    let questions: Vec<(String, String)> = catalog
        .lessons
        .iter()
        .flat_map(|l| l.questions.iter().map(move |g| (l.id.clone(), g.q.clone())))
        .collect();
    assert!(questions.len() > 20, "{} golden questions", questions.len());
    for (lesson, q) in &questions {
        warm.retrieve(lesson, q, &Earlier::NONE).expect("retrieval");
    }
    let mut hits_compared = 0;
    for (lesson, q) in questions.iter().rev() {
        let cold = Retriever::open(
            catalog.clone(),
            &settings.index_dir,
            settings.retrieval.clone(),
        )
        .expect("index opens");
        let kept = warm.retrieve(lesson, q, &Earlier::NONE).expect("retrieval");
        let fresh = cold.retrieve(lesson, q, &Earlier::NONE).expect("retrieval");
        let judged = |r: &tutor::retrieve::Retrieval| -> Vec<(String, f32)> {
            r.hits
                .iter()
                .map(|h| (h.passage().id.clone(), h.coverage))
                .collect()
        };
        assert_eq!(judged(&kept), judged(&fresh), "{lesson}: {q}");
        assert_eq!((kept.covered, kept.reason), (fresh.covered, fresh.reason));
        hits_compared += kept.hits.len();
    }
    assert!(hits_compared > 50, "{hits_compared} hits compared");
}
