//! The tool's own tokens: a learner's session after a launch, the deep-linking picker's
//! context, and the signed `LtiDeepLinkingResponse`.

use super::launch::{PickerContext, ResourceLaunch};
use super::{
    Check, Lti, PICKER_AUDIENCE, PICKER_TTL_SECS, Rejection, SESSION_AUDIENCE, claim, now_secs,
    random_token,
};
use jsonwebtoken::errors::ErrorKind;
use serde::{Deserialize, Serialize};
/// A learner's session after a launch: what the widget's token proves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// `{issuer}#{user id}` (the user id may be empty for anonymous launches).
    pub sub: String,
    /// The only lesson this session may ask about.
    pub lesson: String,
    /// Every answer is a hint (an assessment).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hint_only: bool,
    pub exp: u64,
    aud: String,
    iat: u64,
}

#[derive(Serialize, Deserialize)]
struct PickerClaims {
    aud: String,
    exp: u64,
    iat: u64,
    #[serde(flatten)]
    context: PickerContext,
}

impl Lti {
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
            hint_only: launch.hint_only,
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
                    Check::Picker,
                    "the lesson picker has expired: open it again from your course",
                ),
                _ => Rejection::new(Check::Picker, "the lesson picker's context is not valid"),
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
