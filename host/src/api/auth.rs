//! Scoped tokens for the gRPC API: JWTs signed with HS256 (`jsonwebtoken`)
//! by the key `[auth]` names, carried as `authorization: Bearer <token>`.
//!
//! A token's `scope` claim is a space-separated list of:
//! - `admin`: every call;
//! - `bucket:<name>:read`, `bucket:<name>:write` (`<name>` may be `*`):
//!   reads (get, stat, list, versions, search) or writes (put, delete,
//!   restore) of that bucket's objects; model calls are the registry
//!   bucket's reads and writes;
//! - `locks`: the leased locks.
//!
//! Any valid token may list buckets, plugins, indexes, the cluster's
//! status and replication policies; `Health` needs none. With tokens on, a
//! call without one is `UNAUTHENTICATED` (unless `anonymous = "read"` lets
//! it read), one outside its scopes `PERMISSION_DENIED`. Revoked ids (the
//! `jti` claim) are refused; the file is read again when it changes.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::config::{AnonymousApi, AuthConfig};

const ISSUER: &str = "strata";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The token's id, for revocation.
    pub jti: String,
    pub scope: String,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
}

/// One grant of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Locks,
    Bucket { name: String, write: bool },
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s.split(':').collect::<Vec<_>>().as_slice() {
            ["admin"] => Ok(Scope::Admin),
            ["locks"] => Ok(Scope::Locks),
            ["bucket", name, access @ ("read" | "write")] if !name.is_empty() => {
                if *name != "*" {
                    crate::meta::names::bucket_name(name).map_err(|e| format!("scope {s:?}: {e}"))?;
                }
                Ok(Scope::Bucket { name: name.to_string(), write: *access == "write" })
            }
            _ => Err(format!("scope {s:?}: write admin, locks, bucket:<name>:read or bucket:<name>:write (<name> may be *)")),
        }
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// Nothing (health).
    Nothing,
    /// Any valid token (or anonymous reads, when allowed).
    Any,
    Read(&'a str),
    Write(&'a str),
    Locks,
    Admin,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Tokens are off: every call is allowed.
    Open,
    /// No token; `read` when anonymous reads are allowed.
    Anonymous {
        read: bool,
    },
    Token(Vec<Scope>),
}

impl Caller {
    /// Fails unless this caller may do what `need` says.
    pub fn allow(&self, need: Need) -> Result<(), Status> {
        match (self, need) {
            (Caller::Open, _) | (_, Need::Nothing) => Ok(()),
            (Caller::Anonymous { read: true }, Need::Any | Need::Read(_)) => Ok(()),
            (Caller::Anonymous { .. }, _) => {
                Err(Status::unauthenticated("this server needs a token: pass --token or set STRATA_TOKEN (see `strata token create`)"))
            }
            (Caller::Token(scopes), need) => {
                let ok = scopes.contains(&Scope::Admin)
                    || match need {
                        Need::Nothing | Need::Any => true,
                        Need::Admin => false,
                        Need::Locks => scopes.contains(&Scope::Locks),
                        Need::Read(b) | Need::Write(b) => {
                            let (b, write) = (or_default(b), matches!(need, Need::Write(_)));
                            scopes
                                .iter()
                                .any(|s| matches!(s, Scope::Bucket { name, write: w } if (name == b || name == "*") && *w == write))
                        }
                    };
                if ok {
                    Ok(())
                } else {
                    Err(Status::permission_denied(format!("the token's scopes do not allow this call (it needs {})", need.describe())))
                }
            }
        }
    }
}

/// The bucket a call names: an empty name is the default bucket, as the
/// calls read it.
fn or_default(b: &str) -> &str {
    if b.is_empty() { super::validate::DEFAULT_BUCKET } else { b }
}

impl Need<'_> {
    fn describe(&self) -> String {
        match self {
            Need::Nothing | Need::Any => "any token".into(),
            Need::Read(b) => format!("bucket:{}:read", or_default(b)),
            Need::Write(b) => format!("bucket:{}:write", or_default(b)),
            Need::Locks => "locks".into(),
            Need::Admin => "admin".into(),
        }
    }
}

