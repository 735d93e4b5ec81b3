//! The S3 operations over the object service. What is not here answers
//! `NotImplemented` (s3s's default), never a wrong success.

use std::sync::Arc;

use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_meta::{Condition, ObjectRecord};
use strata_objects::PutSpec;
use strata_service::ObjectService;
use strata_store::Range as StoreRange;

use crate::error::s3;

/// Attributes the gateway keeps for itself (not user metadata).
pub(crate) const INTERNAL: &str = "s3.";

/// S3's cap on user metadata (names and values), in bytes.
const MAX_METADATA: usize = 2048;

/// Refuses a request that sets any of these fields: a feature not built
/// must never look like a success (an object lock that does not lock,
/// encryption that does not encrypt).
macro_rules! unsupported {
    ($input:expr, $($field:ident => $what:literal),+ $(,)?) => {
        $(
            if $input.$field.is_some() {
                return Err(s3_error!(NotImplemented, "{} is not supported by this gateway", $what));
            }
        )+
    };
}

pub(crate) use unsupported;

/// A canned ACL other than `private` (which is what every object and
/// bucket here is: only keys reach them) is refused.
pub(crate) fn private_only(acl: Option<&str>) -> S3Result<()> {
    match acl {
        None | Some("private") => Ok(()),
        Some(other) => Err(s3_error!(NotImplemented, "the canned ACL {other:?} is not supported by this gateway (only private)")),
    }
}

/// The standard object headers kept beside the content type.
const HEADERS: [&str; 5] = ["cache-control", "content-disposition", "content-encoding", "content-language", "expires"];

pub struct Gateway {
    pub service: Arc<dyn ObjectService>,
    /// To list only the buckets a key may read.
    pub keys: Arc<crate::keys::Keys>,
    pub region: String,
    pub max_key_length: usize,
    /// Set once the bucket of multipart uploads exists.
    pub uploads_ready: tokio::sync::OnceCell<()>,
}

/// The attribute holding an object's S3 ETag.
pub(crate) const ETAG_ATTR: &str = "s3.etag";

/// An object's ETag: the MD5 of its bytes when it came through this
/// gateway (`MD5-of-part-MD5s-N` for a multipart upload), as S3 clients
/// expect; else (a put through gRPC, which computes no MD5) its SHA-256 in
/// hex with `-1` after it: clients (s3cmd, rclone) take an ETag with a
/// dash for one that is not an MD5, and check nothing against it.
pub(crate) fn etag(r: &ObjectRecord) -> Option<ETag> {
    let d = r.digest?;
    let tag = r.attributes.get(ETAG_ATTR).and_then(|v| v.as_str()).map_or_else(|| format!("{d}-1"), str::to_string);
    Some(ETag::Strong(tag))
}

pub(crate) fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
}

/// User metadata (`x-amz-meta-*`): the record's string attributes.
fn metadata(r: &ObjectRecord) -> Option<Metadata> {
    let m: Metadata = r
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with(INTERNAL))
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    (!m.is_empty()).then_some(m)
}

pub(crate) fn attributes(m: Option<Metadata>) -> S3Result<strata_meta::Attributes> {
    let mut out = strata_meta::Attributes::new();
    let m = m.unwrap_or_default();
    let size: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_METADATA {
        return Err(s3_error!(MetadataTooLarge, "user metadata takes {size} bytes; the limit is {MAX_METADATA}"));
    }
    for (k, v) in m {
        if k.starts_with(INTERNAL) {
            return Err(s3_error!(InvalidArgument, "metadata names starting with {INTERNAL:?} are reserved"));
        }
        out.insert(k, serde_json::Value::String(v));
    }
    Ok(out)
}

/// The standard headers as internal attributes.
pub(crate) fn header_attributes(out: &mut strata_meta::Attributes, values: [Option<String>; 4], expires: Option<Timestamp>) {
    for (name, v) in HEADERS.iter().zip(values) {
        if let Some(v) = v {
            out.insert(format!("{INTERNAL}{name}"), serde_json::Value::String(v));
        }
    }
    if let Some(t) = expires {
        let t: time::OffsetDateTime = t.into();
        out.insert(format!("{INTERNAL}expires"), serde_json::Value::from(t.unix_timestamp()));
    }
}

