//! `BackupCreate`: a backup of this node (or of its cluster), with
//! progress as it goes.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::error::{ApiError, remote};
use super::pb;
use crate::cluster::node::Cluster;
use crate::config::TargetSpec;
use crate::objects::Objects;
use crate::remote::backup::{self, Progress};
use crate::remote::{Manifest, Target};

pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::BackupProgress, Status>> + Send>>;

/// The target of a backup: the server's `[backup.target]`. A client
/// cannot point the server at a place of its choosing (the server would
/// write wherever it may, with its own credentials).
pub fn target_of(req_url: &str, options_given: bool, configured: Option<&TargetSpec>, objects: &Objects) -> Result<Target, ApiError> {
    let Some(spec) = configured else {
        return Err(ApiError::Status(Status::failed_precondition(
            "this server has no [backup.target]: configure one (a client cannot choose where the server writes)",
        )));
    };
    if !req_url.is_empty() && req_url != spec.url {
        return Err(ApiError::Status(Status::permission_denied(format!(
            "the server backs up only to its [backup.target] ({}), not {req_url}",
            spec.url
        ))));
    }
    if options_given {
        return Err(super::error::invalid("options come from [backup.target]; the request cannot set them"));
    }
    let t = Target::open_durable(spec).map_err(remote)?;
    let mut dirs = vec![objects.store().root()];
    dirs.extend(objects.meta().dir());
    if t.overlaps(&dirs) {
        return Err(super::error::invalid(format!("[backup.target] {} overlaps this server's data directory", spec.url)));
    }
    Ok(t)
}

/// On a cluster node, a backup of the whole cluster (every member sends
/// its part); otherwise of this node.
pub async fn handle_create(
    objects: &Arc<Objects>,
    cluster: Option<Arc<Cluster>>,
    configured: Option<&TargetSpec>,
    req: pb::BackupCreateRequest,
) -> Result<ProgressStream, ApiError> {
    let target = target_of(&req.url, !req.options.is_empty(), configured, objects)?;
    let (tx, rx) = mpsc::channel(16);
    let objects = objects.clone();
    tokio::spawn(async move {
        let (ptx, mut prx) = watch::channel(Progress::default());
        let run = async {
            match &cluster {
                Some(c) => crate::cluster_backup::create(c, &objects, &target, &ptx).await,
                None => backup::create(&objects, &target, &ptx).await,
            }
        };
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                Ok(()) = prx.changed() => {
                    let p = prx.borrow_and_update().clone();
                    // A client that stopped listening does not stop the backup.
                    let _ = tx.try_send(Ok(progress(&p, None)));
                }
            }
        };
        let last = match result {
            Ok(m) => Ok(progress(&prx.borrow(), Some(info(&m, &target)))),
            Err(e) => Err(Status::from(remote(e))),
        };
        let _ = tx.send(last).await;
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

fn progress(p: &Progress, done: Option<pb::BackupInfo>) -> pb::BackupProgress {
    pb::BackupProgress {
        phase: p.phase.to_string(),
        blobs_done: p.blobs_done,
        blobs_total: p.blobs_total,
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        done,
    }
}

pub fn info(m: &Manifest, target: &Target) -> pb::BackupInfo {
    let (uploaded_blobs, uploaded_bytes) = m.uploaded();
    pb::BackupInfo {
        id: m.id.clone(),
        url: target.to_string(),
        objects: m.nodes.iter().map(|n| n.objects).sum(),
        versions: m.nodes.iter().map(|n| n.versions).sum(),
        blobs: m.nodes.iter().map(|n| n.blobs.len() as u64).sum(),
        uploaded_blobs,
        uploaded_bytes,
        damaged: m.nodes.iter().flat_map(|n| n.damaged.iter().map(|d| d.to_string())).collect(),
        live_bytes: m.nodes.iter().map(|n| n.live_bytes).sum(),
        nodes: m.nodes.len() as u32,
    }
}
