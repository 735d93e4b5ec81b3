//! Multipart uploads. An upload and its parts are objects of the reserved
//! bucket [`UPLOADS`], so on a cluster they are replicated like any object
//! and any node may take any part. Completion composes the parts into the
//! object (`ObjectService::compose`): on one node O(parts) metadata and no
//! copy of the data.
//!
//! - `u/<bucket>/<upload id>`: the upload, with no bytes; the object's
//!   content type and attributes, and its key under [`KEY_ATTR`];
//! - `p/<upload id>/<part number, 5 digits>`: a part, its MD5 as its ETag.
//!
//! Parts and records go once the upload completes or is aborted; an
//! upload nobody completes stays (listed by ListMultipartUploads) until it
//! is aborted.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use strata_meta::ObjectRecord;
use strata_objects::{Kind, PutSpec};
use strata_service::{ObjectService, PartRef};
use strata_store::Range as StoreRange;

use crate::error::s3;
use crate::gateway::{ETAG_ATTR, Gateway, attributes, etag, header_attributes, refuse, req_dst_condition, timestamp};

/// The bucket holding uploads in progress; S3 requests cannot name it.
pub const UPLOADS: &str = "strata-s3-uploads";
/// The upload record's attribute naming the object's key.
const KEY_ATTR: &str = "s3.upload.key";
/// Set on the record when a completion or an abort has taken the upload
/// (a conditional write, so exactly one of them does, on a cluster too).
const STATE_ATTR: &str = "s3.upload.state";
/// A taken upload older than this was left by a crash: it is listed again
/// and an abort (or the sweep at start) removes what is left of it.
const STALE_MS: i64 = 60_000;
/// S3's least part size, but for the last part.
const MIN_PART: u64 = 5 << 20;
const MAX_PART_NUMBER: i32 = 10_000;

fn record_key(bucket: &str, id: &str) -> String {
    format!("u/{bucket}/{id}")
}

fn parts_prefix(id: &str) -> String {
    format!("p/{id}/")
}

fn part_key(id: &str, n: i32) -> String {
    format!("p/{id}/{n:05}")
}

fn part_number(key: &str) -> Option<i32> {
    key.rsplit('/').next()?.parse().ok()
}

/// A taken upload whose taker is long gone.
fn stale(record: &ObjectRecord) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    now - record.modified_ms > STALE_MS
}

fn no_upload(id: &str) -> s3s::S3Error {
    s3_error!(NoSuchUpload, "no upload {id:?} for this key: it was completed, aborted or never begun")
}

/// The ETag of a part or object, without quotes.
fn tag_of(r: &ObjectRecord) -> String {
    etag(r).map(|t| t.value().to_string()).unwrap_or_default()
}

/// Every stored part of an upload, in part-number order, after `after`.
async fn parts(service: &dyn ObjectService, id: &str, after: Option<i32>, max: usize) -> S3Result<Vec<ObjectRecord>> {
    let mut out = Vec::new();
    let mut cursor = after.map(|n| part_key(id, n));
    while out.len() < max {
        let page = service.list(UPLOADS, &parts_prefix(id), cursor.as_deref(), 1000).await.map_err(s3)?;
        if !page.missing.is_empty() {
            return Err(s3_error!(ServiceUnavailable, "part of the cluster cannot be asked: {}", page.missing.join(", ")));
        }
        let Some(last) = page.value.last() else { break };
        cursor = Some(last.key.clone());
        out.extend(page.value);
    }
    out.truncate(max);
    Ok(out)
}

/// Removes an uploads-bucket key for good (every version).
async fn forget(service: &dyn ObjectService, key: &str) {
    let Ok(versions) = service.versions(UPLOADS, key).await else { return };
    for v in versions.value {
        if let Err(e) = service.delete(UPLOADS, key, Some(&v.version)).await {
            tracing::warn!(key, error = %e, "could not remove a multipart upload's leftover");
        }
    }
}

/// Removes an upload's parts, then its record (so an upload whose removal
/// is cut off stays listed and can be aborted again).
async fn remove_upload(service: &dyn ObjectService, bucket: &str, id: &str) -> S3Result<()> {
    for p in parts(service, id, None, usize::MAX).await? {
        forget(service, &p.key).await;
    }
    forget(service, &record_key(bucket, id)).await;
    Ok(())
}