/// One standard header back from its attribute.
fn header(r: &ObjectRecord, name: &str) -> Option<String> {
    r.attributes.get(&format!("{INTERNAL}{name}")).and_then(|v| v.as_str()).map(str::to_string)
}

fn expires(r: &ObjectRecord) -> Option<Timestamp> {
    let secs = r.attributes.get(&format!("{INTERNAL}expires"))?.as_i64()?;
    time::OffsetDateTime::from_unix_timestamp(secs).ok().map(Timestamp::from)
}

/// S3's default for an object stored without a content type.
fn content_type(r: &ObjectRecord) -> Option<String> {
    Some(if r.content_type.is_empty() { "binary/octet-stream".to_string() } else { r.content_type.clone() })
}

impl Gateway {
    pub(crate) fn check_bucket(&self, b: &str) -> S3Result<()> {
        if b == crate::multipart::UPLOADS {
            return Err(s3_error!(InvalidBucketName, "bucket {b:?} is reserved for the parts of multipart uploads"));
        }
        strata_meta::names::bucket_name(b).map_err(|e| S3Error::with_message(S3ErrorCode::InvalidBucketName, e))
    }

    pub(crate) fn check_key(&self, b: &str, k: &str) -> S3Result<()> {
        self.check_bucket(b)?;
        strata_meta::names::key(k, self.max_key_length).map_err(|e| {
            let code = if k.len() > self.max_key_length { S3ErrorCode::KeyTooLongError } else { S3ErrorCode::InvalidArgument };
            S3Error::with_message(code, e)
        })
    }

