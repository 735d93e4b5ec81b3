//! Cold blobs on object-store tiers, as the object layer sees them.
//!
//! A [`Tier`] is a place a blob file can live other than the local disk;
//! `strata-remote` implements it on `object_store`. The copy on a tier is
//! the blob file itself (frames, compression, encryption), so a read from a
//! tier is verified exactly like a local one and the store never sees
//! plaintext when encryption is on.
//!
//! - Moving ([`Objects::move_to_tier`]): copy, read the copy back through
//!   the verifier, record the tier (a compare-and-set), then remove the
//!   local file. A crash between any two steps leaves a good copy that the
//!   metadata points at; a copy nothing points at is swept by GC.
//! - Reading: a blob whose local file is missing and whose row names a tier
//!   is read from the tier by ranges. A whole read also fills a local copy,
//!   kept as a cache capped in bytes (the least recently filled go first).
//! - Recall ([`Objects::recall`]): the reverse of a move.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use lru::LruCache;
use tracing::{info, warn};

use super::{ObjectError, Objects};
use strata_meta::tiers::{LOCAL, TierRule};
use strata_store::{BlobReader, Digest, Range, Source, StoreError, TempFile};

/// A place blob files can live besides the local disk.
pub trait Tier: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// Where it is, for people (a URL without secrets).
    fn location(&self) -> String;
    /// Blocking. Opens the tier's copy of `digest` for random access. With
    /// `fill`, every byte read is also written to that file, which
    /// [`Opened::fill`] completes.
    fn open(&self, digest: &Digest, fill: Option<PathBuf>) -> Result<Opened, StoreError>;
    /// Copies the blob file at `file` to the tier (a dedup hit if there).
    fn put(&self, digest: Digest, file: PathBuf) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Removes the tier's copy; a missing one is not an error.
    fn remove(&self, digest: Digest) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Whether the tier holds a copy of the blob.
    fn exists(&self, digest: Digest) -> BoxFuture<'static, Result<bool, StoreError>>;
    /// Every blob on the tier, with when it was written.
    fn list(&self) -> BoxFuture<'static, Result<Vec<(Digest, SystemTime)>, StoreError>>;
}

/// A tier's copy, opened.
pub struct Opened {
    pub source: Box<dyn Source>,
    pub len: u64,
    pub fill: Option<Box<dyn Fill>>,
}

/// The local copy a whole read writes as it goes.
pub trait Fill: Send {
    /// Blocking: fetches what the read skipped and syncs the file.
    fn complete(self: Box<Self>) -> Result<(), StoreError>;
}

/// A bucket's rule: move its versions' blobs to `tier` once every set
/// limit holds.
#[derive(Clone, Debug)]
pub struct TierPolicy {
    pub bucket: String,
    pub tier: String,
    /// The version is at least this old.
    pub after: Option<Duration>,
    /// The blob has not been read for this long.
    pub idle: Option<Duration>,
    /// The blob has at least this many bytes.
    pub min_size: u64,
}

/// The tiers of this node and the local cache of cold blobs.
pub struct Tiers {
    by_name: HashMap<String, Arc<dyn Tier>>,
    cache: Mutex<LruCache<Digest, u64>>,
    cache_cap: u64,
    cached: AtomicU64,
    /// Blobs read since the last pass, for idle rules.
    reads: Mutex<Vec<Digest>>,
}

impl Tiers {
    pub fn new(tiers: Vec<Arc<dyn Tier>>, cache_bytes: u64) -> Self {
        Self {
            by_name: tiers.into_iter().map(|t| (t.name().to_string(), t)).collect(),
            cache: Mutex::new(LruCache::unbounded()),
            cache_cap: cache_bytes,
            cached: AtomicU64::new(0),
            reads: Mutex::new(Vec::new()),
        }
    }

    pub fn get(&self, name: &str) -> Result<&Arc<dyn Tier>, StoreError> {
        self.by_name.get(name).ok_or_else(|| StoreError::TierUnavailable {
            tier: name.into(),
            why: "it is not configured on this node (add it to [[tiers]])".into(),
        })
    }

