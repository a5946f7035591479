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
//! load balancer would have to pin: consumed nonces are remembered per process and, when
//! replicas share them, in Redis (`redis_url`) or else in the conversation log's database, so
//! a replayed launch is refused whichever replica it reaches.

pub mod keys;
mod launch;
mod login;
pub mod platform;
mod settings;
mod tokens;

pub use launch::{Launch, PickerContext, ResourceLaunch, claimed_issuer};
pub use login::{LoginRedirect, LoginRequest, state_cookie_name};
pub use settings::{LtiSettings, Registration};
pub use tokens::Session;

use keys::ToolKeys;
use launch::NonceLedger;
use platform::PlatformKeys;
use serde_json::Value;
use std::time::Duration;

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

/// The check a login or launch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The login initiation itself (missing fields, a target that is not the tool's).
    Login,
    /// The platform answered with an error instead of signing the learner in.
    Platform,
    /// The state, or its cookie, does not belong to this launch.
    State,
    Algorithm,
    Kid,
    Issuer,
    Audience,
    Key,
    /// The platform's key set could not be fetched.
    PlatformKeys,
    Signature,
    Expired,
    IssuedAt,
    Nonce,
    Deployment,
    Version,
    MessageType,
    Claims,
    TargetLinkUri,
    /// The link names no lesson, or one that does not exist.
    Lesson,
    /// The deep-linking picker's context is not the tool's.
    Picker,
    /// LTI is not configured on this tutor.
    NotConfigured,
}

impl Check {
    /// The name shown on refusal pages, in `X-Tutor-Lti-Check` and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Login => "login",
            Check::Platform => "platform",
            Check::State => "state",
            Check::Algorithm => "algorithm",
            Check::Kid => "kid",
            Check::Issuer => "issuer",
            Check::Audience => "audience",
            Check::Key => "key",
            Check::PlatformKeys => "platform_keys",
            Check::Signature => "signature",
            Check::Expired => "expired",
            Check::IssuedAt => "issued_at",
            Check::Nonce => "nonce",
            Check::Deployment => "deployment",
            Check::Version => "version",
            Check::MessageType => "message_type",
            Check::Claims => "claims",
            Check::TargetLinkUri => "target_link_uri",
            Check::Lesson => "lesson",
            Check::Picker => "picker",
            Check::NotConfigured => "not_configured",
        }
    }
}

/// Why a login or launch was refused: the check that failed and a sentence for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub check: Check,
    pub message: String,
    /// Set when starting the login again in a window of its own would succeed (the browser
    /// did not keep the state cookie inside the course page's frame): that login's URL.
    pub restart: Option<String>,
}

impl Rejection {
    pub fn new(check: Check, message: impl Into<String>) -> Rejection {
        Rejection {
            check,
            message: message.into(),
            restart: None,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.check.as_str())
    }
}

/// The LTI tool: registrations, keys, and the platform key cache.
pub struct Lti {
    settings: LtiSettings,
    keys: ToolKeys,
    platform_keys: PlatformKeys,
    nonces: NonceLedger,
    shared_nonces: SharedNonces,
}

/// Where used nonces are shared with other replicas.
#[derive(Default, Clone)]
struct SharedNonces {
    redis: Option<std::sync::Arc<crate::shared::Shared>>,
    store: Option<std::sync::Arc<dyn crate::conversation_log::LogStore>>,
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
            shared_nonces: SharedNonces::default(),
        })
    }

    /// Remembers used nonces where every replica sees them: Redis when given, else the log's
    /// database when given. Either failing, the per-process ledger still decides.
    pub fn with_shared_nonces(
        mut self,
        redis: Option<std::sync::Arc<crate::shared::Shared>>,
        store: Option<std::sync::Arc<dyn crate::conversation_log::LogStore>>,
    ) -> Lti {
        self.shared_nonces = SharedNonces { redis, store };
        self
    }

    /// The settings the tool runs with.
    pub fn settings(&self) -> &LtiSettings {
        &self.settings
    }

    /// The tool's public keys (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> &Value {
        self.keys.jwks()
    }
}

#[cfg(test)]
mod tests {
    use super::launch::lesson_of;
    use super::settings::default_keys_dir;
    use super::*;
    use serde_json::Map;

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
