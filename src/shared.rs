//! What replicas share fast, in Redis (`redis_url`): rate-limit buckets, recent answer ids
//! with their lesson, and used LTI nonces, each with a time to live.
//!
//! Rate limits are GCRA (the generic cell rate algorithm, what the per-process limiter uses
//! too) run as one Lua script, so reading and advancing a bucket is atomic whichever replica
//! asks, and the clock is Redis's own. Every call is bounded by a short timeout. When Redis is
//! unreachable the caller goes on without it (a rate limit admits, a lookup misses), a metric
//! counts it (`tutor_shared_state_errors_total{op}`) and a warning is logged at most once a
//! minute; the connection comes back by itself when Redis does.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Longest wait for one Redis call; past it the tutor goes on without Redis.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a lost connection is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// How often the same warning about Redis is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Every key the tutor writes starts with this.
const PREFIX: &str = "tutor:";

/// GCRA: KEYS[1] holds the bucket's theoretical arrival time (µs, Redis's clock). ARGV: the
/// emission interval (µs per request) and the burst. Returns {1, 0} when admitted, {0, µs to
/// wait} when not. Microseconds keep limits above 60,000 a minute exact; Lua's doubles hold
/// them exactly for another two centuries.
const GCRA: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_us)
if tat < now_us then tat = now_us end
local next_tat = tat + interval
local allowed_at = next_tat - burst * interval
if allowed_at > now_us then
  return {0, allowed_at - now_us}
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.max(1, math.ceil((next_tat - now_us) / 1000)))
return {1, 0}
";

/// Answer ids waiting to be written to Redis; past this they are dropped (and counted).
const ANSWER_QUEUE: usize = 10_000;
/// Most answer ids written in one pipeline.
const ANSWER_BATCH: usize = 512;
/// How long answer ids gather before a batch is written.
pub const ANSWER_BATCH_EVERY: Duration = Duration::from_millis(20);

type AnswerQueue = tokio::sync::mpsc::Sender<(String, String, Duration)>;

/// Writes queued answer ids in batches until the handle is dropped.
async fn write_answers(
    shared: std::sync::Weak<Shared>,
    mut receiver: tokio::sync::mpsc::Receiver<(String, String, Duration)>,
) {
    let mut batch = Vec::with_capacity(ANSWER_BATCH);
    while receiver.recv_many(&mut batch, ANSWER_BATCH).await > 0 {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let entries = std::mem::take(&mut batch);
        let _ = shared
            .call("answer", |mut connection| async move {
                let mut pipeline = redis::pipe();
                for (key, lesson, ttl) in &entries {
                    pipeline
                        .cmd("SET")
                        .arg(key)
                        .arg(lesson)
                        .arg("PX")
                        .arg(ttl.as_millis() as u64)
                        .ignore();
                }
                pipeline.query_async::<()>(&mut connection).await
            })
            .await;
        drop(shared);
        tokio::time::sleep(ANSWER_BATCH_EVERY).await;
    }
}

/// Why a shared call did not answer.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("redis is unreachable")]
    Unreachable,
    #[error("redis did not answer within {} ms", CALL_TIMEOUT.as_millis())]
    Timeout,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Refused; the bucket has room again after this long.
    Wait(Duration),
}