    /// (name, location) of each tier, by name.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut n: Vec<_> = self.by_name.values().map(|t| (t.name().to_string(), t.location())).collect();
        n.sort();
        n
    }

    /// Bytes of cold blobs cached locally.
    pub fn cached_bytes(&self) -> u64 {
        self.cached.load(Ordering::Relaxed)
    }

    /// Whether a whole read of a blob of `size` keeps a local copy.
    pub(crate) fn caches(&self, size: u64) -> bool {
        size <= self.cache_cap
    }

    pub(crate) fn note_read(&self, digest: Digest) {
        let mut r = self.reads.lock().expect("reads lock");
        if r.len() < 1 << 20 {
            r.push(digest);
        }
    }
}

/// What a tier pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierReport {
    pub moved: u64,
    pub bytes: u64,
    pub failed: u64,
}

/// A local copy being filled by a whole read of a cold blob.
pub(crate) struct ColdFill {
    fill: Box<dyn Fill>,
    /// Removed when dropped: a read cut off leaves nothing behind.
    tmp: TempFile,
}

impl Objects {
    /// Sets the tiers; once, at start.
    pub fn set_tiers(&self, tiers: Tiers) {
        if self.tiers.set(tiers).is_err() {
            warn!("tiers were set twice; keeping the first");
        }
    }

    pub fn tiers(&self) -> Option<&Tiers> {
        self.tiers.get()
    }

    /// Opens a cold blob on its tier, when the local file is missing
    /// because the blob was moved. `None`: the blob is local (so the
    /// missing file is damage).
    pub(crate) async fn open_cold(
        &self,
        digest: Digest,
        range: Range,
        fill: bool,
    ) -> Result<Option<(BlobReader, Option<ColdFill>)>, ObjectError> {
        let Some(tier) = self.meta.blob_tier(&digest).await? else { return Ok(None) };
        if tier == LOCAL {
            return Ok(None);
        }
        let Some(tiers) = self.tiers.get() else {
            return Err(StoreError::TierUnavailable { tier, why: "no tiers are configured on this node".into() }.into());
        };
        let t = tiers.get(&tier)?.clone();
        let tmp = fill.then(|| self.store.temp_path("cold"));
        let key = self.store.key().cloned();
        let name = format!("<blob {digest} on tier {tier}>");
        let opened = tokio::task::spawn_blocking(move || {
            let o = t.open(&digest, tmp.clone())?;
            let reader = BlobReader::from_source(o.source, o.len, PathBuf::from(name), digest, key.as_ref(), range)?;
            Ok::<_, StoreError>((reader, o.fill.zip(tmp).map(|(fill, tmp)| ColdFill { fill, tmp: TempFile(tmp) })))
        })
        .await
        .map_err(|e| ObjectError::Aborted(e.to_string()))??;
        Ok(Some(opened))
    }

    /// After a whole, verified read of a cold blob: completes its local
    /// copy and keeps it as a cached copy, evicting the oldest past the cap.
    pub(crate) async fn keep_cold_copy(&self, digest: Digest, fill: ColdFill) {
        let Some(tiers) = self.tiers.get() else { return };
        let ColdFill { fill, tmp } = fill;
        let done = tokio::task::spawn_blocking(move || fill.complete()).await;
        if !matches!(done, Ok(Ok(()))) {
            return;
        }
        let len = std::fs::metadata(&tmp.0).map_or(0, |m| m.len());
        if len > tiers.cache_cap {
            return;
        }
        let _guard = self.publish_lock.lock().await;
        // Recalled (or collected) meanwhile: the file is not a cache's.
        if self.meta.blob_tier(&digest).await.ok().flatten().is_none_or(|t| t == LOCAL) {
            return;
        }
        if self.store.place(&tmp.0, &digest).is_err() {
            return;
        }
        self.cache_insert(tiers, digest, len);
        self.evict(tiers).await;
    }

