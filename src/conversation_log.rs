//! The conversation log: off by default, on with `log = "path/to/tutor.sqlite"` (or
//! `TUTOR_LOG_DB`). Each answer becomes one record (time, lesson, the question with e-mail
//! addresses and phone numbers redacted, the answer, refusal and reason, cited passages,
//! backend, latency, an anonymous conversation id, and later the learner's rating). No IP
//! address and no identity are stored.
//!
//! Writing never slows or fails an answer: records go through a bounded queue to one writer
//! thread; when the queue is full a record is dropped and counted
//! (`tutor_log_writes_dropped_total`). Storage sits behind [`LogStore`]; SQLite (a real file,
//! with migrations) is the one built here. A shared database for several replicas would be
//! another `LogStore` (see ARCHITECTURE.md).

use regex::Regex;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Records waiting for the writer; past this, new records are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 10_000;

/// Errors of the log store.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("conversation log {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// A learner's rating of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    fn as_str(self) -> &'static str {
        match self {
            Rating::Up => "up",
            Rating::Down => "down",
        }
    }
}

/// One answered (or refused) question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub answer_id: String,
    /// Unix seconds.
    pub time: u64,
    pub lesson_id: String,
    /// The question, redacted.
    pub question: String,
    pub answer: String,
    pub refused: bool,
    pub refusal_reason: Option<String>,
    pub cited: Vec<String>,
    pub backend: String,
    pub latency_ms: u64,
    pub conversation_id: Option<String>,
    pub rating: Option<Rating>,
    pub comment: Option<String>,
    /// What the verifier did to a model's answer, as JSON (`sentences`, `removed`,
    /// `corrected`, `fallback`, `reasons`); none for refusals by the gate.
    pub verification: Option<String>,
}

/// Where records are kept.
pub trait LogStore: Send + Sync {
    /// Appends records (one transaction).
    fn append(&self, records: &[Record]) -> Result<(), LogError>;
    /// Sets the rating of an answer; false when the answer id is unknown.
    fn rate(
        &self,
        answer_id: &str,
        rating: Rating,
        comment: Option<&str>,
    ) -> Result<bool, LogError>;
    /// The lesson of the stored answer with this id, if one is stored.
    fn lesson_of(&self, answer_id: &str) -> Result<Option<String>, LogError>;
    /// Deletes records older than `before` (Unix seconds); returns how many.
    fn prune(&self, before: u64) -> Result<usize, LogError>;
    /// Records since `since` (Unix seconds), optionally of one lesson, oldest first.
    fn records(&self, since: u64, lesson: Option<&str>) -> Result<Vec<Record>, LogError>;
}

