//! The tool's own RSA keys: what it signs deep-linking responses with (RS256, verified by
//! platforms through `/.well-known/jwks.json`), and, through a secret derived from each key
//! with HKDF, what it signs the tokens only it reads (learner sessions, the picker's context)
//! with: HS256 verifies in about a microsecond, where RS256 takes twenty on every request.
//!
//! Keys are PKCS#8 PEM files in one folder (`[lti] keys_dir`). The first run with LTI
//! configured generates one; `tutor lti-key` adds another. Every key in the folder is published
//! and accepted; the newest signs. Rotating is: add a new key, wait until platforms have
//! refetched the JWKS (a day is plenty), delete the old file. Machines behind a load balancer
//! share the folder (a mounted secret), so any of them verifies what another signed.

use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A key pair of the tool.
struct ToolKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
    /// HS256 keys from the derived secret, for tokens the tool issues to itself.
    own_encoding: EncodingKey,
    own_decoding: DecodingKey,
}

/// All the tool's keys; the last one signs.
pub struct ToolKeys {
    keys: Vec<ToolKey>,
    jwks: serde_json::Value,
}

impl std::fmt::Debug for ToolKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolKeys")
            .field("kids", &self.kids())
            .finish()
    }
}

/// Generates a 2048-bit RSA key and writes it to `dir` as a new PEM file (readable by the
/// owner only); returns its path.
pub fn generate(dir: &Path) -> Result<PathBuf, String> {
    use aws_lc_rs::encoding::AsDer;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| "the RSA key could not be generated".to_string())?;
    let der = pair
        .as_der()
        .map_err(|_| "the RSA key could not be encoded".to_string())?;
    let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let path = dir.join(format!("tool-{stamp}.pem"));
    write_private(&path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

impl ToolKeys {
    /// The keys of `dir`, generating the first one when it holds none. Files are ordered by the
    /// time in their name (`tool-<microseconds>.pem`, as `tutor lti-key` writes them), else by
    /// modification time, which copying a key folder to another machine may change: the newest
    /// signs.
    pub fn load_or_generate(dir: &Path) -> Result<ToolKeys, String> {
        if pem_files(dir)?.is_empty() {
            let path = generate(dir)?;
            tracing::info!(path = %path.display(), "generated the LTI tool key");
        }
        ToolKeys::load(dir)
    }

    /// The keys of `dir`; an unreadable or non-RSA file is an error naming it.
    pub fn load(dir: &Path) -> Result<ToolKeys, String> {
        let mut files = pem_files(dir)?;
        files.sort_by_key(|(path, modified)| (key_time(path, *modified), path.clone()));
        let mut keys = Vec::with_capacity(files.len());
        for (path, _) in files {
            let text =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            keys.push(
                ToolKey::from_pem(&text).map_err(|e| {
                    format!("{}: not an RSA private key in PEM ({e})", path.display())
                })?,
            );
        }
        if keys.is_empty() {
            return Err(format!("{} holds no key (*.pem)", dir.display()));
        }
        Ok(ToolKeys::from_keys(keys))
    }

    fn from_keys(keys: Vec<ToolKey>) -> ToolKeys {
        let jwks = serde_json::json!({ "keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>() });
        ToolKeys { keys, jwks }
    }

    /// The public keys, as a JWK set.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Key ids, oldest first; the last signs.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    fn signing(&self) -> &ToolKey {
        // `from_keys` is only ever called with at least one key.
        &self.keys[self.keys.len() - 1]
    }

    /// Signs `claims` for a platform with the newest key (RS256, with its `kid`).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let key = self.signing();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
    }

    /// Signs a token only this tool will read (HS256 with the newest key's derived secret).
    pub fn sign_own<T: Serialize>(
        &self,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let key = self.signing();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.own_encoding)
    }

    /// Verifies a token from [`ToolKeys::sign_own`] for `audience` (signature, `exp`,
    /// audience), with whichever published key's secret its `kid` names.
    pub fn verify_own<T: DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<T, jsonwebtoken::errors::Error> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.iter().find(|k| k.kid == kid))
            .ok_or_else(|| jsonwebtoken::errors::Error::from(ErrorKind::InvalidSignature))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.leeway = 5;
        Ok(jsonwebtoken::decode::<T>(token, &key.own_decoding, &validation)?.claims)
    }
}

