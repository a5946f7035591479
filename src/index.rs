//! The Tantivy index in `index/`: its schema and analyzer, and the incremental refresh that
//! brings it in line with a [`Catalog`] (only lessons whose content hash changed are rewritten).
//!
//! The index is a build artifact: `index/CURRENT` names the version in use, and each version
//! (`index/v000004-<digest>/`) is a complete, checksummed, never-modified folder. A refresh
//! writes a new version beside the old and switches `CURRENT` atomically, so any number of
//! readers (replicas sharing the folder among them) see one whole version or the next.
//!
//! Only this module and `retrieve` know Tantivy. Request handlers never write the index: it is
//! built by `tutor index` or by `serve` before it starts answering (unless `index_read_only`).

use crate::lessons::{Catalog, Lesson};
use crate::semantic::Semantic;
use crate::semantic::vectors::{TextKey, VectorFile, text_key};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, INDEX_WRITER_LOCK, Lock, MmapDirectory, WatchCallback,
    WatchHandle, WritePtr,
};
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
    #[error("index at {path} is damaged ({why}): run `tutor index` again")]
    Corrupt { path: PathBuf, why: String },
    #[error("the passages could not be embedded: {0}")]
    Embedding(String),
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

/// A set of words or terms. Verification looks words up in a few small sets per sentence, many
/// times per answer: a fast non-cryptographic hash (FxHash) is what fits (no key is attacker-
/// chosen in a way that matters: the sets are rebuilt per answer and hold a few hundred words).
pub type WordSet = rustc_hash::FxHashSet<String>;

/// Words that carry no claim of their own: friendly phrases, connectives, talk about the lesson.
/// A sentence made only of these (and stop words) needs no support.
const FILLER: &[&str] = &[
    "good",
    "great",
    "excellent",
    "question",
    "sure",
    "happy",
    "glad",
    "help",
    "hope",
    "helps",
    "short",
    "sum",
    "summary",
    "summarize",
    "summarise",
    "basically",
    "essentially",
    "simply",
    "put",
    "words",
    "lesson",
    "section",
    "passage",
    "passages",
    "says",
    "say",
    "said",
    "explains",
    "explain",
    "mentions",
    "describes",
    "notes",
    "answer",
    "ask",
    "asking",
    "thanks",
    "thank",
    "well",
    "yes",
    "indeed",
    "actually",
    "really",
    "certainly",
    "exactly",
    "also",
    "just",
    "here",
    "let",
    "look",
    "idea",
    "overall",
    "quite",
    "very",
    "much",
    "what",
    "which",
    "how",
    "why",
    "when",
    "where",
    "who",
    "course",
    "absolutely",
    "right",
    "correct",
    "interesting",
    "first",
    "finally",
    "additionally",
    "moreover",
    "furthermore",
    "however",
    "therefore",
    "thus",
    "so",
    "i",
    "you",
    "your",
    "we",
    "me",
    "my",
    "can",
    "could",
    "would",
    "should",
];

/// The filler words as the analyzer sees them (stems), built once.
pub fn filler_terms(analyzer: &Analyzer) -> WordSet {
    FILLER
        .iter()
        .flat_map(|w| analyzer.terms(w))
        .chain(FILLER.iter().map(|w| w.to_string()))
        .collect()
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
    /// The version now current (`v000003-1a2b3c4d5e6f`).
    pub version: String,
    pub elapsed: Duration,
    /// Passages whose sentence vectors were computed (new text, or another model).
    pub embedded: usize,
}

impl RefreshReport {
    /// True when nothing was written.
    pub fn is_noop(&self) -> bool {
        self.added == 0
            && self.updated == 0
            && self.removed == 0
            && !self.rebuilt
            && self.embedded == 0
    }
}

/// The file naming the current version; replaced atomically (write, then rename).
const CURRENT: &str = "CURRENT";
/// In each version: every file's BLAKE3 digest, checked when the version is opened.
const CHECKSUMS: &str = "tutor-checksums.json";
/// The passages' sentence vectors, when a semantic model is configured.
const VECTORS: &str = "tutor-vectors.bin";
/// Versions kept besides the current one, for readers still on them.
const KEEP_OLD_VERSIONS: usize = 2;
/// A build left behind (a crashed `tutor index`) is removed after this long.
const STALE_BUILD: Duration = Duration::from_secs(3600);

