//! LTI 1.3: how an LMS (Moodle, Canvas, Open edX, Blackboard, Brightspace) launches the tutor.
//!
//! The flow, as the tool sees it:
//!
//! 1. [`Lti::login`]: the platform's OIDC login initiation → a redirect back to the platform's
//!    auth endpoint with a fresh `state` and `nonce`, and a state cookie holding a random value.
//!    The signed state carries the digests of both the nonce and the cookie's value, so a launch
//!    needs all three to agree: a captured id_token cannot be redeemed through another login.
//! 2. [`Lti::launch`]: the platform posts an `id_token`; it is checked in a fixed order (state
//!    and its cookie, algorithm and key id, registration, signature, times, nonce, deployment,
//!    version, message type, claims, target_link_uri: a page of this tool and the one the login
//!    named) and the first failure is a [`Rejection`] naming its check.
//! 3. A resource link launch becomes a short-lived session token ([`Lti::session_token`]) the
//!    lesson page's widget sends instead of an API key; a deep-linking launch becomes a lesson
//!    picker whose choice returns to the platform as a signed `LtiDeepLinkingResponse`
//!    ([`Lti::deep_link_response`]).
//!
//! Nothing here knows HTTP; `http::lti` turns these into pages. The module holds no state a
//! load balancer would have to pin, except the set of consumed nonces (per process: a token
//! replayed to another machine within its few minutes of life is caught only by the state
//! cookie, which the first launch deleted).

pub mod keys;
pub mod platform;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use keys::ToolKeys;
use platform::{KeyError, PlatformKeys};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Claim names of LTI 1.3 and Deep Linking 2.0.
mod claim {
    pub const MESSAGE_TYPE: &str = "https://purl.imsglobal.org/spec/lti/claim/message_type";
    pub const VERSION: &str = "https://purl.imsglobal.org/spec/lti/claim/version";
    pub const DEPLOYMENT_ID: &str = "https://purl.imsglobal.org/spec/lti/claim/deployment_id";
    pub const TARGET_LINK_URI: &str = "https://purl.imsglobal.org/spec/lti/claim/target_link_uri";
    pub const RESOURCE_LINK: &str = "https://purl.imsglobal.org/spec/lti/claim/resource_link";
    pub const ROLES: &str = "https://purl.imsglobal.org/spec/lti/claim/roles";
    pub const CUSTOM: &str = "https://purl.imsglobal.org/spec/lti/claim/custom";
    pub const CONTEXT: &str = "https://purl.imsglobal.org/spec/lti/claim/context";
    pub const DEEP_LINKING_SETTINGS: &str =
        "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings";
    pub const CONTENT_ITEMS: &str = "https://purl.imsglobal.org/spec/lti-dl/claim/content_items";
    pub const DATA: &str = "https://purl.imsglobal.org/spec/lti-dl/claim/data";
}

/// Clock skew tolerated on `exp` and `iat`.
pub const LEEWAY_SECS: u64 = 30;
/// How long a login's state (cookie) and nonce stay usable.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// How long an instructor has to pick a lesson in the deep-linking picker.
const PICKER_TTL_SECS: u64 = 900;
/// Audiences of the tool's own tokens (never accepted for one another).
const SESSION_AUDIENCE: &str = "tutor:session";
const PICKER_AUDIENCE: &str = "tutor:deep-link";
const STATE_AUDIENCE: &str = "tutor:state";

/// One platform (`[[lti.platforms]]`), keyed by issuer and client id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// A label for logs (defaults to the issuer).
    #[serde(default)]
    pub name: Option<String>,
    /// The platform's issuer (`iss`), e.g. `https://canvas.instructure.com`.
    pub issuer: String,
    /// The client id the platform gave this tool (the `aud` of its tokens).
    pub client_id: String,
    /// The platform's OIDC authorization endpoint.
    pub auth_url: String,
    /// The platform's public key set.
    pub jwks_url: String,
    /// Deployment ids allowed to launch.
    pub deployments: Vec<String>,
}

