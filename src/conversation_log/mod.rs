//! The conversation log: off by default, on with `log = "path/to/tutor.sqlite"` (one machine)
//! or `log = "postgres://..."` (several replicas sharing one database), or `TUTOR_LOG_DB`.
//! Each answer becomes one record (time, lesson, the question with e-mail addresses and phone
//! numbers redacted, the answer, refusal and reason, cited passages, backend, latency, an
//! anonymous conversation id, and later the learner's rating). No IP address and no identity
//! are stored. The same database keeps used LTI nonces, so a launch is accepted once whichever
//! replica it reaches.
//!
//! Writing never slows or fails an answer: records go through a bounded queue to one writer
//! thread; when the queue is full a record is dropped and counted
//! (`tutor_log_writes_dropped_total`). While the database is unreachable the writer keeps its
//! batch and retries, so a short outage loses nothing the queue could hold. Storage sits behind
//! [`LogStore`], with two implementations sharing one list of migrations: [`SqliteStore`] and
//! [`PostgresStore`].

mod postgres;
mod redact;
mod sqlite;

pub use postgres::PostgresStore;
pub use redact::{Redactor, redact};
pub use sqlite::SqliteStore;

pub use crate::ids::{AnswerId, ConversationId};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Records waiting for the writer; past this, new records are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 10_000;

/// Most records (and ratings) written in one transaction.
const BATCH: usize = 512;

/// Lookups of answer ids running at once on the blocking pool (feedback for answers this
/// process does not remember); more wait, without holding an async worker.
const LOOKUPS_AT_ONCE: usize = 4;

/// Errors of the log store.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("conversation log {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("conversation log {target}: {message}")]
    Postgres {
        /// The database, without its password.
        target: String,
        message: String,
        /// True when the database could not be reached (worth retrying), false when it
        /// refused the statement.
        unreachable: bool,
    },
    #[error("conversation log: `{0}` is not a SQLite path or a postgres:// URL")]
    BadTarget(String),
}

impl LogError {
    /// True when trying again later may succeed: the database is unreachable or busy.
    pub fn is_transient(&self) -> bool {
        match self {
            LogError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            LogError::Postgres { unreachable, .. } => *unreachable,
            LogError::BadTarget(_) => false,
        }
    }
}

/// Where the log lives: a SQLite file or a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

impl LogTarget {
    /// `postgres://` and `postgresql://` URLs select PostgreSQL; anything else is a file path.
    pub fn parse(text: &str) -> Result<LogTarget, LogError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LogError::BadTarget(text.to_string()));
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Ok(LogTarget::Postgres(text.to_string()))
        } else if lower.contains("://") {
            Err(LogError::BadTarget(text.to_string()))
        } else {
            Ok(LogTarget::Sqlite(PathBuf::from(text)))
        }
    }

    /// Opens the store (creating the file or tables and applying pending migrations).
    pub fn open(&self) -> Result<Arc<dyn LogStore>, LogError> {
        Ok(match self {
            LogTarget::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
            LogTarget::Postgres(url) => Arc::new(PostgresStore::open(url)?),
        })
    }
}

impl std::fmt::Display for LogTarget {
    /// The path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::Sqlite(path) => write!(f, "{}", path.display()),
            LogTarget::Postgres(url) => f.write_str(&postgres::without_password(url)),
        }
    }
}

/// A learner's rating of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Up => "up",
            Rating::Down => "down",
        }
    }

    fn parse(text: Option<&str>) -> Option<Rating> {
        match text {
            Some("up") => Some(Rating::Up),
            Some("down") => Some(Rating::Down),
            _ => None,
        }
    }
}

