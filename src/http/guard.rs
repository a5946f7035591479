//! Who may call the API, and how often: API keys (server keys for LMS back ends, widget keys
//! valid only from their listed origins), configured by SHA-256 digest and compared in constant
//! time, and rate limits per server key or per client IP (tower_governor).
//!
//! A learner launched from an LMS (LTI) has no key: the lesson page carries a short-lived
//! session token, signed by the tool, that the widget sends as `Authorization: Bearer`. It is
//! valid for the one lesson it was issued for and rate-limited per learner.
//!
//! With no keys configured the API is open, as suits the zero-configuration local mode; `serve`
//! warns loudly when such an open tutor listens beyond loopback.

use super::ErrorCode;
use super::{AppState, error::ApiError};
use crate::config::{ApiKey, RateLimits};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;

/// The header a widget sends its public key in.
pub const WIDGET_KEY_HEADER: &str = "x-tutor-key";

/// Who is calling, as established by [`authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No keys are configured.
    Anonymous,
    /// A server key: rate-limited per key.
    Server(Arc<str>),
    /// A public widget key, used from one of its origins: rate-limited per client IP.
    Widget(Arc<str>),
    /// A learner launched from an LMS, with a session token for one lesson: rate-limited per
    /// learner.
    Learner {
        subject: Arc<str>,
        lesson: Arc<str>,
        /// An assessment: every answer is a hint.
        hint_only: bool,
    },
}

/// A configured key, by digest.
#[derive(Debug, Clone)]
struct KeyEntry {
    name: Arc<str>,
    digest: [u8; 32],
    /// `Some` for widget keys.
    origins: Option<Vec<String>>,
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    entries: Vec<KeyEntry>,
}

/// The SHA-256 digest of a key, as hex (what `tutor.toml` holds; `tutor hash-key` prints it).
pub fn key_digest_hex(key: &str) -> String {
    Sha256::digest(key.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Keys {
    /// Keys from the configuration; a malformed digest is an error naming the key.
    pub fn new(keys: &[ApiKey]) -> Result<Keys, String> {
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let digest = parse_hex(&key.sha256).ok_or_else(|| {
                format!(
                    "key `{}`: `sha256` must be 64 hex digits (run `tutor hash-key` to make one)",
                    key.name
                )
            })?;
            entries.push(KeyEntry {
                name: Arc::from(key.name.as_str()),
                digest,
                origins: key.origins.as_ref().map(|o| {
                    o.iter()
                        .map(|o| o.trim_end_matches('/').to_string())
                        .collect()
                }),
            });
        }
        Ok(Keys { entries })
    }

    /// True when no keys are configured (the API is open).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when a widget key lists this page origin (such pages may call the API).
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.entries.iter().any(|e| {
            e.origins
                .as_ref()
                .is_some_and(|o| o.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)))
        })
    }

    /// Checks a presented key (and, for widget keys, the page's origin).
    fn check(&self, presented: &str, origin: Option<&str>) -> Result<Caller, &'static str> {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        // Compare against every entry, without stopping early, in constant time.
        let mut found: Option<&KeyEntry> = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) && found.is_none() {
                found = Some(entry);
            }
        }
        let entry = found.ok_or("the API key is not valid")?;
        match &entry.origins {
            None => Ok(Caller::Server(entry.name.clone())),
            Some(origins) => {
                let origin = origin.map(|o| o.trim_end_matches('/'));
                if origin.is_some_and(|o| {
                    origins
                        .iter()
                        .any(|allowed| allowed.eq_ignore_ascii_case(o))
                }) {
                    Ok(Caller::Widget(entry.name.clone()))
                } else {
                    Err("this widget key is only valid on pages of its listed origins")
                }
            }
        }
    }
}

/// Middleware: establishes the [`Caller`] or answers 401.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if state.keys.is_empty() {
        request.extensions_mut().insert(Caller::Anonymous);
        return next.run(request).await;
    }
    let headers = request.headers();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get(WIDGET_KEY_HEADER).and_then(|v| v.to_str().ok()))
        .map(str::to_string);
    let Some(presented) = presented.filter(|k| !k.trim().is_empty()) else {
        return unauthorized(
            "an API key is required: send `Authorization: Bearer KEY` (or `X-Tutor-Key` from a widget)",
        );
    };
    // A session token is a JWT (three dot-separated parts). A key could look like one too, so
    // a token that is not a valid session is still tried as a key.
    let mut session_error = None;
    if let Some(lti) = &state.lti
        && presented.trim().matches('.').count() == 2
    {
        match lti.session(presented.trim()) {
            Ok(session) => {
                request.extensions_mut().insert(Caller::Learner {
                    subject: Arc::from(session.sub.as_str()),
                    lesson: Arc::from(session.lesson.as_str()),
                    hint_only: session.hint_only,
                });
                return next.run(request).await;
            }
            Err(reason) => session_error = Some(reason),
        }
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match state.keys.check(&presented, origin) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(reason) => unauthorized(session_error.unwrap_or(reason)),
    }
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(ErrorCode::Unauthorized, message).into_response()
}

