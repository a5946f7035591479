//! Parses one lesson file: YAML front matter, then Markdown cut into sections and passages.
//!
//! Pure and total: no I/O, no panics; every failure is a [`LessonError`] with the 1-based line
//! of the source file where an author should look.

use super::{GoldenQuestion, Lesson, Passage, Section, slugify};
use crate::text::{LineIndex, cut, split_sentences};
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde::Deserialize;
use std::collections::HashMap;

/// Bumped whenever parsing changes what passages come out, so indexes built by an older
/// parser are refreshed.
pub const PARSER_VERSION: u32 = 2;

/// A passage grows block by block up to about this many characters.
const PASSAGE_TARGET_CHARS: usize = 520;
/// A paragraph longer than this is cut between sentences.
const PARAGRAPH_MAX_CHARS: usize = 700;

/// Why a lesson (or its questions file) could not be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LessonError {
    /// 1-based line in the file.
    pub line: usize,
    pub reason: String,
}

impl LessonError {
    pub(crate) fn at(line: usize, reason: impl Into<String>) -> LessonError {
        LessonError {
            line,
            reason: reason.into(),
        }
    }
}

#[derive(Deserialize)]
struct FrontMatter {
    id: Option<serde_yaml_ng::Value>,
    title: Option<serde_yaml_ng::Value>,
    summary: Option<serde_yaml_ng::Value>,
    track: Option<serde_yaml_ng::Value>,
    minutes: Option<u32>,
    language: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    related: Vec<String>,
    #[serde(default)]
    questions: Vec<GoldenQuestion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionsFile {
    #[serde(default)]
    questions: Vec<GoldenQuestion>,
}

/// Parses a lesson's text. `fallback_id` (the file name without `.md`) is used when the front
/// matter has no `id`.
pub fn parse_lesson(text: &str, fallback_id: &str) -> Result<Lesson, LessonError> {
    let lines = LineIndex::new(text);
    let (front, front_start, body_start) = split_front_matter(text)?;
    let front_line = lines.line(front_start);
    let meta: FrontMatter = if front.trim().is_empty() {
        return Err(LessonError::at(
            1,
            "the front matter is empty: it needs at least `title`",
        ));
    } else {
        serde_yaml_ng::from_str(front).map_err(|e| {
            let last_front_line = front_line + front.lines().count().max(1) - 1;
            let line = e.location().map_or(front_line, |l| {
                (front_line + l.line() - 1).min(last_front_line)
            });
            // A quote left open swallows the rest of the front matter, so YAML reports the
            // end of it; the line to fix is where the quote opens.
            match unclosed_quote(front) {
                Some(at) if front_line + at <= line => LessonError::at(
                    front_line + at,
                    "front matter: a quote opens on this line and is never closed",
                ),
                _ => LessonError::at(line, format!("front matter: {}", yaml_message(&e))),
            }
        })?
    };
    let field_line = |key: &str| {
        front
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{key}:")))
            .map_or(front_line, |i| front_line + i)
    };

    let id = match meta.id {
        Some(value) => scalar(&value)
            .ok_or_else(|| LessonError::at(field_line("id"), "`id` must be a plain string"))?,
        None => fallback_id.to_string(),
    };
    validate_id(&id).map_err(|reason| LessonError::at(field_line("id"), reason))?;
    let title = meta
        .title
        .as_ref()
        .and_then(scalar)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| LessonError::at(front_line, "the front matter has no `title`"))?;
    let summary = meta.summary.as_ref().and_then(scalar).unwrap_or_default();
    let track = meta.track.as_ref().and_then(scalar);
    let language = match &meta.language {
        None => "en".to_string(),
        Some(value) => scalar(value)
            .map(|l| l.trim().to_lowercase())
            .filter(|l| crate::language::SPOKEN.contains(&l.as_str()))
            .ok_or_else(|| {
                LessonError::at(
                    field_line("language"),
                    format!(
                        "`language` must be one of {}",
                        crate::language::SPOKEN.join(", ")
                    ),
                )
            })?,
    };
    for related in &meta.related {
        validate_id(related).map_err(|reason| {
            LessonError::at(field_line("related"), format!("`related`: {reason}"))
        })?;
    }