/// One answered (or refused) question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub answer_id: AnswerId,
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
    pub conversation_id: Option<ConversationId>,
    pub rating: Option<Rating>,
    pub comment: Option<String>,
    /// What the verifier did to a model's answer, as JSON (`sentences`, `removed`,
    /// `corrected`, `fallback`, `reasons`); none for refusals by the gate.
    pub verification: Option<String>,
    /// What the reply was (`answer`, `refusal`, `small_talk`, `other_language`, `hint`,
    /// `quiz_question`, `grade`, or `failed` for a turn a bug stopped); none in records
    /// written before quizzes.
    pub kind: Option<String>,
    /// For a hint, why (`requested`, `quiz_item`, `assessment`); for a graded reply, the grade
    /// (`correct`, `partly`, `not_yet`), or `retry` for a try not yet right that gets another
    /// (so a question's grade is counted once); for a quiz question, the section it checks; for a
    /// failed turn, the cause.
    pub outcome: Option<String>,
}

/// A rating to apply to a stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatingUpdate {
    pub answer_id: AnswerId,
    pub rating: Rating,
    pub comment: Option<String>,
}

/// Where records are kept.
pub trait LogStore: Send + Sync {
    /// Appends records (one transaction). A record whose id is stored already replaces it,
    /// keeping its rating; a rating that arrived before its answer (another replica took it)
    /// is applied now.
    fn append(&self, records: &[Record]) -> Result<(), LogError>;
    /// Sets the rating of an answer. When the answer is not stored (yet), the rating is kept
    /// and applied when it arrives; returns whether the answer was stored.
    fn rate(&self, update: &RatingUpdate) -> Result<bool, LogError>;
    /// The lesson of the stored answer with this id, if one is stored.
    fn lesson_of(&self, answer_id: &AnswerId) -> Result<Option<String>, LogError>;
    /// Deletes records (and unclaimed ratings, and expired nonces) older than `before` (Unix
    /// seconds); returns how many records.
    fn prune(&self, before: u64) -> Result<usize, LogError>;
    /// Records since `since` (Unix seconds), optionally of one lesson, oldest first.
    fn records(&self, since: u64, lesson: Option<&str>) -> Result<Vec<Record>, LogError>;
    /// Marks an LTI nonce (by digest) used until `expires` (Unix seconds); false when it was
    /// already used and has not expired.
    fn first_use_of_nonce(&self, digest: &str, expires: u64) -> Result<bool, LogError>;
}

/// One step of the schema, in each dialect; both stores apply the same list in order.
pub(crate) struct Migration {
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        sqlite: "CREATE TABLE answers (
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
        postgres: "CREATE TABLE answers (
            answer_id TEXT PRIMARY KEY,
            time BIGINT NOT NULL,
            lesson_id TEXT NOT NULL,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            refused BOOLEAN NOT NULL,
            refusal_reason TEXT,
            cited TEXT NOT NULL,
            backend TEXT NOT NULL,
            latency_ms BIGINT NOT NULL,
            conversation_id TEXT,
            rating TEXT,
            comment TEXT
        );
        CREATE INDEX answers_time ON answers (time);
        CREATE INDEX answers_lesson ON answers (lesson_id, time);",
    },
    Migration {
        sqlite: "ALTER TABLE answers ADD COLUMN verification TEXT",
        postgres: "ALTER TABLE answers ADD COLUMN verification TEXT",
    },
    Migration {
        sqlite: "CREATE TABLE early_ratings (
            answer_id TEXT PRIMARY KEY,
            rating TEXT NOT NULL,
            comment TEXT,
            time INTEGER NOT NULL
        );
        CREATE TABLE lti_nonces (
            digest TEXT PRIMARY KEY,
            expires INTEGER NOT NULL
        );",
        postgres: "CREATE TABLE early_ratings (
            answer_id TEXT PRIMARY KEY,
            rating TEXT NOT NULL,
            comment TEXT,
            time BIGINT NOT NULL
        );
        CREATE TABLE lti_nonces (
            digest TEXT PRIMARY KEY,
            expires BIGINT NOT NULL
        );",
    },
    Migration {
        sqlite: "ALTER TABLE answers ADD COLUMN kind TEXT;
        ALTER TABLE answers ADD COLUMN outcome TEXT;",
        postgres: "ALTER TABLE answers ADD COLUMN kind TEXT;
        ALTER TABLE answers ADD COLUMN outcome TEXT;",
    },
];

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

