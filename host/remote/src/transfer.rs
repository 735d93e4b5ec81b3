//! Files up to and down from a target, streaming: memory per transfer is a
//! few parts whatever the file's size.

use std::path::Path as FsPath;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{RemoteError, Target};

/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Stores `data` at `dest` unless something is there already. Returns
/// whether it was stored (false: a dedup hit).
pub async fn put_new(t: &Target, dest: &Path, data: Bytes) -> Result<bool, RemoteError> {
    let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    match t.store.put_opts(dest, PutPayload::from_bytes(data), opts).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(RemoteError::at(t)(e)),
    }
}

/// Uploads the file at `local` to `dest`: one create-only put when it fits
/// a part (or, with `replace`, a put over what is there), else a multipart
/// upload (which replaces what is there: callers upload content-addressed
/// data only, so a replacement holds the same plaintext). Returns the bytes
/// sent, 0 for a dedup hit.
pub async fn upload_file(t: &Target, local: &FsPath, dest: &Path, replace: bool) -> Result<u64, RemoteError> {
    let io = |e: std::io::Error| RemoteError::Io(format!("reading {}: {e}", local.display()));
    let mut file = tokio::fs::File::open(local).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound { RemoteError::Io(format!("{} is gone", local.display())) } else { io(e) }
    })?;
    let len = file.metadata().await.map_err(io)?.len();
    if len <= t.part_size as u64 {
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf).await.map_err(io)?;
        let n = buf.len() as u64;
        if replace {
            t.store.put(dest, PutPayload::from(buf)).await.map_err(RemoteError::at(t))?;
            return Ok(n);
        }
        return Ok(if put_new(t, dest, Bytes::from(buf)).await? { n } else { 0 });
    }
    let upload = t.store.put_multipart(dest).await.map_err(RemoteError::at(t))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, t.part_size);
    let mut buf = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    loop {
        let n = match file.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(io(e));
            }
        };
        if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
            return Err(RemoteError::at(t)(e));
        }
        writer.write(&buf[..n]);
        sent += n as u64;
    }
    writer.finish().await.map_err(RemoteError::at(t))?;
    Ok(sent)
}

/// Streams the object at `src` into a new file at `local`, synced.
/// Returns its length. `NotFound` comes back as `Ok(None)`.
pub async fn download_file(t: &Target, src: &Path, local: &FsPath) -> Result<Option<u64>, RemoteError> {
    let got = match t.store.get(src).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(RemoteError::at(t)(e)),
    };
    let io = |e: std::io::Error| RemoteError::Io(format!("writing {}: {e}", local.display()));
    let mut out = tokio::fs::File::create(local).await.map_err(io)?;
    let expect = got.meta.size;
    let mut stream = got.into_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(RemoteError::at(t))?;
        out.write_all(&chunk).await.map_err(io)?;
        n += chunk.len() as u64;
    }
    out.sync_all().await.map_err(io)?;
    if n != expect {
        return Err(RemoteError::Io(format!("{src} at {t}: got {n} of its {expect} bytes")));
    }
    Ok(Some(n))
}
