//! The Tantivy index in `index/`: its schema and analyzer, and the incremental refresh that
//! brings it in line with a [`Catalog`] (only lessons whose content hash changed are rewritten).
//!
//! Only this module and `retrieve` know Tantivy. Request handlers never write the index: it is
//! built by `tutor index` or by `serve` before it starts answering.

use crate::lessons::Catalog;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    Language, LowerCaser, PreTokenizedString, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, TokenStream,
};
use tantivy::{Index, IndexWriter, TantivyDocument, Term, doc};

/// Bumped when the schema or analyzer changes: an index of another format is rebuilt.
const INDEX_FORMAT: u32 = 3;
const MANIFEST: &str = "tutor-manifest.json";
/// Name under which the analyzer is registered with Tantivy.
const ANALYZER: &str = "tutor_en";
const WRITER_MEMORY: usize = 64 * 1024 * 1024;

/// Errors opening or writing the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index at {path}: {source}")]
    Tantivy {
        path: PathBuf,
        #[source]
        source: tantivy::TantivyError,
    },
    #[error("index at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no index at {0}: run `tutor index` first")]
    Missing(PathBuf),
}

/// The fields of a passage document.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    /// `LESSON#SECTION-N`, exact, stored.
    pub passage_id: Field,
    /// Exact-match filter.
    pub lesson_id: Field,
    /// Section title, analyzed; weighted above the body at query time.
    pub section: Field,
    /// Passage text, stored for citations.
    pub body: Field,
    /// What BM25 ranks on: the section title and the passage text as one field, so that
    /// length normalisation sees the whole passage (as a single-field BM25 would).
    pub content: Field,
    /// Stable 64-bit key of the passage id, a fast field mapping hits back to passages in memory.
    pub key: Field,
}

/// The schema, built once; [`open`] checks an index on disk against it.
pub fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let indexed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        passage_id: builder.add_text_field("passage_id", STRING | STORED),
        lesson_id: builder.add_text_field("lesson_id", STRING | STORED),
        section: builder.add_text_field("section", indexed.clone()),
        body: builder.add_text_field("body", STORED),
        content: builder.add_text_field("content", indexed),
        key: builder.add_u64_field("key", FAST | INDEXED),
    };
    (builder.build(), fields)
}

/// The English analyzer: [`analyzer_for`] `en`.
pub fn analyzer() -> TextAnalyzer {
    analyzer_for("en")
}

/// The analyzer of a lesson's language (ISO 639-1; English for any other code), used for its
/// passages and for questions on it alike: words split on anything that is not a letter or digit
/// (any script), lower-cased, the language's stop words dropped, and Snowball-stemmed in it.
/// Free text never fails to analyze.
pub fn analyzer_for(language: &str) -> TextAnalyzer {
    let language = match language {
        "es" => Language::Spanish,
        "fr" => Language::French,
        "de" => Language::German,
        "pt" => Language::Portuguese,
        "it" => Language::Italian,
        _ => Language::English,
    };
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .dynamic();
    let builder = match StopWordFilter::new(language) {
        Some(stop_words) => builder.filter_dynamic(stop_words),
        None => builder,
    };
    builder.filter_dynamic(Stemmer::new(language)).build()
}