/// Tantivy's lock files: never linked between versions, never checksummed.
fn is_lock(name: &str) -> bool {
    name.starts_with(".tantivy-") && name.ends_with(".lock")
}

/// Makes a built version fit to ship: the writer's lock files go (they mean nothing in a folder
/// nobody writes again), and the files written for it get the permissions of the tutor's own
/// manifest, written under the builder's umask (tantivy writes its metadata owner-only, so an
/// index built by one user could not be served by another, as when CI builds it and a service
/// account serves it). A file linked from an older version is left as it is: it was settled
/// with that version, which must not change.
fn settle(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let permissions = std::fs::metadata(folder.join(MANIFEST))?.permissions();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        if is_lock(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path())?;
            continue;
        }
        let metadata = entry.metadata()?;
        if metadata.is_file() && metadata.nlink() == 1 && metadata.permissions() != permissions {
            std::fs::set_permissions(entry.path(), permissions.clone())?;
        }
    }
    Ok(())
}

/// The current version's name and folder, when there is one.
pub fn current_version(dir: &Path) -> Option<(String, PathBuf)> {
    let name = std::fs::read_to_string(dir.join(CURRENT)).ok()?;
    let name = name.trim();
    let valid =
        name.starts_with('v') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| (name.to_string(), dir.join(name)))
}

/// The sequence number of a version name (`v000003-...` → 3).
fn sequence(name: &str) -> Option<u64> {
    name.strip_prefix('v')?.split('-').next()?.parse().ok()
}

fn read_manifest(version: &Path) -> Option<Manifest> {
    std::fs::read(version.join(MANIFEST))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|m: &Manifest| m.format == INDEX_FORMAT)
}

/// The lesson ids whose indexed content differs from `catalog` (or that one side lacks): what
/// a replica serving a read-only index built from other lesson files should warn about.
pub fn differences(dir: &Path, catalog: &Catalog) -> Vec<String> {
    let indexed = current_version(dir)
        .and_then(|(_, path)| read_manifest(&path))
        .map(|m| m.lessons)
        .unwrap_or_default();
    let mut different: Vec<String> = catalog
        .lessons
        .iter()
        .filter(|l| indexed.get(&l.id) != Some(&l.hash))
        .map(|l| l.id.clone())
        .collect();
    different.extend(
        indexed
            .keys()
            .filter(|id| catalog.get(id).is_none())
            .cloned(),
    );
    different
}

/// Every file of a version folder (locks and the checksum list aside) with its digest.
fn checksums(version: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut sums = BTreeMap::new();
    for entry in std::fs::read_dir(version)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_lock(&name) || name == CHECKSUMS || !entry.file_type()?.is_file() {
            continue;
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(entry.path())?)?;
        sums.insert(name, hasher.finalize().to_hex().to_string());
    }
    Ok(sums)
}

/// Brings the index at `dir` in line with `catalog`, writing only lessons whose hash changed.
///
/// Each refresh that changes something writes a new version folder (`v000004-<digest>`):
/// the current version's files are linked into a build folder, the changes are written there,
/// every file is checksummed, the folder is renamed into place, and only then is `CURRENT`
/// switched (write and rename, atomic). A reader, in this process or a replica sharing the
/// folder, sees the old version or the new one, never a half-written one.
///
/// Lessons that failed to parse this time (listed in `catalog.problems`) keep their previously
/// indexed passages only while the file still exists; the catalog decides what is served.
pub fn refresh(dir: &Path, catalog: &Catalog) -> Result<RefreshReport, IndexError> {
    refresh_with(dir, catalog, None)
}

/// The text of a passage that is embedded: its section title, then its text.
pub fn meaning_text(section_title: &str, text: &str) -> String {
    format!("{section_title}: {text}")
}

/// What is embedded of a passage, as [`meaning_text`]s: the whole passage, then each of its
/// units (sentences, list items, table rows) when it has more than one, since one sentence of a
/// long passage is what a question means most nearly.
pub fn meaning_texts(section_title: &str, text: &str) -> Vec<String> {
    let units = crate::text::units_of(text);
    let mut texts = vec![meaning_text(section_title, text)];
    if units.len() > 1 {
        texts.extend(
            units
                .iter()
                .map(|(unit, _)| meaning_text(section_title, unit)),
        );
    }
    texts
}

