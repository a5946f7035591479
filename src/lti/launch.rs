//! The launch: an id_token checked in a fixed order, each check its own function returning a
//! [`Rejection`] that names it.

use super::login::{StateClaims, digest, same_digest};
use super::platform::KeyError;
use super::settings::{Registration, is_secure_url};
use super::{
    Check, LEEWAY_SECS, LoginRequest, Lti, Rejection, STATE_AUDIENCE, STATE_TTL, claim, now_secs,
};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
/// A launch that passed every check.
#[derive(Debug, Clone)]
pub enum Launch {
    /// A learner (or instructor) opening a lesson.
    ResourceLink(ResourceLaunch),
    /// An instructor choosing which lesson a new link opens.
    DeepLinking(PickerContext),
}

/// A resource link launch.
#[derive(Debug, Clone)]
pub struct ResourceLaunch {
    /// The lesson the link opens, from `custom.lesson_id` (or the target link's `lesson`).
    pub lesson_id: Option<String>,
    /// The platform's user id (absent for anonymous launches).
    pub subject: Option<String>,
    pub issuer: String,
    pub platform: String,
    /// The course's title, when sent.
    pub context_title: Option<String>,
    /// The instructor set the link to hints only (`custom.tutor_mode = "hint-only"`), for an
    /// assessment: every answer in the session is a hint.
    pub hint_only: bool,
}

/// What the deep-linking picker needs to answer the platform; travels signed in the page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PickerContext {
    /// The platform's issuer.
    pub platform: String,
    pub client_id: String,
    pub deployment_id: String,
    pub return_url: String,
    /// Opaque platform data that must be echoed back unchanged: any JSON value (Deep Linking
    /// 2.0 §4.5.5).
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub context_title: Option<String>,
}

/// How long a used nonce is remembered: a token outlives its state by at most its own
/// lifetime, so after both it can no longer be presented.
const NONCE_TTL: std::time::Duration = STATE_TTL.saturating_mul(2);

/// Nonces already used, with when they may be forgotten.
#[derive(Default)]
pub(super) struct NonceLedger {
    used: Mutex<(HashMap<String, Instant>, usize)>,
}

impl NonceLedger {
    /// Records `nonce`; false when it was already used.
    pub(super) fn consume(&self, nonce: &str) -> bool {
        let mut guard = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let (used, prune_at) = &mut *guard;
        let now = Instant::now();
        // Forget expired nonces when the map has doubled since the last sweep: amortized O(1).
        if used.len() >= (*prune_at).max(1024) {
            used.retain(|_, forget_at| *forget_at > now);
            *prune_at = used.len() * 2;
        }
        match used.get(nonce) {
            Some(forget_at) if *forget_at > now => false,
            _ => {
                used.insert(nonce.to_string(), now + NONCE_TTL);
                true
            }
        }
    }
}

/// 2. Algorithm and key id, before anything is trusted: RS256 with a `kid`. Returns the kid.
fn check_algorithm(id_token: &str) -> Result<String, Rejection> {
    let (alg, kid) = header_alg_and_kid(id_token)?;
    if alg != "RS256" {
        return Err(Rejection::new(
            Check::Algorithm,
            format!("the id_token is signed with `{alg}`; only RS256 is accepted"),
        ));
    }
    kid.filter(|k| !k.is_empty())
        .ok_or_else(|| Rejection::new(Check::Kid, "the id_token names no key (`kid`)"))
}

/// 7. Deployment: one the registration lists. Returns it.
fn check_deployment<'a>(
    claims: &'a Map<String, Value>,
    registration: &Registration,
) -> Result<&'a str, Rejection> {
    let deployment = string_claim(claims, claim::DEPLOYMENT_ID).unwrap_or("");
    registration.check_deployment(deployment)?;
    Ok(deployment)
}

/// 8. Version: LTI 1.3.0.
fn check_version(claims: &Map<String, Value>) -> Result<(), Rejection> {
    let version = string_claim(claims, claim::VERSION).unwrap_or("");
    if version != "1.3.0" {
        return Err(Rejection::new(
            Check::Version,
            format!("LTI version `{version}` is not supported; only 1.3.0 is"),
        ));
    }
    Ok(())
}

/// The claims of a token whose signature is not checked yet (only to find its registration).
fn unverified_claims(token: &str) -> Result<Map<String, Value>, Rejection> {
    jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token)
        .map(|data| data.claims)
        .map_err(|e| Rejection::new(Check::Claims, format!("the id_token cannot be read: {e}")))
}