    let body = cut(text, body_start..);
    let (sections, passages) = cut_passages(&id, body, body_start, &lines);
    if passages.is_empty() {
        return Err(LessonError::at(
            lines.last_line(),
            "the lesson has no text: add at least one section with a paragraph",
        ));
    }
    let lesson = Lesson {
        id,
        title: title.trim().to_string(),
        summary: summary.trim().to_string(),
        track,
        minutes: meta.minutes,
        language,
        related: meta.related,
        sections,
        passages,
        questions: Vec::new(),
        quiz: None,
        body: body.to_string(),
        hash: String::new(),
    };
    let questions = meta.questions;
    check_questions(&lesson, &questions).map_err(|reason| {
        LessonError::at(field_line("questions"), format!("`questions`: {reason}"))
    })?;
    Ok(Lesson {
        questions,
        ..lesson
    })
}

/// Parses a `LESSON.questions.toml` file and checks it against its lesson.
pub fn parse_questions(text: &str, lesson: &Lesson) -> Result<Vec<GoldenQuestion>, LessonError> {
    let lines = LineIndex::new(text);
    let file: QuestionsFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |span| lines.line(span.start));
        LessonError::at(line, e.message().to_string())
    })?;
    check_questions(lesson, &file.questions).map_err(|reason| {
        let line = text
            .find(reason.split('"').nth(1).unwrap_or("\u{0}"))
            .map_or(1, |at| lines.line(at));
        LessonError::at(line, reason)
    })?;
    Ok(file.questions)
}

fn check_questions(lesson: &Lesson, questions: &[GoldenQuestion]) -> Result<(), String> {
    for question in questions {
        if question.q.trim().is_empty() {
            return Err("a question has an empty `q`".to_string());
        }
        match (&question.section, question.refuse) {
            (None, false) => {
                return Err(format!(
                    "question \"{}\" needs `section` (the slug that answers it) or `refuse = true`",
                    question.q
                ));
            }
            (Some(slug), false) if lesson.section(slug).is_none() => {
                let known: Vec<&str> = lesson.sections.iter().map(|s| s.slug.as_str()).collect();
                return Err(format!(
                    "question \"{}\" names section `{slug}`, which is not in the lesson (sections: {})",
                    question.q,
                    known.join(", ")
                ));
            }
            _ => {}
        }
        if let Some(phrase) = question
            .must
            .iter()
            .chain(&question.must_not)
            .chain(&question.after)
            .find(|p| p.trim().is_empty())
        {
            return Err(format!(
                "question \"{}\" has an empty phrase or question ({phrase:?}) in `must`, `must_not` or `after`",
                question.q
            ));
        }
        if question.refuse && !question.must.is_empty() {
            return Err(format!(
                "question \"{}\" must be refused, so it cannot list phrases the answer `must` contain",
                question.q
            ));
        }
    }
    Ok(())
}

/// Returns (front matter text, its byte offset, body byte offset).
fn split_front_matter(text: &str) -> Result<(&str, usize, usize), LessonError> {
    let rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text_start = text.len() - rest.len();
    let first_line = rest.split_inclusive('\n').next().unwrap_or_default();
    if first_line.trim_end() != "---" {
        return Err(LessonError::at(
            1,
            "missing front matter: the file must start with a `---` line, then `id:` and `title:`, then `---`",
        ));
    }
    let front_start = text_start + first_line.len();
    let mut offset = front_start;
    for line in cut(text, front_start..).split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare == "..." {
            return Ok((
                cut(text, front_start..offset),
                front_start,
                offset + line.len(),
            ));
        }
        offset += line.len();
    }
    Err(LessonError::at(
        1,
        "the front matter is not closed: add a `---` line after it",
    ))
}

