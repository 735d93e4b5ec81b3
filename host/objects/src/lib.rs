//! Objects: the blob store and the metadata store working as one.
//!
//! The object service (`strata-service`) calls it on every node. A put
//! streams into a staged blob on a blocking thread, then joins the
//! [`commit`] queue, where puts are published and recorded in batches (one
//! sync and one transaction for many). A get looks up the version and streams the verified blob. GC and
//! scrub run beside them ([`upkeep`]).

mod blob_cache;
mod budget;
mod commit;
mod composite;
mod error;
mod fsck;
pub mod metrics;
pub mod tier;
mod upkeep;

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{error, warn};

use crate::metrics::Metrics;
use strata_meta::{Attributes, Condition, Deleted, Identity, MetaStore, NewVersion, ObjectRecord};
use strata_store::format::INLINE_MAX;
use strata_store::{BlobReader, BlobWriter, Digest, LocalStore, Range, Staged, StoreError};

use blob_cache::BlobCache;
pub use budget::UploadBudget;
pub use commit::CommitJob;
pub use error::{Kind, ObjectError};
pub use fsck::FsckReport;
pub use tier::{BlobFile, Fill, Opened, Tier, TierPolicy, TierReport, Tiers};
pub use upkeep::{Upkeep, UpkeepReport};

/// Data gathered before a blocking write: one frame's worth.
const WRITE_BATCH: usize = 1 << 20;

/// The chunk size a put's share is sized for (the CLI sends 1 MiB chunks;
/// a larger one tops up the claim once it has arrived).
const EXPECTED_CHUNK: usize = 1 << 20;
/// What one put can hold in memory at once with chunks of at most
/// EXPECTED_CHUNK: a batch being gathered and one being written (each at
/// most WRITE_BATCH plus a chunk) and the writer's frames.
const PUT_SHARE: usize = 2 * (WRITE_BATCH + EXPECTED_CHUNK) + 2 * EXPECTED_CHUNK;

/// Blocking: appends `data` and hands the writer back.
fn write_all(mut writer: BlobWriter, data: &[Bytes]) -> Result<BlobWriter, StoreError> {
    for b in data {
        writer.write(b)?;
    }
    Ok(writer)
}

/// The writer, once the write in flight (if any) is done.
async fn ready_writer(
    in_flight: &mut Option<tokio::task::JoinHandle<Result<BlobWriter, StoreError>>>,
    idle: &mut Option<BlobWriter>,
) -> Result<BlobWriter, ObjectError> {
    match in_flight.take() {
        Some(h) => Ok(h.await.map_err(|e| ObjectError::Aborted(e.to_string()))??),
        None => Ok(idle.take().expect("a writer is either idle or in flight")),
    }
}

/// Chunks a get reads ahead of the network. With 1 MiB frames this bounds
/// a transfer's buffers to a few MiB whatever its size.
const PIPE_DEPTH: usize = 4;

/// What a put stores, besides its bytes.
#[derive(Clone, Debug, Default)]
pub struct PutSpec {
    pub bucket: String,
    pub key: String,
    pub content_type: String,
    pub attributes: Attributes,
    /// The size the client promised.
    pub size: Option<u64>,
    /// The digest the client expects.
    pub expected_digest: Option<Digest>,
    pub condition: Condition,
    /// Set for a replicated version: recorded with this identity.
    pub identity: Option<Identity>,
    /// The client's id for the put (a retry answers with the first put's
    /// version).
    pub request_id: Option<String>,
    /// Attributes the body leaves once it has ended (an S3 ETag is the
    /// body's MD5), recorded with the others.
    pub late: Option<Late>,
}

/// See [`PutSpec::late`].
pub type Late = Arc<std::sync::Mutex<Attributes>>;

impl PutSpec {
    /// The version of this put whose bytes are a blob already recorded.
    pub fn referencing(self, digest: Digest, size: u64) -> NewVersion {
        NewVersion {
            bucket: self.bucket,
            key: self.key,
            digest,
            size,
            stored_size: 0,
            content_type: self.content_type,
            attributes: self.attributes,
            condition: self.condition,
            fresh_blob: false,
            inline: None,
            identity: self.identity,
            request_id: self.request_id,
        }
    }

