//! `backup create`: a node's metadata snapshot and every blob it needs
//! that the target lacks.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use strata_meta::MetaStore;
use strata_objects::{ObjectError, Objects};
use strata_store::{Digest, StoreError};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::lock::TargetLock;
use crate::manifest::{self, BlobRef, ClusterPart, FORMAT, Manifest, NodePart};
use crate::{RemoteError, Target, TempFile, joined, now_ms, transfer};

/// How far a long run has got, for progress bars.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub phase: &'static str,
    pub blobs_done: u64,
    pub blobs_total: u64,
    /// Plaintext bytes.
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Backs up one node to `t`: takes the target's lock, sends what is
/// missing, writes the manifest.
pub async fn create(objects: &Arc<Objects>, t: &Target, progress: &watch::Sender<Progress>) -> Result<Manifest, RemoteError> {
    let who = format!("node {}", objects.meta().node_id());
    run(t, &who, fingerprint(objects), || async move { Ok((vec![send_part(objects, t, progress).await?], None)) }).await
}

/// Runs one backup at `t` under the target's lock: `parts` sends what the
/// nodes need and returns their parts (and, for a cluster, the cluster's);
/// the manifest goes last, once the lock is known to be still ours.
pub async fn run<F, Fut>(t: &Target, who: &str, fingerprint: Option<String>, parts: F) -> Result<Manifest, RemoteError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(Vec<NodePart>, Option<ClusterPart>), RemoteError>>,
{
    let id = manifest::new_id();
    let lock = TargetLock::take(t, &format!("backup {id} by {who}")).await?;
    let r = async {
        let created_ms = now_ms();
        bind_key(t, fingerprint.as_deref()).await?;
        let (nodes, cluster) = parts().await?;
        let m = Manifest {
            format: FORMAT,
            id: id.clone(),
            created_ms,
            finished_ms: now_ms(),
            strata: env!("CARGO_PKG_VERSION").into(),
            key_fingerprint: fingerprint,
            nodes,
            cluster,
        };
        lock.check().await?;
        manifest::write(t, &m).await?;
        Ok::<_, RemoteError>(m)
    }
    .await;
    lock.release().await;
    let m = r?;
    let (blobs, bytes) = m.uploaded();
    info!(target = %t, id = %m.id, nodes = m.nodes.len(), blobs, bytes, "backup finished");
    Ok(m)
}

/// The fingerprint of the key this node's blobs are sealed with.
pub fn fingerprint(objects: &Objects) -> Option<String> {
    objects.store().key().map(|k| k.fingerprint_hex())
}

/// This node's part of a backup someone else runs (and holds the lock
/// of): checks the target is bound to this node's key, then sends what
/// the target lacks.
pub async fn part(objects: &Arc<Objects>, t: &Target, progress: &watch::Sender<Progress>) -> Result<NodePart, RemoteError> {
    bind_key(t, fingerprint(objects).as_deref()).await?;
    send_part(objects, t, progress).await
}

/// This node's part, sent by the run that bound the target's key (see
/// [`run`]): what the target lacks goes up.
pub async fn send_part(objects: &Arc<Objects>, t: &Target, progress: &watch::Sender<Progress>) -> Result<NodePart, RemoteError> {
    let present = manifest::present(t).await?;
    backup_node(objects, t, &present, progress).await
}

/// A target holds blobs sealed with one key (or none): blobs are shared by
/// digest, so a blob sealed with another key would pass for present and
/// not be readable. The first backup records its key's fingerprint.
pub async fn bind_key(t: &Target, fingerprint: Option<&str>) -> Result<(), RemoteError> {
    let ours = fingerprint.unwrap_or("none");
    let path = t.path("KEY");
    if transfer::put_new(t, &path, Bytes::from(ours.to_string())).await? {
        return Ok(());
    }
    let theirs = t.store.get(&path).await.map_err(RemoteError::at(t))?.bytes().await.map_err(RemoteError::at(t))?;
    let theirs = String::from_utf8_lossy(&theirs).trim().to_string();
    if theirs != ours {
        let say = |f: &str| if f == "none" { "no key (not encrypted)".to_string() } else { format!("key {f}") };
        return Err(RemoteError::Invalid(format!(
            "{t} holds backups sealed with {}, and this node's blobs are sealed with {}: back up to another prefix",
            say(&theirs),
            say(ours)
        )));
    }
    Ok(())
}