/// The text of a YAML scalar (string, number or boolean).
fn scalar(value: &serde_yaml_ng::Value) -> Option<String> {
    match value {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first front-matter line (0-based) whose value opens a quote it does not close.
fn unclosed_quote(front: &str) -> Option<usize> {
    front.lines().position(|line| {
        let line = line.trim_start();
        let value = match line.strip_prefix("- ") {
            Some(item) => item.split_once(": ").map_or(item, |(_, v)| v),
            None => line.split_once(':').map_or("", |(_, v)| v),
        }
        .trim();
        let mut chars = value.chars();
        match chars.next() {
            Some('"') => {
                let mut escaped = false;
                !chars.any(|c| {
                    let closes = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })
            }
            // In single quotes `''` is an escaped quote: an odd count leaves it open.
            Some('\'') => chars.filter(|&c| c == '\'').count() % 2 == 0,
            _ => false,
        }
    })
}

fn yaml_message(error: &serde_yaml_ng::Error) -> String {
    let text = error.to_string();
    // The location is reported as our own line number; drop serde_yaml's "at line X column Y".
    match text.split_once(" at line ") {
        Some((message, _)) => message.to_string(),
        None => text,
    }
}

/// Lesson ids appear in URLs and passage ids: ASCII letters, digits, `-`, `_` and `.`.
fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the lesson id is empty".to_string());
    }
    if id.len() > 128 {
        return Err("the lesson id is longer than 128 characters".to_string());
    }
    if id.starts_with('.')
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "`{id}` is not a valid lesson id: use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// What a block of Markdown is, for joining and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Paragraph,
    ListItem,
    TableRow,
    Quote,
    Code,
}

#[derive(Debug)]
struct Block {
    kind: BlockKind,
    text: String,
    offset: usize,
}

/// The Markdown dialect of lessons, for the parser and the lesson pages alike: CommonMark with
/// tables, strikethrough and task lists.
pub fn markdown_options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// Walks the Markdown events and cuts sections and passages.
fn cut_passages(
    lesson_id: &str,
    body: &str,
    body_start: usize,
    lines: &LineIndex,
) -> (Vec<Section>, Vec<Passage>) {
    let mut cutter = Cutter::new(body_start, lines);
    for (event, range) in Parser::new_ext(body, markdown_options()).into_offset_iter() {
        cutter.event(event, range.start);
    }
    cutter.finish(lesson_id)
}

/// A heading being read.
struct OpenHeading {
    level: u8,
    text: String,
    /// Offset in the file (for its line) and in the body (for the page's anchor).
    at: usize,
    body_offset: usize,
}

/// The state of one walk over a lesson's Markdown events: the sections found so far with their
/// blocks, and what is open (a heading, a block, a table row or cell, list and quote depth).
/// One method per kind of event; a block is closed into the current section by [`Cutter::close`].
struct Cutter<'a> {
    body_start: usize,
    lines: &'a LineIndex,
    sections: Vec<Section>,
    /// The blocks of each section, in step with `sections`.
    section_blocks: Vec<Vec<Block>>,
    /// Blocks before the first section: an "Introduction" section if there are any.
    intro: Vec<Block>,
    slug_counts: HashMap<String, usize>,
    heading: Option<OpenHeading>,
    block: Option<Block>,
    list_depth: usize,
    quote_depth: usize,
    table_head: Vec<String>,
    in_table_head: bool,
    row: Vec<String>,
    cell: Option<String>,
}

