//! Who may do what: anonymous access as configured, else users (HTTP
//! Basic, or their password as a bearer token) with the repositories they
//! may use. Passwords are compared by their SHA-256 (no timing signal on
//! the secret) and never logged. A blob GET answered to a user carries a
//! signed `Location` that serves that blob without credentials for a while:
//! Ollama sends none on its ranged GETs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use strata_config::{Anonymous, RegistryConfig};

use crate::error::{RegistryError, Result, denied};

struct User {
    name: String,
    password: [u8; 32],
    repositories: Vec<String>,
    push: bool,
}

pub struct Auth {
    anonymous: Anonymous,
    users: Vec<User>,
    /// Signs blob locations; made at start, so they end with the process.
    url_key: [u8; 32],
}

/// How long a signed blob location serves (a large model over a slow link
/// takes hours).
pub const SIGNED_FOR: Duration = Duration::from_secs(6 * 3600);

impl Auth {
    pub fn load(c: &RegistryConfig) -> std::result::Result<Self, String> {
        let mut users = Vec::new();
        for u in &c.users {
            let secret = match (&u.password_file, &u.password_env) {
                (Some(f), None) => std::fs::read_to_string(f)
                    .map_err(|e| format!("registry user {:?}: cannot read password_file {}: {e}", u.name, f.display()))?,
                (None, Some(v)) => {
                    std::env::var(v).map_err(|_| format!("registry user {:?}: environment variable {v} is not set", u.name))?
                }
                _ => return Err(format!("registry user {:?}: set exactly one of password_file and password_env", u.name)),
            };
            let secret = secret.trim_end_matches(['\n', '\r']);
            if secret.len() < 8 {
                return Err(format!("registry user {:?}: the password needs at least 8 characters", u.name));
            }
            let password: [u8; 32] = Sha256::digest(secret).into();
            if let Some(other) = users.iter().find(|o: &&User| o.password == password) {
                return Err(format!(
                    "registry users {:?} and {:?} have the same password: it is also a bearer token, so each needs its own",
                    other.name, u.name
                ));
            }
            users.push(User { name: u.name.clone(), password, repositories: u.repositories.clone(), push: u.push });
        }
        Ok(Self { anonymous: c.anonymous, users, url_key: rand::random() })
    }

    /// Whether a client without credentials may read.
    pub fn anonymous_pull(&self) -> bool {
        self.anonymous != Anonymous::None
    }