/// The server's token checker.
pub struct Tokens {
    /// Replaced by a reload that finds a new secret.
    decoding: std::sync::RwLock<DecodingKey>,
    config: AuthConfig,
    validation: Validation,
    anonymous_read: bool,
    revoked_file: Option<PathBuf>,
    /// The revoked ids and the file's modification time they were read at.
    revoked: Mutex<(Option<SystemTime>, Vec<String>)>,
}

/// Reads the signing key `[auth]` names.
pub fn secret(c: &AuthConfig) -> Result<Vec<u8>, String> {
    let text = match (&c.token_secret_file, &c.token_secret_env) {
        (Some(f), _) => std::fs::read_to_string(f).map_err(|e| format!("auth.token_secret_file: cannot read {}: {e}", f.display()))?,
        (None, Some(v)) => std::env::var(v).map_err(|_| format!("auth.token_secret_env: environment variable {v} is not set"))?,
        (None, None) => return Err("auth: set token_secret_file or token_secret_env".into()),
    };
    let key = text.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
    if key.len() < 32 {
        return Err("auth: the token secret needs at least 32 bytes (e.g. `openssl rand -hex 32`)".into());
    }
    Ok(key)
}

/// The revoked list and the modification time it was read at. A file
/// that is gone reads as an error, not as an empty list.
fn read_revoked(f: &std::path::Path) -> Result<(Option<SystemTime>, Vec<String>), String> {
    let modified = std::fs::metadata(f).map_err(|e| format!("auth.revoked_file {}: {e}", f.display()))?.modified().ok();
    let text = std::fs::read_to_string(f).map_err(|e| format!("auth.revoked_file {}: {e}", f.display()))?;
    Ok((modified, text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()))
}

/// A token id: 1 to 128 letters, digits, `.`, `_` and `-`, so a revoked
/// list line names it exactly.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)) {
        return Err(format!("token id {id:?}: use 1 to 128 letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

impl Tokens {
    pub fn load(c: &AuthConfig) -> Result<Tokens, String> {
        let key = secret(c)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.leeway = 5;
        let t = Tokens {
            decoding: std::sync::RwLock::new(DecodingKey::from_secret(&key).map_err(|e| format!("auth: {e}"))?),
            config: c.clone(),
            validation,
            anonymous_read: c.anonymous == AnonymousApi::Read,
            revoked_file: c.revoked_file.clone(),
            revoked: Mutex::new((None, Vec::new())),
        };
        if let Some(f) = &t.revoked_file {
            // At start a missing file is an empty list (said, in case it was
            // lost); an unreadable one is an error.
            if f.exists() {
                *t.revoked.lock().expect("revoked") = read_revoked(f)?;
            } else {
                tracing::warn!(file = %f.display(), "auth.revoked_file does not exist: no token is revoked");
            }
        }
        Ok(t)
    }

    /// Reads the secret and the revoked list again (SIGHUP, `strata
    /// reload`). Tokens signed with the old secret are refused from now on.
    /// On an error nothing changes: the old secret and list stay.
    pub fn reload(&self) -> Result<(), String> {
        let key = DecodingKey::from_secret(&secret(&self.config)?).map_err(|e| format!("auth: {e}"))?;
        let revoked = match &self.revoked_file {
            // Gone (or never written): the list in force stays, as it does
            // between reloads.
            Some(f) if !f.exists() => None,
            Some(f) => Some(read_revoked(f)?),
            None => None,
        };
        *self.decoding.write().expect("token key") = key;
        if let Some(r) = revoked {
            *self.revoked.lock().expect("revoked") = r;
        }
        Ok(())
    }

    /// The revoked ids, read again when the file's modification time
    /// changed. A file that cannot be read (gone, not text, a directory)
    /// keeps the last list read, with a warning: revocations are never
    /// dropped by accident, and tokens keep working.
    fn revoked_ids(&self) -> Vec<String> {
        let Some(f) = &self.revoked_file else { return Vec::new() };
        let modified = std::fs::metadata(f).ok().and_then(|m| m.modified().ok());
        let mut cached = self.revoked.lock().expect("revoked");
        if cached.0 != modified {
            match read_revoked(f) {
                Ok(r) => *cached = r,
                Err(e) => {
                    tracing::warn!(error = %e, "the revoked-token list cannot be read: the last one read stays in force");
                    cached.0 = modified;
                }
            }
        }
        cached.1.clone()
    }

    /// Who sent `md` (its `authorization: Bearer` token, checked).
    pub fn caller(&self, md: &MetadataMap) -> Result<Caller, Status> {
        let Some(value) = md.get("authorization") else { return Ok(Caller::Anonymous { read: self.anonymous_read }) };
        let value = value.to_str().map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        let decoded = jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding.read().expect("token key"), &self.validation);
        let data = decoded.map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::ExpiredSignature => "it has expired".to_string(),
                K::InvalidSignature => "it is not signed with this server's secret".to_string(),
                K::InvalidAlgorithm | K::InvalidAlgorithmName => "it is not signed with HS256".to_string(),
                K::InvalidIssuer => "it was not issued by strata".to_string(),
                K::ImmatureSignature => "it is not valid yet".to_string(),
                K::MissingRequiredClaim(c) => format!("it has no {c} claim"),
                _ => "it is not a token `strata token create` made".to_string(),
            };
            Status::unauthenticated(format!("the token is refused: {why}"))
        })?;
        if check_id(&data.claims.jti).is_err() || data.claims.scope.trim().is_empty() {
            return Err(Status::unauthenticated("the token is refused: it has no valid id or no scope"));
        }
        if self.revoked_ids().contains(&data.claims.jti) {
            return Err(Status::unauthenticated(format!("token {} is revoked", data.claims.jti)));
        }
        let scopes =
            data.claims.scope.split_whitespace().map(Scope::parse).collect::<Result<Vec<_>, _>>().map_err(Status::unauthenticated)?;
        Ok(Caller::Token(scopes))
    }
}