enum Command {
    Append(Box<Record>),
    Rate(RatingUpdate),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The handle the chat path writes through: a bounded queue to one writer thread.
#[derive(Clone)]
pub struct Logger {
    queue: std::sync::mpsc::SyncSender<Command>,
    store: Arc<dyn LogStore>,
    lookups: Arc<tokio::sync::Semaphore>,
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
        Logger {
            queue,
            store,
            lookups: Arc::new(tokio::sync::Semaphore::new(LOOKUPS_AT_ONCE)),
        }
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

    /// Queues a rating (applied after the answer's own record when that precedes it in the
    /// queue, or kept by the store until the answer arrives from another replica).
    pub fn rate(&self, answer_id: &AnswerId, rating: Rating, comment: Option<&str>) {
        let command = Command::Rate(RatingUpdate {
            answer_id: answer_id.clone(),
            rating,
            comment: comment.map(str::to_string),
        });
        if self.queue.try_send(command).is_err() {
            crate::telemetry::log_dropped();
        }
    }

    /// The lesson of a stored answer (feedback on an answer from before a restart, or from
    /// another replica): asked on the blocking pool, a few at a time, never on an async worker.
    /// `Err` when the store cannot say (unreachable).
    pub async fn lesson_of(&self, answer_id: &AnswerId) -> Result<Option<String>, LogError> {
        let Ok(_permit) = self.lookups.acquire().await else {
            return Ok(None);
        };
        let store = self.store.clone();
        let id = answer_id.clone();
        tokio::task::spawn_blocking(move || store.lesson_of(&id))
            .await
            .unwrap_or(Ok(None))
    }

    /// Waits until everything queued so far is written (tests, shutdown).
    pub fn flush(&self) {
        self.flush_within(Duration::from_secs(10));
    }

    /// Waits at most `limit` until everything queued so far is written; false when the writer
    /// did not finish in time (a database that does not answer), so what is still queued is
    /// lost when the process exits.
    pub fn flush_within(&self, limit: Duration) -> bool {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        let deadline = std::time::Instant::now() + limit;
        // The queue may be full: wait for room, within the limit.
        let mut command = Command::Flush(done);
        loop {
            match self.queue.try_send(command) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    command = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }

    /// The store behind the queue.
    pub fn store(&self) -> &Arc<dyn LogStore> {
        &self.store
    }
}

/// Writes waiting for the store: records, then the ratings that came after them.
#[derive(Default)]
struct Pending {
    records: Vec<Record>,
    ratings: Vec<RatingUpdate>,
}

impl Pending {
    fn len(&self) -> usize {
        self.records.len() + self.ratings.len()
    }

    fn add_rating(&mut self, update: RatingUpdate) {
        // The answer may still be waiting here.
        if let Some(record) = self
            .records
            .iter_mut()
            .find(|r| r.answer_id == update.answer_id)
        {
            record.rating = Some(update.rating);
            record.comment = update.comment;
        } else {
            self.ratings.push(update);
        }
    }