/// The migrations, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE answers (
        answer_id TEXT PRIMARY KEY,
        time INTEGER NOT NULL,
        lesson_id TEXT NOT NULL,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        refused INTEGER NOT NULL,
        refusal_reason TEXT,
        cited TEXT NOT NULL,
        backend TEXT NOT NULL,
        latency_ms INTEGER NOT NULL,
        conversation_id TEXT,
        rating TEXT,
        comment TEXT
    );
    CREATE INDEX answers_time ON answers (time);
    CREATE INDEX answers_lesson ON answers (lesson_id, time);",
    "ALTER TABLE answers ADD COLUMN verification TEXT",
];

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the database and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteStore, LogError> {
        let error = |source| LogError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        let connection = Connection::open(path).map_err(error)?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(error)?;
        let applied: usize = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(error)?;
        for (version, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            connection
                .execute_batch(&format!(
                    "BEGIN; {migration}; PRAGMA user_version = {}; COMMIT;",
                    version + 1
                ))
                .map_err(error)?;
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
        })
    }

    fn error(&self, source: rusqlite::Error) -> LogError {
        LogError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

impl LogStore for SqliteStore {
    fn append(&self, records: &[Record]) -> Result<(), LogError> {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let tx = connection.transaction().map_err(|e| self.error(e))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO answers (answer_id, time, lesson_id, question, answer, refused,
                     refusal_reason, cited, backend, latency_ms, conversation_id, rating, comment, verification)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                             COALESCE(?12, (SELECT rating FROM answers WHERE answer_id = ?1)),
                             COALESCE(?13, (SELECT comment FROM answers WHERE answer_id = ?1)), ?14)",
                )
                .map_err(|e| self.error(e))?;
            for r in records {
                insert
                    .execute(params![
                        r.answer_id,
                        r.time as i64,
                        r.lesson_id,
                        r.question,
                        r.answer,
                        r.refused,
                        r.refusal_reason,
                        r.cited.join(" "),
                        r.backend,
                        r.latency_ms as i64,
                        r.conversation_id,
                        r.rating.map(Rating::as_str),
                        r.comment,
                        r.verification,
                    ])
                    .map_err(|e| self.error(e))?;
            }
        }
        tx.commit().map_err(|e| self.error(e))
    }

    fn rate(
        &self,
        answer_id: &str,
        rating: Rating,
        comment: Option<&str>,
    ) -> Result<bool, LogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let changed = connection
            .execute(
                "UPDATE answers SET rating = ?2, comment = ?3 WHERE answer_id = ?1",
                params![answer_id, rating.as_str(), comment],
            )
            .map_err(|e| self.error(e))?;
        Ok(changed > 0)
    }

    fn lesson_of(&self, answer_id: &str) -> Result<Option<String>, LogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        connection
            .query_row(
                "SELECT lesson_id FROM answers WHERE answer_id = ?1",
                params![answer_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    fn prune(&self, before: u64) -> Result<usize, LogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        connection
            .execute(
                "DELETE FROM answers WHERE time < ?1",
                params![before as i64],
            )
            .map_err(|e| self.error(e))
    }

    fn records(&self, since: u64, lesson: Option<&str>) -> Result<Vec<Record>, LogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let mut query = connection
            .prepare(
                "SELECT answer_id, time, lesson_id, question, answer, refused, refusal_reason, cited,
                        backend, latency_ms, conversation_id, rating, comment, verification
                 FROM answers WHERE time >= ?1 AND (?2 IS NULL OR lesson_id = ?2) ORDER BY time, answer_id",
            )
            .map_err(|e| self.error(e))?;
        let rows = query
            .query_map(params![since as i64, lesson], |row| {
                let cited: String = row.get(7)?;
                let rating: Option<String> = row.get(11)?;
                Ok(Record {
                    answer_id: row.get(0)?,
                    time: row.get::<_, i64>(1)? as u64,
                    lesson_id: row.get(2)?,
                    question: row.get(3)?,
                    answer: row.get(4)?,
                    refused: row.get(5)?,
                    refusal_reason: row.get(6)?,
                    cited: cited.split_whitespace().map(str::to_string).collect(),
                    backend: row.get(8)?,
                    latency_ms: row.get::<_, i64>(9)? as u64,
                    conversation_id: row.get(10)?,
                    rating: match rating.as_deref() {
                        Some("up") => Some(Rating::Up),
                        Some("down") => Some(Rating::Down),
                        _ => None,
                    },
                    comment: row.get(12)?,
                    verification: row.get(13)?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }
}

/// E-mail addresses, Unicode ones too, and local names without a dot (`jane@localhost`).
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"[\p{L}\p{N}._%+-]+@[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}-]+)*",
    )
    .expect("a valid pattern")
});
/// Addresses written to dodge filters: `maria(at)uni.edu`, `maria [at] uni [dot] edu`,
/// `maria dot gonzalez at uni dot edu`.
static SPELLED_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    let dot = r"(?:\s*[\(\[\{]\s*dot\s*[\)\]\}]\s*|\s+dot\s+|\.)";
    let at = r"(?:\s*[\(\[\{]\s*at\s*[\)\]\}]\s*|\s+at\s+)";
    let word = r"[\p{L}\p{N}_%+-]+";
    Regex::new(&format!(
        r"(?i)\b{word}(?:{dot}{word})*{at}{word}(?:{dot}{word})*{dot}\p{{L}}{{2,24}}\b"
    ))
    .expect("a valid pattern")
});
/// International bank account numbers: a country code, two check digits, then groups.
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
        .expect("a valid pattern")
});
/// Student numbers: a letter or three and six or more digits (`S1234567`), or digits named as
/// one ("student number 204517", "matriculation no. 88123").
static STUDENT_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:student|matric(?:ulation)?|enrol(?:l)?ment|learner)\s*(?:number|no\.?|id|#)\s*[:#]?\s*[A-Z]{0,3}\d{4,}\b|\b[A-Z]{1,3}\d{6,10}\b",
    )
    .expect("a valid pattern")
});
/// Runs of digits with phone-like separators; replaced when they hold seven or more digits.
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\(?\d[\d\s().-]{5,}\d").expect("a valid pattern"));
/// Dates and times, which look like digit runs and are not phone numbers.
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$").expect("a valid pattern")
});

