//! What can go wrong replicating a version. The API maps these to gRPC
//! statuses in one place (`api/error.rs`); the replica transport
//! ([`super::wire`]) carries kinds between nodes.

use strata_cluster::error::ClusterError;
use strata_objects::{Kind, ObjectError};

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// A failure of this node's stores.
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The call never reached the peer, or its answer never came back.
    #[error("cannot reach {addr}: {why}")]
    Unreachable { addr: String, why: String },
    /// What a peer answered, of the kind it said.
    #[error("{message}")]
    Peer { kind: Kind, message: String },
    /// A write that did not reach the acknowledgements its plan needs.
    /// `reached` replicas hold it as `version` (none: `unsure` says whether
    /// one may still record it).
    #[error("{}", unacknowledged(*reached, *needed, version, summary, *unsure))]
    NoQuorum { reached: usize, needed: usize, version: String, summary: String, unsure: bool },
    /// A write that failed before any replica was told to commit: nothing
    /// is stored anywhere.
    #[error("{0}")]
    NotStored(Box<ReplicationError>),
    /// The cluster's state or policy forbids this now.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    /// The client's stream broke off.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Internal(String),
}

impl From<strata_meta::MetaError> for ReplicationError {
    fn from(e: strata_meta::MetaError) -> Self {
        ReplicationError::Object(e.into())
    }
}

impl ReplicationError {
    pub fn kind(&self) -> Kind {
        match self {
            ReplicationError::Object(e) => e.kind(),
            ReplicationError::Cluster(e) => cluster_kind(e),
            ReplicationError::Unreachable { .. } | ReplicationError::Unavailable(_) => Kind::Unavailable,
            ReplicationError::Peer { kind, .. } => *kind,
            ReplicationError::NoQuorum { reached, .. } => {
                if *reached > 0 {
                    Kind::Aborted
                } else {
                    Kind::Unavailable
                }
            }
            ReplicationError::NotStored(e) => e.kind(),
            ReplicationError::Refused(_) => Kind::Refused,
            ReplicationError::Invalid(_) => Kind::Invalid,
            ReplicationError::Aborted(_) => Kind::Aborted,
            ReplicationError::Internal(_) => Kind::Internal,
        }
    }

    /// Whether a target that answered this surely did not store the write
    /// (as opposed to a connection that broke with the outcome unknown).
    pub fn is_refusal(&self) -> bool {
        !matches!(self.kind(), Kind::Unavailable | Kind::Cancelled | Kind::TimedOut)
            && !matches!(self, ReplicationError::Unreachable { .. })
    }

    /// Marks a failure that came before any replica was told to commit.
    pub fn not_stored(self) -> Self {
        ReplicationError::NotStored(Box::new(self))
    }
}

pub fn cluster_kind(e: &ClusterError) -> Kind {
    match e {
        ClusterError::NoQuorum { .. }
        | ClusterError::NotLeader { .. }
        | ClusterError::Unreachable { .. }
        | ClusterError::Unavailable(_) => Kind::Unavailable,
        ClusterError::Unauthenticated(_) => Kind::Denied,
        ClusterError::Refused(_) => Kind::Refused,
        ClusterError::Exists(_) => Kind::Exists,
        ClusterError::NotFound(_) => Kind::NotFound,
        ClusterError::TimedOut(_) => Kind::TimedOut,
        ClusterError::Invalid(_) => Kind::Invalid,
        ClusterError::Internal(_) => Kind::Internal,
    }
}

fn unacknowledged(reached: usize, need: usize, version: &str, summary: &str, unsure: bool) -> String {
    if reached > 0 {
        format!(
            "stored on {reached} of the {need} replicas this write needs, as version {version} ({summary}); \
             the copies still owed are queued, so this version will reach every replica: a retry with the \
             same request_id returns it; without one a retry stores a second version"
        )
    } else if unsure {
        format!("no replica confirmed this write ({summary}); it may still appear as version {version}")
    } else {
        format!("not stored: every replica refused this write ({summary}); safe to retry")
    }
}
