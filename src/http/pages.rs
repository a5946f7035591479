//! The pages an author opens in a browser: the catalog (`/`) and each lesson (`/lessons/{id}`)
//! with the widget on it, plus the widget script and the page stylesheet, all built into the
//! binary (`TUTOR_DEV_ASSETS=dir` serves them from disk instead, for working on them).

use super::ErrorCode;
use super::{AppState, error::ApiError};
use crate::lessons::{Catalog, Lesson};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, context};
use pulldown_cmark::{CowStr, Event, HeadingLevel, Parser, Tag, TagEnd};
use std::sync::OnceLock;

const WIDGET_JS: &str = include_str!("../../assets/widget.js");
const WIDGET_STRINGS: &str = include_str!("../../assets/widget-strings.json");
/// Where the widget's words go into its script.
const STRINGS_MARKER: &str = "/*STRINGS*/{}";
/// The languages lessons may be written in: the widget speaks each of them.
const WIDGET_LANGUAGES: [&str; 6] = ["en", "es", "fr", "de", "pt", "it"];
const PAGE_CSS: &str = include_str!("../../assets/page.css");
const CATALOG_HTML: &str = include_str!("../../assets/templates/catalog.html");
const LESSON_HTML: &str = include_str!("../../assets/templates/lesson.html");
const DOCS_HTML: &str = include_str!("../../assets/docs.html");
const NOT_FOUND_HTML: &str = include_str!("../../assets/templates/not-found.html");
const FAVICON_SVG: &str = include_str!("../../assets/favicon.svg");
const LTI_TEMPLATES: [(&str, &str); 3] = [
    (
        "lti-message.html",
        include_str!("../../assets/templates/lti-message.html"),
    ),
    (
        "lti-picker.html",
        include_str!("../../assets/templates/lti-picker.html"),
    ),
    (
        "lti-return.html",
        include_str!("../../assets/templates/lti-return.html"),
    ),
];

/// The OpenAPI document, rendered once when the router is built.
pub static OPENAPI_JSON: OnceLock<String> = OnceLock::new();