/// The Redis connection, made lazily and remade after an outage.
pub struct Shared {
    client: redis::Client,
    connection: RwLock<Option<ConnectionManager>>,
    /// When a connection was last tried (one attempt at a time, at most one a second).
    connecting: tokio::sync::Mutex<Option<Instant>>,
    last_warning: Mutex<Option<Instant>>,
    gcra: redis::Script,
    /// Answer ids on their way to Redis (see [`Shared::remember_answer`]).
    answers: std::sync::OnceLock<AnswerQueue>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// A handle on the Redis at `url`; nothing is connected until first use, so the tutor
    /// starts (and answers) while Redis is down.
    pub fn new(url: &str) -> Result<Arc<Shared>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("`redis_url`: {e}"))?;
        Ok(Arc::new(Shared {
            client,
            connection: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(None),
            last_warning: Mutex::new(None),
            gcra: redis::Script::new(GCRA),
            answers: std::sync::OnceLock::new(),
        }))
    }

    fn current(&self) -> Option<ConnectionManager> {
        self.connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn connection(&self) -> Result<ConnectionManager, SharedError> {
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        // One caller connects; the others wait for that attempt (not for a second one), so a
        // burst at start-up is counted in Redis rather than let through.
        let mut last_try = tokio::time::timeout(CALL_TIMEOUT * 2, self.connecting.lock())
            .await
            .map_err(|_| SharedError::Timeout)?;
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        if last_try.is_some_and(|at| at.elapsed() < RECONNECT_EVERY) {
            return Err(SharedError::Unreachable);
        }
        *last_try = Some(Instant::now());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(RECONNECT_EVERY);
        let connection = tokio::time::timeout(
            CALL_TIMEOUT * 2,
            self.client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| SharedError::Timeout)??;
        *self.connection.write().unwrap_or_else(|e| e.into_inner()) = Some(connection.clone());
        tracing::info!("connected to redis");
        Ok(connection)
    }

    /// Connects now rather than on the first request (`serve` calls this at start); failing is
    /// only logged, and the next call tries again.
    pub async fn warm_up(&self) {
        if let Err(error) = self.connection().await {
            tracing::warn!(%error, "redis is not reachable yet; going on without it until it is");
        }
    }

    /// Runs one call with the timeout, counting and (now and then) logging a failure.
    async fn call<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, SharedError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let result = match self.connection().await {
            Ok(connection) => match tokio::time::timeout(CALL_TIMEOUT, call(connection)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(SharedError::Redis(error)),
                Err(_) => Err(SharedError::Timeout),
            },
            Err(error) => Err(error),
        };
        if let Err(error) = &result {
            crate::telemetry::shared_state_error(op);
            let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|at| at.elapsed() > WARN_EVERY) {
                *last = Some(Instant::now());
                tracing::warn!(%error, op, "redis unavailable; going on without it (rate limits admit, lookups miss)");
            }
        }
        result
    }

    /// Takes one request from the bucket `key`, which refills one request per `interval` and
    /// holds at most `burst`.
    pub async fn admit(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Admission, SharedError> {
        let key = format!("{PREFIX}rate:{key}");
        let interval_us = interval.as_micros().max(1) as u64;
        let (admitted, wait_us): (i64, i64) = self
            .call("rate_limit", |mut connection| async move {
                self.gcra
                    .key(key)
                    .arg(interval_us)
                    .arg(burst.max(1))
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        Ok(if admitted == 1 {
            Admission::Admit
        } else {
            Admission::Wait(Duration::from_micros(wait_us.max(0) as u64))
        })
    }

    /// Remembers an answer's lesson for `ttl` (for feedback reaching another replica), without
    /// waiting: answers are queued and written in batches, one pipelined round trip each
    /// (at most every [`ANSWER_BATCH_EVERY`]), by a task started on first use. A full queue
    /// drops the id (counted): feedback then falls back on the log.
    pub fn remember_answer(self: &Arc<Self>, answer_id: &str, lesson: &str, ttl: Duration) {
        let queue = self.answers.get_or_init(|| {
            let (queue, receiver) = tokio::sync::mpsc::channel(ANSWER_QUEUE);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(write_answers(Arc::downgrade(self), receiver));
            }
            queue
        });
        let key = format!("{PREFIX}answer:{answer_id}");
        if queue.try_send((key, lesson.to_string(), ttl)).is_err() {
            crate::telemetry::shared_state_error("answer");
        }
    }

    /// The lesson of a recent answer, if any replica remembered it.
    pub async fn answer_lesson(&self, answer_id: &str) -> Result<Option<String>, SharedError> {
        let key = format!("{PREFIX}answer:{answer_id}");
        self.call("answer", |mut connection| async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<String>>(&mut connection)
                .await
        })
        .await
    }

    /// Marks a nonce (by digest) used for `ttl`; false when some replica used it already.
    pub async fn first_use_of_nonce(
        &self,
        digest: &str,
        ttl: Duration,
    ) -> Result<bool, SharedError> {
        let key = format!("{PREFIX}nonce:{digest}");
        let set: Option<String> = self
            .call("nonce", |mut connection| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async::<Option<String>>(&mut connection)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }
}
