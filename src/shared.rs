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

/// GCRA taking up to ARGV[3] cells at once: KEYS[1] holds the bucket's theoretical arrival time
/// (µs, Redis's clock); ARGV[1] is the emission interval (µs per request), ARGV[2] the burst.
/// Returns {cells taken, 0}, or {0, µs until one fits}. Taking n cells is exactly n single
/// GCRA admissions in a row, stopped at the first that would not fit. Microseconds keep limits
/// above 60,000 a minute exact; Lua's doubles hold them exactly for two more centuries.
const GCRA: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_us)
if tat < now_us then tat = now_us end
local room = math.floor((now_us + (burst - 1) * interval - tat) / interval) + 1
if room < 1 then
  return {0, tat + interval - burst * interval - now_us}
end
local take = math.min(want, room)
local next_tat = tat + take * interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.max(1, math.ceil((next_tat - now_us) / 1000)))
return {take, 0}
";

/// How long cells taken from Redis ahead of need stay usable here; what is left unused then is
/// forgotten (the shared bucket is never overdrawn, only sometimes underused).
pub const LEASE_FOR: Duration = Duration::from_millis(200);
/// Most cells one replica takes from a bucket at once.
const LEASE_MOST: u32 = 32;

/// Cells a replica took from shared buckets ahead of need, per caller. A caller asking often
/// (an LMS back end under one key) takes more at once, up to [`LEASE_MOST`] and a quarter of
/// its burst, so Redis sees a fraction of its requests; one asking now and then (a learner's
/// IP) takes one at a time, exactly as without leases.
#[derive(Debug, Default)]
pub struct Leases {
    held: std::collections::HashMap<String, Lease>,
    /// The size of `held` after the last sweep of expired leases.
    swept: usize,
    /// Cells let expire unused (also counted in the metrics).
    forgotten: u64,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    cells: u32,
    until: Instant,
    /// How many to take next time.
    next: u32,
}

impl Leases {
    /// Uses a held cell of `key`, if one is left and still valid.
    pub fn take(&mut self, key: &str, now: Instant) -> bool {
        match self.held.get_mut(key) {
            Some(lease) if lease.cells > 0 && lease.until > now => {
                lease.cells -= 1;
                true
            }
            Some(lease) if lease.cells > 0 => {
                let cells = std::mem::take(&mut lease.cells);
                self.forget(cells);
                false
            }
            _ => false,
        }
    }

    /// How many cells to ask Redis for: more when the last lease was used up in time, one when
    /// it expired unused (or there was none).
    pub fn wanted(&self, key: &str, burst: u32, now: Instant) -> u32 {
        let most = LEASE_MOST.min(burst / 4).max(1);
        match self.held.get(key) {
            Some(lease) if lease.cells == 0 && lease.until > now => lease.next.min(most),
            _ => 1,
        }
    }