    /// The live object, or None when there is none.
    pub(crate) async fn live(&self, bucket: &str, key: &str) -> S3Result<Option<ObjectRecord>> {
        match self.service.stat(bucket, key, None).await {
            Ok((r, _)) if r.digest.is_some() => Ok(Some(r)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == strata_objects::Kind::NotFound && !e.to_string().starts_with("bucket ") => Ok(None),
            Err(e) => Err(s3(e)),
        }
    }

    /// GET and HEAD's preconditions, in RFC 9110's order.
    pub(crate) fn preconditions(
        r: &ObjectRecord,
        if_match: &Option<ETagCondition>,
        if_none_match: &Option<ETagCondition>,
        if_modified_since: &Option<Timestamp>,
        if_unmodified_since: &Option<Timestamp>,
    ) -> S3Result<()> {
        let tag = etag(r);
        let modified = timestamp(r.modified_ms - r.modified_ms % 1000);
        let matches = |c: &ETagCondition| match c {
            ETagCondition::Any => tag.is_some(),
            ETagCondition::ETag(t) => tag.as_ref().is_some_and(|e| e.value() == t.value()),
        };
        // If-Match compares strongly: a weak tag never matches.
        let strong = |c: &ETagCondition| matches!(c, ETagCondition::Any) || c.as_etag().is_some_and(|t| t.as_strong().is_some());
        match if_match {
            Some(c) if !(strong(c) && matches(c)) => {
                return Err(s3_error!(PreconditionFailed, "If-Match does not match the object's ETag"));
            }
            None if if_unmodified_since.as_ref().is_some_and(|t| modified > *t) => {
                return Err(s3_error!(PreconditionFailed, "the object was modified since If-Unmodified-Since"));
            }
            _ => {}
        }
        match if_none_match {
            Some(c) if matches(c) => return Err(s3_error!(NotModified)),
            None if if_modified_since.as_ref().is_some_and(|t| modified <= *t) => return Err(s3_error!(NotModified)),
            _ => {}
        }
        Ok(())
    }

    /// A copy's source version, if it is an object and its conditions
    /// hold (a copy that would be "not modified" fails instead).
    pub(crate) async fn copy_source(
        &self,
        (bucket, key, version): (&str, &str, Option<&str>),
        if_match: &Option<ETagCondition>,
        if_none_match: &Option<ETagCondition>,
        if_modified_since: &Option<Timestamp>,
        if_unmodified_since: &Option<Timestamp>,
    ) -> S3Result<ObjectRecord> {
        let (head, _) = self.service.stat(bucket, key, version).await.map_err(s3)?;
        if head.digest.is_none() {
            return Err(s3_error!(NoSuchKey, "the copy source is a delete marker"));
        }
        Self::preconditions(&head, if_match, if_none_match, if_modified_since, if_unmodified_since)
            .map_err(|e| if *e.code() == S3ErrorCode::NotModified { s3_error!(PreconditionFailed) } else { e })?;
        Ok(head)
    }

    /// A put's spec and promises, or why it is refused before its body is read.
    async fn prepare_put(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<(PutSpec, crate::verify::Promises, Option<s3s::TrailingHeaders>)> {
        let trailer = req.headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()).map(str::to_string);
        let trailers = req.trailing_headers;
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        private_only(i.acl.as_ref().map(|a| a.as_str()))?;
        unsupported!(i, grant_full_control => "a grant", grant_read => "a grant", grant_read_acp => "a grant",
            grant_write_acp => "a grant", sse_customer_algorithm => "SSE-C", sse_customer_key => "SSE-C",
            server_side_encryption => "server-side encryption (Strata encrypts at rest with [storage.encryption])",
            ssekms_key_id => "SSE-KMS", object_lock_mode => "object lock", object_lock_retain_until_date => "object lock",
            object_lock_legal_hold_status => "a legal hold", tagging => "object tagging",
            website_redirect_location => "a website redirect", write_offset_bytes => "appending");
        if i.storage_class.as_ref().is_some_and(|c| c.as_str() != StorageClass::STANDARD) {
            return Err(s3_error!(NotImplemented, "storage classes other than STANDARD are not supported (Strata has tiers)"));
        }
        let condition = match (&i.if_none_match, &i.if_match) {
            (Some(ETagCondition::Any), _) => Condition::IfAbsent,
            (Some(_), _) => return Err(s3_error!(NotImplemented, "If-None-Match on a put takes only *")),
            (None, Some(want)) => {
                let live = self.live(&i.bucket, &i.key).await?;
                match live {
                    Some(r)
                        if matches!(want, ETagCondition::Any)
                            || etag(&r).zip(want.as_etag()).is_some_and(|(a, b)| a.value() == b.value()) =>
                    {
                        Condition::IfVersion(r.version)
                    }
                    _ => return Err(s3_error!(PreconditionFailed, "If-Match does not match the object's ETag")),
                }
            }
            (None, None) => Condition::Always,
        };
        let mut attrs = attributes(i.metadata)?;
        header_attributes(&mut attrs, [i.cache_control, i.content_disposition, i.content_encoding, i.content_language], i.expires);
        let spec = PutSpec {
            bucket: i.bucket,
            key: i.key,
            content_type: i.content_type.unwrap_or_default(),
            attributes: attrs,
            size: i.content_length.map(|n| n as u64),
            condition,
            late: Some(Default::default()),
            ..Default::default()
        };
        let promises = crate::verify::Promises {
            content_md5: i.content_md5,
            sums: Checksum {
                checksum_crc32: i.checksum_crc32,
                checksum_crc32c: i.checksum_crc32c,
                checksum_sha1: i.checksum_sha1,
                checksum_sha256: i.checksum_sha256,
                checksum_crc64nvme: i.checksum_crc64nvme,
                ..Default::default()
            },
            algorithm: i.checksum_algorithm,
            trailer,
        };
        Ok((spec, promises, trailers))
    }

    /// Streams `body` into a put of `spec`; an error in the body (a bad
    /// signature or payload hash) fails the put, and nothing is stored.
    pub(crate) async fn store(
        &self,
        spec: PutSpec,
        body: crate::verify::Checked,
        failure: crate::verify::Failure,
    ) -> S3Result<ObjectRecord> {
        match self.service.put(spec, body.boxed()).await {
            Ok(r) => Ok(r),
            // The body's own failure (a bad checksum or signature) says what it was.
            Err(e) => Err(failure.lock().expect("failure").take().unwrap_or_else(|| s3(e))),
        }
    }

    /// A copy's bytes need no promises checked: they come from the store.
    async fn store_copy(&self, spec: PutSpec, body: StreamingBlob) -> S3Result<ObjectRecord> {
        let body = body.map(|r| r.map_err(|e| format!("reading the copy source failed: {e}"))).boxed();
        self.service.put(spec, body).await.map_err(s3)
    }

    /// The body of a version as a blob s3s can send.
    pub(crate) async fn read(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: StoreRange,
    ) -> S3Result<(ObjectRecord, StreamingBlob)> {
        let (r, rx) = self.service.get(bucket, key, version, range).await.map_err(s3)?;
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let stream = sync_wrapper::SyncStream::new(stream.map(|c| c.map_err(|e| std::io::Error::other(e.to_string()))));
        Ok((r, StreamingBlob::wrap(stream)))
    }
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let all = self.service.list_buckets().await.map_err(s3)?.value;
        let key = req.credentials.as_ref().and_then(|c| self.keys.find(&c.access_key));
        let buckets = all
            .into_iter()
            .filter(|b| b.name != crate::multipart::UPLOADS)
            .filter(|b| req.credentials.is_none() || key.as_ref().is_some_and(|k| k.allows(&b.name, false)))
            .map(|b| Bucket { name: Some(b.name), creation_date: Some(timestamp(b.created_ms)), ..Default::default() })
            .collect();
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let i = &req.input;
        let b = &i.bucket;
        self.check_bucket(b)?;
        private_only(i.acl.as_ref().map(|a| a.as_str()))?;
        unsupported!(i, grant_full_control => "a grant", grant_read => "a grant", grant_read_acp => "a grant",
            grant_write => "a grant", grant_write_acp => "a grant", object_ownership => "object ownership");
        if i.object_lock_enabled_for_bucket == Some(true) {
            return Err(s3_error!(NotImplemented, "object lock is not supported by this gateway"));
        }
        if let Some(l) = i.create_bucket_configuration.as_ref().and_then(|c| c.location_constraint.as_ref())
            && l.as_str() != self.region
        {
            return Err(s3_error!(InvalidLocationConstraint, "this gateway's region is {}", self.region));
        }
        self.service.create_bucket(b, None).await.map_err(s3)?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{b}")) }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.check_bucket(&req.input.bucket)?;
        self.service.delete_bucket(&req.input.bucket).await.map_err(s3)?;
        // Its uploads in progress go with it (a bucket made again later
        // under the name must not find them).
        crate::multipart::drop_uploads(self.service.clone(), req.input.bucket.clone()).await;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let b = &req.input.bucket;
        self.check_bucket(b)?;
        // A listing of one key: NoSuchBucket when the bucket is not there.
        self.service.list(b, "", None, 1).await.map_err(s3)?;
        Ok(S3Response::new(HeadBucketOutput { bucket_region: Some(self.region.clone()), ..Default::default() }))
    }