/// A 256-bit secret derived from the private key (HKDF-SHA256): as secret as the key, shared by
/// every machine that has the key, and useless for anything but the tool's own tokens.
fn derived_secret(private_der: &[u8]) -> [u8; 32] {
    use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
    let mut secret = [0u8; 32];
    let expanded = Salt::new(HKDF_SHA256, b"tutor lti")
        .extract(private_der)
        .expand(&[b"own tokens v1"], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut secret));
    // Expanding 32 bytes from SHA-256 cannot fail (the limit is 255 blocks).
    debug_assert!(expanded.is_ok());
    secret
}

impl ToolKey {
    fn from_pem(pem: &[u8]) -> Result<ToolKey, jsonwebtoken::errors::Error> {
        let encoding = EncodingKey::from_rsa_pem(pem)?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let secret = derived_secret(encoding.inner());
        Ok(ToolKey {
            kid,
            own_encoding: EncodingKey::from_secret(&secret),
            own_decoding: DecodingKey::from_secret(&secret),
            encoding,
            jwk,
        })
    }
}

/// When a key was made, in microseconds since 1970: from its `tool-<µs>.pem` name, else its
/// modification time.
fn key_time(path: &Path, modified: std::time::SystemTime) -> u128 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("tool-"))
        .and_then(|s| s.parse::<u128>().ok())
        .unwrap_or_else(|| {
            modified
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros())
        })
}

fn pem_files(dir: &Path) -> Result<Vec<(PathBuf, std::time::SystemTime)>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pem") {
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            files.push((path, modified));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct Claims {
        aud: String,
        exp: u64,
        lesson: String,
    }

    #[test]
    fn generated_keys_sign_what_the_published_set_verifies_and_rotation_keeps_old_tokens_valid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = ToolKeys::load_or_generate(dir.path()).expect("generated");
        assert_eq!(first.kids().len(), 1);
        let claims = Claims {
            aud: "session".to_string(),
            exp: jsonwebtoken::get_current_timestamp() + 60,
            lesson: "tides".to_string(),
        };
        let old_token = first.sign_own(&claims).expect("signed");
        let jwk = &first.jwks()["keys"][0];
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], first.kids()[0]);
        assert!(jwk.get("d").is_none(), "no private part is published");

        std::thread::sleep(std::time::Duration::from_millis(20));
        generate(dir.path()).expect("rotated");
        let rotated = ToolKeys::load_or_generate(dir.path()).expect("loaded");
        assert_eq!(rotated.kids().len(), 2);
        assert_eq!(
            rotated.kids()[0],
            first.kids()[0],
            "the old key stays published"
        );
        let new_token = rotated.sign_own(&claims).expect("signed");
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .expect("header")
                .kid
                .as_deref(),
            Some(rotated.kids()[1]),
            "the newest key signs"
        );
        for token in [&old_token, &new_token] {
            assert_eq!(
                rotated
                    .verify_own::<Claims>(token, "session")
                    .expect("valid"),
                claims
            );
        }
        assert!(rotated.verify_own::<Claims>(&new_token, "other").is_err());
        // What is signed for platforms is never taken for the tool's own token, and back.
        let for_platform = rotated.sign(&claims).expect("signed");
        assert!(
            rotated
                .verify_own::<Claims>(&for_platform, "session")
                .is_err()
        );
        let platform_view = DecodingKey::from_jwk(
            &serde_json::from_value(rotated.jwks()["keys"][1].clone()).expect("jwk"),
        )
        .expect("key");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["session"]);
        assert!(jsonwebtoken::decode::<Claims>(&for_platform, &platform_view, &validation).is_ok());
        assert!(jsonwebtoken::decode::<Claims>(&new_token, &platform_view, &validation).is_err());
    }
}