    fn cache_insert(&self, tiers: &Tiers, digest: Digest, len: u64) {
        let mut c = tiers.cache.lock().expect("cache lock");
        if let Some(old) = c.put(digest, len) {
            tiers.cached.fetch_sub(old, Ordering::Relaxed);
        }
        tiers.cached.fetch_add(len, Ordering::Relaxed);
    }

    /// Removes the least recently filled cached copies past the cap. Call
    /// under the publish lock.
    async fn evict(&self, tiers: &Tiers) {
        while tiers.cached.load(Ordering::Relaxed) > tiers.cache_cap {
            let Some((d, len)) = tiers.cache.lock().expect("cache lock").pop_lru() else { break };
            tiers.cached.fetch_sub(len, Ordering::Relaxed);
            if self.meta.blob_tier(&d).await.ok().flatten().is_some_and(|t| t != LOCAL) {
                let _ = self.store.remove(&d);
            }
        }
    }

    /// A damaged local file of a cold blob is a cache copy: it goes, and
    /// the blob is damaged only if the tier's copy is. Call under the
    /// publish lock. True when the blob is cold and its tier copy sound.
    pub(crate) async fn drop_cached_copy(&self, digest: Digest, size: u64) -> bool {
        if self.meta.blob_tier(&digest).await.ok().flatten().is_none_or(|t| t == LOCAL) {
            return false;
        }
        warn!(%digest, "a cached copy of a cold blob is damaged; dropping it");
        let _ = self.store.quarantine(&digest);
        if let Some(tiers) = self.tiers.get()
            && let Some(len) = tiers.cache.lock().expect("cache lock").pop(&digest)
        {
            tiers.cached.fetch_sub(len, Ordering::Relaxed);
        }
        self.verify(digest, size).await.is_ok()
    }

    /// Counts local files of cold blobs found on disk (left by a restart or
    /// by a crash during a move) as cached copies, so the cap holds them.
    pub(crate) async fn adopt_cached(&self, files: &[(Digest, u64)]) {
        let Some(tiers) = self.tiers.get() else { return };
        for chunk in files.chunks(512) {
            let digests: Vec<Digest> = chunk.iter().map(|f| f.0).collect();
            let Ok(where_) = self.meta.blob_tiers(&digests).await else { return };
            let _guard = self.publish_lock.lock().await;
            for (d, len) in chunk {
                if where_.get(d).is_some_and(|t| t != LOCAL) && !tiers.cache.lock().expect("cache lock").contains(d) {
                    self.cache_insert(tiers, *d, *len);
                }
            }
            self.evict(tiers).await;
        }
    }

    /// Moves a local blob to `tier`: copy, verify the copy, record, then
    /// remove the local file. False when the blob is no longer local.
    pub async fn move_to_tier(&self, digest: Digest, size: u64, tier: &str) -> Result<bool, ObjectError> {
        let tiers =
            self.tiers.get().ok_or_else(|| StoreError::TierUnavailable { tier: tier.into(), why: "no tiers are configured".into() })?;
        let t = tiers.get(tier)?.clone();
        if self.meta.blob_tier(&digest).await?.as_deref() != Some(LOCAL) {
            return Ok(false);
        }
        t.put(digest, self.store.path(&digest)).await?;
        let key = self.store.key().cloned();
        let t2 = t.clone();
        tokio::task::spawn_blocking(move || {
            let o = t2.open(&digest, None)?;
            let mut r = BlobReader::from_source(o.source, o.len, PathBuf::from("<tier copy>"), digest, key.as_ref(), Range::ALL)?;
            if r.size != size {
                return Err(StoreError::Corrupt { digest, why: format!("the tier copy holds {} bytes, not {size}", r.size) });
            }
            r.read_through()
        })
        .await
        .map_err(|e| ObjectError::Aborted(e.to_string()))??;
        fail::fail_point!("tier.copied", |_| Err(ObjectError::Aborted("failpoint tier.copied".into())));
        let _guard = self.publish_lock.lock().await;
        // GC's sweep removes tier copies no row points at, under this lock:
        // a copy it took for an orphan (one a crashed move left, found
        // here as a dedup hit) must still be there when the row says so.
        if !t.exists(digest).await? {
            return Err(StoreError::TierUnavailable {
                tier: tier.into(),
                why: format!("the copy of {digest} vanished during the move; it is retried"),
            }
            .into());
        }
        let stored = std::fs::metadata(self.store.path(&digest)).map_or(0, |m| m.len());
        if !self.meta.set_tier(&digest, LOCAL, tier).await? {
            return Ok(false); // collected or moved meanwhile; GC sweeps the copy
        }
        fail::fail_point!("tier.recorded", |_| Err(ObjectError::Aborted("failpoint tier.recorded".into())));
        self.blob_cache.remove(&digest);
        self.store.remove(&digest)?;
        self.store.quota.release(stored);
        Ok(true)
    }

