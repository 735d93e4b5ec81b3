//! Bucket versioning as S3 shows it: the setting per bucket, and every
//! version and delete marker of a bucket's keys in one listing.
//!
//! "Suspended" is Strata's unversioned mode: a new write replaces the live
//! version, and versions kept before stay. Version ids are Strata's (there
//! is no `null` version).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use strata_meta::ObjectRecord;

use crate::error::s3;
use crate::gateway::{Gateway, check_encoding, etag, max_keys, timestamp, urlencode};

/// One entry of a versions listing.
enum Entry {
    Version(ObjectRecord),
    Prefix(String),
}

impl Gateway {
    pub(crate) async fn get_versioning(&self, req: S3Request<GetBucketVersioningInput>) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.check_bucket(&req.input.bucket)?;
        let on = self.service.versioning(&req.input.bucket).await.map_err(s3)?;
        let status = if on { BucketVersioningStatus::ENABLED } else { BucketVersioningStatus::SUSPENDED };
        Ok(S3Response::new(GetBucketVersioningOutput { status: Some(BucketVersioningStatus::from_static(status)), ..Default::default() }))
    }

    pub(crate) async fn put_versioning(&self, req: S3Request<PutBucketVersioningInput>) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let i = req.input;
        self.check_bucket(&i.bucket)?;
        let c = i.versioning_configuration;
        if c.mfa_delete.as_ref().is_some_and(|m| m.as_str() == MFADelete::ENABLED) || i.mfa.is_some() {
            return Err(s3_error!(NotImplemented, "MFA delete is not supported by this gateway"));
        }
        let on = match c.status.as_ref().map(|s| s.as_str()) {
            Some(BucketVersioningStatus::ENABLED) => true,
            Some(BucketVersioningStatus::SUSPENDED) => false,
            Some(other) => return Err(s3_error!(MalformedXML, "versioning status {other:?}: use Enabled or Suspended")),
            None => return Err(s3_error!(MalformedXML, "the versioning configuration has no Status")),
        };
        self.service.set_versioning(&i.bucket, on).await.map_err(s3)?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    /// Keys in order, each key's versions newest first, resuming after
    /// (key marker, version id marker); a common prefix counts as one entry.
    pub(crate) async fn list_versions(&self, req: S3Request<ListObjectVersionsInput>) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let i = req.input;
        self.check_bucket(&i.bucket)?;
        check_encoding(&i.encoding_type)?;
        let max = max_keys(i.max_keys)?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let delimiter = i.delimiter.clone().filter(|d| !d.is_empty());
        let fold = |key: &str| -> Option<String> {
            let d = delimiter.as_deref()?;
            key[prefix.len()..].find(d).map(|at| key[..prefix.len() + at + d.len()].to_string())
        };
        let key_marker = i.key_marker.clone().filter(|k| !k.is_empty());
        let vid_marker = i.version_id_marker.clone().filter(|v| !v.is_empty());
        // One entry past the page tells whether it is truncated.
        let mut page: Vec<Entry> = Vec::new();
        // A version id marker resumes inside its key.
        if let (Some(k), Some(v)) = (&key_marker, &vid_marker)
            && fold(k).is_none()
        {
            let versions = self.versions_of(&i.bucket, k).await?;
            let Some(at) = versions.iter().position(|r| &r.version == v) else {
                return Err(s3_error!(InvalidArgument, "version id marker {v:?} is not a version of {k:?}"));
            };
            page.extend(versions.into_iter().skip(at + 1).map(Entry::Version));
        }
        // Past the marker: past every key under a common prefix it names.
        let mut cursor = key_marker.clone().map(|k| if fold(&k).as_deref() == Some(k.as_str()) { format!("{k}\u{10FFFF}") } else { k });
        'pages: while page.len() <= max {
            let batch = self.service.list_newest(&i.bucket, &prefix, cursor.as_deref(), 1000).await.map_err(s3)?;
            if !batch.missing.is_empty() {
                return Err(s3_error!(ServiceUnavailable, "part of the cluster cannot be asked: {}", batch.missing.join(", ")));
            }
            if batch.value.is_empty() {
                break;
            }
            for r in batch.value {
                cursor = Some(r.key.clone());
                if let Some(p) = fold(&r.key) {
                    cursor = Some(format!("{p}\u{10FFFF}"));
                    page.push(Entry::Prefix(p));
                    continue 'pages; // the listing resumes past the prefix
                }
                page.extend(self.versions_of(&i.bucket, &r.key).await?.into_iter().map(Entry::Version));
                if page.len() > max {
                    break 'pages;
                }
            }
        }
        let truncated = page.len() > max;
        page.truncate(max);
        let (next_key, next_vid) = match page.last() {
            Some(Entry::Version(r)) if truncated => (Some(r.key.clone()), Some(r.version.clone())),
            Some(Entry::Prefix(p)) if truncated => (Some(p.clone()), None),
            _ => (None, None),
        };
        let url = i.encoding_type.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: String| if url { urlencode(&s) } else { s };
        let (mut versions, mut markers, mut prefixes) = (Vec::new(), Vec::new(), Vec::new());
        for e in page {
            match e {
                Entry::Prefix(p) => prefixes.push(CommonPrefix { prefix: Some(enc(p)) }),
                Entry::Version(r) if r.is_delete_marker() => markers.push(DeleteMarkerEntry {
                    is_latest: Some(r.latest),
                    last_modified: Some(timestamp(r.modified_ms)),
                    version_id: Some(r.version),
                    key: Some(enc(r.key)),
                    ..Default::default()
                }),
                Entry::Version(r) => versions.push(ObjectVersion {
                    e_tag: etag(&r),
                    is_latest: Some(r.latest),
                    last_modified: Some(timestamp(r.modified_ms)),
                    size: Some(r.size as i64),
                    storage_class: Some(ObjectVersionStorageClass::from_static(ObjectVersionStorageClass::STANDARD)),
                    version_id: Some(r.version),
                    key: Some(enc(r.key)),
                    ..Default::default()
                }),
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(enc(prefix)),
            delimiter: i.delimiter.map(enc),
            key_marker: i.key_marker,
            version_id_marker: i.version_id_marker,
            max_keys: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key.map(enc),
            next_version_id_marker: next_vid,
            encoding_type: i.encoding_type,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }

    /// A key's versions, newest first (none if it has gone meanwhile).
    async fn versions_of(&self, bucket: &str, key: &str) -> S3Result<Vec<ObjectRecord>> {
        match self.service.versions(bucket, key).await {
            Ok(v) if v.missing.is_empty() => Ok(v.value),
            Ok(v) => Err(s3_error!(ServiceUnavailable, "part of the cluster cannot be asked: {}", v.missing.join(", "))),
            Err(e) if e.kind() == strata_objects::Kind::NotFound && !e.to_string().starts_with("bucket ") => Ok(Vec::new()),
            Err(e) => Err(s3(e)),
        }
    }
}
