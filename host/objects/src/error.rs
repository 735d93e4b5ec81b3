//! What can go wrong with an object, and what it means to whoever asked.

use strata_meta::MetaError;
use strata_store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("object {key:?} is a delete marker at version {version}")]
    DeleteMarker { key: String, version: String },
    #[error("the upload was cut off: {0}")]
    Aborted(String),
    /// Every copy a read could find is damaged or gone.
    #[error("every copy of this object is damaged: {0}")]
    Damaged(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the upload sent nothing for {secs} s (server.stream_idle_timeout); nothing was stored")]
    Idle { secs: u64 },
    #[error("the server's upload buffer (server.upload_buffer) stayed full for {secs} s; nothing was stored: retry")]
    BudgetBusy { secs: u64 },
}

/// What a failure means to the caller, whatever the front end: each front
/// end (gRPC, and the HTTP ones to come) maps a kind to its protocol's code
/// in one place, and the peer wire carries it between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Exists,
    /// The state forbids it (a condition, a non-empty bucket, no key).
    Refused,
    Invalid,
    OutOfRange,
    /// Out of space, quota or a limit.
    Exhausted,
    /// Try again later.
    Unavailable,
    TimedOut,
    Aborted,
    Cancelled,
    /// The bytes are damaged or gone.
    DataLoss,
    /// The caller is not allowed (a peer without the cluster secret).
    Denied,
    /// A fault of the server; the log has the details.
    Internal,
}

impl ObjectError {
    pub fn kind(&self) -> Kind {
        match self {
            ObjectError::Store(s) => match s {
                StoreError::Missing { .. } | StoreError::Corrupt { .. } => Kind::DataLoss,
                StoreError::NoKey { .. } | StoreError::WrongKey { .. } => Kind::Refused,
                StoreError::QuotaExceeded { .. } | StoreError::NoSpace { .. } => Kind::Exhausted,
                StoreError::Mismatch { .. } => Kind::Invalid,
                StoreError::BadRange { .. } => Kind::OutOfRange,
                StoreError::Cancelled => Kind::Cancelled,
                StoreError::TierUnavailable { .. } => Kind::Unavailable,
                _ => Kind::Internal,
            },
            ObjectError::Meta(m) => match m {
                MetaError::NoSuchBucket { .. } | MetaError::NotFound { .. } | MetaError::NoSuchVersion { .. } => Kind::NotFound,
                MetaError::NoSuchIndex { .. } => Kind::NotFound,
                MetaError::BucketExists { .. } | MetaError::IndexExists { .. } => Kind::Exists,
                MetaError::BucketNotEmpty { .. } | MetaError::DefaultBucket { .. } => Kind::Refused,
                MetaError::ConditionFailed { .. } => Kind::Refused,
                MetaError::RequestReused { .. } => Kind::Invalid,
                MetaError::RequestGone { .. } => Kind::Refused,
                MetaError::CorruptVersion { .. } => Kind::DataLoss,
                MetaError::Full { .. } => Kind::Exhausted,
                _ => Kind::Internal,
            },
            ObjectError::DeleteMarker { .. } => Kind::NotFound,
            ObjectError::Aborted(_) => Kind::Aborted,
            ObjectError::Damaged(_) => Kind::DataLoss,
            ObjectError::ShuttingDown => Kind::Unavailable,
            ObjectError::Idle { .. } => Kind::TimedOut,
            ObjectError::BudgetBusy { .. } => Kind::Unavailable,
        }
    }
}