impl Registration {
    fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.issuer)
    }

    /// Whether `deployment` may launch, as the rejection a login or launch returns.
    fn check_deployment(&self, deployment: &str) -> Result<(), Rejection> {
        if self.deployments.iter().any(|d| d == deployment) {
            return Ok(());
        }
        Err(Rejection::new(
            "deployment",
            format!(
                "deployment `{deployment}` of `{}` is not allowed here",
                self.label()
            ),
        ))
    }
}

/// `[lti]` in `tutor.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LtiSettings {
    /// The tool's public base URL, as browsers and the LMS reach it (e.g.
    /// `https://tutor.example.edu`); the launch URL is `{url}/lti/launch`.
    pub url: String,
    /// Folder of the tool's private keys (PEM), generated on first run when empty.
    #[serde(default = "default_keys_dir")]
    pub keys_dir: PathBuf,
    /// How long a learner's session token lasts after a launch.
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u64,
    #[serde(default)]
    pub platforms: Vec<Registration>,
}

fn default_keys_dir() -> PathBuf {
    PathBuf::from("lti-keys")
}

fn default_session_minutes() -> u64 {
    120
}

impl LtiSettings {
    /// The public base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// Where platforms post launches (the OIDC redirect URI).
    pub fn launch_url(&self) -> String {
        format!("{}/lti/launch", self.base_url())
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("`lti.url` `{}` is not a URL: {e}", self.url))?;
        if !is_secure_url(&url) {
            return Err(format!(
                "`lti.url` `{}` must be https:// (browsers drop the launch's Secure cookie elsewhere; http:// is only for localhost)",
                self.url
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(format!(
                "`lti.url` `{}` must be the tool's origin only (scheme, host, port): the tutor serves LTI at /lti/ of its own host",
                self.url
            ));
        }
        if self.session_minutes == 0 {
            return Err("`lti.session_minutes` must be at least 1".to_string());
        }
        let mut seen = std::collections::HashSet::new();
        for platform in &self.platforms {
            for (field, value) in [
                ("auth_url", &platform.auth_url),
                ("jwks_url", &platform.jwks_url),
            ] {
                let url = reqwest::Url::parse(value).map_err(|e| {
                    format!(
                        "lti platform `{}`: `{field}` is not a URL: {e}",
                        platform.label()
                    )
                })?;
                if !is_secure_url(&url) {
                    return Err(format!(
                        "lti platform `{}`: `{field}` must be https:// (http:// is only for localhost)",
                        platform.label()
                    ));
                }
            }
            if platform.issuer.trim().is_empty() || platform.client_id.trim().is_empty() {
                return Err(format!(
                    "lti platform `{}`: `issuer` and `client_id` must not be empty",
                    platform.label()
                ));
            }
            if platform.deployments.is_empty() {
                return Err(format!(
                    "lti platform `{}`: list at least one deployment id in `deployments`",
                    platform.label()
                ));
            }
            if !seen.insert((platform.issuer.as_str(), platform.client_id.as_str())) {
                return Err(format!(
                    "lti platform `{}` is registered twice (same issuer and client_id)",
                    platform.label()
                ));
            }
        }
        Ok(())
    }
}

/// Why a login or launch was refused: the check that failed and a sentence for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `state`, `algorithm`, `kid`, `issuer`, `audience`, `key`, `signature`, `expired`,
    /// `issued_at`, `nonce`, `deployment`, `version`, `message_type`, `claims`, `lesson`,
    /// `platform_keys`, `login`, `picker`.
    pub check: &'static str,
    pub message: String,
    /// Set when starting the login again in a window of its own would succeed (the browser
    /// did not keep the state cookie inside the course page's frame): that login's URL.
    pub restart: Option<String>,
}

impl Rejection {
    pub fn new(check: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            check,
            message: message.into(),
            restart: None,
        }
    }
}