/// What the log replaces before a question or comment is stored: e-mail addresses (plain,
/// Unicode, or spelled out with "at" and "dot"), IBANs, student numbers, phone numbers (seven
/// or more digits), and whatever the operator's own patterns match (`log_redact`).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra: Vec<Regex>,
}

impl Redactor {
    /// The built-in patterns plus `patterns` (regular expressions; each match becomes
    /// `[redacted]`). A pattern that does not compile is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Redactor, String> {
        let extra = patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("`log_redact` pattern `{p}`: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Redactor { extra })
    }

    pub fn redact(&self, text: &str) -> String {
        let mut text = redact(text);
        for pattern in &self.extra {
            text = pattern.replace_all(&text, "[redacted]").into_owned();
        }
        text
    }
}

/// Replaces what [`Redactor`] replaces with the built-in patterns only.
pub fn redact(text: &str) -> String {
    let text = EMAIL.replace_all(text, "[email]");
    let text = SPELLED_EMAIL.replace_all(&text, "[email]");
    let text = IBAN.replace_all(&text, "[iban]");
    let text = STUDENT_ID.replace_all(&text, "[student id]");
    PHONE
        .replace_all(&text, |caps: &regex::Captures<'_>| {
            let found = caps[0].trim();
            let digits = found.chars().filter(char::is_ascii_digit).count();
            if digits >= 7 && !DATE.is_match(found) {
                "[phone]".to_string()
            } else {
                caps[0].to_string()
            }
        })
        .into_owned()
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

enum Command {
    Append(Box<Record>),
    Rate {
        answer_id: String,
        rating: Rating,
        comment: Option<String>,
    },
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The handle the chat path writes through: a bounded queue to one writer thread.
#[derive(Clone)]
pub struct Logger {
    queue: std::sync::mpsc::SyncSender<Command>,
    store: Arc<dyn LogStore>,
}

impl Logger {
    /// Starts the writer thread over `store`, pruning records older than `retention` now and
    /// every hour.
    pub fn start(store: Arc<dyn LogStore>, retention: Duration) -> Logger {
        Logger::with_capacity(store, retention, QUEUE_CAPACITY)
    }

    /// As [`Logger::start`], redacting with `redactor` (built-in patterns plus the operator's).
    pub fn start_redacting(
        store: Arc<dyn LogStore>,
        retention: Duration,
        redactor: Redactor,
    ) -> Logger {
        Logger::spawn(store, retention, QUEUE_CAPACITY, redactor)
    }

    /// As [`Logger::start`], with a chosen queue capacity.
    pub fn with_capacity(store: Arc<dyn LogStore>, retention: Duration, capacity: usize) -> Logger {
        Logger::spawn(store, retention, capacity, Redactor::default())
    }

