//! The one place errors become gRPC statuses. Clients get a message that
//! says what to fix; internal details stay in the server's log.
//!
//! Handlers return [`ApiError`], which every layer's error converts into,
//! so they can use `?` on any call; the service impl turns it into a
//! status at the edge.

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tracing::error;

use crate::cluster::error::ClusterError;
use crate::meta::MetaError;
use crate::objects::{Kind, ObjectError};
use crate::plugin::{PluginError, ReturnedError};
use crate::replication::ReplicationError;
use crate::service::ServiceError;

/// Metadata key saying what a failed cluster write left behind.
pub const OUTCOME_KEY: &str = "strata-outcome";
/// Metadata key with the version a partly stored write has.
pub const VERSION_KEY: &str = "strata-version";

/// Any failure a handler meets, on its way to becoming a status.
#[derive(Debug)]
pub enum ApiError {
    /// Found by the API itself (bad input, a limit).
    Status(Status),
    Service(ServiceError),
    Cluster(ClusterError),
    Replication(ReplicationError),
    Object(ObjectError),
    Plugin(PluginError),
    Registry(crate::registry::RegistryError),
}

macro_rules! from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ApiError::$v(e)
            }
        }
    )*};
}
from!(Status => Status, ServiceError => Service, ClusterError => Cluster, ReplicationError => Replication, ObjectError => Object, PluginError => Plugin, crate::registry::RegistryError => Registry);

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        ApiError::Object(e.into())
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Status(s) => s,
            ApiError::Service(e) => service(e),
            ApiError::Cluster(e) => cluster(e),
            ApiError::Replication(e) => replication(e),
            ApiError::Object(e) => object(e),
            ApiError::Plugin(e) => plugin(e),
            ApiError::Registry(e) => registry(e),
        }
    }
}

/// Model storage's failures: the registry's codes as gRPC codes.
pub fn registry(e: crate::registry::RegistryError) -> Status {
    use crate::registry::RegistryError as R;
    use crate::registry::error::ErrorCode as E;
    match e {
        R::Service(e) => service(e),
        R::Unauthorized(m) => Status::unauthenticated(m),
        R::Oci { code, message, .. } => {
            let code = match code {
                E::BlobUnknown | E::ManifestUnknown | E::NameUnknown | E::BlobUploadUnknown => Code::NotFound,
                E::ManifestBlobUnknown => Code::FailedPrecondition,
                E::Denied => Code::PermissionDenied,
                E::Unauthorized => Code::Unauthenticated,
                E::TooManyRequests => Code::ResourceExhausted,
                E::Unsupported => Code::Unimplemented,
                _ => Code::InvalidArgument,
            };
            Status::new(code, message)
        }
    }
}

/// A backup's failure: the target's fault, the request's, or this node's.
pub fn remote(e: crate::remote::RemoteError) -> ApiError {
    use crate::remote::RemoteError as R;
    let code = match &e {
        R::BadTarget { .. } | R::Invalid(_) => Code::InvalidArgument,
        R::Unavailable { .. } => Code::Unavailable,
        R::NoBackup { .. } | R::NoBackups { .. } => Code::NotFound,
        R::Locked { .. } | R::NotEmpty { .. } => Code::FailedPrecondition,
        R::LockLost { .. } => Code::Aborted,
        R::Member { retry: true, .. } | R::Cluster(_) => Code::Unavailable,
        R::Member { retry: false, .. } => Code::FailedPrecondition,
        R::BadManifest { .. } | R::RestoreFailed { .. } => Code::DataLoss,
        R::Store(_) | R::Meta(_) | R::Object(_) => {
            return ApiError::Object(match e {
                R::Store(e) => e.into(),
                R::Meta(e) => e.into(),
                R::Object(e) => e,
                _ => unreachable!("matched above"),
            });
        }
        R::Io(_) => Code::Internal,
        _ => Code::Internal,
    };
    if code == Code::Internal {
        error!(error = %e, "backup failed");
    }
    ApiError::Status(Status::new(code, e.to_string()))
}

