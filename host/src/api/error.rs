//! The one place errors become gRPC statuses. Clients get a message that
//! says what to fix; internal details stay in the server's log.

use tonic::{Code, Status};
use tracing::error;

use crate::meta::MetaError;
use crate::objects::ObjectError;
use crate::store::StoreError;

/// Bad input found before anything was attempted.
pub fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}

impl From<ObjectError> for Status {
    fn from(e: ObjectError) -> Self {
        let code = code_of(&e);
        if code == Code::Internal {
            error!(error = %e, "internal error");
            return Status::internal("internal error; the server log has the details");
        }
        Status::new(code, e.to_string())
    }
}

impl From<MetaError> for Status {
    fn from(e: MetaError) -> Self {
        ObjectError::Meta(e).into()
    }
}

pub fn code_of(e: &ObjectError) -> Code {
    match e {
        ObjectError::Store(s) => match s {
            StoreError::Missing { .. } | StoreError::Corrupt { .. } => Code::DataLoss,
            StoreError::NoKey { .. } | StoreError::WrongKey { .. } => Code::FailedPrecondition,
            StoreError::QuotaExceeded { .. } | StoreError::NoSpace { .. } => Code::ResourceExhausted,
            StoreError::Mismatch { .. } => Code::InvalidArgument,
            StoreError::BadRange { .. } => Code::OutOfRange,
            StoreError::Cancelled => Code::Cancelled,
            _ => Code::Internal,
        },
        ObjectError::Meta(m) => match m {
            MetaError::NoSuchBucket { .. } | MetaError::NotFound { .. } | MetaError::NoSuchVersion { .. } => Code::NotFound,
            MetaError::NoSuchIndex { .. } => Code::NotFound,
            MetaError::BucketExists { .. } | MetaError::IndexExists { .. } => Code::AlreadyExists,
            MetaError::BucketNotEmpty { .. } | MetaError::DefaultBucket { .. } => Code::FailedPrecondition,
            MetaError::ConditionFailed { .. } => Code::FailedPrecondition,
            MetaError::RequestReused { .. } => Code::InvalidArgument,
            MetaError::RequestGone { .. } => Code::FailedPrecondition,
            MetaError::CorruptVersion { .. } => Code::DataLoss,
            MetaError::Full { .. } => Code::ResourceExhausted,
            _ => Code::Internal,
        },
        ObjectError::DeleteMarker { .. } => Code::NotFound,
        ObjectError::Aborted(_) => Code::Aborted,
        ObjectError::Damaged(_) => Code::DataLoss,
        ObjectError::ShuttingDown => Code::Unavailable,
        ObjectError::Idle { .. } => Code::DeadlineExceeded,
        ObjectError::BudgetBusy { .. } => Code::Unavailable,
    }
}

impl From<crate::plugin::PluginError> for Status {
    fn from(e: crate::plugin::PluginError) -> Self {
        use crate::plugin::{PluginError as P, ReturnedError as R};
        let code = match &e {
            P::NotFound { .. } => Code::NotFound,
            P::Returned { error: R::InvalidInput(_), .. } => Code::InvalidArgument,
            P::Returned { error: R::Unsatisfiable(_), .. } => Code::FailedPrecondition,
            P::Timeout { .. } => Code::DeadlineExceeded,
            P::MemoryLimit { .. } => Code::ResourceExhausted,
            P::Busy { .. } => Code::Unavailable,
            // A plugin that traps or breaks its contract is a server-side
            // fault, but the message names the plugin, not internals.
            _ => Code::Internal,
        };
        if code == Code::Internal {
            error!(error = %e, "plugin failure");
        }
        Status::new(code, e.to_string())
    }
}