    /// Cells let expire unused so far.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    fn forget(&mut self, cells: u32) {
        self.forgotten += u64::from(cells);
        crate::telemetry::rate_cells_forgotten(cells);
    }

    /// Records `granted` cells taken from Redis, one of which the caller uses now.
    pub fn granted(&mut self, key: &str, asked: u32, granted: u32, now: Instant) {
        if self.held.len() >= (self.swept * 2).max(1024) {
            let mut expired = 0;
            self.held.retain(|_, lease| {
                let valid = lease.until > now;
                if !valid {
                    expired += lease.cells;
                }
                valid
            });
            self.swept = self.held.len();
            self.forget(expired);
        }
        let next = if granted >= asked {
            asked.saturating_mul(2)
        } else {
            asked
        };
        // Requests that missed together each took cells: keep them all.
        let left = match self.held.get(key) {
            Some(lease) if lease.until > now => lease.cells,
            Some(lease) => {
                let cells = lease.cells;
                self.forget(cells);
                0
            }
            None => 0,
        };
        self.held.insert(
            key.to_string(),
            Lease {
                cells: left + granted.saturating_sub(1),
                until: now + LEASE_FOR,
                next,
            },
        );
    }
}

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
    /// Rate-limit cells taken ahead of need.
    leases: Mutex<Leases>,
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
            leases: Mutex::new(Leases::default()),
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
    /// holds at most `burst`: from a cell this replica already took, or from Redis (taking a
    /// few ahead for a caller that asks often; see [`Leases`]).
    pub async fn admit(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Admission, SharedError> {
        let burst = burst.max(1);
        let want = {
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if leases.take(key, now) {
                return Ok(Admission::Admit);
            }
            leases.wanted(key, burst, now)
        };
        let bucket = format!("{PREFIX}rate:{key}");
        let interval_us = interval.as_micros().max(1) as u64;
        let (taken, wait_us): (i64, i64) = self
            .call("rate_limit", |mut connection| async move {
                self.gcra
                    .key(bucket)
                    .arg(interval_us)
                    .arg(burst)
                    .arg(want)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        if taken < 1 {
            return Ok(Admission::Wait(
                Duration::from_micros(wait_us.max(0) as u64),
            ));
        }
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .granted(key, want, taken as u32, Instant::now());
        Ok(Admission::Admit)
    }

    /// Remembers an answer's lesson for `ttl` (for feedback reaching another replica), without
    /// waiting: answers are queued and written in batches, one pipelined round trip each
    /// (at most every [`ANSWER_BATCH_EVERY`]), by a task started on first use. A full queue
    /// drops the id (counted): feedback then falls back on the log.
    pub fn remember_answer(
        self: &Arc<Self>,
        answer_id: &crate::ids::AnswerId,
        lesson: &str,
        ttl: Duration,
    ) {
        // The writer task needs a runtime; without one (never the case under `serve`) the id
        // is not shared, and the queue is not made, so a later call with a runtime makes it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            crate::telemetry::shared_state_error("answer");
            return;
        };
        let queue = self.answers.get_or_init(|| {
            let (queue, receiver) = tokio::sync::mpsc::channel(ANSWER_QUEUE);
            runtime.spawn(write_answers(Arc::downgrade(self), receiver));
            queue
        });
        let key = format!("{PREFIX}answer:{answer_id}");
        if queue.try_send((key, lesson.to_string(), ttl)).is_err() {
            crate::telemetry::shared_state_error("answer");
        }
    }

    /// The lesson of a recent answer, if any replica remembered it.
    pub async fn answer_lesson(
        &self,
        answer_id: &crate::ids::AnswerId,
    ) -> Result<Option<String>, SharedError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_asking_often_takes_more_cells_at_once_and_one_asking_rarely_takes_one() {
        let mut leases = Leases::default();
        let t0 = Instant::now();
        // First request: one cell, used at once.
        assert!(!leases.take("key:lms", t0));
        assert_eq!(leases.wanted("key:lms", 400, t0), 1);
        leases.granted("key:lms", 1, 1, t0);
        // Used up in time: twice as many next, up to the most.
        let mut asked = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            now += Duration::from_millis(1);
            while leases.take("key:lms", now) {}
            let want = leases.wanted("key:lms", 400, now);
            asked.push(want);
            leases.granted("key:lms", want, want, now);
        }
        assert_eq!(asked, vec![2, 4, 8, 16, 32, 32, 32, 32]);
        // Held cells are used without asking.
        assert!(leases.take("key:lms", now));
        // A small burst caps the lease at a quarter of it.
        assert_eq!(leases.wanted("ip:a", 10, now), 1);
        leases.granted("ip:a", 1, 1, now);
        for _ in 0..4 {
            let want = leases.wanted("ip:a", 10, now);
            assert!(want <= 2, "{want}");
            leases.granted("ip:a", want, want, now);
            while leases.take("ip:a", now) {}
        }
        // A lease not used in time is forgotten (and counted), and the next asks for one.
        let later = now + LEASE_FOR + Duration::from_millis(1);
        assert_eq!(leases.forgotten(), 0);
        assert!(!leases.take("key:lms", later));
        assert_eq!(
            leases.forgotten(),
            30,
            "32 taken, one used at once and one since"
        );
        assert!(!leases.take("key:lms", later));
        assert_eq!(leases.forgotten(), 30, "counted once");
        assert_eq!(leases.wanted("key:lms", 400, later), 1);
        // Requests that missed together keep every cell they took.
        leases.granted("key:y", 4, 4, later);
        leases.granted("key:y", 4, 4, later);
        let mut used = 0;
        while leases.take("key:y", later) {
            used += 1;
        }
        assert_eq!(used, 6, "8 taken, 2 used by the requests that took them");
        // Fewer granted than asked (the bucket ran low): the next ask does not grow.
        leases.granted("key:x", 8, 3, later);
        assert!(leases.take("key:x", later) && leases.take("key:x", later));
        assert!(!leases.take("key:x", later));
        assert_eq!(leases.wanted("key:x", 400, later), 8);
        // A lease replaced after it expired counts what it still held.
        leases.granted("key:z", 4, 4, later);
        let before = leases.forgotten();
        leases.granted("key:z", 1, 1, later + LEASE_FOR * 2);
        assert_eq!(leases.forgotten() - before, 3);
    }
}