/// Bad input found before anything was attempted.
pub fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::Status(Status::invalid_argument(msg))
}

/// The code of each kind of failure.
pub fn code(kind: Kind) -> Code {
    match kind {
        Kind::NotFound => Code::NotFound,
        Kind::Exists => Code::AlreadyExists,
        Kind::Refused => Code::FailedPrecondition,
        Kind::Invalid => Code::InvalidArgument,
        Kind::OutOfRange => Code::OutOfRange,
        Kind::Exhausted => Code::ResourceExhausted,
        Kind::Unavailable => Code::Unavailable,
        Kind::TimedOut => Code::DeadlineExceeded,
        Kind::Aborted => Code::Aborted,
        Kind::Cancelled => Code::Cancelled,
        Kind::DataLoss => Code::DataLoss,
        Kind::Denied => Code::PermissionDenied,
        Kind::Internal => Code::Internal,
    }
}

/// A status with `message`, unless the failure is internal: then only the
/// log has the details.
fn with_code(code: Code, message: impl std::fmt::Display) -> Status {
    if code == Code::Internal {
        error!(error = %message, "internal error");
        return Status::internal("internal error; the server log has the details");
    }
    Status::new(code, message.to_string())
}

pub fn object(e: ObjectError) -> Status {
    with_code(code(e.kind()), e)
}

pub fn service(e: ServiceError) -> Status {
    match e {
        ServiceError::Object(e) => object(e),
        ServiceError::Replication(e) => replication(e),
        ServiceError::Plugin(e) => plugin(e),
        ServiceError::Unsupported(m) => Status::failed_precondition(m),
        ServiceError::Invalid(m) => Status::invalid_argument(m),
    }
}

pub fn cluster(e: ClusterError) -> Status {
    let c = match &e {
        ClusterError::NoQuorum { .. }
        | ClusterError::NotLeader { .. }
        | ClusterError::Unreachable { .. }
        | ClusterError::Unavailable(_) => Code::Unavailable,
        // This node's secret was refused by the cluster's: the caller may
        // not make it join.
        ClusterError::Unauthenticated(_) => Code::PermissionDenied,
        ClusterError::Refused(_) => Code::FailedPrecondition,
        ClusterError::Exists(_) => Code::AlreadyExists,
        ClusterError::NotFound(_) => Code::NotFound,
        ClusterError::TimedOut(_) => Code::DeadlineExceeded,
        ClusterError::Invalid(_) => Code::InvalidArgument,
        ClusterError::Internal(_) => Code::Internal,
    };
    with_code(c, e)
}

/// A cluster write that failed says in `strata-outcome` what it left
/// behind: `stored-partially` (with its version in `strata-version`: it
/// will reach every replica), `not-stored` (safe to retry) or `unknown`.
pub fn replication(e: ReplicationError) -> Status {
    match e {
        ReplicationError::Object(e) => object(e),
        ReplicationError::Cluster(e) => cluster(e),
        ReplicationError::NotStored(inner) => outcome(replication(*inner), "not-stored", None),
        ReplicationError::NoQuorum { reached, ref version, unsure, .. } => {
            let (what, version) = match (reached > 0, unsure) {
                (true, _) => ("stored-partially", Some(version.clone())),
                (false, true) => ("unknown", None),
                (false, false) => ("not-stored", None),
            };
            let s = with_code(code(e.kind()), &e);
            outcome(s, what, version)
        }
        e => with_code(code(e.kind()), e),
    }
}

fn outcome(s: Status, what: &'static str, version: Option<String>) -> Status {
    let mut meta = MetadataMap::new();
    meta.insert(OUTCOME_KEY, MetadataValue::from_static(what));
    if let Some(Ok(v)) = version.map(|v| v.parse()) {
        meta.insert(VERSION_KEY, v);
    }
    Status::with_metadata(s.code(), s.message().to_string(), meta)
}

pub fn plugin(e: PluginError) -> Status {
    use PluginError as P;
    use ReturnedError as R;
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