    /// Once the body has ended: merges the attributes it left into the
    /// others and returns them.
    pub fn settle_late(&mut self) -> Attributes {
        let late = self.late.take().map(|l| std::mem::take(&mut *l.lock().expect("late attributes"))).unwrap_or_default();
        self.attributes.extend(late.clone());
        late
    }

    /// Fails if the bytes are not what the client promised (size, digest).
    pub fn check_promises(&self, digest: Digest, size: u64) -> Result<(), StoreError> {
        if let Some(want) = self.size
            && want != size
        {
            return Err(StoreError::Mismatch { what: "size", expected: want.to_string(), actual: size.to_string() });
        }
        if let Some(want) = self.expected_digest
            && want != digest
        {
            return Err(StoreError::Mismatch { what: "digest", expected: want.to_string(), actual: digest.to_string() });
        }
        Ok(())
    }
}

pub struct Objects {
    store: Arc<LocalStore>,
    meta: Arc<MetaStore>,
    commits: mpsc::Sender<CommitJob>,
    /// Held while blobs are published or collected, so GC never removes a
    /// blob a concurrent put is about to reference.
    publish_lock: Arc<Mutex<()>>,
    blob_cache: BlobCache,
    budget: UploadBudget,
    idle_timeout: std::time::Duration,
    pub metrics: Arc<Metrics>,
    /// Backups in progress: while any runs, GC removes no blob (a blob
    /// their snapshot names may lose its last reference meanwhile).
    pins: Arc<std::sync::atomic::AtomicUsize>,
    /// Object-store tiers, set once at start when configured.
    tiers: std::sync::OnceLock<tier::Tiers>,
}