/// Once, a while after start: removes what is left of uploads a crash
/// cut off while they were being completed or aborted.
pub(crate) async fn sweep(service: std::sync::Arc<dyn ObjectService>) {
    tokio::time::sleep(std::time::Duration::from_millis(STALE_MS as u64 + 1000)).await;
    let mut cursor: Option<String> = None;
    loop {
        let page = match service.list(UPLOADS, "u/", cursor.as_deref(), 1000).await {
            Ok(p) if !p.value.is_empty() => p.value,
            _ => return,
        };
        cursor = page.last().map(|r| r.key.clone());
        for r in page.iter().filter(|r| r.attributes.contains_key(STATE_ATTR) && stale(r)) {
            let Some((bucket, id)) = r.key.strip_prefix("u/").and_then(|k| k.rsplit_once('/')) else { continue };
            tracing::info!(upload = %id, bucket, "removing what a cut-off completion or abort left of an upload");
            if let Err(e) = remove_upload(&*service, bucket, id).await {
                tracing::warn!(upload = %id, error = %e, "could not remove a cut-off upload");
            }
        }
    }
}

/// Removes every upload of a deleted bucket.
pub(crate) async fn drop_uploads(service: std::sync::Arc<dyn ObjectService>, bucket: String) {
    let _ = tokio::spawn(async move {
        let scope = format!("u/{bucket}/");
        let mut cursor: Option<String> = None;
        loop {
            let page = match service.list(UPLOADS, &scope, cursor.as_deref(), 1000).await {
                Ok(p) if !p.value.is_empty() => p.value,
                _ => return,
            };
            cursor = page.last().map(|r| r.key.clone());
            for r in page {
                let id = r.key[scope.len()..].to_string();
                if let Err(e) = remove_upload(&*service, &bucket, &id).await {
                    tracing::warn!(upload = %id, error = %e, "could not remove an upload of a deleted bucket");
                    return;
                }
            }
        }
    })
    .await;
}