    async fn get_bucket_location(&self, req: S3Request<GetBucketLocationInput>) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let b = &req.input.bucket;
        self.check_bucket(b)?;
        self.service.list(b, "", None, 1).await.map_err(s3)?;
        // us-east-1 is said by saying nothing.
        let location = (self.region != "us-east-1").then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint: location }))
    }

    async fn put_object(&self, mut req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let body = req.input.body.take().ok_or_else(|| s3_error!(IncompleteBody, "a put needs a body"))?;
        let (spec, promises, trailers) = match self.prepare_put(req).await {
            Ok(p) => p,
            Err(e) => return Err(refuse(body, e).await),
        };
        let failure = crate::verify::Failure::default();
        let body = match crate::verify::Checked::new(body, promises, trailers, failure.clone(), spec.late.clone()) {
            Ok(b) => b,
            Err((body, e)) => return Err(refuse(body, e).await),
        };
        let r = self.store(spec, body, failure).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: etag(&r),
            size: Some(r.size as i64),
            version_id: Some(r.version),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        if i.part_number.is_some() {
            return Err(s3_error!(NotImplemented, "GetObject by part number is not served"));
        }
        unsupported!(i, sse_customer_algorithm => "SSE-C", sse_customer_key => "SSE-C");
        let version = i.version_id.as_deref();
        let (head, _) = self.service.stat(&i.bucket, &i.key, version).await.map_err(s3)?;
        if head.digest.is_none() {
            return Err(s3_error!(NoSuchKey, "the key's latest version is a delete marker"));
        }
        Self::preconditions(&head, &i.if_match, &i.if_none_match, &i.if_modified_since, &i.if_unmodified_since)?;
        let (range, content_range) = match &i.range {
            None => (StoreRange::ALL, None),
            Some(r) => {
                let r = r.check(head.size)?;
                if r.start >= r.end {
                    return Err(s3_error!(InvalidRange, "the range holds no byte of the object's {}", head.size));
                }
                let len = r.end - r.start;
                (StoreRange { offset: r.start, len: Some(len) }, Some(format!("bytes {}-{}/{}", r.start, r.end - 1, head.size)))
            }
        };
        // The version stat named, so a concurrent put cannot mix two.
        let (r, body) = self.read(&i.bucket, &i.key, Some(&head.version), range).await?;
        let length = range.len.unwrap_or(r.size);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            content_length: Some(length as i64),
            content_range,
            content_type: content_type(&r),
            e_tag: etag(&r),
            last_modified: Some(timestamp(r.modified_ms)),
            metadata: metadata(&r),
            version_id: Some(r.version.clone()),
            accept_ranges: Some("bytes".into()),
            cache_control: header(&r, "cache-control"),
            content_disposition: header(&r, "content-disposition"),
            content_encoding: header(&r, "content-encoding"),
            content_language: header(&r, "content-language"),
            expires: expires(&r),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        unsupported!(i, sse_customer_algorithm => "SSE-C", sse_customer_key => "SSE-C", part_number => "HeadObject by part number");
        let (r, _) = self.service.stat(&i.bucket, &i.key, i.version_id.as_deref()).await.map_err(s3)?;
        if r.digest.is_none() {
            return Err(s3_error!(NoSuchKey, "the key's latest version is a delete marker"));
        }
        Self::preconditions(&r, &i.if_match, &i.if_none_match, &i.if_modified_since, &i.if_unmodified_since)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(r.size as i64),
            content_type: content_type(&r),
            e_tag: etag(&r),
            last_modified: Some(timestamp(r.modified_ms)),
            metadata: metadata(&r),
            version_id: Some(r.version.clone()),
            accept_ranges: Some("bytes".into()),
            cache_control: header(&r, "cache-control"),
            content_disposition: header(&r, "content-disposition"),
            content_encoding: header(&r, "content-encoding"),
            content_language: header(&r, "content-language"),
            expires: expires(&r),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        match self.service.delete(&i.bucket, &i.key, i.version_id.as_deref()).await {
            Ok(strata_meta::Deleted::Marker(v)) => {
                Ok(S3Response::new(DeleteObjectOutput { delete_marker: Some(true), version_id: Some(v), ..Default::default() }))
            }
            // A version removed for good is named back.
            Ok(strata_meta::Deleted::Removed) => Ok(S3Response::new(DeleteObjectOutput { version_id: i.version_id, ..Default::default() })),
            Err(e) if i.version_id.is_some() && e.kind() == strata_objects::Kind::NotFound && e.to_string().contains("has no version") => {
                Err(s3_error!(NoSuchVersion, "{e}"))
            }
            // S3 answers 204 for a key that is not there.
            Err(e) if e.kind() == strata_objects::Kind::NotFound && !e.to_string().starts_with("bucket ") => {
                Ok(S3Response::new(DeleteObjectOutput::default()))
            }
            Err(e) => Err(s3(e)),
        }
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        self.check_bucket(&i.bucket)?;
        if i.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "at most 1000 keys per DeleteObjects"));
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in i.delete.objects {
            if let Err(e) = strata_meta::names::key(&o.key, self.max_key_length) {
                errors.push(Error { key: Some(o.key), code: Some("InvalidArgument".into()), message: Some(e), ..Default::default() });
                continue;
            }
            match self.service.delete(&i.bucket, &o.key, o.version_id.as_deref()).await {
                Ok(d) => {
                    if !quiet {
                        let marker = match d {
                            strata_meta::Deleted::Marker(v) => Some(v),
                            strata_meta::Deleted::Removed => None,
                        };
                        deleted.push(DeletedObject {
                            key: Some(o.key),
                            delete_marker: marker.as_ref().map(|_| true),
                            delete_marker_version_id: marker,
                            version_id: o.version_id,
                        });
                    }
                }
                Err(e)
                    if e.kind() == strata_objects::Kind::NotFound
                        && !e.to_string().starts_with("bucket ")
                        && !e.to_string().contains("has no version") =>
                {
                    if !quiet {
                        deleted.push(DeletedObject { key: Some(o.key), ..Default::default() });
                    }
                }
                Err(e) => {
                    let e = s3(e);
                    errors.push(Error {
                        key: Some(o.key),
                        code: Some(e.code().as_str().to_string()),
                        message: e.message().map(str::to_string),
                        ..Default::default()
                    })
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput { deleted: Some(deleted), errors: Some(errors), ..Default::default() }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        // CopyObject's If-Match / If-None-Match (on the destination) are
        // headers s3s does not model.
        let etag_header = |name: &str| -> S3Result<Option<ETagCondition>> {
            match req.headers.get(name).map(|v| v.to_str()) {
                None => Ok(None),
                Some(Ok("*")) => Ok(Some(ETagCondition::Any)),
                Some(Ok(v)) => ETag::parse_http_header(v.as_bytes())
                    .map(|t| Some(ETagCondition::ETag(t)))
                    .map_err(|_| s3_error!(InvalidArgument, "{name} is not an ETag")),
                Some(Err(_)) => Err(s3_error!(InvalidArgument, "{name} is not text")),
            }
        };
        let (req_if_none_match, req_if_match) = (etag_header("if-none-match")?, etag_header("if-match")?);
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        let CopySource::Bucket { bucket: sb, key: sk, version_id: sv } = &i.copy_source else {
            return Err(s3_error!(NotImplemented, "only bucket/key copy sources are served"));
        };
        self.check_key(sb, sk)?;
        private_only(i.acl.as_ref().map(|a| a.as_str()))?;
        unsupported!(i, grant_full_control => "a grant", grant_read => "a grant", grant_read_acp => "a grant",
            grant_write_acp => "a grant", sse_customer_algorithm => "SSE-C", sse_customer_key => "SSE-C",
            copy_source_sse_customer_algorithm => "SSE-C", copy_source_sse_customer_key => "SSE-C",
            server_side_encryption => "server-side encryption (Strata encrypts at rest with [storage.encryption])",
            ssekms_key_id => "SSE-KMS", object_lock_mode => "object lock", object_lock_retain_until_date => "object lock",
            object_lock_legal_hold_status => "a legal hold", tagging => "object tagging", tagging_directive => "object tagging",
            website_redirect_location => "a website redirect");
        if i.storage_class.as_ref().is_some_and(|c| c.as_str() != StorageClass::STANDARD) {
            return Err(s3_error!(NotImplemented, "storage classes other than STANDARD are not supported (Strata has tiers)"));
        }
        let replace = match i.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some(MetadataDirective::COPY) => false,
            Some(MetadataDirective::REPLACE) => true,
            Some(other) => return Err(s3_error!(InvalidArgument, "x-amz-metadata-directive {other:?}: use COPY or REPLACE")),
        };
        let head = self
            .copy_source(
                (sb, sk, sv.as_deref()),
                &i.copy_source_if_match,
                &i.copy_source_if_none_match,
                &i.copy_source_if_modified_since,
                &i.copy_source_if_unmodified_since,
            )
            .await?;
        if !replace && sb.as_ref() == i.bucket && sk.as_ref() == i.key && sv.is_none() {
            return Err(s3_error!(InvalidRequest, "copying an object onto itself needs x-amz-metadata-directive: REPLACE"));
        }
        let (attributes, content_type) = if replace {
            let mut a = attributes(i.metadata)?;
            header_attributes(&mut a, [i.cache_control, i.content_disposition, i.content_encoding, i.content_language], i.expires);
            // The same bytes: the same ETag.
            if let Some(t) = head.attributes.get(ETAG_ATTR) {
                a.insert(ETAG_ATTR.into(), t.clone());
            }
            (a, i.content_type.unwrap_or_default())
        } else {
            (head.attributes.clone(), head.content_type.clone())
        };
        // The destination's own conditions, as a put's.
        let condition = req_dst_condition(self, &i.bucket, &i.key, &req_if_none_match, &req_if_match).await?;
        let (_, body) = self.read(sb, sk, Some(&head.version), StoreRange::ALL).await?;
        // No digest promised: a composed object's digest names its parts,
        // not its bytes (the bytes are verified as they are read).
        let spec =
            PutSpec { bucket: i.bucket, key: i.key, content_type, attributes, size: Some(head.size), condition, ..Default::default() };
        let r = self.store_copy(spec, body).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: etag(&r),
                last_modified: Some(timestamp(r.modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn get_bucket_versioning(&self, req: S3Request<GetBucketVersioningInput>) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.get_versioning(req).await
    }

    async fn put_bucket_versioning(&self, req: S3Request<PutBucketVersioningInput>) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.put_versioning(req).await
    }

    async fn list_object_versions(&self, req: S3Request<ListObjectVersionsInput>) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_versions(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_upload(req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        self.put_part(req).await
    }

    async fn upload_part_copy(&self, req: S3Request<UploadPartCopyInput>) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.copy_part(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_upload(req).await
    }

    async fn abort_multipart_upload(&self, req: S3Request<AbortMultipartUploadInput>) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_upload(req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.parts_page(req).await
    }

    async fn list_multipart_uploads(&self, req: S3Request<ListMultipartUploadsInput>) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_uploads(req).await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        self.check_bucket(&i.bucket)?;
        let max = max_keys(i.max_keys)?;
        check_encoding(&i.encoding_type)?;
        let after = match (&i.continuation_token, &i.start_after) {
            (Some(t), _) => Some(decode_token(t)?),
            (None, Some(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let page = list(&*self.service, &i.bucket, i.prefix.as_deref().unwrap_or(""), i.delimiter.as_deref(), after, max).await?;
        let url = i.encoding_type.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: String| if url { urlencode(&s) } else { s };
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(enc(i.prefix.unwrap_or_default())),
            delimiter: i.delimiter.map(enc),
            max_keys: Some(max as i32),
            key_count: Some((page.objects.len() + page.prefixes.len()) as i32),
            is_truncated: Some(page.next.is_some()),
            continuation_token: i.continuation_token,
            next_continuation_token: page.next.as_deref().map(encode_token),
            start_after: i.start_after.map(enc),
            encoding_type: i.encoding_type,
            contents: Some(page.objects.into_iter().map(|r| object(r, &enc)).collect()),
            common_prefixes: Some(page.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(enc(p)) }).collect()),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        self.check_bucket(&i.bucket)?;
        let max = max_keys(i.max_keys)?;
        check_encoding(&i.encoding_type)?;
        let after = i.marker.clone().filter(|m| !m.is_empty());
        let page = list(&*self.service, &i.bucket, i.prefix.as_deref().unwrap_or(""), i.delimiter.as_deref(), after, max).await?;
        let url = i.encoding_type.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: String| if url { urlencode(&s) } else { s };
        // v1 names the next marker only with a delimiter; clients use the last key otherwise.
        let next_marker = if i.delimiter.is_some() { page.next.clone().map(enc) } else { None };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(enc(i.prefix.unwrap_or_default())),
            delimiter: i.delimiter.map(enc),
            marker: Some(enc(i.marker.unwrap_or_default())),
            next_marker,
            max_keys: Some(max as i32),
            is_truncated: Some(page.next.is_some()),
            encoding_type: i.encoding_type,
            contents: Some(page.objects.into_iter().map(|r| object(r, &enc)).collect()),
            common_prefixes: Some(page.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(enc(p)) }).collect()),
            ..Default::default()
        }))
    }
}