    fn spawn(
        store: Arc<dyn LogStore>,
        retention: Duration,
        capacity: usize,
        redactor: Redactor,
    ) -> Logger {
        let (queue, receiver) = std::sync::mpsc::sync_channel::<Command>(capacity);
        let writer = store.clone();
        std::thread::Builder::new()
            .name("conversation-log".to_string())
            .spawn(move || write_loop(writer, receiver, retention, redactor))
            .expect("the log writer thread starts");
        Logger { queue, store }
    }

    /// Queues a record; never blocks. A full queue drops it (counted).
    pub fn append(&self, record: Record) {
        if self
            .queue
            .try_send(Command::Append(Box::new(record)))
            .is_err()
        {
            crate::telemetry::log_dropped();
        }
    }

    /// Queues a rating (applied after the answer's own record, which precedes it in the queue).
    pub fn rate(&self, answer_id: &str, rating: Rating, comment: Option<&str>) {
        let command = Command::Rate {
            answer_id: answer_id.to_string(),
            rating,
            comment: comment.map(str::to_string),
        };
        if self.queue.try_send(command).is_err() {
            crate::telemetry::log_dropped();
        }
    }

    /// The lesson of a stored answer (for feedback on answers from before a restart).
    pub fn lesson_of(&self, answer_id: &str) -> Option<String> {
        self.store.lesson_of(answer_id).ok().flatten()
    }

