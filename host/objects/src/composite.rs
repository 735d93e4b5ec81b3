//! Composite objects: a version whose bytes are other blobs' in order,
//! recorded in O(parts) metadata with no copy of the data (an S3 multipart
//! upload's completion). Each part is read and verified as the blob it is.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{ObjectError, Objects, PIPE_DEPTH, PutSpec};
use strata_meta::ObjectRecord;
use strata_store::{BlobReader, Digest, Range, StoreError};

impl Objects {
    /// Records a version of `spec` whose bytes are `parts` (blobs this node
    /// holds, by digest and size) one after another. The version's digest
    /// names the composite ([`Digest::composite`]), not a hash of its bytes.
    pub async fn compose(&self, spec: PutSpec, parts: Vec<(Digest, u64)>) -> Result<ObjectRecord, ObjectError> {
        if let Some(first) = self.replay(&spec).await? {
            return Ok(first);
        }
        let id = Digest::composite(&parts);
        let size = parts.iter().map(|p| p.1).sum();
        spec.check_promises(id, size)?;
        // Under the publish lock GC cannot take a part or the new composite
        // between their check and the version's reference.
        let _guard = self.publish_lock.lock().await;
        self.meta.create_composite(&id, &parts).await?;
        let item = spec.referencing(id, size);
        Ok(self.meta.commit_puts(std::slice::from_ref(&item)).await?.pop().expect("one result")?)
    }

    /// Streams `range` of a composite: each part that overlaps it, read and
    /// verified as its own blob (a damaged part is reported like any blob).
    pub(crate) fn stream_parts(
        self: &Arc<Self>,
        parts: Vec<(Digest, u64)>,
        range: Range,
    ) -> Result<mpsc::Receiver<Result<Bytes, ObjectError>>, ObjectError> {
        let total: u64 = parts.iter().map(|p| p.1).sum();
        if range.offset > total {
            return Err(StoreError::BadRange { offset: range.offset, size: total }.into());
        }
        let end = range.len.map_or(total, |l| range.offset.saturating_add(l).min(total));
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        let this = self.clone();
        tokio::spawn(async move {
            // Parts are opened one after another: GC waits until the read
            // ends, so a delete meanwhile cannot take a part still to come.
            let _pin = this.pin_blobs().await;
            let mut start = 0u64;
            for (digest, size) in parts {
                let (lo, hi) = (range.offset.max(start), end.min(start + size));
                start += size;
                if lo >= hi {
                    if start >= end {
                        break;
                    }
                    continue;
                }
                let sub = Range { offset: lo - (start - size), len: Some(hi - lo) };
                let sub = if sub.offset == 0 && hi - lo == size { Range::ALL } else { sub };
                let reader = match this.open_reader(digest, size, sub).await {
                    Ok(r) => r,
                    Err(e) => {
                        if let ObjectError::Store(se) = &e
                            && se.is_damage()
                        {
                            this.report_corrupt(digest, size, se).await;
                        }
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if !this.pump(reader, digest, size, &tx).await {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// Sends a reader's verified chunks; false if the read failed (the
    /// error was sent) or the receiver went away.
    async fn pump(
        self: &Arc<Self>,
        mut reader: BlobReader,
        digest: Digest,
        size: u64,
        tx: &mpsc::Sender<Result<Bytes, ObjectError>>,
    ) -> bool {
        loop {
            let item = match tokio::task::spawn_blocking(move || {
                let item = reader.next_chunk();
                (reader, item)
            })
            .await
            {
                Ok((r, item)) => {
                    reader = r;
                    item
                }
                Err(e) => {
                    let _ = tx.send(Err(ObjectError::Aborted(e.to_string()))).await;
                    return false;
                }
            };
            match item {
                None => return true,
                Some(Ok(b)) => {
                    if tx.send(Ok(b)).await.is_err() {
                        return false;
                    }
                }
                Some(Err(e)) => {
                    if e.is_damage() {
                        let why = e.to_string();
                        self.report_corrupt(digest, size, &StoreError::Corrupt { digest, why }).await;
                    }
                    let _ = tx.send(Err(e.into())).await;
                    return false;
                }
            }
        }
    }
}