/// The texts of a lesson's quiz that are embedded: each item's question (a learner's question
/// near one in meaning asks it), and a free-text item's answer and the answers it also accepts
/// (a reply near one in meaning says it).
pub fn quiz_texts(lesson: &Lesson) -> Vec<&str> {
    let mut texts = Vec::new();
    for item in lesson.quiz.iter().flat_map(|quiz| &quiz.items) {
        texts.push(item.question.as_str());
        if item.choices.is_empty() {
            texts.push(item.answer.as_str());
            texts.extend(item.accept.iter().map(String::as_str));
        }
    }
    texts
}

/// Every text embedded for the catalog, with its key: passages and their units, and quizzes.
fn passage_keys(catalog: &Catalog) -> Vec<(TextKey, String)> {
    let mut seen = std::collections::HashSet::new();
    catalog
        .lessons
        .iter()
        .flat_map(|lesson| {
            let passages = lesson.passages.iter().flat_map(|passage| {
                meaning_texts(&lesson.section_of(passage).title, &passage.text)
            });
            passages.chain(quiz_texts(lesson).into_iter().map(str::to_string))
        })
        .map(|text| (text_key(&text), text))
        .filter(|(key, _)| seen.insert(*key))
        .collect()
}

/// The vectors of the current version, if it has them.
pub fn read_vectors(dir: &Path) -> Option<VectorFile> {
    let (_, path) = current_version(dir)?;
    let file = path.join(VECTORS);
    if !file.exists() {
        return None;
    }
    VectorFile::read(&file)
        .map_err(|error| tracing::warn!(path = %file.display(), %error, "cannot read the passage vectors"))
        .ok()
}

/// Whether `previous` already holds a vector of `semantic`'s model for every passage.
fn vectors_complete(
    previous: Option<&VectorFile>,
    semantic: &Semantic,
    keys: &[(TextKey, String)],
) -> bool {
    previous.is_some_and(|file| {
        file.identity == semantic.identity()
            && keys.iter().all(|(k, _)| file.vectors.contains_key(k))
    })
}

/// Writes the vectors of every passage into `build`: those of `previous` (same model, same text)
/// kept, the others embedded. Returns how many were embedded.
fn write_vectors(
    build: &Path,
    semantic: &Semantic,
    previous: Option<VectorFile>,
    keys: &[(TextKey, String)],
) -> Result<usize, IndexError> {
    let mut old = previous
        .filter(|file| file.identity == semantic.identity())
        .map(|file| file.vectors)
        .unwrap_or_default();
    let mut file = VectorFile {
        identity: semantic.identity().to_string(),
        dimensions: semantic.dimensions(),
        vectors: std::collections::HashMap::with_capacity(keys.len()),
    };
    let mut missing: Vec<&(TextKey, String)> = Vec::new();
    for entry in keys {
        match old.remove(&entry.0) {
            Some(v) => {
                file.vectors.insert(entry.0, v);
            }
            None if !file.vectors.contains_key(&entry.0) => missing.push(entry),
            None => {}
        }
    }
    missing.sort_by_key(|(k, _)| *k);
    missing.dedup_by_key(|(k, _)| *k);
    let texts: Vec<&str> = missing.iter().map(|(_, t)| t.as_str()).collect();
    let vectors = semantic
        .embed(&texts)
        .map_err(|e| IndexError::Embedding(e.to_string()))?;
    for ((key, _), v) in missing.iter().zip(vectors) {
        file.vectors.insert(*key, v.iter().copied().collect());
    }
    file.write(&build.join(VECTORS))
        .map_err(|source| IndexError::Io {
            path: build.join(VECTORS),
            source,
        })?;
    Ok(missing.len())
}

