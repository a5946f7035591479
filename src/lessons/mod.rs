//! Lessons: the Markdown files authors write, parsed into sections and citable passages.
//!
//! [`parse`] is pure (text in, [`Lesson`] or [`LessonError`] with a line out) and never panics;
//! [`load`] walks a folder, reads files and collects every problem without stopping at the first.
//! Nothing here knows about the index, the HTTP layer or models.

mod load;
mod parse;
pub mod quiz;

pub use load::{Catalog, Problem, load_catalog};
pub use parse::{LessonError, PARSER_VERSION, markdown_options, parse_lesson, parse_questions};

use serde::{Deserialize, Serialize};

/// One lesson of the catalog, as parsed from its Markdown file.
#[derive(Debug, Clone, Serialize)]
pub struct Lesson {
    /// Stable, URL-safe id, unique across the catalog.
    pub id: String,
    pub title: String,
    pub summary: String,
    pub track: Option<String>,
    pub minutes: Option<u32>,
    /// The language the lesson is written in (ISO 639-1, `en` unless the front matter says).
    pub language: String,
    /// Ids of related lessons, as the author listed them (unknown ids are dropped by the loader).
    pub related: Vec<String>,
    pub sections: Vec<Section>,
    pub passages: Vec<Passage>,
    /// Golden questions from the front matter and the sibling `.questions.toml` file.
    pub questions: Vec<GoldenQuestion>,
    /// The author's quiz, from the sibling `.quiz.toml` file.
    #[serde(skip)]
    pub quiz: Option<quiz::Quiz>,
    /// The Markdown body (after the front matter), kept to render the lesson page.
    #[serde(skip)]
    pub body: String,
    /// Content hash of the source file; the index uses it to skip unchanged lessons.
    #[serde(skip)]
    pub hash: String,
}

/// A `##` or `###` section (or the untitled introduction before the first heading).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    /// The heading's slug, unique within the lesson; also the page anchor.
    pub slug: String,
    pub title: String,
    /// 2 or 3 for headings; 0 for the introduction.
    pub level: u8,
    /// 1-based line of the heading in the source file.
    pub line: usize,
    /// Byte offset of the heading in [`Lesson::body`]: the lesson page finds each section's
    /// anchor by it, so an anchor can never drift from the section's id.
    #[serde(skip)]
    pub body_offset: usize,
}

/// A few sentences of one section, small enough to cite.
///
/// Invariant: a passage never crosses a section, and never splits a table row, a list item or
/// a block quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Passage {
    /// `LESSON_ID#SECTION-SLUG-N`, N counting from 1 within the section.
    pub id: String,
    /// Index into [`Lesson::sections`].
    pub section: usize,
    /// Readable plain text: blocks separated by newlines, list items as `- item`, table rows as
    /// `Header: cell. Header: cell.`.
    pub text: String,
    /// 1-based line in the source file where the passage starts.
    pub line: usize,
}

/// A question an author expects the tutor to answer from a section, or to refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenQuestion {
    pub q: String,
    /// Slug of the section that must be cited (answerable questions).
    #[serde(default)]
    pub section: Option<String>,
    /// True when the lesson must refuse the question.
    #[serde(default)]
    pub refuse: bool,
    /// For a refusal: the lesson the refusal should point to.
    #[serde(default)]
    pub points_to: Option<String>,
    /// Phrases the answer must contain (case and spacing ignored).
    #[serde(default)]
    pub must: Vec<String>,
    /// Phrases the answer must not contain.
    #[serde(default)]
    pub must_not: Vec<String>,
    /// Questions asked before this one in the same conversation, each answered in turn: makes
    /// this a follow-up ("and the second one?").
    #[serde(default)]
    pub after: Vec<String>,
}

impl Lesson {
    /// The section a passage belongs to.
    pub fn section_of(&self, passage: &Passage) -> &Section {
        &self.sections[passage.section]
    }

    /// Looks a section up by its slug.
    pub fn section(&self, slug: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.slug == slug)
    }
}

/// Turns a heading into its anchor: lower-case letters and digits, other runs become `-`.
pub fn slugify(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    let mut dash = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if dash && !slug.is_empty() {
                slug.push('-');
            }
            dash = false;
            slug.extend(c.to_lowercase());
        } else if c != '\'' && c != '’' {
            dash = true;
        }
    }
    if slug.is_empty() {
        slug.push_str("section");
    }
    slug
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn slugs_are_lower_case_words_joined_by_dashes() {
        assert_eq!(slugify("Defining the Terms"), "defining-the-terms");
        assert_eq!(slugify("  Who bears liability? "), "who-bears-liability");
        assert_eq!(slugify("Open weights + code"), "open-weights-code");
        assert_eq!(slugify("The model's licence"), "the-models-licence");
        assert_eq!(slugify("C++ & Rust"), "c-rust");
        assert_eq!(slugify("???"), "section");
        assert_eq!(slugify("Übersicht 2024"), "übersicht-2024");
    }
}