/// The most of a refused request's body read (and dropped) before the
/// answer, so the client, still sending, reads the error instead of a
/// reset connection; past it the connection closes.
const DRAIN: usize = 8 << 20;

pub(crate) async fn refuse(mut body: StreamingBlob, e: S3Error) -> S3Error {
    let mut read = 0;
    while read < DRAIN {
        match body.next().await {
            Some(Ok(b)) => read += b.len(),
            _ => break,
        }
    }
    e
}

/// A write's condition from If-None-Match / If-Match on its key.
pub(crate) async fn req_dst_condition(
    g: &Gateway,
    bucket: &str,
    key: &str,
    if_none_match: &Option<ETagCondition>,
    if_match: &Option<ETagCondition>,
) -> S3Result<Condition> {
    Ok(match (if_none_match, if_match) {
        (Some(ETagCondition::Any), _) => Condition::IfAbsent,
        (Some(_), _) => return Err(s3_error!(NotImplemented, "If-None-Match on a write takes only *")),
        (None, Some(want)) => match g.live(bucket, key).await? {
            Some(r) if matches!(want, ETagCondition::Any) || etag(&r).zip(want.as_etag()).is_some_and(|(a, b)| a.value() == b.value()) => {
                Condition::IfVersion(r.version)
            }
            _ => return Err(s3_error!(PreconditionFailed, "If-Match does not match the object's ETag")),
        },
        (None, None) => Condition::Always,
    })
}