    fn url_mac(&self, name: &str, digest: &str, expires: u64) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.url_key).expect("HMAC takes any key length");
        m.update(format!("strata.blob.v1|{name}|{digest}|{expires}").as_bytes());
        m
    }

    /// The query that lets a GET of blob `digest` of `name` through
    /// without credentials until [`SIGNED_FOR`] from now.
    pub fn sign(&self, name: &str, digest: &str) -> String {
        let expires = (SystemTime::now() + SIGNED_FOR).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let sig = hex::encode(self.url_mac(name, digest, expires).finalize().into_bytes());
        format!("expires={expires}&signature={sig}")
    }

    /// Whether `expires` and `signature` are one [`Self::sign`] made for
    /// this blob and it has not expired at `now` (Unix seconds).
    pub fn signed(&self, name: &str, digest: &str, expires: Option<&str>, signature: Option<&str>, now: u64) -> bool {
        let (Some(expires), Some(signature)) = (expires.and_then(|e| e.parse::<u64>().ok()), signature) else { return false };
        let Ok(sig) = hex::decode(signature) else { return false };
        expires >= now && self.url_mac(name, digest, expires).verify_slice(&sig).is_ok()
    }

    /// Fails unless the request may read (or, `write`, change) repository
    /// `name` (`None`: the API root).
    pub fn check(&self, headers: &HeaderMap, name: Option<&str>, write: bool) -> Result<()> {
        let anonymous_ok = match self.anonymous {
            Anonymous::Push => true,
            Anonymous::Pull => !write,
            Anonymous::None => false,
        };
        // Clients without credentials answer a challenge with an empty
        // user and password: that is anonymous too.
        let given = headers.get(header::AUTHORIZATION).map(|a| a.to_str().unwrap_or_default()).filter(|a| !is_empty_basic(a));
        let Some(auth) = given else {
            if anonymous_ok {
                return Ok(());
            }
            return Err(RegistryError::Unauthorized("log in: this registry needs a user".into()));
        };
        let user = self.user(auth)?;
        // A user may do what anonymous clients may, and more.
        let Some(name) = name else { return Ok(()) };
        if anonymous_ok {
            return Ok(());
        }
        if !user.repositories.iter().any(|p| matches(p, name)) {
            return Err(denied(format!("user {:?} may not use repository {name:?}", user.name)));
        }
        if write && !user.push {
            return Err(denied(format!("user {:?} may pull but not push", user.name)));
        }
        Ok(())
    }

    /// The request carries no credentials (or empty ones).
    pub fn is_anonymous(&self, headers: &HeaderMap) -> bool {
        headers.get(header::AUTHORIZATION).is_none_or(|a| is_empty_basic(a.to_str().unwrap_or_default()))
    }

    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    fn user(&self, header: &str) -> Result<&User> {
        let bad = || RegistryError::Unauthorized("wrong user name or password".into());
        let (scheme, encoded) = header.trim().split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let given: [u8; 32] = Sha256::digest(encoded.trim()).into();
            return self
                .users
                .iter()
                .find(|u| u.password == given)
                .ok_or_else(|| RegistryError::Unauthorized("unknown bearer token".into()));
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(RegistryError::Unauthorized("only Basic credentials and bearer tokens are taken".into()));
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (name, password) = text.split_once(':').ok_or_else(bad)?;
        let given: [u8; 32] = Sha256::digest(password).into();
        self.users.iter().find(|u| u.name == name && u.password == given).ok_or_else(bad)
    }
}

/// `Basic` with an empty user name and password.
fn is_empty_basic(header: &str) -> bool {
    let (scheme, encoded) = header.trim().split_once(' ').unwrap_or((header, ""));
    scheme.eq_ignore_ascii_case("basic") && base64::engine::general_purpose::STANDARD.decode(encoded.trim()).is_ok_and(|d| d == b":")
}

/// `*`, an exact name, or `prefix/*`.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix("/*") {
        _ if pattern == "*" => true,
        Some(prefix) => name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signed_locations_hold_for_their_blob_until_they_expire() {
        let a = super::Auth::load(&strata_config::RegistryConfig::default()).unwrap();
        let q = a.sign("m/x", "sha256:ab");
        let p: std::collections::HashMap<_, _> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        let (e, s) = (p.get("expires").map(String::as_str), p.get("signature").map(String::as_str));
        let now = e.unwrap().parse::<u64>().unwrap() - 10;
        assert!(a.signed("m/x", "sha256:ab", e, s, now));
        assert!(!a.signed("m/x", "sha256:ab", e, s, now + 11), "expired");
        assert!(!a.signed("m/y", "sha256:ab", e, s, now), "another repository");
        assert!(!a.signed("m/x", "sha256:cd", e, s, now), "another blob");
        let later = (e.unwrap().parse::<u64>().unwrap() + 1000).to_string();
        assert!(!a.signed("m/x", "sha256:ab", Some(&later), s, now), "a changed expiry");
        assert!(!a.signed("m/x", "sha256:ab", e, None, now));
        let other = super::Auth::load(&strata_config::RegistryConfig::default()).unwrap();
        assert!(!other.signed("m/x", "sha256:ab", e, s, now), "another process's key");
    }

    #[test]
    fn patterns() {
        assert!(super::matches("*", "a/b"));
        assert!(super::matches("models/*", "models/llama"));
        assert!(!super::matches("models/*", "modelsx/llama"));
        assert!(!super::matches("models/*", "models"));
        assert!(super::matches("a/b", "a/b"));
        assert!(!super::matches("a/b", "a/bc"));
    }
}