impl Gateway {
    async fn ensure_uploads_bucket(&self) -> S3Result<()> {
        self.uploads_ready
            .get_or_try_init(|| async {
                match self.service.create_bucket(UPLOADS, None).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == Kind::Exists => Ok(()),
                    Err(e) => Err(s3(e)),
                }
            })
            .await
            .map(|_| ())
    }

    /// The record of an upload of this bucket and key still open.
    async fn upload(&self, bucket: &str, key: &str, id: &str) -> S3Result<ObjectRecord> {
        let r = self.any_upload(bucket, key, id).await?;
        if r.attributes.contains_key(STATE_ATTR) {
            return Err(no_upload(id));
        }
        Ok(r)
    }

    /// The record of an upload of this bucket and key, open or taken.
    async fn any_upload(&self, bucket: &str, key: &str, id: &str) -> S3Result<ObjectRecord> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(no_upload(id));
        }
        match self.service.stat(UPLOADS, &record_key(bucket, id), None).await {
            Ok((r, _)) if r.digest.is_some() && r.attributes.get(KEY_ATTR).and_then(|v| v.as_str()) == Some(key) => Ok(r),
            Ok(_) => Err(no_upload(id)),
            Err(e) if e.kind() == Kind::NotFound => Err(no_upload(id)),
            Err(e) => Err(s3(e)),
        }
    }

    /// Takes an upload for a completion or an abort: the record again,
    /// marked, if it is still the version read. Fails if another took it.
    async fn take(&self, record: &ObjectRecord, state: Option<&str>) -> S3Result<ObjectRecord> {
        let mut attributes = record.attributes.clone();
        match state {
            Some(s) => attributes.insert(STATE_ATTR.into(), s.into()),
            None => attributes.remove(STATE_ATTR),
        };
        let spec = PutSpec {
            bucket: UPLOADS.into(),
            key: record.key.clone(),
            content_type: record.content_type.clone(),
            attributes,
            size: Some(0),
            condition: strata_meta::Condition::IfVersion(record.version.clone()),
            ..Default::default()
        };
        match self.service.put(spec, Box::pin(futures::stream::empty())).await {
            Ok(r) => Ok(r),
            Err(e) if e.to_string().contains("condition failed") => {
                Err(s3_error!(NoSuchUpload, "the upload was completed or aborted meanwhile"))
            }
            Err(e) => Err(s3(e)),
        }
    }

    pub(crate) async fn create_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        crate::gateway::private_only(i.acl.as_ref().map(|a| a.as_str()))?;
        crate::gateway::unsupported!(i, grant_full_control => "a grant", grant_read => "a grant",
            grant_read_acp => "a grant", grant_write_acp => "a grant", sse_customer_algorithm => "SSE-C", sse_customer_key => "SSE-C",
            server_side_encryption => "server-side encryption (Strata encrypts at rest with [storage.encryption])",
            ssekms_key_id => "SSE-KMS", object_lock_mode => "object lock", object_lock_retain_until_date => "object lock",
            object_lock_legal_hold_status => "a legal hold", tagging => "object tagging",
            website_redirect_location => "a website redirect");
        if i.storage_class.as_ref().is_some_and(|c| c.as_str() != StorageClass::STANDARD) {
            return Err(s3_error!(NotImplemented, "storage classes other than STANDARD are not supported (Strata has tiers)"));
        }
        // The bucket must exist now, not only at completion.
        self.service.list(&i.bucket, "", None, 1).await.map_err(s3)?;
        self.ensure_uploads_bucket().await?;
        let mut attrs = attributes(i.metadata)?;
        header_attributes(&mut attrs, [i.cache_control, i.content_disposition, i.content_encoding, i.content_language], i.expires);
        attrs.insert(KEY_ATTR.into(), i.key.clone().into());
        let id = format!("{:032x}", rand::random::<u128>());
        let spec = PutSpec {
            bucket: UPLOADS.into(),
            key: record_key(&i.bucket, &id),
            content_type: i.content_type.unwrap_or_default(),
            attributes: attrs,
            size: Some(0),
            ..Default::default()
        };
        self.service.put(spec, Box::pin(futures::stream::empty())).await.map_err(s3)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    fn check_part_number(n: i32) -> S3Result<()> {
        if (1..=MAX_PART_NUMBER).contains(&n) {
            Ok(())
        } else {
            Err(s3_error!(InvalidArgument, "part number {n}: use 1 to {MAX_PART_NUMBER}"))
        }
    }

    pub(crate) async fn put_part(&self, mut req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let body = req.input.body.take().ok_or_else(|| s3_error!(IncompleteBody, "a part needs a body"))?;
        let trailer = req.headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()).map(str::to_string);
        let trailers = req.trailing_headers;
        let i = req.input;
        let checked = async {
            self.check_key(&i.bucket, &i.key)?;
            Self::check_part_number(i.part_number)?;
            crate::gateway::unsupported!(i, sse_customer_algorithm => "SSE-C", sse_customer_key => "SSE-C");
            self.upload(&i.bucket, &i.key, &i.upload_id).await
        };
        if let Err(e) = checked.await {
            return Err(refuse(body, e).await);
        }
        let spec = PutSpec {
            bucket: UPLOADS.into(),
            key: part_key(&i.upload_id, i.part_number),
            size: i.content_length.map(|n| n as u64),
            late: Some(Default::default()),
            ..Default::default()
        };
        let sums = Checksum {
            checksum_crc32: i.checksum_crc32,
            checksum_crc32c: i.checksum_crc32c,
            checksum_sha1: i.checksum_sha1,
            checksum_sha256: i.checksum_sha256,
            checksum_crc64nvme: i.checksum_crc64nvme,
            ..Default::default()
        };
        let promises = crate::verify::Promises { content_md5: i.content_md5, sums: sums.clone(), algorithm: i.checksum_algorithm, trailer };
        let failure = crate::verify::Failure::default();
        let body = match crate::verify::Checked::new(body, promises, trailers, failure.clone(), spec.late.clone()) {
            Ok(b) => b,
            Err((body, e)) => return Err(refuse(body, e).await),
        };
        let r = self.store(spec, body, failure).await?;
        // A completion or an abort that took the upload meanwhile did not
        // see this part: it goes, and the client hears so.
        if let Err(e) = self.upload(&i.bucket, &i.key, &i.upload_id).await {
            let _ = self.service.delete(UPLOADS, &r.key, Some(&r.version)).await;
            return Err(e);
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: etag(&r),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    pub(crate) async fn copy_part(&self, req: S3Request<UploadPartCopyInput>) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        Self::check_part_number(i.part_number)?;
        crate::gateway::unsupported!(i, sse_customer_algorithm => "SSE-C", sse_customer_key => "SSE-C",
            copy_source_sse_customer_algorithm => "SSE-C", copy_source_sse_customer_key => "SSE-C");
        let CopySource::Bucket { bucket: sb, key: sk, version_id: sv } = &i.copy_source else {
            return Err(s3_error!(NotImplemented, "only bucket/key copy sources are served"));
        };
        self.check_key(sb, sk)?;
        self.upload(&i.bucket, &i.key, &i.upload_id).await?;
        let head = self
            .copy_source(
                (sb, sk, sv.as_deref()),
                &i.copy_source_if_match,
                &i.copy_source_if_none_match,
                &i.copy_source_if_modified_since,
                &i.copy_source_if_unmodified_since,
            )
            .await?;
        let range = match &i.copy_source_range {
            None => StoreRange::ALL,
            Some(text) => {
                // Only `bytes=first-last`, within the object.
                let parsed = text.strip_prefix("bytes=").and_then(|r| r.split_once('-')).and_then(|(a, b)| {
                    let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
                    (a <= b && b < head.size).then_some((a, b))
                });
                let Some((a, b)) = parsed else {
                    return Err(s3_error!(
                        InvalidArgument,
                        "x-amz-copy-source-range {text:?}: give bytes=FIRST-LAST within the object's {} bytes",
                        head.size
                    ));
                };
                StoreRange { offset: a, len: Some(b - a + 1) }
            }
        };
        let (_, body) = self.read(sb, sk, Some(&head.version), range).await?;
        let spec = PutSpec {
            bucket: UPLOADS.into(),
            key: part_key(&i.upload_id, i.part_number),
            size: Some(range.len.unwrap_or(head.size)),
            late: Some(Default::default()),
            ..Default::default()
        };
        let failure = crate::verify::Failure::default();
        let body = crate::verify::Checked::new(body, Default::default(), None, failure.clone(), spec.late.clone()).map_err(|(_, e)| e)?;
        let r = self.store(spec, body, failure).await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult { e_tag: etag(&r), last_modified: Some(timestamp(r.modified_ms)), ..Default::default() }),
            copy_source_version_id: sv.as_ref().map(|_| head.version.clone()),
            ..Default::default()
        }))
    }

    pub(crate) async fn complete_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        crate::gateway::unsupported!(i, sse_customer_algorithm => "SSE-C", sse_customer_key => "SSE-C");
        let upload = self.upload(&i.bucket, &i.key, &i.upload_id).await?;
        let wanted = i.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if wanted.is_empty() {
            return Err(s3_error!(MalformedXML, "the request names no part"));
        }
        let condition = req_dst_condition(self, &i.bucket, &i.key, &i.if_none_match, &i.if_match).await?;
        // Taken first: a part stored after this sees it and goes; a second
        // completion or an abort finds the upload gone.
        let taken = self.take(&upload, Some("completing")).await?;
        match self.complete_taken(&i.bucket, &i.key, &i.upload_id, upload, &wanted, condition).await {
            Ok(r) => Ok(S3Response::new(CompleteMultipartUploadOutput {
                bucket: Some(i.bucket.clone()),
                key: Some(i.key.clone()),
                e_tag: etag(&r),
                version_id: Some(r.version.clone()),
                location: Some(format!("/{}/{}", i.bucket, i.key)),
                ..Default::default()
            })),
            Err(e) => {
                // Refused (a part missing, a condition): the upload is open again.
                if let Err(again) = self.take(&taken, None).await {
                    tracing::warn!(upload = %i.upload_id, error = %again, "could not reopen an upload after a refused completion");
                }
                Err(e)
            }
        }
    }

    /// Checks the parts the client names against those stored and makes
    /// the object of them; then removes the upload.
    async fn complete_taken(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        upload: ObjectRecord,
        wanted: &[CompletedPart],
        condition: strata_meta::Condition,
    ) -> S3Result<ObjectRecord> {
        let stored = parts(&*self.service, id, None, usize::MAX).await?;
        let by_number: std::collections::HashMap<i32, &ObjectRecord> =
            stored.iter().filter_map(|r| Some((part_number(&r.key)?, r))).collect();
        let mut refs = Vec::with_capacity(wanted.len());
        let mut md5s = Vec::with_capacity(wanted.len() * 16);
        let mut last = 0;
        for (at, p) in wanted.iter().enumerate() {
            let n = p.part_number.ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
            if n <= last {
                return Err(s3_error!(InvalidPartOrder, "part numbers must rise: {n} follows {last}"));
            }
            last = n;
            let Some(r) = by_number.get(&n) else {
                return Err(s3_error!(InvalidPart, "part {n} was not uploaded"));
            };
            let tag = tag_of(r);
            if p.e_tag.as_ref().is_none_or(|t| t.value() != tag) {
                return Err(s3_error!(InvalidPart, "part {n}'s ETag is {tag}, not the one given"));
            }
            if r.size < MIN_PART && at + 1 < wanted.len() {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {n} holds {} bytes; every part but the last needs at least {MIN_PART}",
                    r.size
                ));
            }
            md5s.extend(hex::decode(&tag).map_err(|_| s3_error!(InternalError, "part {n} has no MD5 ETag"))?);
            let Some(digest) = r.digest else { return Err(s3_error!(InvalidPart, "part {n} was not uploaded")) };
            refs.push(PartRef { bucket: UPLOADS.into(), key: r.key.clone(), version: r.version.clone(), digest, size: r.size });
        }
        let tag = format!("{}-{}", hex::encode(<s3s::crypto::Md5 as s3s::crypto::Checksum>::checksum(&md5s)), refs.len());
        let mut attrs: strata_meta::Attributes = upload.attributes.into_iter().filter(|(k, _)| k != KEY_ATTR && k != ETAG_ATTR).collect();
        attrs.insert(ETAG_ATTR.into(), tag.into());
        let spec = PutSpec {
            bucket: bucket.into(),
            key: key.into(),
            content_type: upload.content_type,
            attributes: attrs,
            condition,
            ..Default::default()
        };
        let r = self.service.compose(spec, &refs).await.map_err(s3)?;
        // The parts' records go after the answer (O(parts) deletes); the
        // object holds the parts' bytes already. The upload's record goes
        // last, so an upload whose removal is cut off stays listed.
        let (service, bucket, id) = (self.service.clone(), bucket.to_string(), id.to_string());
        tokio::spawn(async move {
            if let Err(e) = remove_upload(&*service, &bucket, &id).await {
                tracing::warn!(upload = %id, error = %e, "could not remove a completed upload's parts");
            }
        });
        Ok(r)
    }

    pub(crate) async fn abort_upload(&self, req: S3Request<AbortMultipartUploadInput>) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        let record = self.any_upload(&i.bucket, &i.key, &i.upload_id).await?;
        // One a completion took is left alone until it is stale (a crash).
        if record.attributes.contains_key(STATE_ATTR) && !stale(&record) {
            return Err(no_upload(&i.upload_id));
        }
        self.take(&record, Some("aborting")).await?;
        remove_upload(&*self.service, &i.bucket, &i.upload_id).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(crate) async fn parts_page(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        self.check_key(&i.bucket, &i.key)?;
        self.upload(&i.bucket, &i.key, &i.upload_id).await?;
        let max = match i.max_parts {
            Some(n) if n < 0 => return Err(s3_error!(InvalidArgument, "max-parts must not be negative")),
            Some(n) => n.min(1000) as usize,
            None => 1000,
        };
        let mut page = parts(&*self.service, &i.upload_id, i.part_number_marker.filter(|n| *n > 0), max + 1).await?;
        let truncated = page.len() > max;
        page.truncate(max);
        let next = if truncated { page.last().and_then(|r| part_number(&r.key)) } else { None };
        let parts = page
            .into_iter()
            .map(|r| Part {
                part_number: part_number(&r.key),
                e_tag: etag(&r),
                size: Some(r.size as i64),
                last_modified: Some(timestamp(r.modified_ms)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: i.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            parts: Some(parts),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_uploads(&self, req: S3Request<ListMultipartUploadsInput>) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        self.check_bucket(&i.bucket)?;
        self.service.list(&i.bucket, "", None, 1).await.map_err(s3)?;
        crate::gateway::check_encoding(&i.encoding_type)?;
        let max = crate::gateway::max_keys(i.max_uploads)?;
        let prefix = i.prefix.clone().unwrap_or_default();
        // Every upload of the bucket, as (key, id, initiated), in S3's order.
        let mut all = Vec::new();
        let scope = format!("u/{}/", i.bucket);
        let mut cursor: Option<String> = None;
        loop {
            let page = self.service.list(UPLOADS, &scope, cursor.as_deref(), 1000).await;
            let page = match page {
                Ok(p) => p.value,
                Err(e) if e.kind() == Kind::NotFound => Vec::new(), // no upload ever began
                Err(e) => return Err(s3(e)),
            };
            let Some(last) = page.last() else { break };
            cursor = Some(last.key.clone());
            for r in page {
                // One a completion or an abort is finishing is not listed.
                if r.attributes.contains_key(STATE_ATTR) && !stale(&r) {
                    continue;
                }
                let Some(key) = r.attributes.get(KEY_ATTR).and_then(|v| v.as_str()) else { continue };
                if key.starts_with(&prefix) {
                    all.push((key.to_string(), r.key[scope.len()..].to_string(), r.created_ms));
                }
            }
        }
        all.sort();
        let delimiter = i.delimiter.clone().filter(|d| !d.is_empty());
        let fold = |key: &str| -> Option<String> {
            let d = delimiter.as_deref()?;
            key.get(prefix.len()..)?.find(d).map(|at| key[..prefix.len() + at + d.len()].to_string())
        };
        // A marker naming a common prefix resumes past every key under it.
        let past_prefix = i.key_marker.as_ref().filter(|m| fold(m).as_deref() == Some(m.as_str()));
        let after = |(k, id, _): &(String, String, i64)| match (&i.key_marker, &i.upload_id_marker) {
            _ if past_prefix.is_some_and(|p| k.starts_with(p.as_str())) => false,
            (Some(m), Some(u)) if !m.is_empty() => k > m || (k == m && id > u),
            (Some(m), _) if !m.is_empty() => k > m,
            _ => true,
        };
        let (mut uploads, mut prefixes) = (Vec::new(), Vec::<String>::new());
        let mut next = None;
        for u in all.into_iter().filter(after) {
            let folded = fold(&u.0);
            if folded.as_ref().is_some_and(|p| prefixes.last() == Some(p)) {
                continue;
            }
            if uploads.len() + prefixes.len() == max {
                next = Some(u);
                break;
            }
            match folded {
                Some(p) => prefixes.push(p),
                None => uploads.push(u),
            }
        }
        let truncated = next.is_some();
        // The page's last entry: an upload, or a common prefix after it.
        let (next_key, next_id) = match (truncated, uploads.last(), prefixes.last()) {
            (false, ..) => (None, None),
            (true, Some((k, id, _)), p) if p.is_none_or(|p| p < k) => (Some(k.clone()), Some(id.clone())),
            (true, _, p) => (p.cloned(), None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: i.prefix,
            delimiter: i.delimiter,
            key_marker: i.key_marker,
            upload_id_marker: i.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            encoding_type: i.encoding_type,
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|(key, id, at)| MultipartUpload {
                        key: Some(key),
                        upload_id: Some(id),
                        initiated: Some(timestamp(at)),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            common_prefixes: Some(prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            ..Default::default()
        }))
    }
}
