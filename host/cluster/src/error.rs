//! What can go wrong in the cluster layer. The API maps these to gRPC
//! statuses in one place (`api/error.rs`); the peer transport
//! ([`super::network`]) carries them between nodes.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// A proposal or read that a majority of voters did not confirm in time.
    #[error("{what} did not commit within {waited:?}: a majority of voters is not reachable")]
    NoQuorum { what: &'static str, waited: Duration },
    /// Only the leader serves this; `leader` is its address, if known.
    #[error("{}", match leader { Some(l) => format!("not the leader; the leader is {l}"), None => "no leader is known: the cluster may have lost its quorum".into() })]
    NotLeader { leader: Option<String> },
    /// The call never reached the peer (or its answer never came back).
    #[error("cannot reach {addr}: {why}")]
    Unreachable { addr: String, why: String },
    /// The peer refused this node's proof of the cluster secret.
    #[error("{0}")]
    Unauthenticated(String),
    /// The cluster's state forbids the change; `why` says what to do.
    #[error("{0}")]
    Refused(String),
    /// The change would duplicate a member or a cluster.
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    NotFound(String),
    /// A wait (a lock, a catch-up) ran out.
    #[error("{0}")]
    TimedOut(String),
    /// The cluster cannot serve this now; trying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// A request this node or a peer could not read.
    #[error("{0}")]
    Invalid(String),
    /// Raft stopped or a message could not be encoded: a fault of this node.
    #[error("{0}")]
    Internal(String),
}
