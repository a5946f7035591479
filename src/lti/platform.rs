//! Platforms' public keys, fetched from their JWKS URLs and cached.
//!
//! A cached set is used for an hour. A token naming a key id the cache lacks (the platform
//! rotated) refetches the set at once, but at most once per cooldown per URL, so a stream of
//! tokens with made-up key ids cannot turn the tool into a request amplifier.

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a fetched key set is trusted before it is fetched again.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// Least time between two refetches caused by unknown key ids, and between two tries to
/// refresh a set whose platform failed to answer.
const COOLDOWN: Duration = Duration::from_secs(60);

struct CachedSet {
    keys: HashMap<String, DecodingKey>,
    fetched: Instant,
    /// When an unknown key id last caused a refetch.
    refetched: Option<Instant>,
    /// After a failed refresh: the stale set serves until then.
    retry_at: Option<Instant>,
}

/// Why no key could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The set was fetched (or refetched, cooldown allowing) and has no such key.
    UnknownKid,
    /// The set could not be fetched or read.
    Unavailable(String),
}

/// The cache of every platform's key set, by JWKS URL.
pub struct PlatformKeys {
    client: reqwest::Client,
    sets: Mutex<HashMap<String, CachedSet>>,
    /// One lock per URL, held while fetching it: a burst of launches on a cold cache fetches
    /// once, and a slow platform holds up only its own launches.
    fetching: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    max_age: Duration,
    cooldown: Duration,
}

impl Default for PlatformKeys {
    fn default() -> Self {
        PlatformKeys::new()
    }
}

impl PlatformKeys {
    pub fn new() -> PlatformKeys {
        PlatformKeys::with_timings(MAX_AGE, COOLDOWN)
    }

    /// A cache trusting a set for `max_age` and refetching for unknown key ids at most once per
    /// `cooldown`.
    pub fn with_timings(max_age: Duration, cooldown: Duration) -> PlatformKeys {
        PlatformKeys {
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            sets: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            max_age,
            cooldown,
        }
    }

    /// What the cache says about `kid` at `url`: the key or a definite no; else `Err(refetch)`,
    /// a fetch is needed (`refetch`: because of an unknown key id).
    fn cached(&self, url: &str, kid: &str) -> Result<Result<DecodingKey, KeyError>, bool> {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        match sets.get(url) {
            Some(set)
                if set.fetched.elapsed() < self.max_age
                    || set.retry_at.is_some_and(|at| Instant::now() < at) =>
            {
                match set.keys.get(kid) {
                    Some(key) => Ok(Ok(key.clone())),
                    None if set.refetched.is_some_and(|at| at.elapsed() < self.cooldown) => {
                        Ok(Err(KeyError::UnknownKid))
                    }
                    None => Err(true),
                }
            }
            _ => Err(false),
        }
    }

    /// The key `kid` of the set at `url`.
    pub async fn key(&self, url: &str, kid: &str) -> Result<DecodingKey, KeyError> {
        if let Ok(answer) = self.cached(url, kid) {
            return answer;
        }
        let lock = self
            .fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(url.to_string())
            .or_default()
            .clone();
        let _fetching = lock.lock().await;
        // Another launch may have fetched while this one waited.
        let refetch = match self.cached(url, kid) {
            Ok(answer) => return answer,
            Err(refetch) => refetch,
        };
        let keys = match self.fetch(url).await {
            Ok(keys) => keys,
            Err(error) => {
                // A platform's outage should not stop launches its known keys verify: keep the
                // set, and try again only after the cooldown, not on every launch.
                let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(set) = sets.get_mut(url)
                    && let Some(key) = set.keys.get(kid).cloned()
                {
                    tracing::warn!(
                        url,
                        ?error,
                        "platform keys not refreshed; using the cached set"
                    );
                    set.retry_at = Some(Instant::now() + self.cooldown);
                    return Ok(key);
                }
                return Err(error);
            }
        };
        let found = keys.get(kid).cloned();
        let now = Instant::now();
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let previous = sets.get(url).and_then(|s| s.refetched);
        sets.insert(
            url.to_string(),
            CachedSet {
                keys,
                fetched: now,
                refetched: if refetch { Some(now) } else { previous },
                retry_at: None,
            },
        );
        found.ok_or(KeyError::UnknownKid)
    }

