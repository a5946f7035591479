//! A deterministic, seed-shaped scale catalog for benchmarks and load tests: N lessons of about
//! 4 KB, each with 6 to 10 sections, a comparison table, lists, a quote, key terms, related
//! lessons and golden questions, built from real English sentences (by default the SQuAD 2.0
//! articles of the evaluation data, see [`default_source_dir`]), so BM25 statistics look like
//! real prose.
//!
//! Shared by `examples/gen-catalog.rs` and `benches/core.rs` through `#[path]`.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::fmt::Write as _;
use std::path::Path;

/// The seed: the same N always gives the same catalog.
pub const SEED: u64 = 2116;

/// Real sentences and words to build lessons from.
pub struct Source {
    sentences: Vec<String>,
    words: Vec<String>,
}

impl Source {
    /// Reads every Markdown file of `dir` and keeps its prose sentences.
    pub fn read(dir: &Path) -> std::io::Result<Source> {
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        files.sort();
        let mut sentences = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path)?;
            let body = text.splitn(3, "---").nth(2).unwrap_or(&text);
            for paragraph in body.split("\n\n") {
                let paragraph = paragraph.trim();
                if paragraph.is_empty() || paragraph.starts_with('#') {
                    continue;
                }
                for sentence in tutor::text::split_sentences(paragraph) {
                    let sentence = sentence.replace(['|', '\n'], " ");
                    if (40..300).contains(&sentence.len()) {
                        sentences.push(sentence);
                    }
                }
            }
        }
        let mut words: Vec<String> = sentences
            .iter()
            .flat_map(|s| s.split(|c: char| !c.is_ascii_alphabetic()))
            .filter(|w| (5..=12).contains(&w.len()))
            .map(str::to_lowercase)
            .collect();
        words.sort();
        words.dedup();
        if sentences.len() < 50 || words.len() < 100 {
            return Err(std::io::Error::other(format!(
                "{} has too little prose to build lessons from",
                dir.display()
            )));
        }
        Ok(Source { sentences, words })
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &'a [String]) -> &'a str {
    &items[rng.random_range(0..items.len())]
}

fn words(rng: &mut ChaCha8Rng, source: &Source, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| pick(rng, &source.words).to_string())
        .collect()
}

/// One generated lesson: its id, Markdown and golden questions (TOML).
pub struct Generated {
    pub id: String,
    pub markdown: String,
    pub questions: String,
}

/// Generates lesson `i` of `n`.
pub fn lesson(source: &Source, i: usize, n: usize) -> Generated {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let title_words = words(&mut rng, source, 3);
    let title: Vec<String> = title_words.iter().map(|w| capitalize(w)).collect();
    let title = title.join(" ");
    let id = format!("lesson-{i:04}-{}", title_words.join("-"));
    let related: Vec<String> = (1..=3)
        .map(|k| {
            let j = (i + k * 7) % n;
            let mut r =
                ChaCha8Rng::seed_from_u64(SEED ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            format!("lesson-{j:04}-{}", words(&mut r, source, 3).join("-"))
        })
        .filter(|r| *r != id)
        .collect();
    let mut md = String::new();
    let _ = writeln!(md, "---\nid: {id}\ntitle: \"{title}\"");
    let _ = writeln!(
        md,
        "summary: \"{}\"",
        pick(&mut rng, &source.sentences).replace('"', "'")
    );
    let _ = writeln!(md, "track: Scale\nminutes: {}", rng.random_range(10..76));
    let _ = writeln!(md, "related: [{}]\n---\n", related.join(", "));
    let _ = writeln!(md, "{}\n", pick(&mut rng, &source.sentences));

    let sections = rng.random_range(6..=10);
    let mut questions = String::new();
    let mut used = std::collections::HashSet::new();
    for s in 0..sections {
        let mut heading = capitalize(&words(&mut rng, source, 2).join(" "));
        while !used.insert(tutor::lessons::slugify(&heading)) {
            heading.push_str(" again");
        }
        let slug = tutor::lessons::slugify(&heading);
        let _ = writeln!(md, "## {heading}\n");
        let mut anchor_sentence = None;
        match s % 5 {
            1 => {
                let columns = words(&mut rng, source, 3);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |\n|---|---|---|",
                    capitalize(&columns[0]),
                    capitalize(&columns[1]),
                    capitalize(&columns[2])
                );
                for _ in 0..3 {
                    let name = capitalize(pick(&mut rng, &source.words));
                    let a = pick(&mut rng, &source.sentences).to_string();
                    let b = capitalize(pick(&mut rng, &source.words));
                    let _ = writeln!(md, "| {name} | {a} | {b} |");
                    anchor_sentence.get_or_insert(a);
                }
            }
            2 => {
                let _ = writeln!(md, "{}\n", pick(&mut rng, &source.sentences));
                for _ in 0..rng.random_range(3..=4) {
                    let item = pick(&mut rng, &source.sentences).to_string();
                    let _ = writeln!(md, "- {item}");
                    anchor_sentence.get_or_insert(item);
                }
            }
            3 => {
                let quote = pick(&mut rng, &source.sentences).to_string();
                let _ = writeln!(md, "> {quote}\n\n{}", pick(&mut rng, &source.sentences));
                anchor_sentence = Some(quote);
            }
            _ => {
                let paragraph: Vec<String> = (0..rng.random_range(2..=3))
                    .map(|_| pick(&mut rng, &source.sentences).to_string())
                    .collect();
                let _ = writeln!(md, "{}", paragraph.join(" "));
                anchor_sentence = paragraph.into_iter().next();
            }
        }
        md.push('\n');
        // Every other section gets an answerable golden question built from its own words.
        if s % 2 == 0
            && let Some(sentence) = anchor_sentence
        {
            let mut keys: Vec<&str> = sentence
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|w| w.len() >= 6)
                .collect();
            keys.sort_by_key(|w| std::cmp::Reverse(w.len()));
            keys.truncate(3);
            if keys.len() == 3 {
                let _ = writeln!(
                    questions,
                    "[[questions]]\nq = \"What does the lesson say about {}, {} and {}?\"\nsection = \"{slug}\"\n",
                    keys[0].to_lowercase(),
                    keys[1].to_lowercase(),
                    keys[2].to_lowercase()
                );
            }
        }
    }
    let _ = writeln!(md, "## Key terms\n");
    for term in words(&mut rng, source, 3) {
        let _ = writeln!(
            md,
            "- **{}**: {}",
            capitalize(&term),
            pick(&mut rng, &source.sentences)
        );
    }
    let _ = writeln!(
        questions,
        "[[questions]]\nq = \"How do I bake sourdough bread at home?\"\nrefuse = true"
    );
    Generated {
        id,
        markdown: md,
        questions,
    }
}

/// Writes `n` lessons (and their questions files) into `out`.
pub fn write(source: &Source, n: usize, out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    for i in 0..n {
        let generated = lesson(source, i, n);
        std::fs::write(
            out.join(format!("{}.md", generated.id)),
            &generated.markdown,
        )?;
        std::fs::write(
            out.join(format!("{}.questions.toml", generated.id)),
            &generated.questions,
        )?;
    }
    Ok(())
}

/// The default sentence source: the SQuAD 2.0 lessons of the evaluation data beside the
/// checkout when they are there (the catalog the figures in BENCHMARKS.md were measured on),
/// otherwise the checkout's own `lessons/`, so a clone without them still builds a catalog.
pub fn default_source_dir() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let squad = root.join("../shared/eval/squad2-dev/lessons");
    if squad.is_dir() {
        squad
    } else {
        root.join("lessons")
    }
}
