//! Who may do what: SigV4 secrets come from the key file (`S3Auth`), and
//! every operation is checked against the key's bucket and rights
//! (`S3Access`), a copy's source bucket too. Without a signature a request
//! is anonymous: refused, or allowed to read when `[s3] anonymous = "read"`.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, CopySource, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

use crate::keys::Keys;

pub struct Auth {
    pub keys: Arc<Keys>,
    pub anonymous_read: bool,
}

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.keys.find(access_key) {
            Some(k) => Ok(SecretKey::from(k.secret_key)),
            None => Err(s3_error!(InvalidAccessKeyId, "no such access key: make one with `strata s3 key create`")),
        }
    }
}

/// Operations that only read.
fn reads(op: &str) -> bool {
    op.starts_with("Get") || op.starts_with("Head") || op.starts_with("List")
}

impl Auth {
    fn allow(&self, access_key: Option<&str>, bucket: &str, write: bool) -> S3Result<()> {
        match access_key {
            None if self.anonymous_read && !write => Ok(()),
            None => Err(s3_error!(AccessDenied, "this gateway needs a signed request (an access key from `strata s3 key create`)")),
            Some(ak) => match self.keys.find(ak) {
                Some(k) if k.allows(bucket, write) => Ok(()),
                Some(_) => {
                    Err(s3_error!(AccessDenied, "access key {ak} may not {} in bucket {bucket}", if write { "write" } else { "read" }))
                }
                None => Err(s3_error!(InvalidAccessKeyId, "no such access key")),
            },
        }
    }

    fn copy_source(&self, access_key: Option<&str>, source: &CopySource) -> S3Result<()> {
        match source {
            CopySource::Bucket { bucket, .. } => self.allow(access_key, bucket, false),
            _ => Err(s3_error!(NotImplemented, "only bucket/key copy sources are served")),
        }
    }
}

/// A key's bucket-less operations: listing buckets needs a `*` key.
const ROOT: &str = "*";

pub struct Access(pub Arc<Auth>);

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        // A presigned URL lives at most 7 days, as on AWS.
        if let Some(q) = cx.uri().query() {
            for v in q.split('&').filter_map(|p| p.strip_prefix("X-Amz-Expires=")) {
                if v.parse::<u64>().map_or(true, |n| n > 604_800) {
                    return Err(s3_error!(AuthorizationQueryParametersError, "X-Amz-Expires must be at most 604800 seconds (7 days)"));
                }
            }
        }
        let write = !reads(cx.s3_op().name());
        let ak = cx.credentials().map(|c| c.access_key.clone());
        let bucket = match cx.s3_path() {
            S3Path::Root => {
                // ListBuckets answers only the buckets the key may read.
                return match &ak {
                    Some(_) => Ok(()),
                    None => self.0.allow(None, ROOT, write),
                };
            }
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket.to_string(),
        };
        self.0.allow(ak.as_deref(), &bucket, write)
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        let ak = req.credentials.as_ref().map(|c| c.access_key.clone());
        self.0.copy_source(ak.as_deref(), &req.input.copy_source)
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        let ak = req.credentials.as_ref().map(|c| c.access_key.clone());
        self.0.copy_source(ak.as_deref(), &req.input.copy_source)
    }
}
