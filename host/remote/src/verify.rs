//! `backup verify`: every blob a backup needs is at the target and sound.

use std::collections::BTreeMap;
use std::path::Path;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use strata_store::{Digest, Key};
use tokio::sync::watch;

use crate::backup::Progress;
use crate::manifest::{self, BlobRef, Manifest};
use crate::restore::check_file;
use crate::{RemoteError, Target, TempFile, transfer};

#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub blobs: u64,
    pub bytes: u64,
    pub missing: Vec<Digest>,
    /// Damaged blobs and what is wrong with each.
    pub corrupt: Vec<(Digest, String)>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// Checks the blobs of `backups` (each once). `quick`: presence and file
/// size only; otherwise each is downloaded to `scratch` and read through
/// (frames, digest, size), which needs the key the backup was sealed with.
pub async fn verify(
    t: &Target,
    backups: &[Manifest],
    key: Option<&Key>,
    quick: bool,
    scratch: &Path,
    progress: &watch::Sender<Progress>,
) -> Result<VerifyReport, RemoteError> {
    // Each blob once, with every file size a node recorded for it (nodes
    // of a cluster may have encoded it differently; any one is whole).
    let mut needs: BTreeMap<Digest, (BlobRef, Vec<u64>)> = BTreeMap::new();
    for m in backups {
        if let Some(f) = &m.key_fingerprint
            && !quick
        {
            match key {
                None => {
                    return Err(RemoteError::Invalid(format!(
                        "backup {} is encrypted (key {f}): configure the key to verify it, or use --quick",
                        m.id
                    )));
                }
                Some(k) if k.fingerprint_hex() != *f => {
                    return Err(RemoteError::Invalid(format!(
                        "backup {} was sealed with key {f}, the configured key is {}",
                        m.id,
                        k.fingerprint_hex()
                    )));
                }
                Some(_) => {}
            }
        }
        for b in m.needs() {
            let e = needs.entry(b.digest).or_insert((b, Vec::new()));
            if b.stored != 0 {
                e.1.push(b.stored);
            }
        }
    }
    let present = manifest::present(t).await?;
    let mut report = VerifyReport::default();
    let mut todo = Vec::new();
    for (b, sizes) in needs.into_values() {
        match present.get(&b.digest) {
            None => report.missing.push(b.digest),
            // A torn or emptied copy shows in its size without reading it.
            Some(&n) if !sizes.is_empty() && !sizes.contains(&n) => {
                report.corrupt.push((b.digest, format!("it holds {n} bytes, the backup wrote {}", sizes[0])));
            }
            Some(_) => todo.push(b),
        }
    }
    progress.send_replace(Progress {
        phase: "verify",
        blobs_total: todo.len() as u64,
        bytes_total: todo.iter().map(|b| b.size).sum(),
        ..Progress::default()
    });
    if quick {
        report.blobs = todo.len() as u64;
        return Ok(report);
    }
    std::fs::create_dir_all(scratch).map_err(|e| RemoteError::Io(format!("creating {}: {e}", scratch.display())))?;
    let mut checks = futures::stream::iter(todo)
        .map(|b| {
            let key = key.cloned();
            async move {
                let tmp = TempFile(scratch.join(format!("{:016x}.verify.tmp", rand::random::<u64>())));
                let r = match transfer::download_file(t, &manifest::blob_path(t, &b.digest), &tmp.0).await? {
                    None => Err(None),
                    Some(_) => check_file(tmp.0.clone(), b, key).await.map_err(|e| Some(e.to_string())),
                };
                Ok::<_, RemoteError>((b, r))
            }
        })
        .buffer_unordered(t.concurrency);
    while let Some(r) = checks.next().await {
        let (b, outcome) = r?;
        match outcome {
            Ok(()) => {
                report.blobs += 1;
                report.bytes += b.size;
            }
            Err(None) => report.missing.push(b.digest),
            Err(Some(why)) => report.corrupt.push((b.digest, why)),
        }
        progress.send_modify(|p| {
            p.blobs_done += 1;
            p.bytes_done += b.size;
        });
    }
    Ok(report)
}

/// Removes damaged blobs from the target (under its lock), so the next
/// backup of a node that still holds them sends them again: a backup takes
/// a blob that is present with the right size for sound, and only a full
/// verify reads it. Returns how many were removed.
pub async fn remove_damaged(t: &Target, damaged: &[Digest]) -> Result<usize, RemoteError> {
    let lock = crate::lock::TargetLock::take(t, "backup verify --repair").await?;
    let r = async {
        lock.check().await?;
        let mut n = 0;
        for d in damaged {
            match t.store.delete(&manifest::blob_path(t, d)).await {
                Ok(()) => n += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(RemoteError::at(t)(e)),
            }
        }
        Ok(n)
    }
    .await;
    lock.release().await;
    r
}