/// [`refresh`], with the passages' sentence vectors computed by `semantic` (only for passages
/// whose text is new to the current version's vectors, or all of them for another model). With
/// no model, the new version has no vectors.
pub fn refresh_with(
    dir: &Path,
    catalog: &Catalog,
    semantic: Option<&Semantic>,
) -> Result<RefreshReport, IndexError> {
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
    let (schema, _) = schema();
    let previous = current_version(dir).and_then(|(name, path)| {
        let manifest = read_manifest(&path)?;
        let index = Index::open_in_dir(&path).ok()?;
        (index.schema() == schema).then_some((name, path, manifest))
    });
    let mut report = RefreshReport::default();
    let old = previous
        .as_ref()
        .map(|(_, _, manifest)| manifest.lessons.clone())
        .unwrap_or_default();
    report.rebuilt = previous.is_none();

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
    let keys = semantic.map(|_| passage_keys(catalog)).unwrap_or_default();
    let previous_vectors = previous
        .as_ref()
        .and_then(|(_, path, _)| VectorFile::read(&path.join(VECTORS)).ok());
    let vectors_ready = semantic
        .is_none_or(|semantic| vectors_complete(previous_vectors.as_ref(), semantic, &keys));
    if let Some((name, _, _)) = &previous
        && to_write.is_empty()
        && removed.is_empty()
        && vectors_ready
    {
        report.version = name.clone();
        report.elapsed = started.elapsed();
        return Ok(report);
    }

    let build = dir.join(format!(
        ".build-{}-{}",
        std::process::id(),
        blake3::hash(format!("{:?}", std::time::SystemTime::now()).as_bytes())
            .to_hex()
            .get(..8)
            .unwrap_or("0")
    ));
    std::fs::create_dir_all(&build).map_err(io)?;
    let written = (|| {
        let index = match &previous {
            Some((_, path, _)) => {
                link_version(path, &build).map_err(io)?;
                Index::open_in_dir(&build).map_err(tantivy)?
            }
            None => Index::create_in_dir(&build, schema).map_err(tantivy)?,
        };
        write_changes(&index, &to_write, &removed, &old).map_err(tantivy)?;
        drop(index);
        if let Some(semantic) = semantic {
            report.embedded = write_vectors(&build, semantic, previous_vectors, &keys)?;
        }
        let manifest = Manifest {
            format: INDEX_FORMAT,
            lessons: new,
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| io(e.into()))?;
        std::fs::write(build.join(MANIFEST), bytes).map_err(io)?;
        settle(&build).map_err(io)?;
        let sums = checksums(&build).map_err(io)?;
        let listing = serde_json::to_vec_pretty(&sums).map_err(|e| io(e.into()))?;
        std::fs::write(build.join(CHECKSUMS), &listing).map_err(io)?;
        let seq = previous
            .as_ref()
            .and_then(|(name, _, _)| sequence(name))
            .unwrap_or(0)
            + 1;
        let digest = blake3::hash(&listing).to_hex();
        let short = digest.get(..12).unwrap_or_default();
        Ok::<_, IndexError>(format!("v{seq:06}-{short}"))
    })();
    let name = match written {
        Ok(name) => name,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&build);
            return Err(error);
        }
    };
    let version = dir.join(&name);
    std::fs::rename(&build, &version).map_err(io)?;
    let pointer = dir.join(format!("{CURRENT}.{}.tmp", std::process::id()));
    std::fs::write(&pointer, format!("{name}\n")).map_err(io)?;
    std::fs::rename(&pointer, dir.join(CURRENT)).map_err(io)?;
    prune_versions(dir, &name);
    report.version = name;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A private index for a command that must not change what is served (`tutor check`, `ask`,
/// `report`): the published version's files hard-linked into a `.build-check-…` folder beside
/// it, removed when this is dropped (or, left by a crash, pruned with stale builds). A refresh
/// there reuses everything published and embeds only what changed; nothing is published.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A scratch copy of the index in `dir` (empty when nothing is published yet).
    pub fn new(dir: &Path) -> Result<Scratch, IndexError> {
        let io = |source| IndexError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let nonce = blake3::hash(format!("{:?}", std::time::SystemTime::now()).as_bytes());
        let scratch = Scratch {
            dir: dir.join(format!(
                ".build-check-{}-{}",
                std::process::id(),
                nonce.to_hex().get(..8).unwrap_or("0")
            )),
        };
        std::fs::create_dir_all(&scratch.dir).map_err(io)?;
        if let Some((name, path)) = current_version(dir) {
            let copy = scratch.dir.join(&name);
            std::fs::create_dir_all(&copy).map_err(io)?;
            // Every file, the tutor's own too: a refresh writes a new version, never in these.
            for entry in std::fs::read_dir(&path).map_err(io)? {
                let entry = entry.map_err(io)?;
                if entry.file_type().map_err(io)?.is_file()
                    && !is_lock(&entry.file_name().to_string_lossy())
                {
                    let target = copy.join(entry.file_name());
                    if std::fs::hard_link(entry.path(), &target).is_err() {
                        std::fs::copy(entry.path(), &target).map_err(io)?;
                    }
                }
            }
            std::fs::write(scratch.dir.join(CURRENT), format!("{name}\n")).map_err(io)?;
        }
        Ok(scratch)
    }

    /// The scratch index's folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Hard-links the files of version `from` into `to` (copies them across file systems). Tantivy
/// never changes a file in place (new segments, new deletes, metadata written and renamed), so
/// the old version is untouched by what is written in the new one.
fn link_version(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        // The tutor's own files are written anew in place: never share them.
        if is_lock(&text)
            || text == CHECKSUMS
            || text == MANIFEST
            || text == VECTORS
            || !entry.file_type()?.is_file()
        {
            continue;
        }
        let target = to.join(&name);
        if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn write_changes(
    index: &Index,
    to_write: &[&Arc<crate::lessons::Lesson>],
    removed: &[&String],
    old: &BTreeMap<String, String>,
) -> tantivy::Result<()> {
    let (_, fields) = schema();
    index.tokenizers().register(ANALYZER, analyzer());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let analyzers = Analyzers::new();
    let mut writer: IndexWriter =
        index.writer_with_num_threads(threads, WRITER_MEMORY * threads)?;
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
            writer.add_document(document)?;
        }
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(())
}

/// Removes versions older than the newest kept ones, builds left behind, and the files of the
/// flat layout older tutors wrote. A replica still reading a removed version keeps its open
/// files (the system frees them when it lets go) and moves to the current one on its next check.
fn prune_versions(dir: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut versions = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && name != current {
            if let Some(seq) = sequence(&name) {
                versions.push((seq, entry.path()));
            } else if name.starts_with(".build-")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_BUILD))
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    versions.sort();
    let excess = versions.len().saturating_sub(KEEP_OLD_VERSIONS);
    for (_, path) in versions.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(path);
    }
    let _ = clear_flat_layout(dir);
}