/// https, or http on a loopback host (for trying things on one machine).
fn is_secure_url(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        },
        _ => false,
    }
}

/// The name of the cookie holding a login's nonce: bound to the state, and `__Host-` so that
/// no sibling subdomain can plant one.
pub fn state_cookie_name(state: &str) -> String {
    let digest = blake3::hash(state.as_bytes()).to_hex();
    format!("__Host-tutor_lti_{}", &digest[..32])
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.check)
    }
}

/// An OIDC login initiation, as the platform sends it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// The platform's issuer.
    pub iss: String,
    /// Opaque; echoed back.
    pub login_hint: String,
    /// Where the launch is meant to land.
    pub target_link_uri: String,
    /// Opaque; echoed back.
    #[serde(default)]
    pub lti_message_hint: Option<String>,
    /// Required when several registrations share the issuer (Canvas).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub lti_deployment_id: Option<String>,
}

/// Where to send the browser after a login initiation, and what to remember in it.
#[derive(Debug, Clone)]
pub struct LoginRedirect {
    /// The platform's auth URL with the OIDC parameters.
    pub url: String,
    pub state: String,
    /// The state cookie's value: random, bound to the state by its digest.
    pub cookie: String,
}

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

#[derive(Serialize, Deserialize)]
struct PickerClaims {
    aud: String,
    exp: u64,
    iat: u64,
    #[serde(flatten)]
    context: PickerContext,
}

/// What a login's `state` carries (signed by the tool): the registration it chose, and the
/// login itself, so that a launch whose cookie the browser did not keep can start over in a
/// window of its own.
#[derive(Serialize, Deserialize)]
struct StateClaims {
    aud: String,
    exp: u64,
    issuer: String,
    client_id: String,
    login: LoginRequest,
    /// Randomness, so no two states are alike.
    n: String,
    /// BLAKE3 of the nonce sent to the platform: the id_token must carry that nonce.
    nonce_digest: String,
    /// BLAKE3 of the state cookie's random value: the browser finishing the launch must hold
    /// that cookie. With both, a captured id_token cannot be redeemed with someone else's login.
    cookie_digest: String,
}

/// The digest a state holds of a secret it binds (hex BLAKE3).
fn digest(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// Compares two digests in constant time.
fn same_digest(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A learner's session after a launch: what the widget's token proves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// `{issuer}#{user id}` (the user id may be empty for anonymous launches).
    pub sub: String,
    /// The only lesson this session may ask about.
    pub lesson: String,
    pub exp: u64,
    aud: String,
    iat: u64,
}

/// Nonces already used, with when they may be forgotten.
#[derive(Default)]
struct NonceLedger {
    used: Mutex<(HashMap<String, Instant>, usize)>,
}

impl NonceLedger {
    /// Records `nonce`; false when it was already used.
    fn consume(&self, nonce: &str) -> bool {
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
                // A token outlives its state by at most its own lifetime; forget after both.
                used.insert(nonce.to_string(), now + STATE_TTL * 2);
                true
            }
        }
    }
}

/// The LTI tool: registrations, keys, and the platform key cache.
pub struct Lti {
    settings: LtiSettings,
    keys: ToolKeys,
    platform_keys: PlatformKeys,
    nonces: NonceLedger,
}

impl std::fmt::Debug for Lti {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lti")
            .field("url", &self.settings.url)
            .field("platforms", &self.settings.platforms.len())
            .field("keys", &self.keys)
            .finish()
    }
}

/// A fresh random value: 32 bytes, base64url.
fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    // The system's CSPRNG; failing means the machine cannot do cryptography at all.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// The claims of a token whose signature is not checked yet (only to find its registration).
fn unverified_claims(token: &str) -> Result<Map<String, Value>, Rejection> {
    jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token)
        .map(|data| data.claims)
        .map_err(|e| Rejection::new("claims", format!("the id_token cannot be read: {e}")))
}