/// Sends this node's part to `t`, skipping blobs in `present` with the
/// same size (a torn or emptied copy is sent again). GC removes no blob
/// meanwhile, so everything the snapshot names stays readable.
pub async fn backup_node(
    objects: &Arc<Objects>,
    t: &Target,
    present: &HashMap<Digest, u64>,
    progress: &watch::Sender<Progress>,
) -> Result<NodePart, RemoteError> {
    let _pin = objects.pin_blobs().await;
    let store = objects.store().clone();
    progress.send_replace(Progress { phase: "snapshot", ..Progress::default() });
    let snap_file = TempFile(store.temp_path("snapshot"));
    let snap = objects.meta().snapshot_into(&snap_file.0).await?;

    let mut uploaded_blobs = 0u64;
    let mut uploaded_bytes = 0u64;
    let mut blobs = Vec::with_capacity(snap.blobs.len());
    let mut damaged = Vec::new();
    let mut todo = Vec::new();
    for &(digest, size, stored, corrupt) in &snap.blobs {
        if corrupt {
            damaged.push(digest);
            continue;
        }
        blobs.push(BlobRef { digest, size, stored });
        match present.get(&digest) {
            Some(&n) if n == stored => {}
            other => todo.push((BlobRef { digest, size, stored }, other.is_some())),
        }
    }
    progress.send_replace(Progress {
        phase: "blobs",
        blobs_total: todo.len() as u64,
        bytes_total: todo.iter().map(|(b, _)| b.size).sum(),
        ..Progress::default()
    });
    let mut sends = futures::stream::iter(todo)
        .map(|(b, replace)| {
            let objects = objects.clone();
            async move {
                // Verified before it leaves: a damaged blob is not backed up
                // as good. A cold blob comes from its tier.
                let file = match objects.blob_file(b.digest, b.size).await {
                    Ok(f) => f,
                    Err(ObjectError::Store(e)) if e.is_damage() => return Ok((b, Err(e.to_string()))),
                    Err(e) => return Err(e.into()),
                };
                let sent = transfer::upload_file(t, file.path(), &manifest::blob_path(t, &b.digest), replace).await?;
                Ok::<_, RemoteError>((b, Ok(sent)))
            }
        })
        .buffer_unordered(t.concurrency);
    let mut lost = Vec::new();
    while let Some(r) = sends.next().await {
        let (b, outcome) = r?;
        match outcome {
            Ok(sent) => {
                if sent > 0 {
                    uploaded_blobs += 1;
                    uploaded_bytes += sent;
                }
            }
            Err(why) => {
                warn!(digest = %b.digest, %why, "a blob is damaged on this node and is left out of the backup");
                lost.push(b.digest);
            }
        }
        progress.send_modify(|p| {
            p.blobs_done += 1;
            p.bytes_done += b.size;
        });
    }
    drop(sends);
    blobs.retain(|b| !lost.contains(&b.digest));
    MetaStore::finish_snapshot(&snap_file.0, &lost).await?;
    damaged.extend(lost);

    // The snapshot goes up last, as a blob: framed, compressed, sealed.
    progress.send_replace(Progress { phase: "metadata", ..Progress::default() });
    let path = snap_file.0.clone();
    let s = store.clone();
    let staged = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(StoreError::io(&path))?;
        let mut w = s.stage()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(StoreError::io(&path))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
        }
        w.finish()
    })
    .await
    .map_err(joined)??;
    drop(snap_file);
    let meta = BlobRef { digest: staged.digest, size: staged.size, stored: staged.stored_size };
    let dest = manifest::blob_path(t, &meta.digest);
    let replace = present.contains_key(&meta.digest);
    let sent = match (&staged.inline, staged.file()) {
        (Some(bytes), _) => {
            let n = bytes.len() as u64;
            if replace {
                t.store.put(&dest, bytes.clone().into()).await.map_err(RemoteError::at(t))?;
                n
            } else if transfer::put_new(t, &dest, bytes.clone()).await? {
                n
            } else {
                0
            }
        }
        (None, Some(file)) => transfer::upload_file(t, file, &dest, replace).await?,
        (None, None) => unreachable!("a staged blob is inline or in a file"),
    };
    if sent > 0 {
        uploaded_blobs += 1;
        uploaded_bytes += sent;
    }
    drop(staged);
    Ok(NodePart {
        node: snap.node_id,
        meta,
        blobs,
        damaged,
        objects: snap.objects,
        versions: snap.versions,
        live_bytes: snap.live_bytes,
        uploaded_blobs,
        uploaded_bytes,
        cluster_node: None,
    })
}