/// Keeps GC from removing blobs while held.
pub struct BlobPin(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BlobPin {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Limits on uploads in flight.
#[derive(Clone, Debug)]
pub struct UploadLimits {
    /// Bytes of uploads the server holds in memory at once.
    pub buffer: u64,
    /// A put whose next chunk takes longer fails.
    pub idle_timeout: std::time::Duration,
}

impl Objects {
    /// Starts the commit worker; it stops when every `Objects` handle is gone.
    pub fn new(
        store: Arc<LocalStore>,
        meta: Arc<MetaStore>,
        metrics: Arc<Metrics>,
        blob_cache_bytes: u64,
        uploads: UploadLimits,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(1024);
        let publish_lock = Arc::new(Mutex::new(()));
        commit::start(rx, store.clone(), meta.clone(), publish_lock.clone());
        Arc::new(Self {
            store,
            meta,
            commits: tx,
            publish_lock,
            blob_cache: BlobCache::new(blob_cache_bytes),
            budget: UploadBudget::new(uploads.buffer),
            idle_timeout: uploads.idle_timeout,
            metrics,
            pins: Arc::default(),
            tiers: std::sync::OnceLock::new(),
        })
    }

    /// Grows a claim on the upload budget; a claim that holds bytes gives
    /// up after the idle timeout.
    pub async fn grow(&self, held: &mut budget::Held, n: usize) -> Result<(), ObjectError> {
        held.grow_to(n, self.idle_timeout).await.map_err(|_| ObjectError::BudgetBusy { secs: self.idle_timeout.as_secs() })
    }

    /// An empty claim on the server's upload budget.
    pub fn upload_claim(&self) -> budget::Held {
        self.budget.claim()
    }

    /// The whole upload budget, in bytes.
    pub fn upload_budget_bytes(&self) -> usize {
        self.budget.total()
    }

    /// How long an upload may send nothing.
    pub fn idle_timeout(&self) -> std::time::Duration {
        self.idle_timeout
    }

    pub fn meta(&self) -> &Arc<MetaStore> {
        &self.meta
    }

    pub fn store(&self) -> &Arc<LocalStore> {
        &self.store
    }

    /// Free space on the store's disks against the reserve (a statvfs
    /// per disk, off the async threads).
    pub async fn space(&self) -> Result<strata_store::local::Space, ObjectError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.space()).await.map_err(|e| ObjectError::Aborted(e.to_string()))??)
    }

    /// Stores a stream of chunks. Nothing is visible unless the stream ends
    /// cleanly, the promised size and digest match, and the data is durable.
    pub async fn put<S, E>(&self, mut spec: PutSpec, chunks: S) -> Result<ObjectRecord, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if let Some(first) = self.replay(&spec).await? {
            return Ok(first);
        }
        let staged = self.stage(&spec, chunks).await?;
        spec.settle_late();
        self.commit(vec![(spec, staged)]).await.pop().expect("one result")
    }

    /// A retried put: the version its first attempt made, found before any
    /// byte is staged, so a retry is answered on a full disk too. (The
    /// commit checks again, so concurrent attempts make one version.)
    async fn replay(&self, spec: &PutSpec) -> Result<Option<ObjectRecord>, ObjectError> {
        let (Some(rid), None) = (&spec.request_id, &spec.identity) else { return Ok(None) };
        Ok(self.meta.replay(&spec.bucket, &spec.key, rid).await?)
    }

    /// Records a version whose blob this node already holds, sound; `None`
    /// when it does not hold it (the bytes must be sent).
    pub async fn put_known(&self, spec: PutSpec, digest: Digest, size: u64) -> Result<Option<ObjectRecord>, ObjectError> {
        // Under the publish lock GC cannot drop the blob between the check
        // and the new reference.
        let _guard = self.publish_lock.lock().await;
        if !self.meta.known_blobs(&[digest]).await?.contains(&digest) {
            return Ok(None);
        }
        let item = spec.referencing(digest, size);
        Ok(Some(self.meta.commit_puts(std::slice::from_ref(&item)).await?.pop().expect("one result")?))
    }

    /// Writes a stream of chunks to a staged blob (durable, not yet
    /// published) and checks what the client promised.
    pub async fn stage<S, E>(&self, spec: &PutSpec, mut chunks: S) -> Result<Staged, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.check_space(0).map(drop)).await.map_err(|e| ObjectError::Aborted(e.to_string()))??;
        // The network side stays async; each ~1 MiB of data is hashed and
        // written in one short blocking call, so a slow client holds no
        // thread, only its HTTP/2 window and its share of the upload budget.
        let mut writer = Some(self.store.stage()?); // in memory until it grows
        // One write runs while the next batch arrives.
        let mut in_flight: Option<tokio::task::JoinHandle<Result<BlobWriter, StoreError>>> = None;
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        let limit = spec.size;
        let mut received = 0u64;
        // The whole share up front, holding nothing while it waits.
        let mut held = self.budget.claim();
        let share = spec.size.map_or(PUT_SHARE, |n| (n as usize).saturating_mul(2).saturating_add(64 << 10).min(PUT_SHARE));
        self.grow(&mut held, share).await?;
        // The writer's frame buffers, as of its last write.
        let mut buffered = 0usize;
        loop {
            let item = match tokio::time::timeout(self.idle_timeout, chunks.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => return Err(ObjectError::Idle { secs: self.idle_timeout.as_secs() }),
            };
            let chunk = item.map_err(|e| ObjectError::Aborted(e.to_string()))?;
            if chunk.is_empty() {
                continue; // carries nothing; gathering it would cost memory
            }
            received += chunk.len() as u64;
            if let Some(l) = limit
                && received > l
            {
                return Err(
                    StoreError::Mismatch { what: "size", expected: l.to_string(), actual: format!("at least {received} bytes") }.into()
                );
            }
            pending_len += chunk.len();
            pending.push(chunk);
            // Past the share only with chunks larger than 1 MiB.
            self.grow(&mut held, buffered + pending_len).await?;
            if pending_len >= WRITE_BATCH {
                let w = ready_writer(&mut in_flight, &mut writer).await?;
                buffered = w.buffered();
                let data = std::mem::take(&mut pending);
                let store = self.store.clone();
                let need = pending_len as u64;
                in_flight = Some(tokio::task::spawn_blocking(move || {
                    let _claim = store.check_space(need)?;
                    write_all(w, &data)
                }));
                pending_len = 0;
            }
        }
        let w = ready_writer(&mut in_flight, &mut writer).await?;
        let store = self.store.clone();
        let need = pending_len as u64;
        let staged = tokio::task::spawn_blocking(move || {
            let _claim = store.check_space(need)?;
            write_all(w, &pending)?.finish()
        })
        .await
        .map_err(|e| ObjectError::Aborted(e.to_string()))??;
        spec.check_promises(staged.digest, staged.size)?;
        Ok(staged)
    }

    /// Stores many small objects held in memory, committed together.
    pub async fn put_many(&self, items: Vec<(PutSpec, Bytes)>) -> Vec<Result<ObjectRecord, ObjectError>> {
        // Retries are answered first; the rest are stored.
        let mut out = Vec::with_capacity(items.len());
        let mut fresh = Vec::new();
        for (spec, data) in items {
            match self.replay(&spec).await.transpose() {
                Some(r) => out.push(Some(r)),
                None => {
                    out.push(None);
                    fresh.push((spec, data));
                }
            }
        }
        let mut stored = self.put_many_fresh(fresh).await.into_iter();
        out.into_iter().map(|r| r.unwrap_or_else(|| stored.next().expect("one result per fresh item"))).collect()
    }

    async fn put_many_fresh(&self, items: Vec<(PutSpec, Bytes)>) -> Vec<Result<ObjectRecord, ObjectError>> {
        if items.is_empty() {
            return Vec::new();
        }
        let store = self.store.clone();
        let (specs, datas): (Vec<PutSpec>, Vec<Bytes>) = items.into_iter().unzip();
        // One blocking call writes (hashes, seals) the whole batch.
        let need: u64 = datas.iter().map(|d| d.len() as u64).sum();
        let written = tokio::task::spawn_blocking(move || {
            let _claim = match store.check_space(need) {
                Ok(c) => c,
                Err(e) => return datas.iter().map(|_| Err(e.duplicate())).collect(),
            };
            datas
                .into_iter()
                .map(|data| {
                    let mut w = store.stage()?;
                    w.write(&data)?;
                    w.finish()
                })
                .collect::<Vec<_>>()
        })
        .await;
        let written = match written {
            Ok(w) => w,
            Err(e) => return specs.iter().map(|_| Err(ObjectError::Aborted(e.to_string()))).collect(),
        };
        let mut out: Vec<Option<Result<ObjectRecord, ObjectError>>> = Vec::new();
        let mut staged = Vec::new();
        let mut slots = Vec::new();
        for (i, (spec, r)) in specs.into_iter().zip(written).enumerate() {
            out.push(None);
            match r.and_then(|s| spec.check_promises(s.digest, s.size).map(|()| s)) {
                Ok(s) => {
                    staged.push((spec, s));
                    slots.push(i);
                }
                Err(e) => out[i] = Some(Err(e.into())),
            }
        }
        for (slot, r) in slots.into_iter().zip(self.commit(staged).await) {
            out[slot] = Some(r);
        }
        out.into_iter().map(|r| r.expect("every slot filled")).collect()
    }

    /// Queues staged puts for the group commit and waits for the outcome.
    ///
    /// Dropping this future before the commit worker takes a job (the
    /// client reset the stream, its deadline passed) discards the job, so
    /// a cancelled put is never stored. The yield gives the transport a turn
    /// first: hyper drops a handler whose stream was reset at its next
    /// `Pending`, and a reset can arrive just behind a stream's end.
    pub async fn commit(&self, items: Vec<(PutSpec, Staged)>) -> Vec<Result<ObjectRecord, ObjectError>> {
        tokio::task::yield_now().await;
        let mut waits = Vec::with_capacity(items.len());
        for (spec, staged) in items {
            let (reply, wait) = oneshot::channel();
            let version = NewVersion {
                bucket: spec.bucket,
                key: spec.key,
                digest: staged.digest,
                size: staged.size,
                stored_size: staged.stored_size,
                content_type: spec.content_type,
                attributes: spec.attributes,
                condition: spec.condition,
                fresh_blob: false,
                inline: staged.inline.clone(),
                identity: spec.identity,
                request_id: spec.request_id,
            };
            if self.commits.send(CommitJob { staged, version, reply }).await.is_err() {
                waits.push(None);
            } else {
                waits.push(Some(wait));
            }
        }
        let mut out = Vec::with_capacity(waits.len());
        for w in waits {
            out.push(match w {
                Some(w) => w.await.unwrap_or(Err(ObjectError::ShuttingDown)),
                None => Err(ObjectError::ShuttingDown),
            });
        }
        out
    }

    /// Looks up a version and opens a verified stream of (a range of) its bytes.
    pub async fn get(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        range: Range,
    ) -> Result<(ObjectRecord, mpsc::Receiver<Result<Bytes, ObjectError>>), ObjectError> {
        let rec = self.meta.get(bucket, key, version).await?;
        let Some(digest) = rec.digest else {
            return Err(ObjectError::DeleteMarker { key: key.into(), version: rec.version });
        };
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        if range.is_all()
            && let Some(data) = self.blob_cache.get(&digest)
        {
            let _ = tx.send(Ok(data)).await;
            return Ok((rec, rx));
        }
        let size = rec.size;
        if size > INLINE_MAX
            && let Some(t) = self.tiers.get()
        {
            t.note_read(digest);
        }
        let fill = range.is_all() && self.tiers.get().is_some_and(|t| t.caches(size));
        let (mut reader, mut cold_fill) = match self.open_reader_filling(digest, size, range, fill).await {
            Ok(r) => r,
            Err(ObjectError::Store(e)) => {
                // A composite has no file of its own: its parts are read.
                if matches!(e, StoreError::Missing { .. })
                    && let Some(parts) = self.meta.composite_parts(&digest).await?
                {
                    return Ok((rec, self.stream_parts(parts, range)?));
                }
                if e.is_damage() {
                    self.report_corrupt(digest, size, &e).await;
                }
                return Err(e.into());
            }
            Err(e) => return Err(e),
        };
        let cache_it = range.is_all() && self.blob_cache.wants(size);
        let this = self.clone();
        // An async task feeds the stream; each frame is read and verified in a
        // short blocking call, so a client that stops reading holds no thread.
        tokio::spawn(async move {
            let mut whole = cache_it.then(Vec::new);
            let mut ended = false;
            while !ended {
                // As many frames as the stream has room for, in one blocking
                // call (one hand-off per few MiB, not per frame); a client
                // that stops reading leaves no room, and no thread is held.
                let room = tx.capacity().max(1);
                let (r, items, end) = match tokio::task::spawn_blocking(move || {
                    let mut items = Vec::with_capacity(room);
                    let mut end = false;
                    while items.len() < room {
                        match reader.next_chunk() {
                            None => {
                                end = true;
                                break;
                            }
                            Some(item) => {
                                let failed = item.is_err();
                                items.push(item);
                                if failed {
                                    break;
                                }
                            }
                        }
                    }
                    (reader, items, end)
                })
                .await
                {
                    Ok(step) => step,
                    Err(e) => {
                        let _ = tx.send(Err(ObjectError::Aborted(e.to_string()))).await;
                        return;
                    }
                };
                reader = r;
                ended = end;
                // Damage found in this batch is reported even if the client
                // leaves while the good frames before it are sent.
                let damage = items.last().and_then(|i| i.as_ref().err()).filter(|e| e.is_damage()).map(|e| e.to_string());
                for item in items {
                    let item = match item {
                        Ok(b) => {
                            if let Some(w) = &mut whole {
                                w.extend_from_slice(&b);
                            }
                            Ok(b)
                        }
                        Err(e) => {
                            // Reported before the client hears of it, so a read
                            // right after finds the damaged copy gone (a cached
                            // copy of a cold blob is dropped, not the blob).
                            if e.is_damage() {
                                let why = e.to_string();
                                this.report_corrupt(digest, size, &StoreError::Corrupt { digest, why }).await;
                            }
                            // Nothing may be cached from a read that failed.
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    };
                    if tx.send(item).await.is_err() {
                        if let Some(why) = damage {
                            this.report_corrupt(digest, size, &StoreError::Corrupt { digest, why }).await;
                        }
                        return; // the client went away
                    }
                }
            }
            // Only a whole, verified read may be kept (in memory, or as a
            // local copy of a cold blob).
            if let Some(fill) = cold_fill.take() {
                this.keep_cold_copy(digest, fill).await;
            }
            if let Some(w) = whole
                && w.len() as u64 == size
            {
                this.blob_cache.put(digest, Bytes::from(w));
            }
        });
        Ok((rec, rx))
    }

    /// Opens a blob, from its file, from the metadata store when small, or
    /// from its tier when cold.
    pub(crate) async fn open_reader(&self, digest: Digest, size: u64, range: Range) -> Result<BlobReader, ObjectError> {
        Ok(self.open_reader_filling(digest, size, range, false).await?.0)
    }

    /// As [`Self::open_reader`]; with `fill`, a cold blob's bytes also go
    /// to a local copy, kept once the read has verified them.
    pub(crate) async fn open_reader_filling(
        &self,
        digest: Digest,
        size: u64,
        range: Range,
        fill: bool,
    ) -> Result<(BlobReader, Option<tier::ColdFill>), ObjectError> {
        let inline =
            if size <= INLINE_MAX { Some(self.meta.inline_blob(&digest).await?.ok_or(StoreError::Missing { digest })?) } else { None };
        let store = self.store.clone();
        let local = tokio::task::spawn_blocking(move || match inline {
            Some(stored) => store.read_inline(stored, &digest, range),
            None => store.read(&digest, range),
        })
        .await
        .map_err(|e| ObjectError::Aborted(e.to_string()))?;
        match local {
            Err(StoreError::Missing { .. }) if size > INLINE_MAX => match self.open_cold(digest, range, fill).await? {
                Some(cold) => Ok(cold),
                None => Err(StoreError::Missing { digest }.into()),
            },
            r => Ok((r?, None)),
        }
    }

    /// Reports a blob that failed verification: counted, marked corrupt and
    /// its file quarantined. All under the publish lock, and only if the
    /// blob still fails when read again there: a put may have replaced the
    /// damaged file since the failed read began.
    pub(crate) async fn report_corrupt(&self, digest: Digest, size: u64, e: &StoreError) {
        self.blob_cache.remove(&digest);
        let _guard = self.publish_lock.lock().await;
        if self.meta.blob_is_corrupt(&digest).await.unwrap_or(false) {
            return; // reported and quarantined already
        }
        if self.drop_cached_copy(digest, size).await {
            return;
        }
        if self.verify(digest, size).await.is_ok() {
            warn!(%digest, error = %e, "a read failed, but the blob now verifies (replaced meanwhile)");
            return;
        }
        error!(%digest, error = %e, "blob failed verification; quarantining it");
        self.metrics.corrupt_blob();
        if let Err(me) = self.meta.mark_corrupt(&digest).await {
            warn!(%digest, error = %me, "could not mark blob corrupt");
        }
        let store = self.store.clone();
        if let Ok(Err(qe)) = tokio::task::spawn_blocking(move || store.quarantine(&digest)).await {
            warn!(%digest, error = %qe, "could not quarantine blob");
        }
    }

    /// Reads a whole blob back and checks it.
    pub(crate) async fn verify(&self, digest: Digest, size: u64) -> Result<(), ObjectError> {
        let mut r = self.open_reader(digest, size, Range::ALL).await?;
        tokio::task::spawn_blocking(move || r.read_through()).await.map_err(|e| ObjectError::Aborted(e.to_string()))??;
        Ok(())
    }

    pub async fn delete(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Deleted, ObjectError> {
        Ok(self.meta.delete(bucket, key, version).await?)
    }

    /// Stops GC removing blobs until the pin is dropped. Taken under the
    /// publish lock, so a GC batch under way finishes first.
    pub async fn pin_blobs(&self) -> BlobPin {
        let _guard = self.publish_lock.lock().await;
        self.pins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        BlobPin(self.pins.clone())
    }

    /// A backup holds a [`BlobPin`].
    pub fn blobs_pinned(&self) -> bool {
        self.pins.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    pub fn publish_lock(&self) -> &Arc<Mutex<()>> {
        &self.publish_lock
    }
}
