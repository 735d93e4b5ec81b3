//! `backup restore`: one node's part of a backup into an empty data
//! directory. Every blob is verified before it is placed and the metadata
//! goes in last, so a restore that fails leaves no database behind: the
//! node never starts on a torn restore.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use strata_store::{BlobReader, LocalStore, Range, StoreError};
use tokio::sync::watch;

use crate::backup::Progress;
use crate::manifest::{self, BlobRef, Manifest, NodePart};
use crate::{RemoteError, Target, TempFile, joined, transfer};

/// What a restore brought back.
#[derive(Clone, Debug, Default)]
pub struct RestoreReport {
    pub node: String,
    pub blobs: u64,
    pub bytes: u64,
    pub objects: u64,
    pub versions: u64,
}

/// Picks the node part to restore: the only one, or the one named.
pub fn node_part<'a>(m: &'a Manifest, node: Option<&str>) -> Result<&'a NodePart, RemoteError> {
    match node {
        Some(n) => m.nodes.iter().find(|p| p.node == n || p.cluster_node.is_some_and(|c| c.to_string() == n)).ok_or_else(|| {
            let have: Vec<_> = m.nodes.iter().map(|p| p.cluster_node.map_or(p.node.clone(), |c| c.to_string())).collect();
            RemoteError::Invalid(format!("backup {} has no node {n:?}; it has {}", m.id, have.join(", ")))
        }),
        None if m.nodes.len() == 1 => Ok(&m.nodes[0]),
        None => Err(RemoteError::Invalid(format!(
            "backup {} holds {} nodes: restore each into its own empty node with --node ID (see `strata backup ls`)",
            m.id,
            m.nodes.len()
        ))),
    }
}

/// Fails unless neither the blob store nor the metadata directory holds
/// anything.
pub fn check_empty(store: &LocalStore, meta_dir: &Path) -> Result<(), RemoteError> {
    if !store.scan()?.is_empty() {
        return Err(RemoteError::NotEmpty { path: store.root().join("blobs") });
    }
    let db = meta_dir.join("strata.db");
    if db.exists() {
        return Err(RemoteError::NotEmpty { path: db });
    }
    Ok(())
}

/// Restores `part` of backup `m` into `store` (opened on an empty
/// directory) and `meta_dir`.
pub async fn restore_node(
    t: &Target,
    part: &NodePart,
    store: &std::sync::Arc<LocalStore>,
    meta_dir: &Path,
    progress: &watch::Sender<Progress>,
) -> Result<RestoreReport, RemoteError> {
    check_empty(store, meta_dir)?;
    progress.send_replace(Progress {
        phase: "blobs",
        blobs_total: part.blobs.len() as u64,
        bytes_total: part.blobs.iter().map(|b| b.size).sum(),
        ..Progress::default()
    });
    let mut fetches = futures::stream::iter(part.blobs.iter().copied())
        .map(|b| {
            let store = store.clone();
            async move {
                let tmp = TempFile(store.temp_path("restore"));
                fetch_verified(t, &store, b, &tmp.0).await?;
                store.place(&tmp.0, &b.digest)?;
                Ok::<_, RemoteError>(b)
            }
        })
        .buffer_unordered(t.concurrency);
    let mut failed = Vec::new();
    let mut placed = Vec::new();
    let mut report = RestoreReport { node: part.node.clone(), ..RestoreReport::default() };
    while let Some(r) = fetches.next().await {
        match r {
            Ok(b) => {
                placed.push(b.digest);
                report.blobs += 1;
                report.bytes += b.size;
                progress.send_modify(|p| {
                    p.blobs_done += 1;
                    p.bytes_done += b.size;
                });
            }
            Err(e) => failed.push(e),
        }
    }
    drop(fetches);
    let r = async {
        if let Some(first) = failed.into_iter().next() {
            return Err(match first {
                e @ RemoteError::Unavailable { .. } => e,
                e => RemoteError::RestoreFailed { count: (part.blobs.len() as u64 - report.blobs) as usize, first: e.to_string() },
            });
        }
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.sync_tree()).await.map_err(joined)??;
        // The metadata last: once it is in place the node is whole.
        progress.send_replace(Progress { phase: "metadata", ..Progress::default() });
        write_meta(t, store, part, meta_dir).await
    }
    .await;
    if let Err(e) = r {
        // Nothing half-restored stays: a retry starts from empty.
        for d in placed {
            let _ = store.remove(&d);
        }
        return Err(e);
    }
    report.objects = part.objects;
    report.versions = part.versions;
    Ok(report)
}

/// Fetches, verifies and places the metadata snapshot as `strata.db`.
async fn write_meta(t: &Target, store: &std::sync::Arc<LocalStore>, part: &NodePart, meta_dir: &Path) -> Result<(), RemoteError> {
    let tmp = TempFile(store.temp_path("restore-meta"));
    fetch_verified(t, store, part.meta, &tmp.0).await?;
    let key = store.key().cloned();
    let (src, meta_dir, digest) = (tmp.0.clone(), meta_dir.to_path_buf(), part.meta.digest);
    tokio::task::spawn_blocking(move || -> Result<(), RemoteError> {
        std::fs::create_dir_all(&meta_dir).map_err(StoreError::io(&meta_dir))?;
        let part_path = meta_dir.join("strata.db.restoring");
        let copy = || -> Result<(), RemoteError> {
            let mut out = std::fs::File::create(&part_path).map_err(StoreError::io(&part_path))?;
            let mut r = BlobReader::open(src, digest, key.as_ref(), Range::ALL)?;
            while let Some(chunk) = r.next_chunk() {
                out.write_all(&chunk?).map_err(StoreError::io(&part_path))?;
            }
            out.sync_all().map_err(StoreError::io(&part_path))?;
            Ok(())
        };
        if let Err(e) = copy() {
            let _ = std::fs::remove_file(&part_path);
            return Err(e);
        }
        let db = meta_dir.join("strata.db");
        std::fs::rename(&part_path, &db).map_err(StoreError::io(&db))?;
        std::fs::File::open(&meta_dir).and_then(|d| d.sync_all()).map_err(StoreError::io(&meta_dir))?;
        Ok(())
    })
    .await
    .map_err(joined)?
}

/// Downloads blob `b` to `tmp` and checks it whole: every frame, the
/// digest, the size. The error names the blob.
pub async fn fetch_verified(t: &Target, store: &LocalStore, b: BlobRef, tmp: &Path) -> Result<(), RemoteError> {
    let src = manifest::blob_path(t, &b.digest);
    if transfer::download_file(t, &src, tmp).await?.is_none() {
        return Err(RemoteError::Invalid(format!("blob {} is missing from {t}", b.digest)));
    }
    check_file(tmp.to_path_buf(), b, store.key().cloned()).await
}

/// Reads a fetched blob file through and checks it is `b`.
pub async fn check_file(path: PathBuf, b: BlobRef, key: Option<strata_store::Key>) -> Result<(), RemoteError> {
    tokio::task::spawn_blocking(move || -> Result<(), RemoteError> {
        let bad = |why: String| RemoteError::Invalid(format!("blob {} is damaged: {why}", b.digest));
        let mut r = BlobReader::open(path, b.digest, key.as_ref(), Range::ALL).map_err(|e| bad(e.to_string()))?;
        if r.size != b.size {
            return Err(bad(format!("it holds {} bytes, the manifest says {}", r.size, b.size)));
        }
        r.read_through().map_err(|e| bad(e.to_string()))
    })
    .await
    .map_err(joined)?
}