    /// Brings a cold blob back to the local disk and removes the tier copy.
    /// False when it was not on a tier.
    pub async fn recall(&self, digest: Digest) -> Result<bool, ObjectError> {
        let Some(tier) = self.meta.blob_tier(&digest).await? else { return Ok(false) };
        if tier == LOCAL {
            return Ok(false);
        }
        let tiers =
            self.tiers.get().ok_or_else(|| StoreError::TierUnavailable { tier: tier.clone(), why: "no tiers are configured".into() })?;
        let t = tiers.get(&tier)?.clone();
        // A cached copy is read through to check it; else the tier's.
        let tmp = TempFile(self.store.temp_path("recall"));
        if let Err(e) = self.verify_local(digest).await {
            if !e.is_damage() {
                return Err(e.into());
            }
            let (key, t2, path) = (self.store.key().cloned(), t.clone(), tmp.0.clone());
            tokio::task::spawn_blocking(move || {
                let o = t2.open(&digest, Some(path))?;
                let mut r = BlobReader::from_source(o.source, o.len, PathBuf::from("<tier copy>"), digest, key.as_ref(), Range::ALL)?;
                r.read_through()?;
                o.fill.expect("a fill was asked for").complete()
            })
            .await
            .map_err(|e| ObjectError::Aborted(e.to_string()))??;
        }
        let _guard = self.publish_lock.lock().await;
        if tmp.0.exists() {
            self.store.place(&tmp.0, &digest)?;
        }
        let stored = std::fs::metadata(self.store.path(&digest)).map_or(0, |m| m.len());
        if !self.meta.set_tier(&digest, &tier, LOCAL).await? {
            return Ok(false);
        }
        if let Some(len) = tiers.cache.lock().expect("cache lock").pop(&digest) {
            tiers.cached.fetch_sub(len, Ordering::Relaxed);
        }
        self.store.quota.add_existing(stored);
        drop(_guard);
        if let Err(e) = t.remove(digest).await {
            warn!(%digest, tier, error = %e, "could not remove the tier copy after a recall; GC sweeps it");
        }
        Ok(true)
    }