/// The OpenAPI 3.1 description of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")))]
pub async fn openapi_json() -> Response {
    let mut response = OPENAPI_JSON
        .get()
        .cloned()
        .unwrap_or_default()
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A readable page of the API, rendered in the browser from `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "operations", responses((status = 200, content_type = "text/html", description = "HTML")))]
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}

fn asset(state: &AppState, name: &str, built_in: &'static str) -> String {
    match &state.dev_assets {
        Some(dir) => {
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|_| built_in.to_string())
        }
        None => built_in.to_string(),
    }
}

fn environment(state: &AppState) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.add_template_owned(
        "catalog.html",
        asset(state, "templates/catalog.html", CATALOG_HTML),
    )?;
    env.add_template_owned(
        "lesson.html",
        asset(state, "templates/lesson.html", LESSON_HTML),
    )?;
    env.add_template_owned(
        "not-found.html",
        asset(state, "templates/not-found.html", NOT_FOUND_HTML),
    )?;
    for (name, built_in) in LTI_TEMPLATES {
        env.add_template_owned(name, asset(state, &format!("templates/{name}"), built_in))?;
    }
    Ok(env)
}

pub(super) fn render(state: &AppState, name: &str, ctx: minijinja::Value) -> Response {
    static BUILT_IN: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    let rendered = if state.dev_assets.is_some() {
        environment(state).and_then(|env| env.get_template(name)?.render(ctx))
    } else {
        match BUILT_IN.get_or_init(|| environment(state).map_err(|e| e.to_string())) {
            Ok(env) => env.get_template(name).and_then(|t| t.render(ctx)),
            Err(e) => Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                e.clone(),
            )),
        }
    };
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, template = name, "page template failed");
            ApiError::new(ErrorCode::Internal, "the page could not be rendered").into_response()
        }
    }
}

/// The catalog page.
#[utoipa::path(get, path = "/", tag = "pages", responses((status = 200, content_type = "text/html", description = "HTML")))]
pub async fn catalog(State(state): State<AppState>) -> Response {
    let tutor = match state.tutor() {
        Ok(tutor) => tutor,
        Err(error) => return error.into_response(),
    };
    let catalog = tutor.retriever().catalog();
    let lessons: Vec<minijinja::Value> = catalog
        .lessons
        .iter()
        .map(|l| {
            context! { id => l.id, title => l.title, summary => l.summary, track => l.track, minutes => l.minutes }
        })
        .collect();
    let problems: Vec<String> = catalog.problems.iter().map(|p| p.to_string()).collect();
    render(
        &state,
        "catalog.html",
        context! { lessons => lessons, problems => problems },
    )
}

/// One lesson as a page, with the widget on it.
#[utoipa::path(get, path = "/lessons/{id}", tag = "pages", params(("id" = String, Path, description = "Lesson id")),
    responses((status = 200, content_type = "text/html", description = "HTML"), (status = 404, description = "Unknown lesson")))]
pub async fn lesson(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    lesson_page(&state, &id, false)
}

/// A lesson's page; after an LMS launch (`lti`) it stands alone, without links to the rest of
/// the catalog, and its widget sends the session token the launch put in the URL's fragment.
pub(super) fn lesson_page(state: &AppState, id: &str, lti: bool) -> Response {
    let tutor = match state.tutor() {
        Ok(tutor) => tutor,
        Err(error) => return error.into_response(),
    };
    let catalog = tutor.retriever().catalog();
    let Some(lesson) = catalog.get(id) else {
        return not_found_page(state, catalog, id, lti);
    };
    let related: Vec<minijinja::Value> = lesson
        .related
        .iter()
        .filter_map(|r| catalog.get(r))
        .map(|l| context! { id => l.id, title => l.title, summary => l.summary })
        .collect();
    render(
        state,
        "lesson.html",
        context! {
            lti => lti,
            lesson => context! { id => lesson.id, title => lesson.title, summary => lesson.summary, track => lesson.track, minutes => lesson.minutes, language => lesson.language },
            body_html => lesson_html(lesson),
            related => related,
            // A public widget key for the tutor's own pages when keys are required.
            pages_key => std::env::var("TUTOR_PAGES_KEY").ok().filter(|k| !k.trim().is_empty()),
        },
    )
}

/// The HTML 404 for a lesson page that does not exist: the lessons whose ids share the most
/// words with the one asked for (after an LMS launch, no links to the catalog).
fn not_found_page(state: &AppState, catalog: &Catalog, id: &str, lti: bool) -> Response {
    let wanted: Vec<&str> = id.split(['-', '_']).filter(|w| !w.is_empty()).collect();
    let mut lessons: Vec<(usize, &Lesson)> = catalog
        .lessons
        .iter()
        .map(|l| {
            let shared = l.id.split('-').filter(|w| wanted.contains(w)).count();
            (shared, l.as_ref())
        })
        .collect();
    lessons.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.title.cmp(&b.1.title)));
    let lessons: Vec<minijinja::Value> = lessons
        .into_iter()
        .take(8)
        .map(|(_, l)| context! { id => l.id, title => l.title })
        .collect();
    let mut response = render(
        state,
        "not-found.html",
        context! { id => id, lti => lti, lessons => lessons },
    );
    if response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    response
}

/// The site's icon (`/favicon.ico` too, which browsers ask for by themselves).
#[utoipa::path(get, path = "/favicon.svg", tag = "pages", responses((status = 200, content_type = "image/svg+xml", description = "SVG")))]
pub async fn favicon() -> Response {
    let mut response = static_asset(FAVICON_SVG.to_string(), "image/svg+xml");
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

/// The embeddable widget.
#[utoipa::path(get, path = "/widget.js", tag = "pages", responses((status = 200, content_type = "text/javascript", description = "JavaScript")))]
pub async fn widget(State(state): State<AppState>) -> Response {
    let script = match &state.dev_assets {
        None => built_in_widget().to_string(),
        Some(_) => widget_script(
            &asset(&state, "widget.js", WIDGET_JS),
            &asset(&state, "widget-strings.json", WIDGET_STRINGS),
        )
        .unwrap_or_else(|problem| {
            tracing::error!(%problem, "the widget's words are broken; serving the built-in widget");
            built_in_widget().to_string()
        }),
    };
    static_asset(script, "text/javascript; charset=utf-8")
}

/// The built-in widget with its words, put together (and checked) once. Called when the router
/// is built, so a broken table stops the start rather than a learner's page.
pub fn built_in_widget() -> &'static str {
    static SCRIPT: OnceLock<String> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        widget_script(WIDGET_JS, WIDGET_STRINGS)
            .unwrap_or_else(|problem| panic!("assets/widget-strings.json: {problem}"))
    })
}

/// The widget's script with its table of words put in, once the table is found whole: valid
/// JSON, every language lessons may use, each with every key of English and the same `{name}`
/// placeholders in each.
pub fn widget_script(script: &str, strings: &str) -> Result<String, String> {
    let table: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
        serde_json::from_str(strings).map_err(|e| format!("not a table of words: {e}"))?;
    let english = table.get("en").ok_or("no English (\"en\") words")?;
    let placeholders = |text: &str| -> Vec<String> {
        let mut names: Vec<String> = text
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
            .collect();
        names.sort();
        names
    };
    for language in WIDGET_LANGUAGES {
        let words = table
            .get(language)
            .ok_or_else(|| format!("no words in \"{language}\""))?;
        for (key, text) in english {
            let Some(said) = words.get(key) else {
                return Err(format!("\"{language}\" has no \"{key}\""));
            };
            if said.trim().is_empty() {
                return Err(format!("\"{language}\".\"{key}\" is empty"));
            }
            if placeholders(said) != placeholders(text) {
                return Err(format!(
                    "\"{language}\".\"{key}\" must use the placeholders {:?}",
                    placeholders(text)
                ));
            }
        }
        if let Some(extra) = words.keys().find(|k| !english.contains_key(*k)) {
            return Err(format!(
                "\"{language}\" has \"{extra}\", which English lacks"
            ));
        }
    }
    if !script.contains(STRINGS_MARKER) {
        return Err(format!(
            "the widget has no {STRINGS_MARKER} to put its words in"
        ));
    }
    // Compact, and safe inside a script: no "</" can close it.
    let compact = serde_json::to_string(&table)
        .map_err(|e| e.to_string())?
        .replace("</", "<\\/");
    Ok(script.replacen(STRINGS_MARKER, &compact, 1))
}

/// The pages' stylesheet.
#[utoipa::path(get, path = "/page.css", tag = "pages", responses((status = 200, content_type = "text/css", description = "CSS")))]
pub async fn stylesheet(State(state): State<AppState>) -> Response {
    static_asset(
        asset(&state, "page.css", PAGE_CSS),
        "text/css; charset=utf-8",
    )
}

fn static_asset(body: String, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// Renders a lesson's Markdown as HTML whose `h2`/`h3` anchors are the section slugs the
/// parser gave them (so citations link to them). Raw HTML in a lesson is shown as text, and
/// links may only use safe schemes: nothing in a lesson can inject script into the page.
pub fn lesson_html(lesson: &Lesson) -> String {
    let options = crate::lessons::markdown_options();
    // Each heading gets the id its section was given, found by where the heading starts.
    let anchors: std::collections::HashMap<usize, &str> = lesson
        .sections
        .iter()
        .filter(|s| s.level >= 2)
        .map(|s| (s.body_offset, s.slug.as_str()))
        .collect();
    let events = Parser::new_ext(&lesson.body, options)
        .into_offset_iter()
        .map(|(event, range)| match event {
            Event::Start(Tag::Heading {
                level,
                classes,
                attrs,
                ..
            }) => {
                let numbered = matches!(level, HeadingLevel::H2 | HeadingLevel::H3);
                // A level-1 heading in the body repeats the page title; show it one level down.
                let level = if level == HeadingLevel::H1 {
                    HeadingLevel::H2
                } else {
                    level
                };
                let id = if numbered {
                    anchors
                        .get(&range.start)
                        .map(|slug| CowStr::from(slug.to_string()))
                } else {
                    None
                };
                Event::Start(Tag::Heading {
                    level,
                    id,
                    classes,
                    attrs,
                })
            }
            Event::End(TagEnd::Heading(level)) => {
                let level = if level == HeadingLevel::H1 {
                    HeadingLevel::H2
                } else {
                    level
                };
                Event::End(TagEnd::Heading(level))
            }
            Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let safe = safe_url(&dest_url);
                Event::Start(Tag::Link {
                    link_type,
                    dest_url: if safe { dest_url } else { CowStr::from("#") },
                    title,
                    id,
                })
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let safe = safe_url(&dest_url);
                Event::Start(Tag::Image {
                    link_type,
                    dest_url: if safe { dest_url } else { CowStr::from("") },
                    title,
                    id,
                })
            }
            other => other,
        });
    // The text before the first heading is the "introduction" section: wrap it in an element
    // with that id, so citations of it have something to scroll to.
    let intro = lesson
        .sections
        .first()
        .filter(|s| s.level == 0)
        .map(|s| s.slug.clone());
    // A table or code block wider than a phone scrolls sideways inside a region the keyboard
    // can reach (and scroll with the arrow keys).
    let mut events: Vec<Event<'_>> = events
        .flat_map(|event| match event {
            Event::Start(Tag::Table(_)) => vec![
                Event::Html(CowStr::from(
                    "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Table\">",
                )),
                event,
            ],
            Event::Start(Tag::CodeBlock(_)) => vec![
                Event::Html(CowStr::from(
                    "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Code\">",
                )),
                event,
            ],
            Event::End(TagEnd::Table | TagEnd::CodeBlock) => {
                vec![event, Event::Html(CowStr::from("</div>\n"))]
            }
            other => vec![other],
        })
        .collect();
    if let Some(slug) = &intro {
        let at = events
            .iter()
            .position(|e| matches!(e, Event::Start(Tag::Heading { id: Some(_), .. })))
            .unwrap_or(events.len());
        events.insert(at, Event::Html(CowStr::from("</div>\n")));
        events.insert(
            0,
            Event::Html(CowStr::from(format!("<div id=\"{slug}\">\n"))),
        );
    }
    let mut html = String::with_capacity(lesson.body.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html
}

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        Some((scheme, _))
            if !scheme.contains('/') && !scheme.contains('#') && !scheme.contains('?') =>
        {
            matches!(scheme, "http" | "https" | "mailto")
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lesson_pages_anchor_headings_with_section_slugs_and_escape_html() {
        let lesson = crate::lessons::parse_lesson(
            "---\nid: x\ntitle: X\n---\nIntro <script>alert(1)</script>\n\n## Same\n\nA [bad](javascript:alert(1)) link.\n\n## Same\n\nB.\n\n### Deeper one\n\nC.\n",
            "x",
        )
        .expect("parses");
        let html = lesson_html(&lesson);
        assert!(html.contains(r#"<h2 id="same">Same</h2>"#), "{html}");
        assert!(html.contains(r#"<h2 id="same-2">Same</h2>"#), "{html}");
        assert!(
            html.contains(r#"<h3 id="deeper-one">Deeper one</h3>"#),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(
            html.starts_with("<div id=\"introduction\">\n<p>Intro"),
            "{html}"
        );
    }

    #[test]
    fn an_empty_heading_does_not_shift_the_anchors_after_it() {
        // `##` with no title is no section; the headings after it keep their own anchors.
        let lesson = crate::lessons::parse_lesson(
            "---\nid: x\ntitle: X\n---\n## First\n\nA.\n\n##\n\nB.\n\n## Second\n\nC.\n\n> ## Quoted\n\n## Third\n\nD.\n",
            "x",
        )
        .expect("parses");
        let html = lesson_html(&lesson);
        for section in lesson.sections.iter().filter(|s| s.level >= 2) {
            assert!(
                html.contains(&format!("id=\"{}\">{}</h", section.slug, section.title)),
                "{}: {html}",
                section.slug
            );
        }
        assert!(html.contains(r#"<h2 id="third">Third</h2>"#), "{html}");
    }
    #[test]
    fn the_widget_speaks_every_lesson_language_and_a_broken_table_is_named() {
        let script = built_in_widget();
        assert!(!script.contains(STRINGS_MARKER), "the words are put in");
        for phrase in [
            "\"es\":",
            "Pregunta al tutor",
            "Frag mich ab",
            "Interrogez-moi",
        ] {
            assert!(script.contains(phrase), "{phrase}");
        }
        let js = "const STRINGS = /*STRINGS*/{};";
        let table = |es: &str| {
            let other = r#"{"score": "{correct} / {graded}", "send": "x"}"#;
            format!(
                r#"{{"en": {{"score": "Score: {{correct}} of {{graded}}", "send": "Send"}}, "es": {es}, "fr": {other}, "de": {other}, "pt": {other}, "it": {other}}}"#
            )
        };
        let whole = table(r#"{"score": "{correct} de {graded}", "send": "Enviar"}"#);
        assert!(widget_script(js, &whole).is_ok());
        let cases = [
            (
                table(r#"{"score": "{correct} de {graded}"}"#),
                r#""es" has no "send""#,
            ),
            (
                table(r#"{"score": "{correct} de {total}", "send": "Enviar"}"#),
                "placeholders",
            ),
            (
                table(r#"{"score": "{correct} de {graded}", "send": " "}"#),
                "is empty",
            ),
            (
                table(r#"{"score": "{correct} de {graded}", "send": "Enviar", "more": "x"}"#),
                "English lacks",
            ),
            ("{\"en\": {}}".to_string(), r#"no words in "es""#),
            ("not json".to_string(), "not a table"),
        ];
        for (strings, problem) in cases {
            let error = widget_script(js, &strings).expect_err(problem);
            assert!(error.contains(problem), "{error}");
        }
        assert!(widget_script("no marker", &whole).is_err());
        // Words cannot close the script they are put in.
        let closing = table(r#"{"score": "{correct} de {graded}", "send": "</script>"}"#);
        assert!(
            !widget_script(js, &closing)
                .expect("put in")
                .contains("</script>")
        );
    }
}
