//! `BackupCreate`: a backup of this node, with progress as it goes.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::error::{ApiError, remote};
use super::pb;
use crate::config::TargetSpec;
use crate::objects::Objects;
use crate::remote::backup::{self, Progress};
use crate::remote::{Manifest, Target};

pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::BackupProgress, Status>> + Send>>;

/// The target a request names: the configured one, or its own URL.
pub fn target_of(
    req_url: &str,
    options: std::collections::BTreeMap<String, String>,
    configured: Option<&TargetSpec>,
) -> Result<Target, ApiError> {
    let spec = match configured {
        Some(c) if req_url.is_empty() || req_url == c.url => {
            if !options.is_empty() {
                return Err(super::error::invalid("options are taken from [backup.target] for the configured URL"));
            }
            c.clone()
        }
        _ if req_url.is_empty() => return Err(super::error::invalid("no URL given and no [backup.target] in the server's config")),
        _ => TargetSpec { options, ..TargetSpec::new(req_url) },
    };
    Target::open(&spec).map_err(remote)
}

pub async fn handle_create(
    objects: &Arc<Objects>,
    clustered: bool,
    configured: Option<&TargetSpec>,
    req: pb::BackupCreateRequest,
) -> Result<ProgressStream, ApiError> {
    if clustered {
        return Err(ApiError::Status(Status::failed_precondition(
            "this node is in a cluster: cluster backups are not built yet, and a node's backup alone would miss the cluster state",
        )));
    }
    let target = target_of(&req.url, req.options.into_iter().collect(), configured)?;
    let (tx, rx) = mpsc::channel(16);
    let objects = objects.clone();
    tokio::spawn(async move {
        let (ptx, mut prx) = watch::channel(Progress::default());
        let run = backup::create(&objects, &target, &ptx);
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
    }
}