    /// Reads the local file of a blob through.
    async fn verify_local(&self, digest: Digest) -> Result<(), StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.read(&digest, Range::ALL)?.read_through())
            .await
            .map_err(|e| StoreError::Io { path: PathBuf::new(), source: std::io::Error::other(e.to_string()) })?
    }

    /// One pass of the policies: moves what they select, `rate` bytes a
    /// second at most (0: unpaced).
    pub async fn tier_pass(&self, policies: &[TierPolicy], rate: u64) -> Result<TierReport, ObjectError> {
        let mut report = TierReport::default();
        let Some(tiers) = self.tiers.get() else { return Ok(report) };
        let read: Vec<Digest> = std::mem::take(&mut *tiers.reads.lock().expect("reads lock"));
        if !read.is_empty() {
            self.meta.touch_reads(&read, now_ms()).await?;
        }
        let now = now_ms();
        let ago = |d: Option<Duration>| d.map(|d| now - d.as_millis() as i64);
        for p in policies {
            let rule =
                TierRule { bucket: p.bucket.clone(), created_before_ms: ago(p.after), idle_since_ms: ago(p.idle), min_size: p.min_size };
            loop {
                let batch = self.meta.tier_candidates(&rule, 64).await?;
                if batch.is_empty() {
                    break;
                }
                let mut progressed = false;
                for (digest, size) in batch {
                    match self.move_to_tier(digest, size, &p.tier).await {
                        Ok(true) => {
                            report.moved += 1;
                            report.bytes += size;
                            progressed = true;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            report.failed += 1;
                            warn!(%digest, tier = %p.tier, error = %e, "moving a blob to its tier failed");
                        }
                    }
                    if rate > 0 {
                        tokio::time::sleep(Duration::from_secs_f64(size as f64 / rate as f64)).await;
                    }
                }
                if !progressed {
                    break; // every candidate failed: try again next pass
                }
            }
        }
        if report != TierReport::default() {
            info!(?report, "tier pass");
        }
        Ok(report)
    }

    /// Removes tier copies no blob row points at (a crash between copy and
    /// record, a failed removal), once older than `cutoff`.
    pub async fn sweep_tiers(&self, cutoff: SystemTime) -> u64 {
        let Some(tiers) = self.tiers.get() else { return 0 };
        let mut removed = 0;
        for (name, t) in &tiers.by_name {
            let listed = match t.list().await {
                Ok(l) => l,
                Err(e) => {
                    warn!(tier = %name, error = %e, "could not list the tier for GC");
                    continue;
                }
            };
            let old: Vec<Digest> = listed.into_iter().filter(|(_, at)| *at < cutoff).map(|(d, _)| d).collect();
            for chunk in old.chunks(512) {
                let _guard = self.publish_lock.lock().await;
                let Ok(where_) = self.meta.blob_tiers(chunk).await else { continue };
                for d in chunk {
                    if where_.get(d) != Some(name) && t.remove(*d).await.is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        removed
    }
}

/// A blob's file, verified: its local file, or a copy fetched from its
/// tier (removed when this is dropped).
pub struct BlobFile {
    path: PathBuf,
    _temp: Option<TempFile>,
}

impl BlobFile {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Objects {
    /// Reads a file-backed blob through and hands over a file of it, for
    /// copying elsewhere (backups): the local file, or a cold blob's tier
    /// copy fetched to a temp file.
    pub async fn blob_file(&self, digest: Digest, size: u64) -> Result<BlobFile, ObjectError> {
        match self.verify_local(digest).await {
            Ok(()) => {
                // A link of its own, so a move to a tier or a cache eviction
                // that removes the file meanwhile does not cut the reader off.
                let (path, tmp) = (self.store.path(&digest), TempFile(self.store.temp_path("link")));
                match std::fs::hard_link(&path, &tmp.0) {
                    Ok(()) => return Ok(BlobFile { path: tmp.0.clone(), _temp: Some(tmp) }),
                    // Moved or evicted since the check: read it where it is now.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    // No links here (an unusual file system): the file itself.
                    Err(_) => return Ok(BlobFile { path, _temp: None }),
                }
            }
            Err(e) if !matches!(e, StoreError::Missing { .. }) => return Err(e.into()),
            Err(_) => {}
        }
        let Some((mut reader, Some(fill))) = self.open_cold(digest, Range::ALL, true).await? else {
            return Err(StoreError::Missing { digest }.into());
        };
        let ColdFill { fill, tmp } = fill;
        tokio::task::spawn_blocking(move || {
            if reader.size != size {
                return Err(StoreError::Corrupt { digest, why: format!("the tier copy holds {} bytes, not {size}", reader.size) });
            }
            reader.read_through()?;
            fill.complete()
        })
        .await
        .map_err(|e| ObjectError::Aborted(e.to_string()))??;
        Ok(BlobFile { path: tmp.0.clone(), _temp: Some(tmp) })
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
