//! Blobs: HEAD, GET (whole, or one byte range with 206) and DELETE.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use strata_objects::Kind;
use strata_store::Range;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Result, blob_unknown, oci};
use crate::{Registry, names, respond};

/// A blob of `name`, whole or the range asked. A whole GET also carries
/// `Location` (itself, signed when reading needs credentials): Ollama
/// looks for it before its ranged GETs.
pub async fn get(r: &Arc<Registry>, base: &str, name: &str, digest: &str, headers: &HeaderMap, head: bool) -> Result<Response> {
    let d = names::digest(digest)?;
    let key = Registry::key(name, "blobs", &d.to_string());
    let size = match r.service.stat(&r.bucket, &key, None).await {
        Ok((rec, _)) if !rec.is_delete_marker() => rec.size,
        Ok(_) => return Err(blob_unknown(digest)),
        Err(e) if e.kind() == Kind::NotFound => return Err(blob_unknown(digest)),
        Err(e) => return Err(e.into()),
    };
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = match asked.map(|a| byte_range(a, size)) {
        None | Some(Ranged::Ignore) => None,
        Some(Ranged::Bytes(a, b)) => Some((a, b)),
        Some(Ranged::Unsatisfiable) => {
            return Ok(respond(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &[("Content-Range", format!("bytes */{size}")), ("Docker-Content-Digest", digest.to_string())],
                Body::empty(),
            ));
        }
    };
    // Signed unless anyone may read: Ollama's ranged GETs carry no credentials.
    let location = match r.auth.anonymous_pull() {
        true => format!("{base}/v2/{name}/blobs/{digest}"),
        false => format!("{base}/v2/{name}/blobs/{digest}?{}", r.auth.sign(name, digest)),
    };
    let mut hs = vec![
        ("Docker-Content-Digest", digest.to_string()),
        ("Accept-Ranges", "bytes".to_string()),
        ("Content-Type", "application/octet-stream".to_string()),
        ("ETag", format!("\"{digest}\"")),
    ];
    let (status, strata_range, len) = match range {
        Some((a, b)) => {
            hs.push(("Content-Range", format!("bytes {a}-{b}/{size}")));
            (StatusCode::PARTIAL_CONTENT, Range { offset: a, len: Some(b - a + 1) }, b - a + 1)
        }
        None => {
            hs.push(("Location", location));
            (StatusCode::OK, Range::ALL, size)
        }
    };
    hs.push(("Content-Length", len.to_string()));
    if head {
        return Ok(respond(status, &hs, Body::empty()));
    }
    let (_, chunks) = r.service.get(&r.bucket, &key, None, strata_range).await?;
    // A damaged frame ends the body early: the client sees a short read,
    // never bad bytes.
    let body = ReceiverStream::new(chunks).map(|c| c.map_err(|e| std::io::Error::other(e.to_string())));
    Ok(respond(status, &hs, Body::from_stream(body)))
}

/// Removes the blob from `name` (its bytes go once nothing references them).
pub async fn delete(r: &Arc<Registry>, name: &str, digest: &str) -> Result<Response> {
    let d = names::digest(digest)?;
    let _repo = r.lock_repo(name).await;
    if !r.forget(&Registry::key(name, "blobs", &d.to_string())).await? {
        return Err(blob_unknown(digest));
    }
    Ok(respond(StatusCode::ACCEPTED, &[], Body::empty()))
}

pub enum Ranged {
    Bytes(u64, u64),
    Unsatisfiable,
    /// Not one byte range: the whole blob is sent (as the HTTP spec allows).
    Ignore,
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range of a `size`-byte blob.
pub fn byte_range(h: &str, size: u64) -> Ranged {
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return Ranged::Ignore };
    if spec.contains(',') {
        return Ranged::Ignore;
    }
    let Some((a, b)) = spec.split_once('-') else { return Ranged::Ignore };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse::<u64>().ok().map(|n| (size.saturating_sub(n), size.saturating_sub(1), n == 0)),
        (false, true) => a.parse::<u64>().ok().map(|a| (a, size.saturating_sub(1), false)),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some((a, b.min(size.saturating_sub(1)), false)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => Ranged::Ignore,
        Some((_, _, true)) => Ranged::Unsatisfiable,
        Some((a, b, _)) if a >= size || a > b => Ranged::Unsatisfiable,
        Some((a, b, _)) => Ranged::Bytes(a, b),
    }
}

/// Used by uploads: the spec's `Content-Range: a-b` of a chunk.
pub fn chunk_range(h: &str) -> Result<(u64, u64)> {
    let bad =
        || oci(StatusCode::RANGE_NOT_SATISFIABLE, oci_spec::distribution::ErrorCode::BlobUploadInvalid, format!("bad Content-Range {h:?}"));
    let spec = h.trim().trim_start_matches("bytes").trim_start_matches([' ', '=']);
    let spec = spec.split('/').next().unwrap_or_default();
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.trim().parse::<u64>().map_err(|_| bad())?, b.trim().parse::<u64>().map_err(|_| bad())?);
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(h: &str, size: u64) -> Option<(u64, u64)> {
        match byte_range(h, size) {
            Ranged::Bytes(a, b) => Some((a, b)),
            Ranged::Unsatisfiable => Some((u64::MAX, u64::MAX)),
            Ranged::Ignore => None,
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(r("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(r("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(r("bytes=50-", 100), Some((50, 99)));
        assert_eq!(r("bytes=-10", 100), Some((90, 99)));
        assert_eq!(r("bytes=100-", 100), Some((u64::MAX, u64::MAX)));
        assert_eq!(r("bytes=-0", 100), Some((u64::MAX, u64::MAX)));
        assert_eq!(r("bytes=5-1", 100), None);
        assert_eq!(r("bytes=0-1,5-6", 100), None);
        assert_eq!(r("items=0-1", 100), None);
        assert_eq!(chunk_range("0-99").unwrap(), (0, 99));
        assert_eq!(chunk_range("bytes 100-199/*").unwrap(), (100, 199));
        assert!(chunk_range("9-1").is_err());
    }
}
