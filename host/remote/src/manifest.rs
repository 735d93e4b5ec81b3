//! What one backup holds, and the backups at a target.

use std::collections::HashMap;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use strata_store::Digest;

use crate::{RemoteError, Target, transfer};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// A blob a backup needs, by digest and plaintext size, with the size of
/// its file (0: not recorded).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub stored: u64,
}

/// One node's part of a backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodePart {
    pub node: String,
    /// The metadata snapshot (an SQLite database), stored as a blob.
    pub meta: BlobRef,
    /// Every referenced blob kept in a file; small blobs are inside `meta`.
    pub blobs: Vec<BlobRef>,
    /// Blobs the snapshot references that were damaged or gone on the node
    /// and are not in the backup.
    #[serde(default)]
    pub damaged: Vec<Digest>,
    pub objects: u64,
    pub versions: u64,
    pub live_bytes: u64,
    /// What this backup sent; the rest was at the target already.
    pub uploaded_blobs: u64,
    pub uploaded_bytes: u64,
    /// The node's cluster id, in a cluster backup: a restored node keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_node: Option<u64>,
}

/// What a cluster backup keeps of the cluster itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterPart {
    pub cluster_id: String,
    /// The members when it was taken (node id, peer address).
    pub members: Vec<(u64, String)>,
    /// The cluster state a restored cluster adopts (replication policies,
    /// indexes, retired ids), as the cluster crate writes it.
    pub state: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub created_ms: u64,
    pub finished_ms: u64,
    /// The Strata version that wrote it.
    pub strata: String,
    /// Fingerprint of the encryption key the blobs are sealed with.
    pub key_fingerprint: Option<String>,
    pub nodes: Vec<NodePart>,
    /// Set on a backup of a cluster: one part per member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterPart>,
}

impl Manifest {
    /// Every blob the backup needs, snapshots included.
    pub fn needs(&self) -> impl Iterator<Item = BlobRef> + '_ {
        self.nodes.iter().flat_map(|n| std::iter::once(n.meta).chain(n.blobs.iter().copied()))
    }

    pub fn uploaded(&self) -> (u64, u64) {
        self.nodes.iter().fold((0, 0), |(b, n), p| (b + p.uploaded_blobs, n + p.uploaded_bytes))
    }
}

/// A new backup id: its start time, sortable (`2026-12-06T22-47-52.123Z`).
pub fn new_id() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string().replace(':', "-")
}

pub fn blob_path(t: &Target, digest: &Digest) -> Path {
    let hex = digest.to_string();
    t.path(&format!("blobs/{}/{hex}", &hex[..2]))
}

fn manifest_path(t: &Target, id: &str) -> Path {
    t.path(&format!("backups/{id}/manifest.json"))
}

/// Writes a finished backup's manifest; a backup exists from this moment.
pub async fn write(t: &Target, m: &Manifest) -> Result<(), RemoteError> {
    let json = serde_json::to_vec_pretty(m).map_err(|e| RemoteError::Io(e.to_string()))?;
    if !transfer::put_new(t, &manifest_path(t, &m.id), Bytes::from(json)).await? {
        return Err(RemoteError::Invalid(format!("{t} already has a backup {}", m.id)));
    }
    Ok(())
}

pub async fn read(t: &Target, id: &str) -> Result<Manifest, RemoteError> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(RemoteError::Invalid(format!("{id:?} is not a backup id (see `strata backup ls`)")));
    }
    let got = match t.store.get(&manifest_path(t, id)).await {
        Ok(g) => g.bytes().await.map_err(RemoteError::at(t))?,
        Err(object_store::Error::NotFound { .. }) => return Err(RemoteError::NoBackup { target: t.to_string(), id: id.into() }),
        Err(e) => return Err(RemoteError::at(t)(e)),
    };
    let m: Manifest =
        serde_json::from_slice(&got).map_err(|e| RemoteError::BadManifest { target: t.to_string(), id: id.into(), why: e.to_string() })?;
    if m.format != FORMAT {
        return Err(RemoteError::BadManifest {
            target: t.to_string(),
            id: id.into(),
            why: format!("format {} (this build reads {FORMAT})", m.format),
        });
    }
    Ok(m)
}

/// Ids of the finished backups, oldest first.
pub async fn ids(t: &Target) -> Result<Vec<String>, RemoteError> {
    let prefix = t.path("backups");
    let listed = t.store.list_with_delimiter(Some(&prefix)).await.map_err(RemoteError::at(t))?;
    let mut ids: Vec<String> = listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
    ids.sort();
    Ok(ids)
}

/// Every finished backup, oldest first. A directory without a manifest
/// (a backup that did not finish) is left out.
pub async fn list(t: &Target) -> Result<Vec<Manifest>, RemoteError> {
    let mut out = Vec::new();
    for id in ids(t).await? {
        match read(t, &id).await {
            Ok(m) => out.push(m),
            Err(RemoteError::NoBackup { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The backup `id`, or the newest when `None`.
pub async fn pick(t: &Target, id: Option<&str>) -> Result<Manifest, RemoteError> {
    match id {
        Some(id) => read(t, id).await,
        None => list(t).await?.pop().ok_or_else(|| RemoteError::NoBackups { target: t.to_string() }),
    }
}

/// The blobs at the target with their stored sizes (one listing).
pub async fn present(t: &Target) -> Result<HashMap<Digest, u64>, RemoteError> {
    let prefix = t.path("blobs");
    let metas: Vec<_> = t.store.list(Some(&prefix)).try_collect().await.map_err(RemoteError::at(t))?;
    // Only `blobs/ab/<digest>` counts: anything else under `blobs/` (a
    // target pointed into a data directory, debris) is not a backup's blob.
    Ok(metas
        .into_iter()
        .filter_map(|m| {
            let d: Digest = m.location.filename()?.parse().ok()?;
            (m.location == blob_path(t, &d)).then_some((d, m.size))
        })
        .collect())
}