/// The issuer a token claims, unverified: for the log line of a refused launch.
pub fn claimed_issuer(token: &str) -> Option<String> {
    string_claim(&unverified_claims(token).ok()?, "iss").map(str::to_string)
}

/// The token's header `alg`, read without trusting the token (so `none` and HS* get a named
/// refusal, not a parse error), and its `kid`.
fn header_alg_and_kid(token: &str) -> Result<(String, Option<String>), Rejection> {
    use base64::Engine;
    let unreadable = || Rejection::new("claims", "the id_token is not a JWT");
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

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// The lesson a launch points at: `custom.lesson_id`, else `lesson` in the target link's
/// query, else a `/lessons/{id}` target path.
fn lesson_of(claims: &Map<String, Value>) -> Option<String> {
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
    /// The tool, with keys loaded from (or generated into) `settings.keys_dir`.
    pub fn new(settings: LtiSettings) -> Result<Lti, String> {
        settings.validate()?;
        let keys = ToolKeys::load_or_generate(&settings.keys_dir)?;
        Ok(Lti {
            settings,
            keys,
            platform_keys: PlatformKeys::new(),
            nonces: NonceLedger::default(),
        })
    }

    /// The settings the tool runs with.
    pub fn settings(&self) -> &LtiSettings {
        &self.settings
    }

    /// The tool's public keys (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> &Value {
        self.keys.jwks()
    }

    /// Answers an OIDC login initiation with the redirect to the platform.
    pub fn login(&self, request: &LoginRequest) -> Result<LoginRedirect, Rejection> {
        let missing = [
            ("iss", request.iss.trim()),
            ("login_hint", request.login_hint.trim()),
            ("target_link_uri", request.target_link_uri.trim()),
        ]
        .into_iter()
        .filter(|(_, value)| value.is_empty())
        .map(|(name, _)| name)
        .collect::<Vec<_>>();
        if !missing.is_empty() {
            return Err(Rejection::new(
                "login",
                format!("the login request lacks {}", missing.join(", ")),
            ));
        }
        let candidates: Vec<&Registration> = self
            .settings
            .platforms
            .iter()
            .filter(|p| p.issuer == request.iss)
            .filter(|p| {
                request
                    .client_id
                    .as_deref()
                    .is_none_or(|id| id == p.client_id)
            })
            .collect();
        let registration = match candidates.as_slice() {
            [one] => *one,
            [] => {
                return Err(Rejection::new(
                    "issuer",
                    format!(
                        "no platform is registered with issuer `{}`{}",
                        request.iss,
                        request
                            .client_id
                            .as_deref()
                            .map(|c| format!(" and client id `{c}`"))
                            .unwrap_or_default()
                    ),
                ));
            }
            _ => {
                return Err(Rejection::new(
                    "login",
                    format!(
                        "several registrations share issuer `{}`; the platform must send client_id",
                        request.iss
                    ),
                ));
            }
        };
        if let Some(deployment) = request.lti_deployment_id.as_deref() {
            registration.check_deployment(deployment)?;
        }
        if !self.is_tool_url(&request.target_link_uri) {
            return Err(Rejection::new(
                "login",
                format!(
                    "target_link_uri `{}` is not a page of this tool ({})",
                    request.target_link_uri,
                    self.settings.base_url()
                ),
            ));
        }
        let nonce = random_token();
        let cookie = random_token();
        let state = self
            .keys
            .sign_own(&StateClaims {
                aud: STATE_AUDIENCE.to_string(),
                exp: now_secs() + STATE_TTL.as_secs(),
                issuer: registration.issuer.clone(),
                client_id: registration.client_id.clone(),
                login: request.clone(),
                n: random_token(),
                nonce_digest: digest(&nonce),
                cookie_digest: digest(&cookie),
            })
            .map_err(|e| Rejection::new("login", format!("the state cannot be signed: {e}")))?;
        let launch_url = self.settings.launch_url();
        let mut params = vec![
            ("scope", "openid"),
            ("response_type", "id_token"),
            ("response_mode", "form_post"),
            ("prompt", "none"),
            ("client_id", registration.client_id.as_str()),
            ("redirect_uri", launch_url.as_str()),
            ("login_hint", request.login_hint.as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
        ];
        if let Some(hint) = request.lti_message_hint.as_deref() {
            params.push(("lti_message_hint", hint));
        }
        let url = reqwest::Url::parse_with_params(&registration.auth_url, &params)
            .map_err(|e| Rejection::new("login", format!("the platform's auth_url: {e}")))?;
        Ok(LoginRedirect {
            url: url.to_string(),
            state,
            cookie,
        })
    }

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
        // 1. State: the browser that started the login is the one finishing it.
        if form_state.is_empty() {
            return Err(Rejection::new("state", "the launch carries no state"));
        }
        let Ok(state) = self
            .keys
            .verify_own::<StateClaims>(form_state, STATE_AUDIENCE)
        else {
            return Err(Rejection::new(
                "state",
                "the launch's state was not issued by this tool's login, or the login took over 10 minutes",
            ));
        };
        let Some(cookie) = cookie else {
            return Err(Rejection {
                restart: self.login_url(&state.login),
                ..Rejection::new(
                    "state",
                    "this browser did not keep the tool's login cookie: browsers often block cookies inside course pages, and a page reloaded after its launch has none either",
                )
            });
        };
        if !same_digest(&digest(cookie), &state.cookie_digest) {
            return Err(Rejection::new(
                "state",
                "the login cookie does not belong to this launch's state",
            ));
        }
        // 2. Algorithm and key id, before anything is trusted.
        let (alg, kid) = header_alg_and_kid(id_token)?;
        if alg != "RS256" {
            return Err(Rejection::new(
                "algorithm",
                format!("the id_token is signed with `{alg}`; only RS256 is accepted"),
            ));
        }
        let Some(kid) = kid.filter(|k| !k.is_empty()) else {
            return Err(Rejection::new("kid", "the id_token names no key (`kid`)"));
        };
        // 3. Registration by issuer and audience (or authorized party).
        let unverified = unverified_claims(id_token)?;
        let registration = self.registration(&unverified)?;
        if registration.issuer != state.issuer || registration.client_id != state.client_id {
            return Err(Rejection::new(
                "state",
                "the launch comes from another platform registration than its login",
            ));
        }
        // 4. Signature, with the platform key of that id; 5. times, within the leeway.
        let key = match self.platform_keys.key(&registration.jwks_url, &kid).await {
            Ok(key) => key,
            Err(KeyError::UnknownKid) => {
                return Err(Rejection::new(
                    "key",
                    format!(
                        "`{}` publishes no key `{kid}` (its key set was refetched)",
                        registration.label()
                    ),
                ));
            }
            Err(KeyError::Unavailable(why)) => {
                return Err(Rejection::new(
                    "platform_keys",
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
                    Rejection::new("expired", "the id_token has expired")
                }
                ErrorKind::ImmatureSignature => {
                    Rejection::new("issued_at", "the id_token is not valid yet (`nbf`)")
                }
                ErrorKind::InvalidAudience => {
                    Rejection::new("audience", "the id_token's audience is not this tool")
                }
                ErrorKind::InvalidIssuer => {
                    Rejection::new("issuer", "the id_token's issuer does not match")
                }
                ErrorKind::MissingRequiredClaim(name) => {
                    Rejection::new("claims", format!("the id_token lacks `{name}`"))
                }
                ErrorKind::InvalidSignature => Rejection::new(
                    "signature",
                    "the id_token's signature does not verify with the platform's key",
                ),
                _ => Rejection::new("signature", format!("the id_token does not verify: {e}")),
            })?
            .claims;
        match claims.get("iat").and_then(Value::as_u64) {
            // Not from the future, and not older than a login may last (so a token cannot be
            // replayed once its nonce is forgotten).
            Some(iat)
                if iat <= now_secs() + LEEWAY_SECS
                    && iat + STATE_TTL.as_secs() + LEEWAY_SECS >= now_secs() => {}
            _ => {
                return Err(Rejection::new(
                    "issued_at",
                    "the id_token's `iat` is missing, in the future, or older than a login may last",
                ));
            }
        }
        // 6. Nonce: the one issued with this state, used once.
        let nonce = string_claim(&claims, "nonce").unwrap_or("");
        if nonce.is_empty() || !same_digest(&digest(nonce), &state.nonce_digest) {
            return Err(Rejection::new(
                "nonce",
                "the id_token's nonce is not the one issued for this login",
            ));
        }
        if !self.nonces.consume(nonce) {
            return Err(Rejection::new(
                "nonce",
                "this id_token was already used (replayed nonce)",
            ));
        }
        // 7. Deployment.
        let deployment = string_claim(&claims, claim::DEPLOYMENT_ID).unwrap_or("");
        registration.check_deployment(deployment)?;
        // 8. Version.
        let version = string_claim(&claims, claim::VERSION).unwrap_or("");
        if version != "1.3.0" {
            return Err(Rejection::new(
                "version",
                format!("LTI version `{version}` is not supported; only 1.3.0 is"),
            ));
        }
        // 9. Message type; 10. the claims that type requires.
        let context_title = claims
            .get(claim::CONTEXT)
            .and_then(|c| c.get("title"))
            .and_then(Value::as_str)
            .map(str::to_string);
        match string_claim(&claims, claim::MESSAGE_TYPE).unwrap_or("") {
            "LtiResourceLinkRequest" => {
                let link_id = claims
                    .get(claim::RESOURCE_LINK)
                    .and_then(|l| l.get("id"))
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty());
                if link_id.is_none() {
                    return Err(Rejection::new(
                        "claims",
                        "the launch has no resource link (`resource_link.id`)",
                    ));
                }
                if !claims.get(claim::ROLES).is_some_and(Value::is_array) {
                    return Err(Rejection::new("claims", "the launch has no `roles` claim"));
                }
                self.check_target(&claims, &state.login)?;
                Ok(Launch::ResourceLink(ResourceLaunch {
                    lesson_id: lesson_of(&claims),
                    subject: string_claim(&claims, "sub").map(str::to_string),
                    issuer: registration.issuer.clone(),
                    platform: registration.label().to_string(),
                    context_title,
                }))
            }
            "LtiDeepLinkingRequest" => {
                self.check_target(&claims, &state.login)?;
                let settings = claims.get(claim::DEEP_LINKING_SETTINGS);
                let return_url = settings
                    .and_then(|s| s.get("deep_link_return_url"))
                    .and_then(Value::as_str)
                    .filter(|u| reqwest::Url::parse(u).is_ok_and(|u| is_secure_url(&u)));
                let Some(return_url) = return_url else {
                    return Err(Rejection::new(
                        "claims",
                        "the deep-linking request has no valid https `deep_link_return_url`",
                    ));
                };
                let accepts_links = settings
                    .and_then(|s| s.get("accept_types"))
                    .and_then(Value::as_array)
                    .is_some_and(|types| types.iter().any(|t| t == "ltiResourceLink"));
                if !accepts_links {
                    return Err(Rejection::new(
                        "claims",
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
                "message_type",
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
                "claims",
                "the launch has no `target_link_uri` claim",
            ));
        };
        if !self.is_tool_url(target) {
            return Err(Rejection::new(
                "target_link_uri",
                format!(
                    "the launch's target_link_uri `{target}` is not a page of this tool ({})",
                    self.settings.base_url()
                ),
            ));
        }
        if target.trim() != login.target_link_uri.trim() {
            return Err(Rejection::new(
                "target_link_uri",
                format!(
                    "the launch's target_link_uri `{target}` is not the one its login named (`{}`)",
                    login.target_link_uri
                ),
            ));
        }
        Ok(())
    }

    /// The tool's login initiation URL for `login` (to start it again in a new window).
    fn login_url(&self, login: &LoginRequest) -> Option<String> {
        let mut url =
            reqwest::Url::parse(&format!("{}/lti/login", self.settings.base_url())).ok()?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("iss", &login.iss);
            query.append_pair("login_hint", &login.login_hint);
            query.append_pair("target_link_uri", &login.target_link_uri);
            for (name, value) in [
                ("lti_message_hint", &login.lti_message_hint),
                ("client_id", &login.client_id),
                ("lti_deployment_id", &login.lti_deployment_id),
            ] {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
        }
        Some(url.into())
    }

    /// True for the base URL itself or a page under it (not merely a URL sharing its prefix,
    /// such as `https://tutor.example.edu.evil.test`).
    fn is_tool_url(&self, url: &str) -> bool {
        let base = self.settings.base_url();
        url.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?', '#']))
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
                "issuer",
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
                Rejection::new(
                    "audience",
                    format!(
                        "the id_token's audience {audiences:?}{} is not a client id registered for `{issuer}`",
                        azp.map(|a| format!(" (azp `{a}`)")).unwrap_or_default()
                    ),
                )
            })
    }

    /// A session token for the widget after a resource link launch.
    pub fn session_token(&self, launch: &ResourceLaunch, lesson: &str) -> Result<String, String> {
        let now = now_secs();
        let session = Session {
            sub: format!(
                "{}#{}",
                launch.issuer,
                launch.subject.as_deref().unwrap_or("")
            ),
            lesson: lesson.to_string(),
            exp: now + self.settings.session_minutes * 60,
            aud: SESSION_AUDIENCE.to_string(),
            iat: now,
        };
        self.keys.sign_own(&session).map_err(|e| e.to_string())
    }

    /// The session a widget's token proves, or why not.
    pub fn session(&self, token: &str) -> Result<Session, &'static str> {
        self.keys
            .verify_own::<Session>(token, SESSION_AUDIENCE)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    "the session has expired: open the lesson again from your course"
                }
                _ => "the session token is not valid",
            })
    }

    /// The signed context the deep-linking picker page carries.
    pub fn picker_token(&self, context: &PickerContext) -> Result<String, String> {
        let now = now_secs();
        let claims = PickerClaims {
            aud: PICKER_AUDIENCE.to_string(),
            exp: now + PICKER_TTL_SECS,
            iat: now,
            context: context.clone(),
        };
        self.keys.sign_own(&claims).map_err(|e| e.to_string())
    }

    /// The picker context back from its token.
    pub fn picker_context(&self, token: &str) -> Result<PickerContext, Rejection> {
        self.keys
            .verify_own::<PickerClaims>(token, PICKER_AUDIENCE)
            .map(|c| c.context)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Rejection::new(
                    "picker",
                    "the lesson picker has expired: open it again from your course",
                ),
                _ => Rejection::new("picker", "the lesson picker's context is not valid"),
            })
    }

    /// The signed `LtiDeepLinkingResponse` JWT for the chosen lesson.
    pub fn deep_link_response(
        &self,
        context: &PickerContext,
        lesson_id: &str,
        title: &str,
    ) -> Result<String, String> {
        let now = now_secs();
        let mut claims = serde_json::json!({
            "iss": context.client_id,
            "aud": context.platform,
            "iat": now,
            "exp": now + 600,
            "nonce": random_token(),
            claim::DEPLOYMENT_ID: context.deployment_id,
            claim::MESSAGE_TYPE: "LtiDeepLinkingResponse",
            claim::VERSION: "1.3.0",
            claim::CONTENT_ITEMS: [{
                "type": "ltiResourceLink",
                "title": title,
                // The lesson in the URL too, for platforms that drop custom parameters.
                "url": reqwest::Url::parse_with_params(&self.settings.launch_url(), [("lesson", lesson_id)])
                    .map(String::from)
                    .unwrap_or_else(|_| self.settings.launch_url()),
                "custom": { "lesson_id": lesson_id },
            }],
        });
        if let (Some(data), Some(map)) = (&context.data, claims.as_object_mut()) {
            map.insert(claim::DATA.to_string(), data.clone());
        }
        self.keys.sign(&claims).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_lesson_comes_from_custom_then_the_target_link() {
        assert_eq!(
            lesson_of(&claims(serde_json::json!({
                claim::CUSTOM: {"lesson_id": "tides"},
                claim::TARGET_LINK_URI: "https://t.example/lti/launch?lesson=other",
            }))),
            Some("tides".to_string())
        );
        assert_eq!(
            lesson_of(&claims(serde_json::json!({
                claim::CUSTOM: {"lesson_id": "$Canvas.unsubstituted"},
                claim::TARGET_LINK_URI: "https://t.example/lti/launch?lesson=other",
            }))),
            Some("other".to_string())
        );
        assert_eq!(
            lesson_of(&claims(serde_json::json!({
                claim::TARGET_LINK_URI: "https://t.example/lessons/photosynthesis",
            }))),
            Some("photosynthesis".to_string())
        );
        assert_eq!(
            lesson_of(&claims(serde_json::json!({
                claim::TARGET_LINK_URI: "https://t.example/lti/launch",
            }))),
            None
        );
    }

    #[test]
    fn only_pages_under_the_tool_url_are_its_own() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lti = Lti::new(LtiSettings {
            url: "https://tutor.example.edu/".to_string(),
            keys_dir: dir.path().to_path_buf(),
            session_minutes: 60,
            platforms: Vec::new(),
        })
        .expect("tool");
        assert!(lti.is_tool_url("https://tutor.example.edu"));
        assert!(lti.is_tool_url("https://tutor.example.edu/lti/launch"));
        assert!(lti.is_tool_url("https://tutor.example.edu?lesson=x"));
        assert!(!lti.is_tool_url("https://tutor.example.edu.evil.test/lti/launch"));
        assert!(!lti.is_tool_url("https://tutor.example.education/"));
        assert!(!lti.is_tool_url("http://tutor.example.edu/lti/launch"));
    }

    #[test]
    fn a_nonce_is_accepted_once() {
        let ledger = NonceLedger::default();
        assert!(ledger.consume("n1"));
        assert!(!ledger.consume("n1"));
        assert!(ledger.consume("n2"));
    }

    #[test]
    fn settings_reject_duplicates_and_empty_deployments() {
        let platform = Registration {
            name: None,
            issuer: "https://lms.example".to_string(),
            client_id: "c".to_string(),
            auth_url: "https://lms.example/auth".to_string(),
            jwks_url: "https://lms.example/jwks".to_string(),
            deployments: vec!["1".to_string()],
        };
        let mut settings = LtiSettings {
            url: "https://tutor.example".to_string(),
            keys_dir: default_keys_dir(),
            session_minutes: 60,
            platforms: vec![platform.clone(), platform.clone()],
        };
        assert!(settings.validate().expect_err("dup").contains("twice"));
        settings.platforms = vec![Registration {
            deployments: Vec::new(),
            ..platform.clone()
        }];
        assert!(
            settings
                .validate()
                .expect_err("empty")
                .contains("deployment")
        );
        settings.platforms = Vec::new();
        for (url, problem) in [
            ("http://tutor.example", "https://"),
            ("https://tutor.example/tutor", "origin only"),
        ] {
            settings.url = url.to_string();
            let error = settings.validate().expect_err(url);
            assert!(error.contains(problem), "{url}: {error}");
        }
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "https://t.example",
        ] {
            settings.url = url.to_string();
            assert!(settings.validate().is_ok(), "{url}");
        }
        settings.platforms = vec![Registration {
            jwks_url: "http://lms.example/jwks".to_string(),
            ..platform.clone()
        }];
        assert!(
            settings
                .validate()
                .expect_err("http jwks")
                .contains("jwks_url")
        );
    }
}
