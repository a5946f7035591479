//! Loads every lesson of a folder into a [`Catalog`], reporting broken files as [`Problem`]s
//! (`path:line: reason`) while the rest of the catalog still loads.

use super::{Lesson, PARSER_VERSION, parse_lesson, parse_questions};
use crate::text::LineIndex;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file that could not be used, and where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// Every lesson that parsed, by id, plus what could not be parsed.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Sorted by id.
    pub lessons: Vec<Arc<Lesson>>,
    by_id: HashMap<String, usize>,
    pub problems: Vec<Problem>,
    /// The file each lesson came from.
    sources: HashMap<String, PathBuf>,
}

impl Catalog {
    /// Builds a catalog from parsed lessons; duplicate ids keep the first and report the rest.
    pub fn from_lessons(lessons: Vec<(PathBuf, Lesson)>, mut problems: Vec<Problem>) -> Catalog {
        let mut kept: Vec<Arc<Lesson>> = Vec::with_capacity(lessons.len());
        let mut first_path: HashMap<String, PathBuf> = HashMap::new();
        for (path, lesson) in lessons {
            if let Some(first) = first_path.get(&lesson.id) {
                problems.push(Problem {
                    path: path.clone(),
                    line: field_line(&path, "id"),
                    reason: format!(
                        "duplicate lesson id `{}`: {} already uses it",
                        lesson.id,
                        first.display()
                    ),
                });
                continue;
            }
            first_path.insert(lesson.id.clone(), path);
            kept.push(Arc::new(lesson));
        }
        for lesson in &kept {
            for related in &lesson.related {
                if first_path.contains_key(related) && *related != lesson.id {
                    continue;
                }
                let path = first_path[&lesson.id].clone();
                let reason = if *related == lesson.id {
                    "`related` names the lesson itself (ignored)".to_string()
                } else {
                    format!("`related` names `{related}`, which is not a lesson here (ignored)")
                };
                problems.push(Problem {
                    line: field_line(&path, "related"),
                    path,
                    reason,
                });
            }
        }
        Catalog::assemble(kept, problems, first_path)
    }

    /// Sorts, resolves `related` ids, indexes by id.
    fn assemble(
        mut kept: Vec<Arc<Lesson>>,
        mut problems: Vec<Problem>,
        sources: HashMap<String, PathBuf>,
    ) -> Catalog {
        kept.sort_by(|a, b| a.id.cmp(&b.id));
        let ids: std::collections::HashSet<String> = kept.iter().map(|l| l.id.clone()).collect();
        for lesson in &mut kept {
            if lesson
                .related
                .iter()
                .any(|r| !ids.contains(r) || *r == lesson.id)
            {
                let lesson = Arc::make_mut(lesson);
                let own = lesson.id.clone();
                lesson.related.retain(|r| ids.contains(r) && *r != own);
            }
        }
        let by_id = kept
            .iter()
            .enumerate()
            .map(|(i, l)| (l.id.clone(), i))
            .collect();
        problems.sort_by(|a, b| a.path.cmp(&b.path).then(a.line.cmp(&b.line)));
        Catalog {
            lessons: kept,
            by_id,
            problems,
            sources,
        }
    }

    /// Keeps serving the last good version of lessons whose file is broken now: for every
    /// problem with a lesson file that `previous` had loaded from the same path, that lesson
    /// stays (the problem is still reported).
    pub fn keeping_last_good(self, previous: &Catalog) -> Catalog {
        let mut lessons = self.lessons;
        let mut sources = self.sources;
        for problem in &self.problems {
            let Some((id, _)) = previous
                .sources
                .iter()
                .find(|(_, path)| **path == problem.path)
            else {
                continue;
            };
            if sources.contains_key(id) {
                continue;
            }
            if let Some(lesson) = previous.get(id) {
                tracing::warn!(lesson = %id, "{problem}; serving its last good version");
                lessons.push(lesson.clone());
                sources.insert(id.clone(), problem.path.clone());
            }
        }
        Catalog::assemble(lessons, self.problems, sources)
    }

    /// The lesson with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Lesson>> {
        self.by_id.get(id).map(|&i| &self.lessons[i])
    }

    /// Number of passages over all lessons.
    pub fn passage_count(&self) -> usize {
        self.lessons.iter().map(|l| l.passages.len()).sum()
    }
}

/// The line of `id:` in a file's front matter, for duplicate-id reports.
/// The 1-based line of a front-matter field (`key:`) in a lesson file; 1 when not found.
fn field_line(path: &Path, key: &str) -> usize {
    let key = format!("{key}:");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .take(64)
                .position(|l| l.trim_start().starts_with(&key))
        })
        .map_or(1, |i| i + 1)
}

/// Reads and parses every `*.md` lesson under `dir` (sub-folders too; `README.md` and hidden
/// files are skipped). Never fails as a whole: unreadable files become problems.
pub fn load_catalog(dir: &Path) -> Result<Catalog, std::io::Error> {
    let mut files = Vec::new();
    collect_markdown(dir, &mut files)?;
    files.sort();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().div_ceil(64).max(1));
    let chunk = files.len().div_ceil(workers).max(1);
    let results: Vec<Result<(PathBuf, Lesson), Vec<Problem>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|paths| scope.spawn(move || paths.iter().map(|p| load_one(p)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut lessons = Vec::new();
    let mut problems = Vec::new();
    for result in results {
        match result {
            Ok((path, lesson)) => lessons.push((path, lesson)),
            Err(found) => problems.extend(found),
        }
    }
    // A lesson whose questions or quiz file is broken still loads; its problems travel
    // separately.
    let mut question_problems = Vec::new();
    for (path, lesson) in &mut lessons {
        if let Some(problem) = attach_questions_file(path, lesson) {
            question_problems.push(problem);
        }
        question_problems.extend(attach_quiz_file(path, lesson));
    }
    problems.extend(question_problems);
    Ok(Catalog::from_lessons(lessons, problems))
}

fn collect_markdown(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), std::io::Error> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_markdown(&path, files)?;
        } else if name.ends_with(".md") && !name.eq_ignore_ascii_case("README.md") {
            files.push(path);
        }
    }
    Ok(())
}

