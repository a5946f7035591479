//! The embedded store: one SQLite file on this machine (WAL, migrations counted in
//! `PRAGMA user_version`).

use super::{
    AnswerId, ConversationId, LogError, LogStore, MIGRATIONS, Rating, RatingUpdate, Record,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
                    "BEGIN; {}; PRAGMA user_version = {}; COMMIT;",
                    migration.sqlite,
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
                     refusal_reason, cited, backend, latency_ms, conversation_id, rating, comment, verification,
                     kind, outcome)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                             COALESCE(?12, (SELECT rating FROM answers WHERE answer_id = ?1)),
                             COALESCE(?13, (SELECT comment FROM answers WHERE answer_id = ?1)), ?14,
                             ?15, ?16)",
                )
                .map_err(|e| self.error(e))?;
            for r in records {
                insert
                    .execute(params![
                        r.answer_id.as_str(),
                        r.time as i64,
                        r.lesson_id,
                        r.question,
                        r.answer,
                        r.refused,
                        r.refusal_reason,
                        r.cited.join(" "),
                        r.backend,
                        r.latency_ms as i64,
                        r.conversation_id.as_ref().map(ConversationId::as_str),
                        r.rating.map(Rating::as_str),
                        r.comment,
                        r.verification,
                        r.kind,
                        r.outcome,
                    ])
                    .map_err(|e| self.error(e))?;
            }
        }
        tx.execute_batch(
            "UPDATE answers SET
                 rating = (SELECT rating FROM early_ratings e WHERE e.answer_id = answers.answer_id),
                 comment = (SELECT comment FROM early_ratings e WHERE e.answer_id = answers.answer_id)
             WHERE answer_id IN (SELECT answer_id FROM early_ratings);
             DELETE FROM early_ratings WHERE answer_id IN (SELECT answer_id FROM answers);",
        )
        .map_err(|e| self.error(e))?;
        tx.commit().map_err(|e| self.error(e))
    }

    fn rate(&self, update: &RatingUpdate) -> Result<bool, LogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let changed = connection
            .execute(
                "UPDATE answers SET rating = ?2, comment = ?3 WHERE answer_id = ?1",
                params![
                    update.answer_id.as_str(),
                    update.rating.as_str(),
                    update.comment
                ],
            )
            .map_err(|e| self.error(e))?;
        if changed == 0 {
            connection
                .execute(
                    "INSERT INTO early_ratings (answer_id, rating, comment, time) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (answer_id) DO UPDATE SET rating = excluded.rating,
                         comment = excluded.comment, time = excluded.time",
                    params![
                        update.answer_id.as_str(),
                        update.rating.as_str(),
                        update.comment,
                        super::now() as i64
                    ],
                )
                .map_err(|e| self.error(e))?;
        }
        Ok(changed > 0)
    }

    fn lesson_of(&self, answer_id: &AnswerId) -> Result<Option<String>, LogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        connection
            .query_row(
                "SELECT lesson_id FROM answers WHERE answer_id = ?1",
                params![answer_id.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    fn prune(&self, before: u64) -> Result<usize, LogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let pruned = connection
            .execute(
                "DELETE FROM answers WHERE time < ?1",
                params![before as i64],
            )
            .map_err(|e| self.error(e))?;
        connection
            .execute(
                "DELETE FROM early_ratings WHERE time < ?1",
                params![before as i64],
            )
            .map_err(|e| self.error(e))?;
        connection
            .execute(
                "DELETE FROM lti_nonces WHERE expires < ?1",
                params![super::now() as i64],
            )
            .map_err(|e| self.error(e))?;
        Ok(pruned)
    }

    fn first_use_of_nonce(&self, digest: &str, expires: u64) -> Result<bool, LogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let changed = connection
            .execute(
                "INSERT INTO lti_nonces (digest, expires) VALUES (?1, ?2)
                 ON CONFLICT (digest) DO UPDATE SET expires = excluded.expires
                 WHERE lti_nonces.expires < ?3",
                params![digest, expires as i64, super::now() as i64],
            )
            .map_err(|e| self.error(e))?;
        Ok(changed == 1)
    }

    fn records(&self, since: u64, lesson: Option<&str>) -> Result<Vec<Record>, LogError> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let mut query = connection
            .prepare(
                "SELECT answer_id, time, lesson_id, question, answer, refused, refusal_reason, cited,
                        backend, latency_ms, conversation_id, rating, comment, verification, kind, outcome
                 FROM answers WHERE time >= ?1 AND (?2 IS NULL OR lesson_id = ?2) ORDER BY time, answer_id",
            )
            .map_err(|e| self.error(e))?;
        let rows = query
            .query_map(params![since as i64, lesson], |row| {
                let cited: String = row.get(7)?;
                let rating: Option<String> = row.get(11)?;
                Ok(Record {
                    answer_id: AnswerId::from_store(row.get(0)?),
                    time: row.get::<_, i64>(1)? as u64,
                    lesson_id: row.get(2)?,
                    question: row.get(3)?,
                    answer: row.get(4)?,
                    refused: row.get(5)?,
                    refusal_reason: row.get(6)?,
                    cited: cited.split_whitespace().map(str::to_string).collect(),
                    backend: row.get(8)?,
                    latency_ms: row.get::<_, i64>(9)? as u64,
                    conversation_id: row
                        .get::<_, Option<String>>(10)?
                        .and_then(|c| ConversationId::parse(&c).ok()),
                    rating: Rating::parse(rating.as_deref()),
                    comment: row.get(12)?,
                    verification: row.get(13)?,
                    kind: row.get(14)?,
                    outcome: row.get(15)?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }
}
