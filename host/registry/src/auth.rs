//! Who may do what: anonymous access as configured, else HTTP Basic users
//! with the repositories they may use. Passwords are compared by their
//! SHA-256 (no timing signal on the secret) and never logged.

use axum::http::{HeaderMap, header};
use base64::Engine;
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
}

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
            users.push(User {
                name: u.name.clone(),
                password: Sha256::digest(secret).into(),
                repositories: u.repositories.clone(),
                push: u.push,
            });
        }
        Ok(Self { anonymous: c.anonymous, users })
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
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(RegistryError::Unauthorized("only Basic credentials are taken".into()));
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
    fn patterns() {
        assert!(super::matches("*", "a/b"));
        assert!(super::matches("models/*", "models/llama"));
        assert!(!super::matches("models/*", "modelsx/llama"));
        assert!(!super::matches("models/*", "models"));
        assert!(super::matches("a/b", "a/b"));
        assert!(!super::matches("a/b", "a/bc"));
    }
}