fn load_one(path: &Path) -> Result<(PathBuf, Lesson), Vec<Problem>> {
    let problem = |line: usize, reason: String| {
        vec![Problem {
            path: path.to_path_buf(),
            line,
            reason,
        }]
    };
    let bytes =
        std::fs::read(path).map_err(|e| problem(1, format!("cannot read the file: {e}")))?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(problem(
                line,
                format!(
                    "the file is not UTF-8 (invalid byte at offset {}); save it as UTF-8",
                    e.valid_up_to()
                ),
            ));
        }
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut lesson = parse_lesson(text, &stem).map_err(|e| problem(e.line, e.reason))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(&PARSER_VERSION.to_le_bytes());
    hasher.update(&bytes);
    lesson.hash = hasher
        .finalize()
        .to_hex()
        .get(..32)
        .unwrap_or_default()
        .to_string();
    Ok((path.to_path_buf(), lesson))
}

/// Reads `STEM.questions.toml` beside the lesson, if any, and adds its questions.
fn attach_questions_file(lesson_path: &Path, lesson: &mut Lesson) -> Option<Problem> {
    let questions_path = lesson_path.with_extension("questions.toml");
    let text = match std::fs::read_to_string(&questions_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(Problem {
                path: questions_path,
                line: 1,
                reason: format!("cannot read the questions file: {e}"),
            });
        }
    };
    match parse_questions(&text, lesson) {
        Ok(questions) => {
            lesson.questions.extend(questions);
            None
        }
        Err(e) => Some(Problem {
            path: questions_path,
            line: e.line.min(LineIndex::new(&text).last_line()),
            reason: e.reason,
        }),
    }
}

/// Reads `STEM.quiz.toml` beside the lesson, if any: its valid items become the lesson's quiz,
/// and each invalid one a problem on its line.
fn attach_quiz_file(lesson_path: &Path, lesson: &mut Lesson) -> Vec<Problem> {
    let quiz_path = lesson_path.with_extension("quiz.toml");
    let text = match std::fs::read_to_string(&quiz_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            return vec![Problem {
                path: quiz_path,
                line: 1,
                reason: format!("cannot read the quiz file: {e}"),
            }];
        }
    };
    let (quiz, problems) = super::quiz::parse_quiz(&text, lesson);
    lesson.quiz = quiz;
    let last = LineIndex::new(&text).last_line();
    problems
        .into_iter()
        .map(|e| Problem {
            path: quiz_path.clone(),
            line: e.line.min(last),
            reason: e.reason,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &[u8]) {
        std::fs::write(dir.join(name), text).expect("write test file");
    }

    #[test]
    fn broken_files_are_reported_and_the_rest_still_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = "---\nid: good\ntitle: Good\n---\n## A\n\nText.\n";
        write(dir.path(), "good.md", good.as_bytes());
        write(dir.path(), "copy.md", good.as_bytes());
        write(
            dir.path(),
            "latin1.md",
            b"---\nid: l\ntitle: L\n---\n## A\n\ncaf\xe9\n",
        );
        write(dir.path(), "empty.md", b"---\nid: e\ntitle: E\n---\n");
        write(dir.path(), "README.md", b"not a lesson");
        write(
            dir.path(),
            "good.questions.toml",
            b"[[questions]]\nq = \"Where?\"\nsection = \"missing\"\n",
        );
        let catalog = load_catalog(dir.path()).expect("folder readable");
        let ids: Vec<&str> = catalog.lessons.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, vec!["good"]);
        let reports: Vec<String> = catalog
            .problems
            .iter()
            .map(|p| {
                format!(
                    "{}:{}: {}",
                    p.path
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default(),
                    p.line,
                    p.reason.split(':').next().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            reports,
            vec![
                "empty.md:4: the lesson has no text",
                "good.md:2: duplicate lesson id `good`",
                "good.questions.toml:2: question \"Where?\" names section `missing`, which is not in the lesson (sections",
                "latin1.md:7: the file is not UTF-8 (invalid byte at offset 32); save it as UTF-8",
            ]
        );
    }

    #[test]
    fn unknown_related_ids_are_reported_on_their_line_and_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "a.md",
            b"---\nid: a\ntitle: A\nrelated: [b, ghost, a]\n---\n## A\n\nText.\n",
        );
        write(
            dir.path(),
            "b.md",
            b"---\nid: b\ntitle: B\n---\n## B\n\nText.\n",
        );
        let catalog = load_catalog(dir.path()).expect("folder readable");
        assert_eq!(catalog.get("a").expect("a loads").related, vec!["b"]);
        let reports: Vec<String> = catalog
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.line, p.reason))
            .collect();
        assert_eq!(
            reports,
            vec![
                "4: `related` names `ghost`, which is not a lesson here (ignored)",
                "4: `related` names the lesson itself (ignored)",
            ]
        );
    }
}
