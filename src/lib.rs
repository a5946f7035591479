//! `tutor`: a grounded lesson tutor. A learner asks about the lesson they are reading; the tutor
//! answers in a few sentences using only what that lesson says, cites the sections it stands
//! on, and says plainly when the lesson does not cover the question.
//!
//! The data flow, module by module:
//!
//! - [`lessons`]: Markdown files with front matter → [`lessons::Lesson`]s cut into sections and
//!   citable passages; broken files become `path:line: reason` problems.
//! - [`index`]: the Tantivy index in `index/`, refreshed incrementally by content hash.
//! - [`retrieve`]: a question (+ history) → ranked passages of one lesson, and the gate that
//!   decides whether the lesson covers it, by words and, with [`semantic`]'s sentence model,
//!   by meaning.
//! - [`prompts`]: the minijinja templates of `prompts/` (system prompt, refusal).
//! - [`llm`]: the [`llm::ChatModel`] trait; an OpenAI-compatible client and the embedded
//!   extractive answerer.
//! - [`chat`]: [`chat::Tutor`] ties them together: retrieve → refuse, or prompt → model →
//!   check citations → answer (whole or streamed).
//! - [`telemetry`]: Prometheus metrics; [`conversation_log`]: the optional log of answers,
//!   ratings and used LTI nonces (SQLite on one machine, PostgreSQL shared by replicas);
//!   [`shared`]: Redis for what replicas share fast (rate limits, recent answers, nonces);
//!   [`report`]: what learners asked, per lesson and section.
//! - [`quiz`]: quiz decisions (which quiz question a learner asks, what gives an answer away,
//!   grading a reply, what a hint points to); `chat` turns them into replies.
//! - [`lti`]: LTI 1.3 launches from an LMS (login, launch checks, deep linking, tool keys).
//! - [`http`]: the axum router of API.md, pages and widget; [`cli`]: the `tutor` commands;
//!   [`config`]: layered configuration; [`app`]: start-up shared by the commands; [`memo`]:
//!   the bounded memo that keeps analyses of the lessons in use.

pub mod app;
pub mod chat;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod conversation_log;
pub mod http;
pub mod ids;
pub mod index;
pub mod language;
pub mod lessons;
pub mod llm;
pub mod lti;
pub mod memo;
pub mod prompts;
pub mod quiz;
pub mod report;
pub mod retrieve;
pub mod semantic;
pub mod shared;
pub mod telemetry;
pub mod text;