/// The rate-limiting key: the server key's name, else the client's IP (from the trusted proxy
/// header when one is configured, else the TCP peer).
#[derive(Debug, Clone)]
pub struct CallerKey {
    client_ip_header: Option<HeaderName>,
}

impl CallerKey {
    /// A key extractor honouring `limits.client_ip_header`.
    pub fn new(limits: &RateLimits) -> CallerKey {
        CallerKey {
            client_ip_header: limits
                .client_ip_header
                .as_deref()
                .and_then(|h| HeaderName::try_from(h.to_ascii_lowercase()).ok()),
        }
    }
}

impl KeyExtractor for CallerKey {
    type Key = String;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<String, GovernorError> {
        match request.extensions().get::<Caller>() {
            Some(Caller::Server(name)) => return Ok(format!("key:{name}")),
            // Anonymous launches (no user id: `issuer#`) share nothing but their IP.
            Some(Caller::Learner { subject, .. }) if !subject.ends_with('#') => {
                return Ok(format!("learner:{subject}"));
            }
            _ => {}
        }
        if let Some(header) = &self.client_ip_header
            && let Some(ip) = last_address(request.headers(), header)
        {
            return Ok(format!("ip:{ip}"));
        }
        Ok(request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "ip:unknown".to_string(), |c| format!("ip:{}", c.0.ip())))
    }
}

/// The last address of every `header` line: the one the trusted proxy in front appended (what a
/// client sent itself comes before it, so it cannot pick its own bucket).
fn last_address(headers: &axum::http::HeaderMap, header: &HeaderName) -> Option<IpAddr> {
    headers
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
}

/// The limiter's refusal, in the API's error shape, with `Retry-After`.
pub fn rate_limited(error: GovernorError) -> Response {
    let wait = match error {
        GovernorError::TooManyRequests { wait_time, .. } => wait_time.max(1),
        _ => 1,
    };
    refused_for(wait)
}

/// Rate limits counted in Redis, so every replica draws on one bucket per caller.
pub struct SharedLimiter {
    key: CallerKey,
    interval: Duration,
    burst: u32,
    shared: Arc<crate::shared::Shared>,
}

impl SharedLimiter {
    /// The same buckets as the per-process limiter: `per_minute` sustained, `burst` at once.
    pub fn new(limits: &RateLimits, shared: Arc<crate::shared::Shared>) -> SharedLimiter {
        SharedLimiter {
            key: CallerKey::new(limits),
            interval: Duration::from_secs(60) / limits.per_minute.max(1),
            burst: limits.burst.max(1),
            shared,
        }
    }
}

/// Middleware: takes one request from the caller's bucket in Redis. When Redis does not
/// answer, the request is admitted (counted and warned about by [`crate::shared`]).
pub async fn shared_rate_limit(
    State(limiter): State<Arc<SharedLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(key) = limiter.key.extract(&request) else {
        return next.run(request).await;
    };
    match limiter
        .shared
        .admit(&key, limiter.interval, limiter.burst)
        .await
    {
        Ok(crate::shared::Admission::Wait(wait)) => refused_for(wait.as_secs_f64().ceil() as u64),
        Ok(crate::shared::Admission::Admit) | Err(_) => next.run(request).await,
    }
}

fn refused_for(wait: u64) -> Response {
    let wait = wait.max(1);
    ApiError {
        retry_after: Some(wait),
        ..ApiError::new(
            ErrorCode::RateLimited,
            format!("too many requests; try again in {wait} s"),
        )
    }
    .into_response()
}

/// The `Host` names requests may be addressed to, against DNS rebinding: a page on another
/// site whose name was re-pointed at this machine sends its own name as `Host`.
#[derive(Debug, Clone)]
pub struct HostAllowlist {
    /// Lower-case names, each `host` (any port) or `host:port`.
    names: Vec<String>,
}

