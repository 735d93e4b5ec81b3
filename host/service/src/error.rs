//! The object service's errors: the layer's own, or one from below.

use strata_meta::MetaError;
use strata_objects::ObjectError;
use strata_plugin::PluginError;
use strata_replication::ReplicationError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Not offered by this server as configured (no cluster, search off),
    /// or not yet on a cluster; the message says what to do instead.
    #[error("{0}")]
    Unsupported(String),
    /// A request the service cannot carry out as given.
    #[error("{0}")]
    Invalid(String),
}

impl From<MetaError> for ServiceError {
    fn from(e: MetaError) -> Self {
        ServiceError::Object(e.into())
    }
}

impl ServiceError {
    /// What the failure means to the caller, for front ends to map to their
    /// protocol's codes.
    pub fn kind(&self) -> strata_objects::Kind {
        use strata_objects::Kind;
        match self {
            ServiceError::Object(e) => e.kind(),
            ServiceError::Replication(e) => e.kind(),
            ServiceError::Plugin(_) => Kind::Internal,
            ServiceError::Unsupported(_) => Kind::Refused,
            ServiceError::Invalid(_) => Kind::Invalid,
        }
    }
}
