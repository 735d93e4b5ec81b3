//! Group commit: puts that finish together are published with one sync and
//! recorded in one SQLite transaction.
//!
//! Order matters for crash safety: blob files are renamed into place and
//! synced first, then the metadata commits, then clients hear back. A crash
//! before the metadata commit leaves blob files without rows, which are
//! never served and which GC removes.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{debug, error};

use super::ObjectError;
use strata_meta::{Committed, MetaError, MetaStore, NewVersion, ObjectRecord};
use strata_store::{Digest, LocalStore, Staged};

/// Most puts committed in one transaction.
const MAX_BATCH: usize = 512;

pub struct CommitJob {
    pub staged: Staged,
    pub version: NewVersion,
    pub reply: oneshot::Sender<Result<ObjectRecord, ObjectError>>,
}

/// Runs the commit loop on a thread of its own, with a runtime of its own
/// (and its own blocking pool for publishing files): its many short hops to
/// the SQLite thread then never wait in the queue behind request tasks.
pub fn start(rx: mpsc::Receiver<CommitJob>, store: Arc<LocalStore>, meta: Arc<MetaStore>, publish_lock: Arc<Mutex<()>>) {
    let spawned = std::thread::Builder::new().name("strata-commit".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for the commit loop");
        rt.block_on(run(rx, store, meta, publish_lock));
    });
    spawned.expect("spawning the commit thread");
}

async fn run(mut rx: mpsc::Receiver<CommitJob>, store: Arc<LocalStore>, meta: Arc<MetaStore>, publish_lock: Arc<Mutex<()>>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let _guard = publish_lock.lock().await;
        // A put whose caller is gone (cancelled, past its deadline) was
        // never acknowledged: drop it, and its staged blob with it.
        batch.retain(|job| !job.reply.is_closed());
        if !batch.is_empty() {
            commit_batch(batch, &store, &meta).await;
        }
    }
}

async fn commit_batch(batch: Vec<CommitJob>, store: &Arc<LocalStore>, meta: &MetaStore) {
    let started = std::time::Instant::now();
    let size = batch.len();
    let digests: Vec<Digest> = batch.iter().map(|j| j.staged.digest).collect();
    // Only files are published; inline bytes go into the metadata batch,
    // which itself decides whether they replace a row's (saving a
    // metadata round trip for a batch of small puts).
    let files: Vec<Digest> = batch.iter().filter(|j| j.staged.inline.is_none()).map(|j| j.staged.digest).collect();
    let known = if files.is_empty() {
        HashSet::new()
    } else {
        match meta.known_blobs(&files).await {
            Ok(k) => k,
            Err(e) => return fail_all(batch, e),
        }
    };
    // Publish one file per new digest; duplicates in the batch share it.
    let mut publish_idx = Vec::new();
    let mut seen = HashSet::new();
    for (i, job) in batch.iter().enumerate() {
        let d = job.staged.digest;
        if job.staged.inline.is_none() && !known.contains(&d) && seen.insert(d) {
            publish_idx.push(i);
        }
    }
    let published: HashSet<Digest> = publish_idx.iter().map(|&i| digests[i]).collect();
    let batch = if publish_idx.is_empty() {
        batch
    } else {
        let s = store.clone();
        let idx = publish_idx.clone();
        let (batch, result) = tokio::task::spawn_blocking(move || {
            let staged: Vec<&Staged> = idx.iter().map(|&i| &batch[i].staged).collect();
            let r = s.publish(&staged);
            (batch, r)
        })
        .await
        .expect("publish task panicked");
        if let Err(e) = result {
            error!(error = %e, "publishing blobs failed");
            // Files renamed into place before the failure have no rows: remove
            // them (their bytes were in a staged file a moment ago).
            remove_files(store, published.iter().copied().collect()).await;
            for job in batch {
                let _ = job.reply.send(Err(ObjectError::Store(e.duplicate())));
            }
            return;
        }
        batch
    };

    // Every item of a digest written now may refresh a stale row; the
    // metadata batch does so for the first of them it accepts.
    let versions: Vec<NewVersion> = batch
        .iter()
        .map(|j| {
            let mut v = j.version.clone();
            v.fresh_blob = published.contains(&v.digest);
            v
        })
        .collect();
    let published_at = started.elapsed();
    let Committed { results, written } = match meta.commit_batch(&versions).await {
        Ok(r) => r,
        Err(e) => {
            // Published files got no rows: never served, but remove them now
            // rather than leave them to GC, since their quota is given back.
            remove_files(store, published.iter().copied().collect()).await;
            return fail_all(batch, e);
        }
    };

    debug!(size, ?published_at, took = ?started.elapsed(), "committed a batch");
    // A file published for items whose batch wrote no row for it (all
    // failed a condition, a retry answered with the first put's record, an
    // older copy had nowhere to go) is debris.
    let unused: Vec<Digest> = published.iter().filter(|d| !written.contains(*d)).copied().collect();
    remove_files(store, unused).await;
    // Keep the staged blob whose bytes are now stored (its quota is now
    // the file's or the row's): a file published for a row the batch
    // wrote, or the first inline copy of a digest whose row it wrote.
    // Every other one is dropped, returning its quota and temp file.
    let mut kept: HashSet<Digest> = HashSet::new();
    let publish_idx: HashSet<usize> = publish_idx.into_iter().collect();
    for (i, (job, r)) in batch.into_iter().zip(results).enumerate() {
        let d = job.staged.digest;
        let stored = if job.staged.inline.is_some() {
            written.contains(&d) && kept.insert(d)
        } else {
            publish_idx.contains(&i) && written.contains(&d)
        };
        if stored {
            job.staged.keep();
        }
        let _ = job.reply.send(r.map_err(ObjectError::from));
    }
}

/// Deletes blob files (best effort, on a blocking thread); the caller holds
/// the publish lock and knows no row refers to them.
pub(super) async fn remove_files(store: &Arc<LocalStore>, digests: Vec<Digest>) {
    if digests.is_empty() {
        return;
    }
    let store = store.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for d in digests {
            let _ = store.remove(&d);
        }
    })
    .await;
}

fn fail_all(batch: Vec<CommitJob>, e: MetaError) {
    error!(error = %e, "committing a batch of puts failed");
    for job in batch {
        let _ = job.reply.send(Err(ObjectError::Meta(e.duplicate())));
    }
}
