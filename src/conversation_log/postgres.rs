//! The shared store: one PostgreSQL database for every replica (`log = "postgres://..."`).
//!
//! A small connection pool (r2d2) serves the writer thread, feedback lookups and reports.
//! Migrations run under an advisory lock, so replicas starting together apply each once. A
//! batch of records is one `INSERT ... SELECT FROM UNNEST(...)` (one round trip however many
//! records); a rating that reaches a replica before the answer's own record has been written
//! by another waits in `early_ratings` and is folded in when the record arrives.

use super::{
    AnswerId, ConversationId, LogError, LogStore, MIGRATIONS, Rating, RatingUpdate, Record,
};
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::postgres::{self, NoTls};
use r2d2_postgres::r2d2;
use std::time::Duration;

/// Connections kept: the writer, a few feedback lookups, a report.
const POOL_SIZE: u32 = 6;
/// How long a connection attempt, or a wait for a pooled connection, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The advisory lock key migrations hold (any constant the deployment does not use).
const MIGRATION_LOCK: i64 = 0x0074_7574_6f72;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// The PostgreSQL store.
pub struct PostgresStore {
    /// The URL without its password, for messages.
    target: String,
    /// Always `Some` but while dropping.
    pool: Option<Pool>,
}

impl Drop for PostgresStore {
    /// Each connection owns a small runtime of its own, which must not be dropped on an async
    /// worker: the pool is let go of on a thread of its own.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::Builder::new()
                .name("postgres-close".to_string())
                .spawn(move || drop(pool));
        }
    }
}

/// `postgres://user:secret@host/db` shown as `postgres://user@host/db`.
pub(super) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_string(),
    }
}

impl PostgresStore {
    /// Connects (failing within a few seconds when the database cannot be reached) and applies
    /// pending migrations.
    pub fn open(url: &str) -> Result<PostgresStore, LogError> {
        let target = without_password(url);
        let mut config: postgres::Config = url.parse().map_err(|e| LogError::Postgres {
            target: target.clone(),
            message: format!("not a valid PostgreSQL URL: {e}"),
            unreachable: false,
        })?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .application_name("tutor");
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .build(PostgresConnectionManager::new(config, NoTls))
            .map_err(|e| LogError::Postgres {
                target: target.clone(),
                message: format!("cannot connect: {e}"),
                unreachable: true,
            })?;
        let store = PostgresStore {
            target,
            pool: Some(pool),
        };
        store.migrate()?;
        Ok(store)
    }

    fn error(&self, error: postgres::Error) -> LogError {
        // No server error code: the connection failed or closed. Class 08 is a connection
        // exception; 57P01-57P03 the server shutting down or starting.
        let unreachable = match error.code() {
            None => true,
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || code.starts_with("57P")
            }
        };
        LogError::Postgres {
            target: self.target.clone(),
            message: error.to_string(),
            unreachable,
        }
    }

    fn connection(
        &self,
    ) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, LogError> {
        let pool = self.pool.as_ref().ok_or_else(|| LogError::Postgres {
            target: self.target.clone(),
            message: "closed".to_string(),
            unreachable: false,
        })?;
        pool.get().map_err(|e| LogError::Postgres {
            target: self.target.clone(),
            message: format!("no connection: {e}"),
            unreachable: true,
        })
    }

    fn migrate(&self) -> Result<(), LogError> {
        let mut client = self.connection()?;
        let mut tx = client.transaction().map_err(|e| self.error(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(|e| self.error(e))?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS tutor_schema (version INTEGER NOT NULL)")
            .map_err(|e| self.error(e))?;
        let applied: i32 = tx
            .query_opt("SELECT version FROM tutor_schema", &[])
            .map_err(|e| self.error(e))?
            .map_or(0, |row| row.get(0));
        for migration in MIGRATIONS.iter().skip(applied.max(0) as usize) {
            tx.batch_execute(migration.postgres)
                .map_err(|e| self.error(e))?;
        }
        let version = MIGRATIONS.len() as i32;
        if applied < version {
            tx.execute("DELETE FROM tutor_schema", &[])
                .map_err(|e| self.error(e))?;
            tx.execute(
                "INSERT INTO tutor_schema (version) VALUES ($1)",
                &[&version],
            )
            .map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))
    }
}