/// Opens the current version for reading, with the analyzer registered, after checking every
/// file against its checksum (a truncated copy or a half-synced folder is refused by name).
pub fn open(dir: &Path) -> Result<(Index, Fields), IndexError> {
    // A version may be pruned while it is being opened (several refreshes in quick
    // succession): when `CURRENT` moved meanwhile, open the new one instead.
    let mut attempts = 0;
    loop {
        let before = current_version(dir);
        match open_current(dir) {
            Err(error) if attempts < 3 && current_version(dir) != before => {
                attempts += 1;
                tracing::debug!(%error, "the index moved to a new version while opening; again");
            }
            result => return result,
        }
    }
}

fn open_current(dir: &Path) -> Result<(Index, Fields), IndexError> {
    let Some((name, version)) = current_version(dir) else {
        return Err(IndexError::Missing(dir.to_path_buf()));
    };
    let corrupt = |why: String| IndexError::Corrupt {
        path: version.clone(),
        why,
    };
    let listed: BTreeMap<String, String> = std::fs::read(version.join(CHECKSUMS))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| corrupt(format!("version {name} has no readable {CHECKSUMS}")))?;
    let found = checksums(&version).map_err(|source| IndexError::Io {
        path: version.clone(),
        source,
    })?;
    for (file, digest) in &listed {
        match found.get(file) {
            None => return Err(corrupt(format!("{file} is missing"))),
            Some(actual) if actual != digest => {
                return Err(corrupt(format!("{file} does not match its checksum")));
            }
            Some(_) => {}
        }
    }
    if read_manifest(&version).is_none() {
        return Err(IndexError::Missing(dir.to_path_buf()));
    }
    let tantivy = |source| IndexError::Tantivy {
        path: version.clone(),
        source,
    };
    let directory =
        MmapDirectory::open(&version).map_err(|e| tantivy(tantivy::TantivyError::from(e)))?;
    let index = Index::open(Published(directory)).map_err(tantivy)?;
    let (schema, fields) = schema();
    if index.schema() != schema {
        return Err(IndexError::Missing(dir.to_path_buf()));
    }
    index.tokenizers().register(ANALYZER, analyzer());
    Ok((index, fields))
}

/// A published version, opened for reading only. A version folder is never written once
/// `CURRENT` names it (a refresh writes a new folder), so its readers need none of tantivy's lock
/// files, and the folder may sit on a read-only file system (an index shipped in an image).
/// Every write is refused.
#[derive(Debug, Clone)]
struct Published(MmapDirectory);

impl Published {
    fn refused(path: &Path) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::ReadOnlyFilesystem,
            format!(
                "{} is in a published index version, never written",
                path.display()
            ),
        )
    }
}