/// The issuer a token claims, unverified: for the log line of a refused launch.
pub fn claimed_issuer(token: &str) -> Option<String> {
    string_claim(&unverified_claims(token).ok()?, "iss").map(str::to_string)
}

/// The token's header `alg`, read without trusting the token (so `none` and HS* get a named
/// refusal, not a parse error), and its `kid`.
fn header_alg_and_kid(token: &str) -> Result<(String, Option<String>), Rejection> {
    use base64::Engine;
    let unreadable = || Rejection::new(Check::Claims, "the id_token is not a JWT");
    let header = token.split('.').next().ok_or_else(unreadable)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| unreadable())?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| unreadable())?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((alg, kid))
}

pub(super) fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// True when the link's custom parameter `tutor_mode` is `hint-only` (an instructor's setting
/// for an assessment). Other values, and none, mean ordinary answers.
pub(super) fn hint_only(claims: &Map<String, Value>) -> bool {
    claims
        .get(claim::CUSTOM)
        .and_then(|c| c.get("tutor_mode"))
        .and_then(Value::as_str)
        .is_some_and(|mode| mode.trim().eq_ignore_ascii_case("hint-only"))
}

/// The lesson a launch points at: `custom.lesson_id`, else `lesson` in the target link's
/// query, else a `/lessons/{id}` target path.
pub(super) fn lesson_of(claims: &Map<String, Value>) -> Option<String> {
    let custom = claims
        .get(claim::CUSTOM)
        .and_then(|c| c.get("lesson_id"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|id| !id.is_empty() && !id.starts_with('$'));
    if let Some(id) = custom {
        return Some(id.to_string());
    }
    let target = reqwest::Url::parse(string_claim(claims, claim::TARGET_LINK_URI)?).ok()?;
    if let Some((_, id)) = target.query_pairs().find(|(k, _)| k == "lesson") {
        return Some(id.into_owned()).filter(|id| !id.is_empty());
    }
    let mut segments = target.path_segments()?;
    match (segments.next(), segments.next(), segments.next()) {
        (Some("lessons"), Some(id), None) if !id.is_empty() => Some(id.to_string()),
        _ => None,
    }
}

impl Lti {
    /// Validates a launch, in the documented order; the first failed check is the rejection.
    ///
    /// `form_state` is the `state` the platform posted; `cookie` the value of the browser's
    /// state cookie (`None`: no cookie for that state).
    pub async fn launch(
        &self,
        form_state: &str,
        id_token: &str,
        cookie: Option<&str>,
    ) -> Result<Launch, Rejection> {
        let state = self.check_state(form_state, cookie)?;
        let kid = check_algorithm(id_token)?;
        let registration = self.check_registration(id_token, &state)?;
        let claims = self
            .check_signature_and_times(id_token, registration, &kid)
            .await?;
        self.check_nonce(&claims, &state).await?;
        let deployment = check_deployment(&claims, registration)?;
        check_version(&claims)?;
        self.check_message(&claims, registration, deployment, &state)
    }

    /// 1. State: signed by this tool's login, with the browser's cookie for it.
    fn check_state(
        &self,
        form_state: &str,
        cookie: Option<&str>,
    ) -> Result<StateClaims, Rejection> {
        if form_state.is_empty() {
            return Err(Rejection::new(Check::State, "the launch carries no state"));
        }
        let Ok(state) = self
            .keys
            .verify_own::<StateClaims>(form_state, STATE_AUDIENCE)
        else {
            return Err(Rejection::new(
                Check::State,
                "the launch's state was not issued by this tool's login, or the login took over 10 minutes",
            ));
        };
        let Some(cookie) = cookie else {
            return Err(Rejection {
                restart: self.login_url(&state.login),
                ..Rejection::new(
                    Check::State,
                    "this browser did not keep the tool's login cookie: browsers often block cookies inside course pages, and a page reloaded after its launch has none either",
                )
            });
        };
        if !same_digest(&digest(cookie), &state.cookie_digest) {
            return Err(Rejection::new(
                Check::State,
                "the login cookie does not belong to this launch's state",
            ));
        }
        Ok(state)
    }

    /// 3. Registration by issuer and audience (or authorized party): the one the login chose.
    fn check_registration(
        &self,
        id_token: &str,
        state: &StateClaims,
    ) -> Result<&Registration, Rejection> {
        let unverified = unverified_claims(id_token)?;
        let registration = self.registration(&unverified)?;
        if registration.issuer != state.issuer || registration.client_id != state.client_id {
            return Err(Rejection::new(
                Check::State,
                "the launch comes from another platform registration than its login",
            ));
        }
        Ok(registration)
    }

    /// 4. Signature, with the platform key of that id; 5. times, within the leeway.
    async fn check_signature_and_times(
        &self,
        id_token: &str,
        registration: &Registration,
        kid: &str,
    ) -> Result<Map<String, Value>, Rejection> {
        let key = match self.platform_keys.key(&registration.jwks_url, kid).await {
            Ok(key) => key,
            Err(KeyError::UnknownKid) => {
                return Err(Rejection::new(
                    Check::Key,
                    format!(
                        "`{}` publishes no key `{kid}` (its key set was refetched)",
                        registration.label()
                    ),
                ));
            }
            Err(KeyError::Unavailable(why)) => {
                return Err(Rejection::new(
                    Check::PlatformKeys,
                    format!("the platform's keys cannot be fetched: {why}"),
                ));
            }
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&registration.client_id]);
        validation.set_issuer(&[&registration.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        validation.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    Rejection::new(Check::Expired, "the id_token has expired")
                }
                ErrorKind::ImmatureSignature => {
                    Rejection::new(Check::IssuedAt, "the id_token is not valid yet (`nbf`)")
                }
                ErrorKind::InvalidAudience => {
                    Rejection::new(Check::Audience, "the id_token's audience is not this tool")
                }
                ErrorKind::InvalidIssuer => {
                    Rejection::new(Check::Issuer, "the id_token's issuer does not match")
                }
                ErrorKind::MissingRequiredClaim(name) => {
                    Rejection::new(Check::Claims, format!("the id_token lacks `{name}`"))
                }
                ErrorKind::InvalidSignature => Rejection::new(
                    Check::Signature,
                    "the id_token's signature does not verify with the platform's key",
                ),
                _ => Rejection::new(
                    Check::Signature,
                    format!("the id_token does not verify: {e}"),
                ),
            })?
            .claims;
        match claims.get("iat").and_then(Value::as_u64) {
            // Not from the future, and not older than a login may last (so a token cannot be
            // replayed once its nonce is forgotten).
            Some(iat)
                if iat <= now_secs() + LEEWAY_SECS
                    && iat + STATE_TTL.as_secs() + LEEWAY_SECS >= now_secs() =>
            {
                Ok(claims)
            }
            _ => Err(Rejection::new(
                Check::IssuedAt,
                "the id_token's `iat` is missing, in the future, or older than a login may last",
            )),
        }
    }

    /// 6. Nonce: the one issued with this state, used once (on any replica, when they share).
    async fn check_nonce(
        &self,
        claims: &Map<String, Value>,
        state: &StateClaims,
    ) -> Result<(), Rejection> {
        let nonce = string_claim(claims, "nonce").unwrap_or("");
        let nonce_digest = digest(nonce);
        if nonce.is_empty() || !same_digest(&nonce_digest, &state.nonce_digest) {
            return Err(Rejection::new(
                Check::Nonce,
                "the id_token's nonce is not the one issued for this login",
            ));
        }
        if !self.nonces.consume(nonce) || !self.first_use_everywhere(nonce_digest).await {
            return Err(Rejection::new(
                Check::Nonce,
                "this id_token was already used (replayed nonce)",
            ));
        }
        Ok(())
    }

    /// Whether no other replica has used this nonce: asked of Redis, else of the log's
    /// database (on the blocking pool). When neither can answer, this process's ledger (already
    /// consulted) decides alone.
    async fn first_use_everywhere(&self, key: String) -> bool {
        let ttl = NONCE_TTL;
        if let Some(redis) = &self.shared_nonces.redis
            && let Ok(first) = redis.first_use_of_nonce(&key, ttl).await
        {
            return first;
        }
        if let Some(store) = &self.shared_nonces.store {
            let store = store.clone();
            let expires = now_secs() + ttl.as_secs();
            match tokio::task::spawn_blocking(move || store.first_use_of_nonce(&key, expires)).await
            {
                Ok(Ok(first)) => return first,
                Ok(Err(error)) => tracing::warn!(%error, "cannot record a used LTI nonce"),
                Err(error) => tracing::warn!(%error, "nonce lookup failed"),
            }
        }
        true
    }

    /// 9. Message type; 10. the claims that type requires (the target link among them).
    fn check_message(
        &self,
        claims: &Map<String, Value>,
        registration: &Registration,
        deployment: &str,
        state: &StateClaims,
    ) -> Result<Launch, Rejection> {
        let context_title = claims
            .get(claim::CONTEXT)
            .and_then(|c| c.get("title"))
            .and_then(Value::as_str)
            .map(str::to_string);
        match string_claim(claims, claim::MESSAGE_TYPE).unwrap_or("") {
            "LtiResourceLinkRequest" => {
                let link_id = claims
                    .get(claim::RESOURCE_LINK)
                    .and_then(|l| l.get("id"))
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty());
                if link_id.is_none() {
                    return Err(Rejection::new(
                        Check::Claims,
                        "the launch has no resource link (`resource_link.id`)",
                    ));
                }
                if !claims.get(claim::ROLES).is_some_and(Value::is_array) {
                    return Err(Rejection::new(
                        Check::Claims,
                        "the launch has no `roles` claim",
                    ));
                }
                self.check_target(claims, &state.login)?;
                Ok(Launch::ResourceLink(ResourceLaunch {
                    lesson_id: lesson_of(claims),
                    subject: string_claim(claims, "sub").map(str::to_string),
                    issuer: registration.issuer.clone(),
                    platform: registration.label().to_string(),
                    context_title,
                    hint_only: hint_only(claims),
                }))
            }
            "LtiDeepLinkingRequest" => {
                self.check_target(claims, &state.login)?;
                let settings = claims.get(claim::DEEP_LINKING_SETTINGS);
                let return_url = settings
                    .and_then(|s| s.get("deep_link_return_url"))
                    .and_then(Value::as_str)
                    .filter(|u| reqwest::Url::parse(u).is_ok_and(|u| is_secure_url(&u)));
                let Some(return_url) = return_url else {
                    return Err(Rejection::new(
                        Check::Claims,
                        "the deep-linking request has no valid https `deep_link_return_url`",
                    ));
                };
                let accepts_links = settings
                    .and_then(|s| s.get("accept_types"))
                    .and_then(Value::as_array)
                    .is_some_and(|types| types.iter().any(|t| t == "ltiResourceLink"));
                if !accepts_links {
                    return Err(Rejection::new(
                        Check::Claims,
                        "the platform does not accept `ltiResourceLink` items here",
                    ));
                }
                Ok(Launch::DeepLinking(PickerContext {
                    platform: registration.issuer.clone(),
                    client_id: registration.client_id.clone(),
                    deployment_id: deployment.to_string(),
                    return_url: return_url.to_string(),
                    data: settings.and_then(|s| s.get("data")).cloned(),
                    context_title,
                }))
            }
            other => Err(Rejection::new(
                Check::MessageType,
                format!("message type `{other}` is not supported"),
            )),
        }
    }

    /// The launch's `target_link_uri` claim: a page of this tool, and the one its login named.
    fn check_target(
        &self,
        claims: &serde_json::Map<String, Value>,
        login: &LoginRequest,
    ) -> Result<(), Rejection> {
        let Some(target) = string_claim(claims, claim::TARGET_LINK_URI) else {
            return Err(Rejection::new(
                Check::Claims,
                "the launch has no `target_link_uri` claim",
            ));
        };
        if !self.is_tool_url(target) {
            return Err(Rejection::new(
                Check::TargetLinkUri,
                format!(
                    "the launch's target_link_uri `{target}` is not a page of this tool ({})",
                    self.settings.base_url()
                ),
            ));
        }
        if target.trim() != login.target_link_uri.trim() {
            return Err(Rejection::new(
                Check::TargetLinkUri,
                format!(
                    "the launch's target_link_uri `{target}` is not the one its login named (`{}`)",
                    login.target_link_uri
                ),
            ));
        }
        Ok(())
    }

    /// The registration of (iss, aud/azp).
    fn registration(&self, claims: &Map<String, Value>) -> Result<&Registration, Rejection> {
        let issuer = string_claim(claims, "iss").unwrap_or("");
        let of_issuer: Vec<&Registration> = self
            .settings
            .platforms
            .iter()
            .filter(|p| p.issuer == issuer)
            .collect();
        if of_issuer.is_empty() {
            return Err(Rejection::new(
                Check::Issuer,
                format!("no platform is registered with issuer `{issuer}`"),
            ));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let azp = string_claim(claims, "azp");
        // With several audiences the authorized party says which one is meant.
        let client_id = match azp {
            Some(azp) if audiences.contains(&azp) => Some(azp),
            Some(_) => None,
            None if audiences.len() == 1 => Some(audiences[0]),
            None => None,
        };
        client_id
            .and_then(|id| of_issuer.iter().find(|p| p.client_id == id).copied())
            .ok_or_else(|| {
                Rejection::new(Check::Audience,
                    format!(
                        "the id_token's audience {audiences:?}{} is not a client id registered for `{issuer}`",
                        azp.map(|a| format!(" (azp `{a}`)")).unwrap_or_default()
                    ),
                )
            })
    }
}
