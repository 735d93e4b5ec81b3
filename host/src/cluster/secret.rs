//! The shared cluster secret: read once from a file or the environment,
//! never printed, checked on every node-to-node call.

use std::fmt;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::config::ClusterConfig;

/// The metadata header peers send the secret in.
pub const HEADER: &str = "x-strata-cluster-secret";

#[derive(Clone)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads the secret `[cluster]` names; the error says what to fix.
    pub fn load(c: &ClusterConfig) -> Result<Secret, String> {
        let text = match (&c.secret_file, &c.secret_env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| format!("cluster.secret_file: cannot read {}: {e}", path.display()))?,
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| format!("cluster.secret_env: environment variable {var} is not set"))?
            }
            _ => return Err("cluster: set exactly one of secret_file and secret_env".into()),
        };
        let text = text.trim().to_string();
        if text.len() < 16 {
            return Err("cluster secret: use at least 16 characters".into());
        }
        if text.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>().is_err() {
            return Err("cluster secret: use printable ASCII".into());
        }
        Ok(Secret(text))
    }

    pub fn new_for_tests(s: &str) -> Secret {
        Secret(s.into())
    }

    /// Adds the secret to an outgoing request.
    pub fn attach<T>(&self, req: &mut Request<T>) {
        if let Ok(v) = self.0.parse() {
            req.metadata_mut().insert(HEADER, v);
        }
    }

    /// Refuses a request without the secret. Digests are compared, so the
    /// comparison's timing says nothing about the secret.
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let given = req.metadata().get(HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if Sha256::digest(given) == Sha256::digest(self.0.as_bytes()) {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong or missing cluster secret"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_checked_and_never_printed() {
        let s = Secret::new_for_tests("correct horse battery staple");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        let mut ok = Request::new(());
        s.attach(&mut ok);
        assert!(s.check(&ok).is_ok());
        let mut bad = Request::new(());
        Secret::new_for_tests("wrong horse battery staple!").attach(&mut bad);
        assert_eq!(s.check(&bad).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(s.check(&Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}