fn object(r: ObjectRecord, enc: &impl Fn(String) -> String) -> Object {
    Object {
        e_tag: etag(&r),
        last_modified: Some(timestamp(r.modified_ms)),
        size: Some(r.size as i64),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        key: Some(enc(r.key)),
        ..Default::default()
    }
}

/// One page of a listing: objects and common prefixes in key order, and
/// where the next page starts (the last key or prefix of this one).
struct Page {
    objects: Vec<ObjectRecord>,
    prefixes: Vec<String>,
    next: Option<String>,
}

/// Lists `max` entries after `after`, folding keys that share a prefix up
/// to the delimiter into one common prefix (and skipping past the rest of
/// them in one step).
async fn list(
    service: &dyn ObjectService,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    mut after: Option<String>,
    max: usize,
) -> S3Result<Page> {
    let mut page = Page { objects: Vec::new(), prefixes: Vec::new(), next: None };
    let delimiter = delimiter.filter(|d| !d.is_empty());
    if max == 0 {
        return Ok(page);
    }
    let fold = |key: &str| -> Option<String> {
        let d = delimiter?;
        let rest = key.strip_prefix(prefix)?;
        rest.find(d).map(|at| key[..prefix.len() + at + d.len()].to_string())
    };
    // Resuming after a common prefix (a page's last entry, or a v1 marker
    // naming one) skips every key under it.
    if let Some(a) = &after
        && fold(a).as_deref() == Some(a.as_str())
    {
        after = Some(format!("{a}\u{10FFFF}"));
    }
    loop {
        let batch = service.list(bucket, prefix, after.as_deref(), (max as u32 + 1).min(1000)).await.map_err(s3)?;
        if !batch.missing.is_empty() {
            return Err(s3_error!(ServiceUnavailable, "part of the cluster cannot be asked: {}", batch.missing.join(", ")));
        }
        let exhausted = batch.value.is_empty();
        for r in batch.value {
            after = Some(r.key.clone());
            let folded = fold(&r.key);
            if page.objects.len() + page.prefixes.len() == max {
                // One more entry exists: this page is truncated.
                page.next = Some(
                    page.prefixes.last().cloned().into_iter().chain(page.objects.last().map(|o| o.key.clone())).max().unwrap_or_default(),
                );
                return Ok(page);
            }
            match folded {
                Some(p) => {
                    // Everything under the prefix is one entry: skip past it.
                    after = Some(format!("{p}\u{10FFFF}"));
                    page.prefixes.push(p);
                    break;
                }
                None => page.objects.push(r),
            }
        }
        if exhausted {
            return Ok(page);
        }
    }
}

pub(crate) fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(n.min(1000) as usize),
        None => Ok(1000),
    }
}

pub(crate) fn check_encoding(e: &Option<EncodingType>) -> S3Result<()> {
    match e {
        Some(e) if e.as_str() != EncodingType::URL => Err(s3_error!(InvalidArgument, "encoding-type {:?}: only url is known", e.as_str())),
        _ => Ok(()),
    }
}

/// Continuation tokens are the last key or prefix of the page, hex-encoded
/// so any key survives a round trip through a client.
fn encode_token(after: &str) -> String {
    hex::encode(after.as_bytes())
}

fn decode_token(t: &str) -> S3Result<String> {
    hex::decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not one this server gave"))
}

/// `encoding-type=url`: percent-encode all but unreserved characters and `/`.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
