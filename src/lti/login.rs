//! The OIDC login initiation: the redirect to the platform, and the signed `state` that binds
//! the launch to come to this login's nonce and to this browser's cookie.

use super::settings::Registration;
use super::{Check, Lti, Rejection, STATE_AUDIENCE, STATE_TTL, now_secs, random_token};
use serde::{Deserialize, Serialize};
/// The name of the cookie holding a login's nonce: bound to the state, and `__Host-` so that
/// no sibling subdomain can plant one.
pub fn state_cookie_name(state: &str) -> String {
    let digest = blake3::hash(state.as_bytes()).to_hex();
    format!("__Host-tutor_lti_{}", digest.get(..32).unwrap_or_default())
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

/// What a login's `state` carries (signed by the tool): the registration it chose, and the
/// login itself, so that a launch whose cookie the browser did not keep can start over in a
/// window of its own.
#[derive(Serialize, Deserialize)]
pub(super) struct StateClaims {
    pub(super) aud: String,
    pub(super) exp: u64,
    pub(super) issuer: String,
    pub(super) client_id: String,
    pub(super) login: LoginRequest,
    /// Randomness, so no two states are alike.
    pub(super) n: String,
    /// BLAKE3 of the nonce sent to the platform: the id_token must carry that nonce.
    pub(super) nonce_digest: String,
    /// BLAKE3 of the state cookie's random value: the browser finishing the launch must hold
    /// that cookie. With both, a captured id_token cannot be redeemed with someone else's login.
    pub(super) cookie_digest: String,
}

/// The digest a state holds of a secret it binds (hex BLAKE3).
pub(super) fn digest(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// Compares two digests in constant time.
pub(super) fn same_digest(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Lti {
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
                Check::Login,
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
                    Check::Issuer,
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
                    Check::Login,
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
                Check::Login,
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
            .map_err(|e| {
                Rejection::new(Check::Login, format!("the state cannot be signed: {e}"))
            })?;
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
            .map_err(|e| Rejection::new(Check::Login, format!("the platform's auth_url: {e}")))?;
        Ok(LoginRedirect {
            url: url.to_string(),
            state,
            cookie,
        })
    }

    /// The tool's login initiation URL for `login` (to start it again in a new window).
    pub(super) fn login_url(&self, login: &LoginRequest) -> Option<String> {
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
    pub(super) fn is_tool_url(&self, url: &str) -> bool {
        let base = self.settings.base_url();
        url.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?', '#']))
    }
}