impl Directory for Published {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.0.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(Published::refused(path)),
            filepath: path.to_path_buf(),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.0.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::IoError {
            io_error: Arc::new(Published::refused(path)),
            filepath: path.to_path_buf(),
        })
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.0.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> std::io::Result<()> {
        Err(Published::refused(path))
    }

    fn sync_directory(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Nothing changes a published version, so a reader needs no lock (tantivy takes one while
    /// it opens a reader, against a writer's clean-up), and a writer gets none.
    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        if lock.filepath == INDEX_WRITER_LOCK.filepath {
            return Err(LockError::IoError(Arc::new(Published::refused(
                &lock.filepath,
            ))));
        }
        Ok(DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.0.watch(callback)
    }
}

/// Removes the files an index of the flat layout (before versions) left in `dir`.
fn clear_flat_layout(dir: &Path) -> std::io::Result<()> {
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
            || is_lock(&name)
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

    fn catalog(lessons: &[(&str, &str)]) -> Catalog {
        let parsed = lessons
            .iter()
            .map(|(id, body)| {
                let text = format!("---\nid: {id}\ntitle: {id}\n---\n\n## Part\n\n{body}\n");
                let mut lesson = crate::lessons::parse_lesson(&text, id).expect("a lesson");
                lesson.hash = blake3::hash(text.as_bytes()).to_hex().to_string();
                (PathBuf::from(format!("{id}.md")), lesson)
            })
            .collect();
        Catalog::from_lessons(parsed, Vec::new())
    }

    fn count(dir: &Path, word: &str) -> usize {
        let (index, fields) = open(dir).expect("opens");
        let searcher = index.reader().expect("reader").searcher();
        let query = tantivy::query::TermQuery::new(
            Term::from_field_text(fields.content, word),
            IndexRecordOption::Basic,
        );
        searcher
            .search(&query, &tantivy::collector::Count)
            .expect("searches")
    }

    fn mode(folder: &Path, name: &str) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(folder.join(name))
            .expect("metadata")
            .permissions()
            .mode()
    }

    fn listing(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(folder)
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn reading_a_published_version_writes_nothing_in_it() {
        // So an index shipped on a read-only file system opens (tantivy's readers otherwise
        // create a lock file in the folder).
        let dir = tempfile::tempdir().expect("tempdir");
        refresh(dir.path(), &catalog(&[("a", "Tokenizers merge pairs.")])).expect("builds");
        let (_, version) = current_version(dir.path()).expect("a version");
        let published = listing(&version);
        assert!(
            !published.iter().any(|name| is_lock(name)),
            "a published version holds no lock files: {published:?}"
        );
        // Readable by whoever may read the tutor's own files (tantivy writes its metadata
        // owner-only).
        for name in &published {
            assert_eq!(mode(&version, name), mode(&version, MANIFEST), "{name}");
        }
        // The next version shares most files with this one (hard links) and settles the same.
        refresh(
            dir.path(),
            &catalog(&[("a", "Tokenizers merge pairs."), ("b", "Licences vary.")]),
        )
        .expect("refreshes");
        let (_, next) = current_version(dir.path()).expect("a version");
        assert_ne!(next, version);
        for name in listing(&next) {
            assert!(!is_lock(&name), "{name}");
            assert_eq!(mode(&next, &name), mode(&next, MANIFEST), "{name}");
        }
        assert_eq!(count(dir.path(), "token"), 1);
        let (index, _) = open(dir.path()).expect("opens");
        index.reader().expect("reader").reload().expect("reloads");
        assert_eq!(listing(&version), published);
        let (index, _) = open(dir.path()).expect("opens");
        assert!(index.writer::<TantivyDocument>(15_000_000).is_err());
    }

    #[test]
    fn each_change_is_a_new_checksummed_version_and_the_old_one_stays_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = refresh(
            dir.path(),
            &catalog(&[("a", "Tokenizers merge pairs."), ("b", "Licences vary.")]),
        )
        .expect("builds");
        assert!(first.rebuilt);
        assert!(first.version.starts_with("v000001-"), "{}", first.version);
        let again = refresh(
            dir.path(),
            &catalog(&[("a", "Tokenizers merge pairs."), ("b", "Licences vary.")]),
        )
        .expect("refreshes");
        assert!(again.is_noop());
        assert_eq!(
            again.version, first.version,
            "nothing changed, same version"
        );

        let second = refresh(
            dir.path(),
            &catalog(&[("a", "Tokenizers split words."), ("b", "Licences vary.")]),
        )
        .expect("refreshes");
        assert_eq!((second.updated, second.unchanged), (1, 1));
        assert!(second.version.starts_with("v000002-"), "{}", second.version);
        assert_eq!(count(dir.path(), "split"), 1);
        assert_eq!(count(dir.path(), "merg"), 0);
        // The old version is untouched by the new one written beside it.
        let old = dir.path().join(&first.version);
        let old_index = Index::open_in_dir(&old).expect("old version opens");
        let (_, fields) = schema();
        old_index.tokenizers().register(ANALYZER, analyzer());
        let merges = old_index
            .reader()
            .expect("reader")
            .searcher()
            .search(
                &tantivy::query::TermQuery::new(
                    Term::from_field_text(fields.content, "merg"),
                    IndexRecordOption::Basic,
                ),
                &tantivy::collector::Count,
            )
            .expect("searches");
        assert_eq!(merges, 1);
        assert_eq!(
            checksums(&old).expect("sums"),
            serde_json::from_slice::<BTreeMap<String, String>>(
                &std::fs::read(old.join(CHECKSUMS)).expect("listed")
            )
            .expect("json"),
            "every file of the old version still matches its checksum"
        );

        for n in 3..=6 {
            let report = refresh(
                dir.path(),
                &catalog(&[("a", &format!("Version {n} of the text.")), ("b", "x y")]),
            )
            .expect("refreshes");
            assert!(report.version.starts_with(&format!("v{n:06}-")));
        }
        let versions = std::fs::read_dir(dir.path())
            .expect("lists")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with('v'))
            .count();
        assert_eq!(versions, 1 + KEEP_OLD_VERSIONS);
    }

    #[test]
    fn readers_never_see_a_half_written_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lessons = |n: usize| {
            let bodies: Vec<(String, String)> = (0..n)
                .map(|i| (format!("l{i}"), format!("Passage {i} about tokens.")))
                .collect();
            let refs: Vec<(&str, &str)> = bodies
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            catalog(&refs)
        };
        refresh(dir.path(), &lessons(3)).expect("builds");
        let path = dir.path().to_path_buf();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let found = count(&path, "token");
                    // Every version holds 3 or 5 whole lessons, never a mix.
                    assert!(found == 3 || found == 5, "{found} passages");
                    seen.insert(found);
                }
                seen
            })
        };
        for round in 0..12 {
            refresh(dir.path(), &lessons(if round % 2 == 0 { 5 } else { 3 })).expect("refreshes");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = reader.join().expect("the reader never failed");
        assert!(!seen.is_empty());
    }

    #[test]
    fn a_damaged_version_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report =
            refresh(dir.path(), &catalog(&[("a", "Tokenizers merge pairs.")])).expect("builds");
        let version = dir.path().join(&report.version);
        let store = std::fs::read_dir(&version)
            .expect("lists")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(".store"))
            .expect("a store file");
        let mut bytes = std::fs::read(store.path()).expect("reads");
        bytes.truncate(bytes.len() / 2);
        std::fs::write(store.path(), bytes).expect("writes");
        let error = open(dir.path()).expect_err("refused").to_string();
        assert!(error.contains("does not match its checksum"), "{error}");
        assert!(
            error.contains(&store.file_name().to_string_lossy().into_owned()),
            "{error}"
        );
        std::fs::write(dir.path().join(CURRENT), "v999999-gone\n").expect("writes");
        assert!(open(dir.path()).is_err());
    }

    #[test]
    fn a_read_only_replica_learns_which_lessons_differ() {
        let dir = tempfile::tempdir().expect("tempdir");
        refresh(
            dir.path(),
            &catalog(&[("a", "Tokenizers merge pairs."), ("b", "Licences vary.")]),
        )
        .expect("builds");
        let mut different = differences(
            dir.path(),
            &catalog(&[("a", "Tokenizers merge pairs."), ("c", "New.")]),
        );
        different.sort();
        assert_eq!(different, vec!["b".to_string(), "c".to_string()]);
    }

    #[test]
    fn passage_keys_are_stable() {
        // Pinned: an index built by one version maps its hits to passages in the next, so a
        // change here must come with a new INDEX_FORMAT.
        assert_eq!(passage_key("a#b-1"), 7_119_299_268_292_481_387);
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