/// The analyzers of every language lessons may be written in, built once.
#[derive(Clone)]
pub struct Analyzers(Vec<(&'static str, Analyzer)>);

impl Analyzers {
    pub fn new() -> Analyzers {
        Analyzers(
            crate::language::SPOKEN
                .iter()
                .map(|code| (*code, Analyzer::for_language(code)))
                .collect(),
        )
    }

    /// The analyzer of `language` (English for a language lessons cannot declare).
    pub fn get(&self, language: &str) -> &Analyzer {
        self.0
            .iter()
            .find(|(code, _)| *code == language)
            .map_or(&self.0[0].1, |(_, analyzer)| analyzer)
    }

    /// Every language with its analyzer.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Analyzer)> {
        self.0.iter().map(|(code, a)| (*code, a))
    }
}

impl Default for Analyzers {
    fn default() -> Self {
        Analyzers::new()
    }
}

/// The index's analyzer, for code outside this module that must see text exactly as the index
/// does (the extractive answerer) without knowing Tantivy.
#[derive(Clone)]
pub struct Analyzer(TextAnalyzer);

impl Analyzer {
    /// The English analyzer of [`analyzer`].
    pub fn new() -> Analyzer {
        Analyzer(analyzer())
    }

    /// The analyzer of [`analyzer_for`] `language`.
    pub fn for_language(language: &str) -> Analyzer {
        Analyzer(analyzer_for(language))
    }

    /// The Tantivy analyzer itself, for the retriever.
    pub(crate) fn text_analyzer(&self) -> &TextAnalyzer {
        &self.0
    }

    /// The text as pre-analyzed tokens for the index, so each lesson is indexed in its own
    /// language while every lesson shares one schema.
    fn pre_tokenized(&self, text: &str) -> PreTokenizedString {
        let mut analyzer = self.0.clone();
        let mut stream = analyzer.token_stream(text);
        let mut tokens = Vec::new();
        while stream.advance() {
            tokens.push(stream.token().clone());
        }
        PreTokenizedString {
            text: text.to_string(),
            tokens,
        }
    }

    /// The analyzed terms of a text, in order (duplicates kept).
    pub fn terms(&self, text: &str) -> Vec<String> {
        terms(&mut self.0.clone(), text)
    }

    /// The analyzed terms of a text with the byte offset of the word each came from, in order.
    /// Words the analyzer drops (stop words) have no entry.
    pub fn tokens(&self, text: &str) -> Vec<(usize, String)> {
        let mut analyzer = self.0.clone();
        let mut out = Vec::new();
        let mut stream = analyzer.token_stream(text);
        while stream.advance() {
            let token = stream.token();
            out.push((token.offset_from, token.text.clone()));
        }
        out
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new()
    }
}

/// The analyzed terms of a text, in order (duplicates kept).
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// The fast-field key of a passage id.
pub fn passage_key(passage_id: &str) -> u64 {
    let hash = blake3::hash(passage_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

/// What the index holds, kept beside it so a refresh knows what changed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// Lesson id -> content hash of the indexed version.
    lessons: BTreeMap<String, String>,
}

/// What a refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
    /// True when the index was (re)created from scratch.
    pub rebuilt: bool,
    pub elapsed: Duration,
}

impl RefreshReport {
    /// True when nothing was written.
    pub fn is_noop(&self) -> bool {
        self.added == 0 && self.updated == 0 && self.removed == 0 && !self.rebuilt
    }
}

/// Brings the index at `dir` in line with `catalog`, writing only lessons whose hash changed.
///
/// Lessons that failed to parse this time (listed in `catalog.problems`) keep their previously
/// indexed passages only while the file still exists; the catalog decides what is served.
pub fn refresh(dir: &Path, catalog: &Catalog) -> Result<RefreshReport, IndexError> {
    let started = Instant::now();
    let io = |source| IndexError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let tantivy = |source| IndexError::Tantivy {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let (schema, fields) = schema();
    let manifest_path = dir.join(MANIFEST);
    let manifest: Option<Manifest> = std::fs::read(&manifest_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|m: &Manifest| m.format == INDEX_FORMAT);
    let existing = match (&manifest, Index::open_in_dir(dir)) {
        (Some(_), Ok(index)) if index.schema() == schema => Some(index),
        _ => None,
    };
    let mut report = RefreshReport::default();
    let (index, old) = match existing {
        Some(index) => (index, manifest.map(|m| m.lessons).unwrap_or_default()),
        None => {
            clear_dir(dir).map_err(io)?;
            report.rebuilt = true;
            (
                Index::create_in_dir(dir, schema).map_err(tantivy)?,
                BTreeMap::new(),
            )
        }
    };
    index.tokenizers().register(ANALYZER, analyzer());

    let mut new: BTreeMap<String, String> = BTreeMap::new();
    let mut to_write = Vec::new();
    for lesson in &catalog.lessons {
        new.insert(lesson.id.clone(), lesson.hash.clone());
        match old.get(&lesson.id) {
            Some(hash) if *hash == lesson.hash => report.unchanged += 1,
            Some(_) => {
                report.updated += 1;
                to_write.push(lesson);
            }
            None => {
                report.added += 1;
                to_write.push(lesson);
            }
        }
    }
    let removed: Vec<&String> = old.keys().filter(|id| !new.contains_key(*id)).collect();
    report.removed = removed.len();
    if to_write.is_empty() && removed.is_empty() && !report.rebuilt {
        report.elapsed = started.elapsed();
        return Ok(report);
    }

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let analyzers = Analyzers::new();
    let mut writer: IndexWriter = index
        .writer_with_num_threads(threads, WRITER_MEMORY * threads)
        .map_err(tantivy)?;
    for id in removed {
        writer.delete_term(Term::from_field_text(fields.lesson_id, id));
    }
    for lesson in to_write {
        if old.contains_key(&lesson.id) {
            writer.delete_term(Term::from_field_text(fields.lesson_id, &lesson.id));
        }
        let analyzer = analyzers.get(&lesson.language);
        for passage in &lesson.passages {
            let section = &lesson.section_of(passage).title;
            let mut document: TantivyDocument = doc!(
                fields.passage_id => passage.id.as_str(),
                fields.lesson_id => lesson.id.as_str(),
                fields.body => passage.text.as_str(),
                fields.key => passage_key(&passage.id),
            );
            document.add_pre_tokenized_text(fields.section, analyzer.pre_tokenized(section));
            document.add_pre_tokenized_text(
                fields.content,
                analyzer.pre_tokenized(&format!("{section}\n{}", passage.text)),
            );
            writer.add_document(document).map_err(tantivy)?;
        }
    }
    writer.commit().map_err(tantivy)?;
    writer.wait_merging_threads().map_err(tantivy)?;
    let manifest = Manifest {
        format: INDEX_FORMAT,
        lessons: new,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| io(e.into()))?;
    let temporary = dir.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&temporary, bytes).map_err(io)?;
    std::fs::rename(&temporary, &manifest_path).map_err(io)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Opens a built index for reading, with the analyzer registered.
pub fn open(dir: &Path) -> Result<(Index, Fields), IndexError> {
    if !dir.join(MANIFEST).exists() {
        return Err(IndexError::Missing(dir.to_path_buf()));
    }
    let index = Index::open_in_dir(dir).map_err(|source| IndexError::Tantivy {
        path: dir.to_path_buf(),
        source,
    })?;
    let (schema, fields) = schema();
    if index.schema() != schema {
        return Err(IndexError::Missing(dir.to_path_buf()));
    }
    index.tokenizers().register(ANALYZER, analyzer());
    Ok((index, fields))
}

/// Removes what a previous index left in `dir` (only files Tantivy or the tutor write).
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.ends_with(".idx")
            || name.ends_with(".term")
            || name.ends_with(".pos")
            || name.ends_with(".store")
            || name.ends_with(".fast")
            || name.ends_with(".fieldnorm")
            || name.ends_with(".del")
            || name == "meta.json"
            || name == ".managed.json"
            || name == ".tantivy-meta.lock"
            || name == ".tantivy-writer.lock"
            || name.starts_with(MANIFEST);
        if ours && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_analyzer_stems_lowercases_and_drops_stop_words() {
        let mut a = analyzer();
        assert_eq!(
            terms(
                &mut a,
                "The Licences of OPEN-weights models: C++ & 🚀 Ünïcode 日本語"
            ),
            vec![
                "licenc",
                "open",
                "weight",
                "model",
                "c",
                "ünïcode",
                "日本語"
            ]
        );
    }

    #[test]
    fn passage_keys_are_stable() {
        assert_eq!(passage_key("a#b-1"), passage_key("a#b-1"));
        assert_ne!(passage_key("a#b-1"), passage_key("a#b-2"));
    }

    #[test]
    fn each_language_has_its_stop_words_and_stemmer() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "es",
                "¿Qué pierden los modelos cuantizados?",
                &["pierd", "model", "cuantiz"],
            ),
            (
                "fr",
                "Pourquoi les modèles sont-ils quantifiés ?",
                &["pourquoi", "model", "quantifi"],
            ),
            (
                "de",
                "Warum werden die Modelle quantisiert?",
                &["warum", "modell", "quantisiert"],
            ),
            (
                "en",
                "Why are the models quantized?",
                &["whi", "model", "quantiz"],
            ),
        ];
        for (language, text, expected) in cases {
            assert_eq!(
                Analyzer::for_language(language).terms(text),
                expected.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "{language}: {text}"
            );
        }
    }
}