    /// One attempt at writing everything pending.
    fn write(&self, store: &dyn LogStore) -> Result<(), LogError> {
        if !self.records.is_empty() {
            store.append(&self.records)?;
        }
        for update in &self.ratings {
            store.rate(update)?;
        }
        Ok(())
    }
}

/// How long the writer waits between attempts while the store is unreachable.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MOST: Duration = Duration::from_secs(2);

/// The writer: redacts what learners typed (here, off the answer path), batches and writes.
/// While the store is unreachable it keeps its batch and retries; the queue fills meanwhile,
/// and what does not fit is dropped (counted) by [`Logger::append`].
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
    while let Ok(command) = receiver.recv() {
        let mut pending = Pending::default();
        let mut flushes = Vec::new();
        let mut next = Some(command);
        // Take what else is waiting, so a burst is written in one transaction.
        while let Some(command) = next.take() {
            match command {
                Command::Append(mut record) => {
                    record.question = redactor.redact(&record.question);
                    record.comment = record.comment.as_deref().map(|c| redactor.redact(c));
                    pending.records.push(*record);
                }
                Command::Rate(mut update) => {
                    update.comment = update.comment.as_deref().map(|c| redactor.redact(c));
                    pending.add_rating(update);
                }
                Command::Flush(done) => flushes.push(done),
            }
            if pending.len() < BATCH {
                next = receiver.try_recv().ok();
            }
        }
        write_with_retry(store.as_ref(), &pending);
        for done in flushes {
            let _ = done.send(());
        }
        if last_prune.elapsed() > Duration::from_secs(3600) {
            prune(&store);
            last_prune = std::time::Instant::now();
        }
    }
}

fn write_with_retry(store: &dyn LogStore, pending: &Pending) {
    if pending.len() == 0 {
        return;
    }
    let mut wait = RETRY_FIRST;
    let mut warned = false;
    loop {
        match pending.write(store) {
            Ok(()) => {
                if warned {
                    tracing::info!(records = pending.len(), "conversation log reachable again");
                }
                return;
            }
            Err(error) if error.is_transient() => {
                if !warned {
                    tracing::warn!(%error, records = pending.len(), "conversation log unreachable; keeping the records and retrying");
                    warned = true;
                }
                crate::telemetry::log_retry();
                std::thread::sleep(wait);
                wait = (wait * 2).min(RETRY_MOST);
            }
            Err(error) => {
                tracing::warn!(%error, records = pending.len(), "conversation log write failed; records dropped");
                for _ in 0..pending.len() {
                    crate::telemetry::log_dropped();
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> AnswerId {
        AnswerId::parse(text).expect("an id")
    }

    #[test]
    fn targets_are_files_or_postgres_urls() {
        assert_eq!(
            LogTarget::parse("data/log.sqlite").expect("a path"),
            LogTarget::Sqlite(PathBuf::from("data/log.sqlite"))
        );
        for url in [
            "postgres://tutor@db/tutor",
            "postgresql://tutor:secret@10.0.0.5:5433/tutor",
            "POSTGRES://db/tutor",
        ] {
            assert!(
                matches!(LogTarget::parse(url), Ok(LogTarget::Postgres(_))),
                "{url}"
            );
        }
        assert!(LogTarget::parse("mysql://db/tutor").is_err());
        assert!(LogTarget::parse("  ").is_err());
        let shown = LogTarget::parse("postgresql://tutor:secret@10.0.0.5:5433/tutor")
            .expect("a url")
            .to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("10.0.0.5:5433/tutor"), "{shown}");
    }

    #[test]
    fn a_rating_waiting_with_its_answer_is_folded_into_the_record() {
        let mut pending = Pending::default();
        pending.records.push(Record {
            answer_id: id("a1"),
            time: 1,
            lesson_id: "l".to_string(),
            question: "q".to_string(),
            answer: "a".to_string(),
            refused: false,
            refusal_reason: None,
            cited: vec![],
            backend: "extractive".to_string(),
            latency_ms: 1,
            conversation_id: None,
            rating: None,
            comment: None,
            verification: None,
            kind: None,
            outcome: None,
        });
        pending.add_rating(RatingUpdate {
            answer_id: id("a1"),
            rating: Rating::Down,
            comment: Some("unclear".to_string()),
        });
        pending.add_rating(RatingUpdate {
            answer_id: id("elsewhere"),
            rating: Rating::Up,
            comment: None,
        });
        assert_eq!(pending.records[0].rating, Some(Rating::Down));
        assert_eq!(pending.ratings.len(), 1);
        assert_eq!(pending.ratings[0].answer_id, id("elsewhere"));
    }
}
