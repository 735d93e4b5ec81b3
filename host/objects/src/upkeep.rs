//! Background upkeep: garbage collection, scrubbing and database compaction,
//! each on its own interval, all stopping on shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{info, warn};

use super::Objects;
use strata_store::Digest;

/// Temp files younger than this are never removed while the server runs.
const TEMP_MIN_AGE: Duration = Duration::from_secs(3600);

/// What one pass found or did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpkeepReport {
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    pub orphans_removed: u64,
    /// Copies on tiers no blob pointed at.
    pub tier_orphans_removed: u64,
    pub temp_removed: u64,
    pub blobs_verified: u64,
    pub corrupt: Vec<Digest>,
}

pub struct Upkeep {
    objects: Arc<Objects>,
    cleanup_age: Duration,
}

impl Upkeep {
    pub fn new(objects: Arc<Objects>, cleanup_age: Duration) -> Self {
        Self { objects, cleanup_age }
    }

    /// Runs `task` every `every` until `shutdown` flips; a zero interval never runs.
    pub fn spawn_every<F, Fut>(every: Duration, mut shutdown: watch::Receiver<bool>, mut task: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        if every.is_zero() {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // the first tick is immediate; skip it
            loop {
                tokio::select! {
                    _ = tick.tick() => task().await,
                    _ = shutdown.changed() => return,
                }
            }
        });
    }

    /// Removes blobs unreferenced for longer than `cleanup_age`, blob files
    /// that never got a metadata row, and stale temp files.
    pub async fn gc(&self) -> Result<UpkeepReport, super::ObjectError> {
        let mut report = UpkeepReport::default();
        let cutoff = SystemTime::now() - self.cleanup_age;
        let cutoff_ms = cutoff.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let meta = self.objects.meta();
        let store = self.objects.store();
        loop {
            let batch = meta.unreferenced_blobs(cutoff_ms + 1, 256).await?;
            if batch.is_empty() {
                break;
            }
            let _guard = self.objects.publish_lock().lock().await;
            if self.objects.blobs_pinned() {
                info!("a backup is running: GC removes no blob until it ends");
                break;
            }
            let dropped = meta.drop_blobs(&batch).await?;
            // A cold blob's local file, if any, is a cached copy.
            super::commit::remove_files(store, dropped.iter().map(|(d, _, _)| *d).collect()).await;
            for (digest, stored, tier) in dropped {
                if tier == strata_meta::tiers::LOCAL {
                    store.quota.release(stored);
                } else if let Some(t) = self.objects.tiers().and_then(|t| t.get(&tier).ok()) {
                    // Left behind on failure: the sweep below finds it.
                    if let Err(e) = t.remove(digest).await {
                        warn!(%digest, tier, error = %e, "could not remove a collected blob from its tier");
                    }
                }
                report.blobs_removed += 1;
                report.bytes_freed += stored;
            }
        }
        // Files on disk with no row: left by a crash between publish and commit.
        let s = store.clone();
        let files = tokio::task::spawn_blocking(move || s.scan()).await.map_err(|e| super::ObjectError::Aborted(e.to_string()))??;
        self.objects.adopt_cached(&files.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>()).await;
        report.tier_orphans_removed = self.objects.sweep_tiers(cutoff).await;
        let old: Vec<Digest> = files.iter().filter(|f| f.2 < cutoff).map(|f| f.0).collect();
        for chunk in old.chunks(512) {
            let _guard = self.objects.publish_lock().lock().await;
            let rows = meta.blob_rows(chunk).await?;
            for d in chunk.iter().filter(|d| !rows.contains(d)) {
                let s = store.clone();
                let d = *d;
                if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || s.remove(&d)).await
                    && n > 0
                {
                    report.orphans_removed += 1;
                }
            }
        }
        // A temp file belongs to an upload in progress or a blob waiting for
        // its commit, both touched within moments (idle uploads are ended by
        // `server.stream_idle_timeout`): whatever `cleanup_age` says, only
        // files untouched for TEMP_MIN_AGE are debris.
        let temp_cutoff = SystemTime::now() - self.cleanup_age.max(TEMP_MIN_AGE);
        let s = store.clone();
        report.temp_removed = tokio::task::spawn_blocking(move || s.remove_temp_files(Some(temp_cutoff)))
            .await
            .map_err(|e| super::ObjectError::Aborted(e.to_string()))?? as u64;
        if report != UpkeepReport::default() {
            info!(?report, "gc pass");
        }
        Ok(report)
    }

    /// Reads every blob back and checks it; corrupt ones are quarantined.
    pub async fn scrub(&self) -> Result<UpkeepReport, super::ObjectError> {
        let mut report = UpkeepReport::default();
        let meta = self.objects.meta();
        let mut after = None;
        loop {
            let page = meta.blobs_after(after.as_ref(), 256).await?;
            let Some((last, _)) = page.last().copied() else { break };
            for (d, size) in page {
                let verdict = match self.objects.verify(d, size).await {
                    Ok(()) => Ok(()),
                    Err(super::ObjectError::Store(e)) => Err(e),
                    Err(e) => return Err(e),
                };
                match verdict {
                    Ok(()) => {
                        meta.mark_verified(&d).await?;
                        report.blobs_verified += 1;
                    }
                    Err(e) if e.is_damage() => {
                        self.objects.report_corrupt(d, size, &e).await;
                        report.corrupt.push(d);
                    }
                    Err(e) => warn!(digest = %d, error = %e, "scrub could not read blob"),
                }
            }
            after = Some(last);
        }
        info!(verified = report.blobs_verified, corrupt = report.corrupt.len(), "scrub pass");
        Ok(report)
    }
}