/// Signs a token with `key` for `scopes`, valid for `ttl`; answers it and
/// its claims.
pub fn create(key: &[u8], scopes: &[String], ttl: Duration, id: Option<String>) -> Result<(String, Claims), String> {
    if scopes.is_empty() {
        return Err("give at least one --scope".into());
    }
    for s in scopes {
        Scope::parse(s)?;
    }
    if let Some(id) = &id {
        check_id(id)?;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let claims = Claims {
        jti: id.unwrap_or_else(|| format!("{:016x}", rand::random::<u64>())),
        scope: scopes.join(" "),
        iat: now,
        exp: now + ttl.as_secs().max(1),
        iss: ISSUER.into(),
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(key).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    Ok((token, claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_allow_what_they_name() {
        let t = |s: &[&str]| Caller::Token(s.iter().map(|s| Scope::parse(s).unwrap()).collect());
        let reader = t(&["bucket:photos:read"]);
        assert!(reader.allow(Need::Read("photos")).is_ok());
        assert!(reader.allow(Need::Write("photos")).is_err());
        assert!(reader.allow(Need::Read("other")).is_err());
        assert!(reader.allow(Need::Any).is_ok());
        assert!(reader.allow(Need::Admin).is_err());
        let all = t(&["bucket:*:write"]);
        assert!(all.allow(Need::Write("x")).is_ok() && all.allow(Need::Write("")).is_ok());
        assert!(all.allow(Need::Read("x")).is_err());
        assert!(t(&["bucket:default:read"]).allow(Need::Read("")).is_ok(), "empty is the default bucket");
        assert!(t(&["admin"]).allow(Need::Admin).is_ok());
        assert!(t(&["locks"]).allow(Need::Locks).is_ok());
        assert!(Caller::Anonymous { read: true }.allow(Need::Read("x")).is_ok());
        assert_eq!(Caller::Anonymous { read: true }.allow(Need::Write("x")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(reader.allow(Need::Admin).unwrap_err().code(), tonic::Code::PermissionDenied);
        for bad in ["", "bucket", "bucket:x", "bucket:x:delete", "bucket::read", "bucket:Bad_Name:read", "root"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }
}
