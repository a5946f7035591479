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
/// Least time between two refetches caused by unknown key ids.
const COOLDOWN: Duration = Duration::from_secs(60);

struct CachedSet {
    keys: HashMap<String, DecodingKey>,
    fetched: Instant,
    /// When an unknown key id last caused a refetch.
    refetched: Option<Instant>,
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
}

impl Default for PlatformKeys {
    fn default() -> Self {
        PlatformKeys::new()
    }
}

impl PlatformKeys {
    pub fn new() -> PlatformKeys {
        PlatformKeys {
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            sets: Mutex::new(HashMap::new()),
        }
    }

    /// The key `kid` of the set at `url`.
    pub async fn key(&self, url: &str, kid: &str) -> Result<DecodingKey, KeyError> {
        let refetch = {
            let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
            match sets.get(url) {
                Some(set) if set.fetched.elapsed() < MAX_AGE => match set.keys.get(kid) {
                    Some(key) => return Ok(key.clone()),
                    None if set.refetched.is_some_and(|at| at.elapsed() < COOLDOWN) => {
                        return Err(KeyError::UnknownKid);
                    }
                    None => true,
                },
                _ => false,
            }
        };
        let keys = self.fetch(url).await?;
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
