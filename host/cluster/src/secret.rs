//! The shared cluster secret: read once from a file or the environment,
//! never printed, checked on every node-to-node call.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha256;
use tonic::{Request, Status};

use super::now_ms;
use strata_config::ClusterConfig;

/// The metadata header of a peer call's proof of the secret.
pub const HEADER: &str = "x-strata-cluster-auth";

/// How far a proof's time may be from the receiver's clock.
const SKEW_MS: u64 = 60_000;

type Mac = Hmac<Sha256>;

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
            (Some(path), None) => {
                std::fs::read_to_string(path).map_err(|e| format!("cluster.secret_file: cannot read {}: {e}", path.display()))?
            }
            (None, Some(var)) => std::env::var(var).map_err(|_| format!("cluster.secret_env: environment variable {var} is not set"))?,
            _ => return Err("cluster: set exactly one of secret_file and secret_env".into()),
        };
        let text = text.trim().to_string();
        if text.len() < 16 {
            return Err("cluster secret: use at least 16 characters".into());
        }
        Ok(Secret(text))
    }

    pub fn new_for_tests(s: &str) -> Secret {
        Secret(s.into())
    }

    /// HMAC-SHA256 of the time and the address the call is meant for.
    fn mac(&self, at_ms: u64, target: &str) -> Mac {
        let mut m = Mac::new_from_slice(self.0.as_bytes()).expect("HMAC takes any key length");
        m.update(format!("strata.peer.v1|{target}|{at_ms}").as_bytes());
        m
    }

    /// Proves knowledge of the secret to the node at `target`, without
    /// sending it: the proof is bound to that address and to the time, so
    /// whoever receives a call meant for another address (or replays one a
    /// minute later) learns nothing it can use.
    pub fn attach<T>(&self, req: &mut Request<T>, target: &str) {
        let at = now_ms();
        let proof = hex::encode(self.mac(at, target).finalize().into_bytes());
        if let Ok(v) = format!("{at}.{proof}").parse() {
            req.metadata_mut().insert(HEADER, v);
        }
    }

    /// Refuses a call whose proof is missing, stale, meant for another
    /// address than `me`, or made with another secret. The MAC comparison
    /// takes constant time.
    pub fn check<T>(&self, req: &Request<T>, me: &str) -> Result<(), Status> {
        let refuse = |why: &str| Err(Status::unauthenticated(format!("cluster authentication failed: {why}")));
        let Some(v) = req.metadata().get(HEADER).and_then(|v| v.to_str().ok()) else {
            return refuse("no proof of the cluster secret");
        };
        let Some((at, proof)) = v.split_once('.') else { return refuse("malformed proof") };
        let (Ok(at), Ok(proof)) = (at.parse::<u64>(), hex::decode(proof)) else { return refuse("malformed proof") };
        if now_ms().abs_diff(at) > SKEW_MS {
            return refuse("the proof's time is more than a minute off this node's clock");
        }
        match self.mac(at, me).verify_slice(&proof) {
            Ok(()) => Ok(()),
            Err(_) => {
                refuse(&format!("wrong cluster secret, or the call was not meant for {me} (join through a node's advertised address)"))
            }
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
        s.attach(&mut ok, "10.0.0.1:7400");
        assert!(s.check(&ok, "10.0.0.1:7400").is_ok());
        let header = ok.metadata().get(HEADER).unwrap().to_str().unwrap().to_string();
        assert!(!header.contains("horse"), "the secret itself never travels");
        // A proof meant for another address is no good here.
        assert_eq!(s.check(&ok, "10.0.0.2:7400").unwrap_err().code(), tonic::Code::Unauthenticated);
        let mut bad = Request::new(());
        Secret::new_for_tests("wrong horse battery staple!").attach(&mut bad, "10.0.0.1:7400");
        assert_eq!(s.check(&bad, "10.0.0.1:7400").unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(s.check(&Request::new(()), "10.0.0.1:7400").unwrap_err().code(), tonic::Code::Unauthenticated);
        // A stale proof is refused.
        let mut old = Request::new(());
        let at = now_ms() - 2 * SKEW_MS;
        let proof = hex::encode(s.mac(at, "10.0.0.1:7400").finalize().into_bytes());
        old.metadata_mut().insert(HEADER, format!("{at}.{proof}").parse().unwrap());
        assert!(s.check(&old, "10.0.0.1:7400").unwrap_err().message().contains("minute"));
    }
}
