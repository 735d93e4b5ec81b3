//! Blob uploads: monolithic (`POST ?digest=` with the bytes), chunked
//! (`POST`, `PATCH`es in order, `PUT ?digest=`), and cross-repository
//! mounts. A chunked upload's bytes wait in a file under the upload
//! directory; the final `PUT` stores them through the object service,
//! which checks the digest: nothing is visible before it matched.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_spec::distribution::ErrorCode;
use strata_meta::Condition;
use strata_objects::{Kind, PutSpec};
use strata_store::Digest;
use tokio::io::AsyncWriteExt;

use crate::error::{RegistryError, Result, digest_invalid, oci, upload_unknown};
use crate::{Registry, blobs, names, query_param, respond};

/// Sessions not touched for this long are dropped.
const IDLE: Duration = Duration::from_secs(3600);
/// Sessions open at once; more answer 429 until some finish or expire.
const MAX_SESSIONS: usize = 1000;
/// A request body that sends nothing for this long is cut off.
const BODY_IDLE: Duration = Duration::from_secs(60);

struct Session {
    name: String,
    size: u64,
    touched: Instant,
}

pub struct Uploads {
    dir: PathBuf,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

impl Uploads {
    /// Sessions do not outlive the process: what a previous run left is removed.
    pub fn open(dir: PathBuf) -> std::result::Result<Self, String> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("registry uploads: cannot create {}: {e}", dir.display()))?;
        Ok(Self { dir, sessions: Default::default() })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn get(&self, name: &str, id: &str) -> Result<Arc<tokio::sync::Mutex<Session>>> {
        let s = self.sessions.lock().expect("sessions").get(id).cloned().ok_or_else(|| upload_unknown(id))?;
        if s.try_lock().is_ok_and(|s| s.name != name) {
            return Err(upload_unknown(id));
        }
        Ok(s)
    }

    fn remove(&self, id: &str) {
        self.sessions.lock().expect("sessions").remove(id);
        let _ = std::fs::remove_file(self.path(id));
    }

    fn sweep(&self) {
        let stale: Vec<String> = self
            .sessions
            .lock()
            .expect("sessions")
            .iter()
            .filter(|(_, s)| s.try_lock().is_ok_and(|s| s.touched.elapsed() > IDLE))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.remove(&id);
        }
    }
}

fn location(base: &str, name: &str, id: &str) -> String {
    format!("{base}/v2/{name}/blobs/uploads/{id}")
}

fn accepted(base: &str, name: &str, id: &str, size: u64) -> Response {
    let range = if size == 0 { "0-0".to_string() } else { format!("0-{}", size - 1) };
    respond(
        StatusCode::ACCEPTED,
        &[("Location", location(base, name, id)), ("Range", range), ("Docker-Upload-UUID", id.to_string()), ("Content-Length", "0".into())],
        Body::empty(),
    )
}

fn created(base: &str, name: &str, digest: &str) -> Response {
    respond(
        StatusCode::CREATED,
        &[
            ("Location", format!("{base}/v2/{name}/blobs/{digest}")),
            ("Docker-Content-Digest", digest.to_string()),
            ("Content-Length", "0".into()),
        ],
        Body::empty(),
    )
}

pub type Chunks = futures::stream::BoxStream<'static, std::result::Result<Bytes, String>>;

fn body_stream(req: Request) -> Chunks {
    coalesce(req.into_body().into_data_stream().map_err(|e| format!("the client's body broke off: {e}")).boxed())
}

/// HTTP/1 bodies arrive in pieces of a few KiB; the store works in 1 MiB
/// frames, so pieces are gathered into chunks of about that size first.
fn coalesce(body: Chunks) -> Chunks {
    const CHUNK: usize = 1 << 20;
    futures::stream::unfold((body, false), |(mut body, done)| async move {
        if done {
            return None;
        }
        let mut buf = bytes::BytesMut::new();
        loop {
            let next = match tokio::time::timeout(BODY_IDLE, body.next()).await {
                Ok(n) => n,
                Err(_) => Some(Err(format!("the client sent nothing for {} s", BODY_IDLE.as_secs()))),
            };
            match next {
                Some(Ok(b)) => {
                    if buf.is_empty() && b.len() >= CHUNK {
                        return Some((Ok(b), (body, false)));
                    }
                    buf.extend_from_slice(&b);
                    if buf.len() >= CHUNK {
                        return Some((Ok(buf.freeze()), (body, false)));
                    }
                }
                Some(Err(e)) => return Some((Err(e), (body, true))),
                None if buf.is_empty() => return None,
                None => return Some((Ok(buf.freeze()), (body, true))),
            }
        }
    })
    .boxed()
}

