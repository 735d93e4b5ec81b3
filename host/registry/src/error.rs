//! Errors as the distribution spec words them: an HTTP status and a JSON
//! body `{"errors": [{"code", "message"}]}` with the spec's codes, mapped
//! in this one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use oci_spec::distribution::ErrorCode;
use oci_spec::distribution::{ErrorInfoBuilder, ErrorResponseBuilder};
use strata_objects::Kind;
use strata_service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{message}")]
    Oci { status: StatusCode, code: ErrorCode, message: String },
    /// Credentials are needed (or were wrong): answered with a challenge.
    #[error("{0}")]
    Unauthorized(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

pub type Result<T> = std::result::Result<T, RegistryError>;

pub fn oci(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> RegistryError {
    RegistryError::Oci { status, code, message: message.into() }
}

pub fn name_invalid(why: impl Into<String>) -> RegistryError {
    oci(StatusCode::BAD_REQUEST, ErrorCode::NameInvalid, why)
}

pub fn digest_invalid(why: impl Into<String>) -> RegistryError {
    oci(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, why)
}

pub fn blob_unknown(digest: &str) -> RegistryError {
    oci(StatusCode::NOT_FOUND, ErrorCode::BlobUnknown, format!("blob {digest} is not in this repository"))
}

pub fn manifest_unknown(reference: &str) -> RegistryError {
    oci(StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown, format!("manifest {reference} is not in this repository"))
}

pub fn manifest_invalid(why: impl Into<String>) -> RegistryError {
    oci(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, why)
}

pub fn upload_unknown(id: &str) -> RegistryError {
    oci(
        StatusCode::NOT_FOUND,
        ErrorCode::BlobUploadUnknown,
        format!("no upload {id} (it finished, was cancelled, or the server restarted)"),
    )
}

pub fn denied(why: impl Into<String>) -> RegistryError {
    oci(StatusCode::FORBIDDEN, ErrorCode::Denied, why)
}

fn body(code: ErrorCode, message: String) -> String {
    let info = ErrorInfoBuilder::default().code(code).message(message).build();
    let resp = info.ok().and_then(|i| ErrorResponseBuilder::default().errors(vec![i]).build().ok());
    resp.and_then(|r| serde_json::to_string(&r).ok()).unwrap_or_else(|| r#"{"errors":[{"code":"UNKNOWN","message":"error"}]}"#.into())
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            RegistryError::Oci { status, code, message } => (status, code, message),
            RegistryError::Unauthorized(m) => {
                let mut r = (StatusCode::UNAUTHORIZED, body(ErrorCode::Unauthorized, m)).into_response();
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"strata\""));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                return r;
            }
            RegistryError::Service(e) => {
                let m = e.to_string();
                match e.kind() {
                    Kind::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NameUnknown, m),
                    Kind::Invalid | Kind::OutOfRange => (StatusCode::BAD_REQUEST, ErrorCode::Unsupported, m),
                    Kind::DataLoss => {
                        tracing::error!(error = %m, "registry read found damage");
                        (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::BlobUnknown, m)
                    }
                    Kind::Exhausted => (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::Denied, m),
                    Kind::Unavailable | Kind::TimedOut => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unsupported, m),
                    Kind::Denied => (StatusCode::FORBIDDEN, ErrorCode::Denied, m),
                    Kind::Refused | Kind::Exists => (StatusCode::CONFLICT, ErrorCode::Denied, m),
                    Kind::Aborted | Kind::Cancelled => (StatusCode::BAD_REQUEST, ErrorCode::BlobUploadInvalid, m),
                    Kind::Internal => {
                        tracing::error!(error = %m, "registry request failed");
                        (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unsupported, m)
                    }
                }
            }
        };
        let mut r = (status, body(code, message)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }
}
