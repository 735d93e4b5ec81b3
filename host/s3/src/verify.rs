//! What a put's body must match besides its signature: `Content-MD5` and
//! the `x-amz-checksum-*` values (in headers, or in the trailers of a
//! streaming upload). They are checked as the bytes stream by, and a
//! mismatch ends the stream with an error, so the put fails and nothing is
//! stored. The first error is kept with its S3 code for the answer.
//!
//! The body's MD5 is always computed: it is the object's ETag, as S3
//! clients expect (s3cmd and rclone check it), left in the put's late
//! attributes once the body has ended.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use futures::Stream;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::{Checksum, ChecksumAlgorithm, StreamingBlob};
use s3s::{S3Error, S3ErrorCode, S3Result, TrailingHeaders, s3_error};

/// The failure that ended a body, for the answer.
pub type Failure = Arc<Mutex<Option<S3Error>>>;

pub struct Checked {
    inner: StreamingBlob,
    hasher: ChecksumHasher,
    md5: s3s::crypto::Md5,
    /// `Content-MD5`, base64.
    want_md5: Option<String>,
    /// Where the ETag goes once the body has ended and checked out.
    late: Option<strata_objects::Late>,
    want: Checksum,
    trailers: Option<TrailingHeaders>,
    failure: Failure,
    done: bool,
}

/// What the request promised of its body.
#[derive(Default)]
pub struct Promises {
    pub content_md5: Option<String>,
    pub sums: Checksum,
    pub algorithm: Option<ChecksumAlgorithm>,
    /// `x-amz-trailer`: the checksum a streaming upload sends after its body.
    pub trailer: Option<String>,
}

impl Checked {
    /// The body back with the error when the promises themselves are bad.
    pub fn new(
        inner: StreamingBlob,
        p: Promises,
        trailers: Option<TrailingHeaders>,
        failure: Failure,
        late: Option<strata_objects::Late>,
    ) -> Result<Checked, (StreamingBlob, S3Error)> {
        match Self::hashers(&p) {
            Ok((hasher, want_md5)) => {
                Ok(Checked { inner, hasher, md5: s3s::crypto::Md5::new(), want_md5, late, want: p.sums, trailers, failure, done: false })
            }
            Err(e) => Err((inner, e)),
        }
    }

    fn hashers(p: &Promises) -> S3Result<(ChecksumHasher, Option<String>)> {
        let md5 = match &p.content_md5 {
            Some(m) => match base64::engine::general_purpose::STANDARD.decode(m.trim()) {
                Ok(b) if b.len() == 16 => Some(m.trim().to_string()),
                _ => return Err(s3_error!(InvalidDigest, "Content-MD5 is not the base64 of 16 bytes")),
            },
            None => None,
        };
        let mut hasher = ChecksumHasher::default();
        let want = &p.sums;
        let mut enable = |name: &str| -> S3Result<()> {
            match name {
                "crc32" => hasher.crc32 = Some(Default::default()),
                "crc32c" => hasher.crc32c = Some(Default::default()),
                "sha1" => hasher.sha1 = Some(Default::default()),
                "sha256" => hasher.sha256 = Some(Default::default()),
                "crc64nvme" => hasher.crc64nvme = Some(Default::default()),
                other => return Err(s3_error!(InvalidRequest, "checksum algorithm {other:?} is not one S3 knows")),
            }
            Ok(())
        };
        for (name, v) in [
            ("crc32", &want.checksum_crc32),
            ("crc32c", &want.checksum_crc32c),
            ("sha1", &want.checksum_sha1),
            ("sha256", &want.checksum_sha256),
            ("crc64nvme", &want.checksum_crc64nvme),
        ] {
            if v.is_some() {
                enable(name)?;
            }
        }
        if let Some(a) = &p.algorithm {
            enable(&a.as_str().to_ascii_lowercase())?;
        }
        if let Some(t) = &p.trailer {
            for name in t.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match name.to_ascii_lowercase().strip_prefix("x-amz-checksum-") {
                    Some(alg) => enable(alg)?,
                    None => return Err(s3_error!(InvalidRequest, "x-amz-trailer {name:?} is not a checksum")),
                }
            }
        }
        Ok((hasher, md5))
    }

    fn fail(&self, e: S3Error) -> String {
        let msg = e.message().unwrap_or("the body is not what the request promised").to_string();
        self.failure.lock().expect("failure").get_or_insert(e);
        msg
    }

    /// At the end of the body: every promise kept?
    fn verify(&mut self) -> Result<(), S3Error> {
        let md5 = std::mem::replace(&mut self.md5, s3s::crypto::Md5::new()).finalize();
        if let Some(want) = self.want_md5.take()
            && base64::engine::general_purpose::STANDARD.encode(md5) != want
        {
            return Err(s3_error!(BadDigest, "the body does not match its Content-MD5"));
        }
        if let Some(trailers) = self.trailers.as_ref().and_then(TrailingHeaders::take) {
            let value = |n: &str| trailers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
            let w = &mut self.want;
            w.checksum_crc32 = value("x-amz-checksum-crc32").or(w.checksum_crc32.take());
            w.checksum_crc32c = value("x-amz-checksum-crc32c").or(w.checksum_crc32c.take());
            w.checksum_sha1 = value("x-amz-checksum-sha1").or(w.checksum_sha1.take());
            w.checksum_sha256 = value("x-amz-checksum-sha256").or(w.checksum_sha256.take());
            w.checksum_crc64nvme = value("x-amz-checksum-crc64nvme").or(w.checksum_crc64nvme.take());
        }
        let got = std::mem::take(&mut self.hasher).finalize();
        for (name, got, want) in [
            ("CRC32", got.checksum_crc32, &self.want.checksum_crc32),
            ("CRC32C", got.checksum_crc32c, &self.want.checksum_crc32c),
            ("SHA1", got.checksum_sha1, &self.want.checksum_sha1),
            ("SHA256", got.checksum_sha256, &self.want.checksum_sha256),
            ("CRC64NVME", got.checksum_crc64nvme, &self.want.checksum_crc64nvme),
        ] {
            match (got, want) {
                (Some(g), Some(w)) if g != *w => {
                    return Err(s3_error!(BadDigest, "the body's {name} checksum is {g}, not the {w} the request gave"));
                }
                (Some(_), None) => return Err(s3_error!(InvalidRequest, "the request named a {name} checksum but sent no value")),
                _ => {}
            }
        }
        if let Some(late) = &self.late {
            late.lock().expect("late attributes").insert(crate::gateway::ETAG_ATTR.into(), hex::encode(md5).into());
        }
        Ok(())
    }
}

impl Stream for Checked {
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.hasher.update(&b);
                self.md5.update(&b);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                // s3s's own checks (payload hash, chunk signatures) keep their code.
                let e = match e.downcast::<S3Error>() {
                    Ok(s3) => *s3,
                    Err(other) => S3Error::with_message(S3ErrorCode::IncompleteBody, format!("the request body broke off: {other}")),
                };
                Poll::Ready(Some(Err(self.fail(e))))
            }
            Poll::Ready(None) => {
                self.done = true;
                match self.verify() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(self.fail(e)))),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