/// Stores a blob of `name` from `body`; fails unless it hashes to `digest`.
pub(crate) async fn store(r: &Registry, name: &str, digest: Digest, size: Option<u64>, body: Chunks) -> Result<()> {
    r.ensure_bucket().await?;
    let spec = PutSpec {
        bucket: r.bucket.clone(),
        key: Registry::key(name, "blobs", &digest.to_string()),
        content_type: "application/octet-stream".into(),
        attributes: Default::default(),
        size,
        expected_digest: Some(digest),
        condition: Condition::Always,
        identity: None,
        request_id: None,
        late: None,
    };
    match r.service.put(spec, body).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == Kind::Invalid => Err(digest_invalid(format!("the bytes are not sha256:{digest}: {e}"))),
        Err(e) if matches!(e.kind(), Kind::Aborted | Kind::Cancelled) => {
            Err(oci(StatusCode::BAD_REQUEST, ErrorCode::BlobUploadInvalid, format!("the upload broke off, nothing was stored: {e}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Links repository `from`'s blob `digest` into `name` (the bytes stay one
/// blob); false if `from` does not have it.
pub(crate) async fn link(r: &Registry, name: &str, from: &str, digest: Digest) -> Result<bool> {
    let key = Registry::key(from, "blobs", &digest.to_string());
    let (rec, chunks) = match r.service.get(&r.bucket, &key, None, strata_store::Range::ALL).await {
        Ok((rec, _)) if rec.is_delete_marker() => return Ok(false),
        Ok(got) => got,
        Err(e) if e.kind() == Kind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let body = tokio_stream::wrappers::ReceiverStream::new(chunks).map(|c| c.map_err(|e| e.to_string())).boxed();
    store(r, name, digest, Some(rec.size), body).await?;
    Ok(true)
}

/// Whether `name` has the blob, readable: one found damaged (and
/// quarantined) counts as absent, so a client sends it again.
pub async fn has(r: &Registry, name: &str, digest: &Digest) -> Result<bool> {
    match size_of(r, name, digest).await? {
        None => Ok(false),
        Some(0) => Ok(true),
        Some(_) => {
            let key = Registry::key(name, "blobs", &digest.to_string());
            match r.service.get(&r.bucket, &key, None, strata_store::Range { offset: 0, len: Some(1) }).await {
                Ok((_, mut chunks)) => Ok(matches!(chunks.recv().await, Some(Ok(_)))),
                Err(e) if matches!(e.kind(), Kind::NotFound | Kind::DataLoss) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// A repository other than `name` that has blob `digest`, found by a
/// search of the bucket for that content.
pub(crate) async fn holder(r: &Registry, name: &str, digest: &Digest) -> Result<Option<String>> {
    let hex = digest.to_string();
    let filter = strata_search::parse(&format!("digest = \"{hex}\"")).map_err(|e| crate::error::digest_invalid(e.to_string()))?;
    let search = strata_search::run::Search {
        bucket: r.bucket.clone(),
        filter: Some(filter),
        sort: strata_search::Field::Key,
        descending: false,
        limit: 100,
        after: None,
        max_bytes: 1 << 20,
    };
    let found = match r.service.search(&search, true).await {
        Ok(f) => f.value,
        // Search is off (metadata.enable_search = false): the bytes are sent.
        Err(_) => return Ok(None),
    };
    let suffix = format!("/_blobs/{hex}");
    Ok(found.records.into_iter().filter_map(|o| o.key.strip_suffix(&suffix).map(str::to_string)).find(|repo| repo != name))
}

/// The size of `name`'s blob, if it has it.
pub async fn size_of(r: &Registry, name: &str, digest: &Digest) -> Result<Option<u64>> {
    match r.service.stat(&r.bucket, &Registry::key(name, "blobs", &digest.to_string()), None).await {
        Ok((rec, _)) => Ok((!rec.is_delete_marker()).then_some(rec.size)),
        Err(e) if e.kind() == Kind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v2/<name>/blobs/uploads/`: a mount, a monolithic upload, the
/// empty `?digest=` of a blob that exists (201), or a new session (202).
pub async fn start(r: &Arc<Registry>, base: &str, name: &str, req: Request) -> Result<Response> {
    let query = req.uri().query().map(str::to_string);
    let query = query.as_deref();
    if let (Some(mount), Some(from)) = (query_param(query, "mount"), query_param(query, "from")) {
        let d = names::digest(&mount)?;
        let from = names::repository(&from)?;
        // Mounting needs read access to the source; without it the client
        // uploads the blob instead (the spec's fallback), as when it is not there.
        let readable = r.auth.check(req.headers(), Some(&from), false).is_ok();
        if has(r, name, &d).await? || (readable && link(r, name, &from, d).await?) {
            return Ok(created(base, name, &mount));
        }
        // Not there: the client uploads it instead (the spec's fallback).
    }
    if let Some(digest) = query_param(query, "digest") {
        let d = names::digest(&digest)?;
        let size = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let mut body = body_stream(req);
        // The first chunk tells an empty POST from a monolithic upload.
        let first = loop {
            match body.next().await {
                Some(Ok(b)) if b.is_empty() => continue,
                other => break other,
            }
        };
        match first {
            None if has(r, name, &d).await? => return Ok(created(base, name, &digest)),
            None => {}
            Some(first) => {
                let first = first.map_err(|e| oci(StatusCode::BAD_REQUEST, ErrorCode::BlobUploadInvalid, e))?;
                store(r, name, d, size, futures::stream::once(async { Ok(first) }).chain(body).boxed()).await?;
                return Ok(created(base, name, &digest));
            }
        }
    }
    r.uploads.sweep();
    if r.uploads.sessions.lock().expect("sessions").len() >= MAX_SESSIONS {
        return Err(oci(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            format!("{MAX_SESSIONS} uploads are open: finish or cancel some (idle ones end after {} min)", IDLE.as_secs() / 60),
        ));
    }
    let id = format!("{:032x}", rand::random::<u128>());
    tokio::fs::write(r.uploads.path(&id), b"").await.map_err(io)?;
    let s = Session { name: name.to_string(), size: 0, touched: Instant::now() };
    r.uploads.sessions.lock().expect("sessions").insert(id.clone(), Arc::new(tokio::sync::Mutex::new(s)));
    Ok(accepted(base, name, &id, 0))
}

fn io(e: std::io::Error) -> RegistryError {
    RegistryError::Service(strata_service::ServiceError::Invalid(format!("upload file: {e}")))
}

fn valid_id(id: &str) -> Result<()> {
    if id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()) { Ok(()) } else { Err(upload_unknown(id)) }
}

/// Appends the request's body to the session's file.
async fn append(r: &Registry, id: &str, s: &mut Session, req: Request) -> Result<()> {
    let mut file = tokio::fs::OpenOptions::new().append(true).open(r.uploads.path(id)).await.map_err(io)?;
    let mut body = body_stream(req);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| oci(StatusCode::BAD_REQUEST, ErrorCode::BlobUploadInvalid, e))?;
        file.write_all(&chunk).await.map_err(io)?;
        s.size += chunk.len() as u64;
    }
    file.flush().await.map_err(io)?;
    s.touched = Instant::now();
    Ok(())
}

/// `PATCH`: the next chunk, in order (`Content-Range: a-b` where `a` is
/// what the session holds; else 416 with what it holds).
pub async fn patch(r: &Arc<Registry>, base: &str, name: &str, id: &str, req: Request) -> Result<Response> {
    valid_id(id)?;
    let session = r.uploads.get(name, id)?;
    let mut s = session.lock().await;
    let mut expect = None;
    if let Some(cr) = req.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()) {
        let (a, b) = blobs::chunk_range(cr)?;
        if a != s.size {
            let held = if s.size == 0 { "0-0".to_string() } else { format!("0-{}", s.size - 1) };
            let mut resp = oci(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                format!("the upload holds {} bytes: the next chunk starts at {}, not {a}", s.size, s.size),
            )
            .into_response();
            for (k, v) in [("Location", location(base, name, id)), ("Range", held), ("Docker-Upload-UUID", id.to_string())] {
                if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
                    resp.headers_mut().insert(k, v);
                }
            }
            return Ok(resp);
        }
        expect = Some(b - a + 1);
    }
    let before = s.size;
    let r2 = append(r, id, &mut s, req).await.and_then(|()| match expect {
        Some(n) if s.size - before != n => Err(oci(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            format!("Content-Range announced {n} bytes, the body held {}", s.size - before),
        )),
        _ => Ok(()),
    });
    if let Err(e) = r2 {
        // A broken chunk leaves the session unusable: start again.
        drop(s);
        r.uploads.remove(id);
        return Err(e);
    }
    Ok(accepted(base, name, id, s.size))
}

/// `PUT ?digest=`: the last chunk (if any), then the blob is stored.
pub async fn finish(r: &Arc<Registry>, base: &str, name: &str, id: &str, req: Request) -> Result<Response> {
    valid_id(id)?;
    let session = r.uploads.get(name, id)?;
    let mut s = session.lock().await;
    let Some(digest) = query_param(req.uri().query(), "digest") else {
        return Err(digest_invalid("PUT needs ?digest=sha256:<hex>"));
    };
    let d = names::digest(&digest)?;
    let r2 = r.clone();
    let outcome = async {
        append(&r2, id, &mut s, req).await?;
        let file = tokio::fs::File::open(r2.uploads.path(id)).await.map_err(io)?;
        let body = file_chunks(file);
        store(&r2, name, d, Some(s.size), body).await
    }
    .await;
    drop(s);
    // Done or failed, the session ends: a failed upload starts again.
    r.uploads.remove(id);
    outcome?;
    Ok(created(base, name, &digest))
}

/// A file as a stream of 1 MiB chunks.
fn file_chunks(file: tokio::fs::File) -> Chunks {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(file), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(format!("reading the upload: {e}")), None)),
        }
    })
    .boxed()
}

/// `GET` of a session: how much it holds.
pub async fn status(r: &Arc<Registry>, base: &str, name: &str, id: &str) -> Result<Response> {
    valid_id(id)?;
    let session = r.uploads.get(name, id)?;
    let s = session.lock().await;
    let mut resp = accepted(base, name, id, s.size);
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// `DELETE` of a session.
pub async fn cancel(r: &Arc<Registry>, name: &str, id: &str) -> Result<Response> {
    valid_id(id)?;
    r.uploads.get(name, id)?;
    r.uploads.remove(id);
    Ok(respond(StatusCode::NO_CONTENT, &[], Body::empty()))
}