    /// Waits until everything queued so far is written (tests, shutdown).
    pub fn flush(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.queue.send(Command::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }

    /// The store behind the queue.
    pub fn store(&self) -> &Arc<dyn LogStore> {
        &self.store
    }
}

/// The writer: redacts what learners typed (here, off the answer path), batches and writes.
fn write_loop(
    store: Arc<dyn LogStore>,
    receiver: std::sync::mpsc::Receiver<Command>,
    retention: Duration,
    redactor: Redactor,
) {
    let prune = |store: &Arc<dyn LogStore>| {
        let before = now().saturating_sub(retention.as_secs());
        match store.prune(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "conversation log pruned"),
            Err(error) => tracing::warn!(%error, "conversation log pruning failed"),
        }
    };
    prune(&store);
    let mut last_prune = std::time::Instant::now();
    let mut batch = Vec::new();
    while let Ok(command) = receiver.recv() {
        let mut pending = vec![command];
        // Take what else is waiting, so a burst is written in one transaction.
        while pending.len() < 512 {
            match receiver.try_recv() {
                Ok(more) => pending.push(more),
                Err(_) => break,
            }
        }
        for command in pending {
            match command {
                Command::Append(mut record) => {
                    record.question = redactor.redact(&record.question);
                    record.comment = record.comment.as_deref().map(|c| redactor.redact(c));
                    batch.push(*record);
                }
                Command::Rate {
                    answer_id,
                    rating,
                    comment,
                } => {
                    let comment = comment.as_deref().map(|c| redactor.redact(c));
                    // The answer may still be in this batch.
                    if let Some(record) = batch.iter_mut().find(|r| r.answer_id == answer_id) {
                        record.rating = Some(rating);
                        record.comment = comment;
                    } else if let Err(error) = store.rate(&answer_id, rating, comment.as_deref()) {
                        tracing::warn!(%error, "conversation log rating failed");
                    }
                }
                Command::Flush(done) => {
                    write_batch(&store, &mut batch);
                    let _ = done.send(());
                }
            }
        }
        write_batch(&store, &mut batch);
        if last_prune.elapsed() > Duration::from_secs(3600) {
            prune(&store);
            last_prune = std::time::Instant::now();
        }
    }
}

fn write_batch(store: &Arc<dyn LogStore>, batch: &mut Vec<Record>) {
    if batch.is_empty() {
        return;
    }
    if let Err(error) = store.append(batch) {
        tracing::warn!(%error, records = batch.len(), "conversation log write failed; records dropped");
        for _ in batch.iter() {
            crate::telemetry::log_dropped();
        }
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_redacted_and_ordinary_questions_are_left_alone() {
        let redacted: &[(&str, &str)] = &[
            ("write to ana.b+x@school.example.org", "write to [email]"),
            ("josé@universität.de asked", "[email] asked"),
            ("mail jane@localhost please", "mail [email] please"),
            ("ÖZGÜR.ŞAHİN@üni.edu.tr", "[email]"),
            ("maria dot gonzalez at uni dot edu", "[email]"),
            ("maria(at)uni.edu", "[email]"),
            ("maria [at] uni [dot] edu", "[email]"),
            ("maria {at} uni {dot} edu is me", "[email] is me"),
            ("contact maria at uni.edu", "contact [email]"),
            ("Ana AT School DOT Org", "[email]"),
            ("my id is S1234567", "my id is [student id]"),
            ("student number 204517", "[student id]"),
            ("Student ID: 88123", "[student id]"),
            ("matriculation no. 77231", "[student id]"),
            ("enrolment number #A12345", "[student id]"),
            (
                "AB12345678 is my learner code",
                "[student id] is my learner code",
            ),
            ("call 5551234", "call [phone]"),
            ("call 555 1234", "call [phone]"),
            ("call +44 (0)20 7946 0958", "call [phone]"),
            ("my number is 555-123-4567.", "my number is [phone]."),
            ("ring 0171.234.5678 today", "ring [phone] today"),
            ("IBAN DE89 3704 0044 0532 0130 00", "IBAN [iban]"),
            ("pay GB29NWBK60161331926819", "pay [iban]"),
            ("FR7630006000011234567890189 is mine", "[iban] is mine"),
        ];
        for (text, expected) in redacted {
            assert_eq!(redact(text), *expected, "{text}");
        }
        let kept: &[&str] = &[
            "What happened in 2019?",
            "Is 10^25 FLOP above 1,000,000?",
            "Does a vocabulary of 32,000 tokens beat 200,000?",
            "Is GPT-4o open weights?",
            "What does Llama 3 70B need?",
            "Is ISO 27001 enough?",
            "Why 3.14159?",
            "Which version, 1.2.3 or 2.0?",
            "What does HTTP 404 mean?",
            "Meet at 12:30 on 2024-05-01",
            "Released on 01.05.2024, right?",
            "What is at stake here?",
            "Look at the lesson. Then answer.",
            "Who is @openai on social media?",
            "Is 5 + 5 = 10?",
            "What does the EU AI Act say about 10^26 operations?",
            "Can I train at home on 2 GPUs?",
            "Where do students at universities start?",
        ];
        for text in kept {
            assert_eq!(redact(text), *text, "{text}");
        }
        assert!(redacted.len() + kept.len() >= 40);
    }

    #[test]
    fn operators_add_their_own_patterns() {
        let redactor = Redactor::new(&["(?i)badge\\s*\\d+".to_string()]).expect("compiles");
        assert_eq!(
            redactor.redact("my badge 4411 and jane@localhost"),
            "my [redacted] and [email]"
        );
        let broken = Redactor::new(&["(unclosed".to_string()]).expect_err("does not compile");
        assert!(broken.contains("(unclosed"), "{broken}");
    }

    #[test]
    fn emails_and_phone_numbers_are_redacted_but_years_and_counts_stay() {
        assert_eq!(
            redact("mail me at ana.b+x@school.example.org or call +44 (0)20 7946 0958 about 2023"),
            "mail me at [email] or call [phone] about 2023"
        );
        assert_eq!(
            redact("Is 10^25 FLOP above 1,000,000?"),
            "Is 10^25 FLOP above 1,000,000?"
        );
        assert_eq!(
            redact("my number is 555-123-4567."),
            "my number is [phone]."
        );
    }
}
