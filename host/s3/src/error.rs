//! The object service's errors as S3 error codes, in one place.

use s3s::{S3Error, S3ErrorCode};
use strata_objects::Kind;
use strata_service::ServiceError;

pub fn s3(e: ServiceError) -> S3Error {
    let msg = e.to_string();
    let code = match e.kind() {
        Kind::NotFound if msg.starts_with("bucket ") && msg.contains("does not exist") => S3ErrorCode::NoSuchBucket,
        Kind::NotFound if msg.contains("has no version") => S3ErrorCode::NoSuchVersion,
        Kind::NotFound => S3ErrorCode::NoSuchKey,
        Kind::Exists => S3ErrorCode::BucketAlreadyOwnedByYou,
        Kind::Refused if msg.contains("still holds objects") => S3ErrorCode::BucketNotEmpty,
        Kind::Refused if msg.contains("condition failed") => S3ErrorCode::PreconditionFailed,
        Kind::Refused => S3ErrorCode::InvalidRequest,
        Kind::Invalid => S3ErrorCode::InvalidArgument,
        Kind::OutOfRange => S3ErrorCode::InvalidRange,
        Kind::Exhausted => S3ErrorCode::Custom("InsufficientStorage".into()),
        Kind::Unavailable | Kind::TimedOut => S3ErrorCode::ServiceUnavailable,
        Kind::Aborted | Kind::Cancelled => S3ErrorCode::IncompleteBody,
        Kind::Denied => S3ErrorCode::AccessDenied,
        Kind::DataLoss | Kind::Internal => {
            tracing::error!(error = %msg, "S3 request failed");
            S3ErrorCode::InternalError
        }
    };
    let mut err = S3Error::with_message(code, msg);
    if matches!(e.kind(), Kind::Exhausted) {
        err.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
    }
    err
}