    async fn fetch(&self, url: &str) -> Result<HashMap<String, DecodingKey>, KeyError> {
        let unavailable = |e: String| KeyError::Unavailable(format!("{url}: {e}"));
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("status {}", response.status())));
        }
        let set: serde_json::Value = response
            .json()
            .await
            .map_err(|e| unavailable(format!("not a JWK set ({e})")))?;
        let Some(entries) = set.get("keys").and_then(|k| k.as_array()) else {
            return Err(unavailable("not a JWK set (no `keys`)".to_string()));
        };
        // One odd key (another algorithm, an unknown field) must not hide the others.
        let keys: HashMap<String, DecodingKey> = entries
            .iter()
            .filter_map(|entry| {
                let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                Some((kid, key))
            })
            .collect();
        tracing::info!(url, keys = keys.len(), "fetched platform keys");
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A JWKS server: its URL, its fetch count and a switch that makes it fail.
    async fn jwks_server(set: serde_json::Value) -> (String, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let (count, fail) = (fetches.clone(), failing.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (count, fail, set) = (count.clone(), fail.clone(), set.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    // Slow enough that concurrent callers overlap.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if fail.load(Ordering::SeqCst) {
                        Err(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                    } else {
                        Ok(axum::Json(set))
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serves") });
        (format!("http://{addr}/jwks"), fetches, failing)
    }

    fn platform_set() -> (serde_json::Value, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = crate::lti::keys::ToolKeys::load_or_generate(dir.path()).expect("key");
        (keys.jwks().clone(), keys.kids()[0].to_string())
    }

    #[tokio::test]
    async fn a_burst_on_a_cold_cache_fetches_once() {
        let (set, kid) = platform_set();
        let (url, fetches, _) = jwks_server(set).await;
        let cache = Arc::new(PlatformKeys::new());
        let calls = (0..8).map(|_| {
            let (cache, url, kid) = (cache.clone(), url.clone(), kid.clone());
            tokio::spawn(async move { cache.key(&url, &kid).await.is_ok() })
        });
        for call in calls {
            assert!(call.await.expect("task"));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_platform_outage_keeps_known_keys_working_but_not_unknown_ones() {
        let (set, kid) = platform_set();
        let (url, fetches, failing) = jwks_server(set).await;
        // Every call refreshes (max age zero), as after an hour.
        let cache = PlatformKeys::with_timings(Duration::ZERO, Duration::ZERO);
        assert!(cache.key(&url, &kid).await.is_ok());
        failing.store(true, Ordering::SeqCst);
        assert!(cache.key(&url, &kid).await.is_ok(), "the cached key serves");
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "a refresh was tried");
        assert!(matches!(
            cache.key(&url, "other").await,
            Err(KeyError::Unavailable(_))
        ));
        // With a cooldown, a failed refresh is not retried on every launch.
        let patient = PlatformKeys::with_timings(Duration::ZERO, Duration::from_secs(60));
        failing.store(false, Ordering::SeqCst);
        assert!(patient.key(&url, &kid).await.is_ok());
        failing.store(true, Ordering::SeqCst);
        let before = fetches.load(Ordering::SeqCst);
        for _ in 0..3 {
            assert!(patient.key(&url, &kid).await.is_ok());
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            before + 1,
            "one failed refresh, then the cooldown"
        );
        let cold = PlatformKeys::new();
        assert!(matches!(
            cold.key(&url, &kid).await,
            Err(KeyError::Unavailable(_))
        ));
    }
}
