//! `[lti]` in `tutor.toml`: the tool's URL and keys folder, and the platforms it trusts.

use super::{Check, Rejection};
use serde::Deserialize;
use std::path::PathBuf;
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
    pub(super) fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.issuer)
    }

    /// Whether `deployment` may launch, as the rejection a login or launch returns.
    pub(super) fn check_deployment(&self, deployment: &str) -> Result<(), Rejection> {
        if self.deployments.iter().any(|d| d == deployment) {
            return Ok(());
        }
        Err(Rejection::new(
            Check::Deployment,
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

pub(super) fn default_keys_dir() -> PathBuf {
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
/// https, or http on a loopback host (for trying things on one machine).
pub(super) fn is_secure_url(url: &reqwest::Url) -> bool {
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