impl<'a> Cutter<'a> {
    fn new(body_start: usize, lines: &'a LineIndex) -> Cutter<'a> {
        Cutter {
            body_start,
            lines,
            sections: Vec::new(),
            section_blocks: Vec::new(),
            intro: Vec::new(),
            slug_counts: HashMap::new(),
            heading: None,
            block: None,
            list_depth: 0,
            quote_depth: 0,
            table_head: Vec::new(),
            in_table_head: false,
            row: Vec::new(),
            cell: None,
        }
    }

    /// True outside lists and block quotes, where blocks open and close at the top level.
    fn at_top(&self) -> bool {
        self.list_depth == 0 && self.quote_depth == 0
    }

    /// Adds a finished block to the current section (or the introduction); empty ones vanish.
    fn push(&mut self, block: Block) {
        if block.text.trim().is_empty() {
            return;
        }
        if self.sections.is_empty() {
            self.intro.push(block);
        } else if let Some(last) = self.section_blocks.last_mut() {
            last.push(block);
        }
    }

    /// Closes the open block, if any.
    fn close(&mut self) {
        if let Some(open) = self.block.take() {
            self.push(open);
        }
    }

    /// Closes the open block and opens one of `kind`.
    fn open(&mut self, kind: BlockKind, offset: usize) {
        self.close();
        self.block = Some(Block {
            kind,
            text: String::new(),
            offset,
        });
    }

    fn event(&mut self, event: Event<'_>, body_offset: usize) {
        let offset = self.body_start + body_offset;
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                self.close();
                self.heading = Some(OpenHeading {
                    level: heading_level(level),
                    text: String::new(),
                    at: offset,
                    body_offset,
                });
            }
            Event::End(TagEnd::Heading(_)) => self.heading_end(),
            Event::Start(Tag::BlockQuote(_)) => {
                if self.at_top() {
                    self.open(BlockKind::Quote, offset);
                }
                self.quote_depth += 1;
            }
            Event::End(TagEnd::BlockQuote(_)) => {
                self.quote_depth = self.quote_depth.saturating_sub(1);
                if self.at_top() {
                    self.close();
                }
            }
            Event::Start(Tag::Item) => self.item_start(offset),
            Event::End(TagEnd::Item) if self.list_depth == 1 && self.quote_depth == 0 => {
                self.close();
            }
            Event::Start(Tag::List(_)) => {
                self.list_depth += 1;
                if self.list_depth > 1
                    && let Some(open) = self.block.as_mut()
                {
                    trim_trailing_colon(&mut open.text);
                    separate(&mut open.text, ": ");
                }
            }
            Event::End(TagEnd::List(_)) => self.list_depth = self.list_depth.saturating_sub(1),
            Event::Start(Tag::Paragraph) => match self.block.as_mut() {
                Some(open) => separate(&mut open.text, " "),
                None => self.open(BlockKind::Paragraph, offset),
            },
            Event::End(TagEnd::Paragraph) | Event::End(TagEnd::CodeBlock) if self.at_top() => {
                self.close();
            }
            Event::Start(Tag::CodeBlock(_)) if self.at_top() => {
                self.open(BlockKind::Code, offset);
            }
            Event::Start(Tag::Table(_)) => {
                self.close();
                self.table_head.clear();
            }
            Event::Start(Tag::TableHead) => self.in_table_head = true,
            Event::End(TagEnd::TableHead) => {
                self.in_table_head = false;
                self.table_head = std::mem::take(&mut self.row);
            }
            Event::Start(Tag::TableRow) => self.row.clear(),
            Event::End(TagEnd::TableRow) if self.in_table_head => {}
            Event::End(TagEnd::TableRow) => {
                let text = table_row_text(&self.table_head, &self.row);
                self.push(Block {
                    kind: BlockKind::TableRow,
                    text,
                    offset,
                });
                self.row.clear();
            }
            Event::Start(Tag::TableCell) => self.cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => {
                let cell = self.cell.take().unwrap_or_default();
                self.row.push(cell.trim().to_string());
            }
            Event::Text(text) | Event::Code(text) => self.text(&text, offset),
            Event::SoftBreak | Event::HardBreak => self.line_break(),
            _ => {}
        }
    }

    /// A `##` or `###` heading starts a section; `#` repeats the lesson title; deeper ones are
    /// part of the section's text.
    fn heading_end(&mut self) {
        let Some(heading) = self.heading.take() else {
            return;
        };
        let title = heading.text.trim().to_string();
        match heading.level {
            2 | 3 if !title.is_empty() => {
                let slug = unique_slug(&mut self.slug_counts, slugify(&title));
                self.sections.push(Section {
                    slug,
                    title,
                    level: heading.level,
                    line: self.lines.line(heading.at),
                    body_offset: heading.body_offset,
                });
                self.section_blocks.push(Vec::new());
            }
            1..=3 => {}
            _ => self.push(Block {
                kind: BlockKind::Paragraph,
                text: title,
                offset: heading.at,
            }),
        }
    }

    /// A top-level list item is a block of its own; a nested one joins its parent's text.
    fn item_start(&mut self, offset: usize) {
        if self.list_depth == 1 && self.quote_depth == 0 {
            self.open(BlockKind::ListItem, offset);
        } else if let Some(open) = self.block.as_mut() {
            // "Conditions: a; b" reads better than "Conditions:; a; b".
            if open.text.trim_end().ends_with(':') {
                separate(&mut open.text, " ");
            } else {
                separate(&mut open.text, "; ");
            }
        }
    }

    /// Text goes to the open table cell, else the open heading, else the open block (opening
    /// one when there is none).
    fn text(&mut self, text: &str, offset: usize) {
        let target = if let Some(cell) = self.cell.as_mut() {
            cell
        } else if let Some(heading) = self.heading.as_mut() {
            &mut heading.text
        } else {
            let kind = if self.list_depth > 0 {
                BlockKind::ListItem
            } else {
                BlockKind::Paragraph
            };
            let open = self.block.get_or_insert_with(|| Block {
                kind,
                text: String::new(),
                offset,
            });
            &mut open.text
        };
        target.push_str(text);
    }

    /// Line breaks are spaces, except in code.
    fn line_break(&mut self) {
        if let Some(cell) = self.cell.as_mut() {
            cell.push(' ');
        } else if let Some(open) = self.block.as_mut() {
            open.text.push(if open.kind == BlockKind::Code {
                '\n'
            } else {
                ' '
            });
        }
    }

    /// Closes what is open, adds the introduction, and groups each section's blocks into
    /// passages.
    fn finish(mut self, lesson_id: &str) -> (Vec<Section>, Vec<Passage>) {
        self.close();
        let mut sections = self.sections;
        let mut section_blocks = self.section_blocks;
        if !self.intro.is_empty() {
            let slug = unique_slug(&mut self.slug_counts, "introduction".to_string());
            sections.insert(
                0,
                Section {
                    slug,
                    title: "Introduction".to_string(),
                    level: 0,
                    line: self.lines.line(self.intro[0].offset),
                    body_offset: self.intro[0].offset - self.body_start,
                },
            );
            section_blocks.insert(0, self.intro);
        }
        let mut passages = Vec::new();
        for (index, blocks) in section_blocks.into_iter().enumerate() {
            let slug = &sections[index].slug;
            for (n, (text, offset)) in group_blocks(blocks).into_iter().enumerate() {
                passages.push(Passage {
                    id: format!("{lesson_id}#{slug}-{}", n + 1),
                    section: index,
                    text,
                    line: self.lines.line(offset),
                });
            }
        }
        (sections, passages)
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// Makes a slug unique within a lesson the way web pages do: `terms`, `terms-2`, `terms-3`.
fn unique_slug(counts: &mut HashMap<String, usize>, slug: String) -> String {
    let count = counts.entry(slug.clone()).or_insert(0);
    *count += 1;
    if *count == 1 {
        slug
    } else {
        let candidate = format!("{slug}-{count}");
        counts.insert(candidate.clone(), 1);
        candidate
    }
}

fn separate(text: &mut String, separator: &str) {
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    if !text.is_empty() {
        text.push_str(separator);
    }
}

fn trim_trailing_colon(text: &mut String) {
    let trimmed = text.trim_end().trim_end_matches(':').len();
    text.truncate(trimmed);
}

/// A table row as one sentence that keeps the header words:
/// `Tier: Open weights; Released: weights only.` (one sentence, so no answer splits a row).
fn table_row_text(head: &[String], row: &[String]) -> String {
    let mut parts = Vec::with_capacity(row.len());
    for (i, cell) in row.iter().enumerate() {
        let cell = cell.trim_end_matches(['.', ';']);
        if cell.is_empty() {
            continue;
        }
        match head.get(i).filter(|h| !h.is_empty()) {
            Some(header) => parts.push(format!("{header}: {cell}")),
            None => parts.push(cell.to_string()),
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{}.", parts.join("; "))
    }
}

/// Normalises white space inside a block (code keeps its lines).
fn clean(block: &Block) -> String {
    match block.kind {
        BlockKind::Code => block.text.trim_end().to_string(),
        _ => block.text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Groups a section's blocks into passages of about [`PASSAGE_TARGET_CHARS`], cutting long
/// paragraphs between sentences. Returns (text, byte offset of the first block).
fn group_blocks(blocks: Vec<Block>) -> Vec<(String, usize)> {
    // First make every unit atomic: long paragraphs become several units.
    let mut units: Vec<(String, usize)> = Vec::new();
    for block in &blocks {
        let text = clean(block);
        if text.is_empty() {
            continue;
        }
        match block.kind {
            BlockKind::Paragraph if text.len() > PARAGRAPH_MAX_CHARS => {
                let mut current = String::new();
                for sentence in split_sentences(&text) {
                    if !current.is_empty() && current.len() + sentence.len() > PASSAGE_TARGET_CHARS
                    {
                        units.push((std::mem::take(&mut current), block.offset));
                    }
                    separate(&mut current, " ");
                    current.push_str(sentence);
                }
                if !current.is_empty() {
                    units.push((current, block.offset));
                }
            }
            BlockKind::ListItem => units.push((format!("- {text}"), block.offset)),
            _ => units.push((text, block.offset)),
        }
    }
    let mut passages: Vec<(String, usize)> = Vec::new();
    let mut current: Option<(String, usize)> = None;
    for (text, offset) in units {
        match current.as_mut() {
            Some((passage, _)) if passage.len() + text.len() < PASSAGE_TARGET_CHARS => {
                passage.push('\n');
                passage.push_str(&text);
            }
            _ => {
                if let Some(done) = current.take() {
                    passages.push(done);
                }
                current = Some((text, offset));
            }
        }
    }
    passages.extend(current);
    passages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lesson(body: &str) -> Lesson {
        let text = format!("---\nid: demo\ntitle: Demo\n---\n{body}");
        parse_lesson(&text, "demo").expect("the test lesson parses")
    }

    fn error(text: &str) -> LessonError {
        parse_lesson(text, "demo").expect_err("the test lesson is broken")
    }

    #[test]
    fn sections_and_passages_snapshot() {
        let parsed = lesson(
            "Openness is a spectrum.\n\n## Defining the terms\n\nPeople mean four things.\n\n| Tier | What is released |\n|---|---|\n| Closed API | Access only |\n| Open weights | Weights, no data |\n\n### Licences\n\n- **Permissive**: use it freely.\n- **Restricted**: with conditions:\n  - no military use\n  - a user cap\n\n> Open is a direction.\n\n## Defining the terms\n\nA second section with the same title.\n",
        );
        insta::assert_json_snapshot!(parsed);
    }

    #[test]
    fn table_rows_keep_their_header_words() {
        let parsed = lesson(
            "## Options\n\n| Choice | Trade-offs |\n|---|---|\n| Self-hosted | Full control, more ops. |\n",
        );
        assert_eq!(
            parsed.passages[0].text,
            "Choice: Self-hosted; Trade-offs: Full control, more ops."
        );
    }

    #[test]
    fn long_paragraphs_are_cut_between_sentences_and_ids_count_within_a_section() {
        let sentence = "This sentence is about forty-five characters. ";
        let parsed = lesson(&format!("## Long\n\n{}\n", sentence.repeat(30)));
        assert!(parsed.passages.len() >= 3);
        for (n, passage) in parsed.passages.iter().enumerate() {
            assert_eq!(passage.id, format!("demo#long-{}", n + 1));
            assert!(passage.text.ends_with('.'), "{}", passage.text);
            assert!(passage.text.len() <= PASSAGE_TARGET_CHARS + sentence.len());
        }
    }

    #[test]
    fn a_long_list_item_is_never_split() {
        let item = "word ".repeat(200);
        let parsed = lesson(&format!("## List\n\n- {item}\n- short\n"));
        assert_eq!(parsed.passages.len(), 2);
        assert_eq!(parsed.passages[0].text, format!("- {}", item.trim()));
    }

    #[test]
    fn passages_start_on_the_line_of_their_first_block() {
        let parsed = lesson("## One\n\nFirst.\n\n## Two\n\nSecond.\n");
        assert_eq!(parsed.sections[0].line, 5);
        assert_eq!(parsed.passages[0].line, 7);
        assert_eq!(parsed.passages[1].line, 11);
    }

    #[test]
    fn broken_files_report_the_line_to_fix() {
        let cases: &[(&str, usize, &str)] = &[
            ("# no front matter\n", 1, "missing front matter"),
            ("---\nid: x\ntitle: X\n## Body\n", 1, "not closed"),
            (
                "---\nid: x\ntitle: [unclosed\n---\n## A\n\nText.\n",
                3,
                "front matter",
            ),
            ("---\nid: x\n---\n## A\n\nText.\n", 2, "no `title`"),
            (
                "---\nid: x\ntitle: \"Unclosed\nsummary: fine\nminutes: 5\n---\n## A\n\nText.\n",
                3,
                "quote",
            ),
            (
                "---\nid: x\ntitle: X\nsummary: 'it is open\n---\n## A\n\nText.\n",
                4,
                "quote",
            ),
            (
                "---\nid: bad id!\ntitle: X\n---\n## A\n\nText.\n",
                2,
                "not a valid lesson id",
            ),
            ("---\nid: x\ntitle: X\n---\n## Empty\n\n", 6, "no text"),
            (
                "---\nid: x\ntitle: X\nminutes: lots\n---\n## A\n\nText.\n",
                4,
                "front matter",
            ),
            (
                "---\nid: x\ntitle: X\nquestions:\n  - q: Why?\n    section: nowhere\n---\n## A\n\nText.\n",
                4,
                "not in the lesson",
            ),
        ];
        for (text, line, reason) in cases {
            let e = error(text);
            assert_eq!(e.line, *line, "{text:?} -> {e}");
            assert!(e.reason.contains(reason), "{text:?} -> {e}");
        }
    }

    #[test]
    fn the_id_defaults_to_the_file_name() {
        let parsed = parse_lesson("---\ntitle: X\n---\nSome text.\n", "from-file").expect("parses");
        assert_eq!(parsed.id, "from-file");
        assert_eq!(parsed.passages[0].id, "from-file#introduction-1");
    }

    #[test]
    fn questions_files_are_checked_against_the_lesson() {
        let parsed = lesson("## Terms\n\nText.\n");
        let ok = parse_questions(
            "[[questions]]\nq = \"What?\"\nsection = \"terms\"\n\n[[questions]]\nq = \"Bread?\"\nrefuse = true\n",
            &parsed,
        )
        .expect("valid questions");
        assert_eq!(ok.len(), 2);
        let e = parse_questions(
            "[[questions]]\nq = \"What?\"\nsection = \"terms\"\n\n[[questions]]\nq = \"Where?\"\nsection = \"nope\"\n",
            &parsed,
        )
        .expect_err("unknown section");
        assert_eq!(e.line, 6);
        let e = parse_questions("[[questions]]\nq = 3\n", &parsed).expect_err("wrong type");
        assert_eq!(e.line, 2);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC*") {
            let _ = parse_lesson(&text, "x");
            let _ = parse_lesson(&format!("---\ntitle: T\n---\n{text}"), "x");
        }

        #[test]
        fn markdownish_input_never_panics_and_passages_stay_in_order(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just("## Head\n".to_string()),
                proptest::strategy::Just("### Sub\n".to_string()),
                proptest::strategy::Just("- item\n".to_string()),
                proptest::strategy::Just("> quote\n".to_string()),
                proptest::strategy::Just("| a | b |\n|---|---|\n| c | d |\n".to_string()),
                "[a-zA-Z .!?]{0,80}\n",
                proptest::strategy::Just("\n".to_string()),
            ], 0..40)
        ) {
            let text = format!("---\ntitle: T\n---\n{}", parts.concat());
            if let Ok(parsed) = parse_lesson(&text, "x") {
                let again = parse_lesson(&text, "x").expect("parsing is deterministic");
                proptest::prop_assert_eq!(&parsed.passages, &again.passages);
                for pair in parsed.passages.windows(2) {
                    proptest::prop_assert!(pair[0].line <= pair[1].line);
                    proptest::prop_assert!(pair[0].section <= pair[1].section);
                }
            }
        }
    }
}