impl HostAllowlist {
    /// For a server listening on `listening`: the `configured` names and `also` (the LTI URL's
    /// host), plus the loopback names when it listens on loopback. `None` (any host) when it
    /// listens beyond loopback and the operator configured no names: behind a load balancer,
    /// which names reach the tutor (an IP, an internal name) is the operator's to say.
    pub fn new(
        listening: SocketAddr,
        configured: &[String],
        also: &[String],
    ) -> Option<HostAllowlist> {
        let clean = |n: &String| n.trim().trim_end_matches('/').to_ascii_lowercase();
        let mut names: Vec<String> = configured
            .iter()
            .map(clean)
            .filter(|n| !n.is_empty())
            .collect();
        if listening.ip().is_loopback() {
            names.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
        } else if names.is_empty() {
            return None;
        }
        names.extend(also.iter().map(clean).filter(|n| !n.is_empty()));
        Some(HostAllowlist { names })
    }

    /// True when a request's `Host` value names this tutor.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = match host.rsplit_once(':') {
            // `[::1]:8080`, `localhost:8080`; a bare `[::1]` has its colons inside brackets.
            Some((name, port)) if !port.contains(']') => name,
            _ => host.as_str(),
        };
        self.names.iter().any(|n| *n == host || *n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_checked_against_the_names_the_tutor_answers_to() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let local = HostAllowlist::new(loopback, &[], &[]).expect("loopback always checks");
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(local.allows(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.evil.example",
            "",
            "localhost.evil:8080",
        ] {
            assert!(!local.allows(host), "{host}");
        }
        let public: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        assert!(
            HostAllowlist::new(public, &[], &[]).is_none(),
            "any host without a configured name"
        );
        assert!(
            HostAllowlist::new(public, &[], &["tutor.example.edu".to_string()]).is_none(),
            "the LTI URL's host alone does not shut out probes and callers by other names"
        );
        let named = HostAllowlist::new(
            public,
            &[
                "tutor.example.edu".to_string(),
                "lb.internal:9000".to_string(),
            ],
            &[],
        )
        .expect("configured");
        assert!(named.allows("tutor.example.edu"));
        assert!(named.allows("tutor.example.edu:443"));
        assert!(named.allows("lb.internal:9000"));
        assert!(!named.allows("lb.internal:9001"));
        assert!(!named.allows("localhost:8080"));
    }

    fn keys() -> Keys {
        Keys::new(&[
            ApiKey {
                name: "lms".to_string(),
                sha256: key_digest_hex("server-secret"),
                origins: None,
            },
            ApiKey {
                name: "site".to_string(),
                sha256: key_digest_hex("widget-public"),
                origins: Some(vec!["https://school.example/".to_string()]),
            },
        ])
        .expect("valid keys")
    }

    #[test]
    fn server_keys_work_anywhere_and_widget_keys_only_from_their_origins() {
        let keys = keys();
        assert_eq!(
            keys.check("server-secret", None),
            Ok(Caller::Server("lms".into()))
        );
        assert!(keys.check("wrong", None).is_err());
        assert_eq!(
            keys.check("widget-public", Some("https://school.example")),
            Ok(Caller::Widget("site".into()))
        );
        assert!(
            keys.check("widget-public", Some("https://evil.example"))
                .is_err()
        );
        assert!(keys.check("widget-public", None).is_err());
    }

    #[test]
    fn the_client_address_is_the_one_the_proxy_appended() {
        let header = HeaderName::from_static("x-forwarded-for");
        let mut headers = axum::http::HeaderMap::new();
        headers.append(&header, "6.6.6.6, 7.7.7.7".parse().expect("value"));
        headers.append(&header, "203.0.113.9".parse().expect("value"));
        assert_eq!(
            last_address(&headers, &header),
            Some("203.0.113.9".parse().expect("ip"))
        );
        let mut one = axum::http::HeaderMap::new();
        one.append(&header, "6.6.6.6, 198.51.100.4".parse().expect("value"));
        assert_eq!(
            last_address(&one, &header),
            Some("198.51.100.4".parse().expect("ip"))
        );
        assert_eq!(last_address(&axum::http::HeaderMap::new(), &header), None);
    }

    #[test]
    fn malformed_digests_are_rejected_with_the_key_name() {
        let error = Keys::new(&[ApiKey {
            name: "typo".to_string(),
            sha256: "abc".to_string(),
            origins: None,
        }])
        .expect_err("bad digest");
        assert!(error.contains("typo"));
    }
}