/// Folds waiting ratings into the answers named in `$1`.
const CLAIM_EARLY_RATINGS: &str = "WITH claimed AS (
        DELETE FROM early_ratings e USING answers a
        WHERE e.answer_id = a.answer_id AND e.answer_id = ANY($1)
        RETURNING e.answer_id, e.rating, e.comment
    )
    UPDATE answers SET rating = claimed.rating, comment = claimed.comment
    FROM claimed WHERE answers.answer_id = claimed.answer_id";

impl LogStore for PostgresStore {
    fn append(&self, records: &[Record]) -> Result<(), LogError> {
        let mut client = self.connection()?;
        let mut tx = client.transaction().map_err(|e| self.error(e))?;
        let ids: Vec<&str> = records.iter().map(|r| r.answer_id.as_str()).collect();
        let times: Vec<i64> = records.iter().map(|r| r.time as i64).collect();
        let lessons: Vec<&str> = records.iter().map(|r| r.lesson_id.as_str()).collect();
        let questions: Vec<&str> = records.iter().map(|r| r.question.as_str()).collect();
        let answers: Vec<&str> = records.iter().map(|r| r.answer.as_str()).collect();
        let refused: Vec<bool> = records.iter().map(|r| r.refused).collect();
        let reasons: Vec<Option<&str>> = records
            .iter()
            .map(|r| r.refusal_reason.as_deref())
            .collect();
        let cited: Vec<String> = records.iter().map(|r| r.cited.join(" ")).collect();
        let backends: Vec<&str> = records.iter().map(|r| r.backend.as_str()).collect();
        let latencies: Vec<i64> = records.iter().map(|r| r.latency_ms as i64).collect();
        let conversations: Vec<Option<&str>> = records
            .iter()
            .map(|r| r.conversation_id.as_ref().map(ConversationId::as_str))
            .collect();
        let ratings: Vec<Option<&str>> = records
            .iter()
            .map(|r| r.rating.map(Rating::as_str))
            .collect();
        let comments: Vec<Option<&str>> = records.iter().map(|r| r.comment.as_deref()).collect();
        let verifications: Vec<Option<&str>> =
            records.iter().map(|r| r.verification.as_deref()).collect();
        let kinds: Vec<Option<&str>> = records.iter().map(|r| r.kind.as_deref()).collect();
        let outcomes: Vec<Option<&str>> = records.iter().map(|r| r.outcome.as_deref()).collect();
        tx.execute(
            "INSERT INTO answers (answer_id, time, lesson_id, question, answer, refused,
                 refusal_reason, cited, backend, latency_ms, conversation_id, rating, comment,
                 verification, kind, outcome)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                 $6::bool[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[],
                 $12::text[], $13::text[], $14::text[], $15::text[], $16::text[])
             ON CONFLICT (answer_id) DO UPDATE SET time = EXCLUDED.time,
                 lesson_id = EXCLUDED.lesson_id, question = EXCLUDED.question,
                 answer = EXCLUDED.answer, refused = EXCLUDED.refused,
                 refusal_reason = EXCLUDED.refusal_reason, cited = EXCLUDED.cited,
                 backend = EXCLUDED.backend, latency_ms = EXCLUDED.latency_ms,
                 conversation_id = EXCLUDED.conversation_id,
                 rating = COALESCE(EXCLUDED.rating, answers.rating),
                 comment = COALESCE(EXCLUDED.comment, answers.comment),
                 verification = EXCLUDED.verification, kind = EXCLUDED.kind,
                 outcome = EXCLUDED.outcome",
            &[
                &ids,
                &times,
                &lessons,
                &questions,
                &answers,
                &refused,
                &reasons,
                &cited,
                &backends,
                &latencies,
                &conversations,
                &ratings,
                &comments,
                &verifications,
                &kinds,
                &outcomes,
            ],
        )
        .map_err(|e| self.error(e))?;
        tx.execute(CLAIM_EARLY_RATINGS, &[&ids])
            .map_err(|e| self.error(e))?;
        tx.commit().map_err(|e| self.error(e))
    }

    fn rate(&self, update: &RatingUpdate) -> Result<bool, LogError> {
        let mut client = self.connection()?;
        let rating = update.rating.as_str();
        let changed = client
            .execute(
                "UPDATE answers SET rating = $2, comment = $3 WHERE answer_id = $1",
                &[&update.answer_id.as_str(), &rating, &update.comment],
            )
            .map_err(|e| self.error(e))?;
        if changed > 0 {
            return Ok(true);
        }
        // The record may be on its way from another replica: keep the rating for it.
        client
            .execute(
                "INSERT INTO early_ratings (answer_id, rating, comment, time) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (answer_id) DO UPDATE SET rating = EXCLUDED.rating,
                     comment = EXCLUDED.comment, time = EXCLUDED.time",
                &[
                    &update.answer_id.as_str(),
                    &rating,
                    &update.comment,
                    &(super::now() as i64),
                ],
            )
            .map_err(|e| self.error(e))?;
        // ...unless it was written between the two statements above.
        let claimed = client
            .execute(CLAIM_EARLY_RATINGS, &[&vec![update.answer_id.as_str()]])
            .map_err(|e| self.error(e))?;
        Ok(claimed > 0)
    }

    fn lesson_of(&self, answer_id: &AnswerId) -> Result<Option<String>, LogError> {
        let mut client = self.connection()?;
        client
            .query_opt(
                "SELECT lesson_id FROM answers WHERE answer_id = $1",
                &[&answer_id.as_str()],
            )
            .map(|row| row.map(|row| row.get(0)))
            .map_err(|e| self.error(e))
    }

    fn prune(&self, before: u64) -> Result<usize, LogError> {
        let mut client = self.connection()?;
        let before = before as i64;
        let pruned = client
            .execute("DELETE FROM answers WHERE time < $1", &[&before])
            .map_err(|e| self.error(e))?;
        client
            .execute("DELETE FROM early_ratings WHERE time < $1", &[&before])
            .map_err(|e| self.error(e))?;
        client
            .execute(
                "DELETE FROM lti_nonces WHERE expires < $1",
                &[&(super::now() as i64)],
            )
            .map_err(|e| self.error(e))?;
        Ok(pruned as usize)
    }

    fn records(&self, since: u64, lesson: Option<&str>) -> Result<Vec<Record>, LogError> {
        let mut client = self.connection()?;
        let rows = client
            .query(
                "SELECT answer_id, time, lesson_id, question, answer, refused, refusal_reason,
                        cited, backend, latency_ms, conversation_id, rating, comment, verification,
                        kind, outcome
                 FROM answers WHERE time >= $1 AND ($2::text IS NULL OR lesson_id = $2)
                 ORDER BY time, answer_id",
                &[&(since as i64), &lesson],
            )
            .map_err(|e| self.error(e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let cited: String = row.get(7);
                let rating: Option<String> = row.get(11);
                Record {
                    answer_id: AnswerId::from_store(row.get(0)),
                    time: row.get::<_, i64>(1) as u64,
                    lesson_id: row.get(2),
                    question: row.get(3),
                    answer: row.get(4),
                    refused: row.get(5),
                    refusal_reason: row.get(6),
                    cited: cited.split_whitespace().map(str::to_string).collect(),
                    backend: row.get(8),
                    latency_ms: row.get::<_, i64>(9) as u64,
                    conversation_id: row
                        .get::<_, Option<String>>(10)
                        .and_then(|c| ConversationId::parse(&c).ok()),
                    rating: Rating::parse(rating.as_deref()),
                    comment: row.get(12),
                    verification: row.get(13),
                    kind: row.get(14),
                    outcome: row.get(15),
                }
            })
            .collect())
    }

    fn first_use_of_nonce(&self, digest: &str, expires: u64) -> Result<bool, LogError> {
        let mut client = self.connection()?;
        let changed = client
            .execute(
                "INSERT INTO lti_nonces (digest, expires) VALUES ($1, $2)
                 ON CONFLICT (digest) DO UPDATE SET expires = EXCLUDED.expires
                 WHERE lti_nonces.expires < $3",
                &[&digest, &(expires as i64), &(super::now() as i64)],
            )
            .map_err(|e| self.error(e))?;
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            without_password("postgres://tutor:s3cret@db.internal:5432/tutor?sslmode=disable"),
            "postgres://tutor@db.internal:5432/tutor?sslmode=disable"
        );
        assert_eq!(
            without_password("postgres://db.internal/tutor"),
            "postgres://db.internal/tutor"
        );
        assert_eq!(
            without_password("postgresql://a:b:c@h/d"),
            "postgresql://a@h/d"
        );
    }
}
