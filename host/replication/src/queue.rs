//! The worker that drains the replication queue: each entry is a copy of a
//! version owed to a node. A copy the target already holds is skipped; a
//! blob it holds under another version is not sent again. Failures wait
//! `retry_delay`, doubling up to `retry_attempts` times; entries stay until
//! the copy is made, the version is gone, or the target left the cluster.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::Replicator;
use super::wire::{self, Lookup, Trailer, VersionHeader};
use strata_meta::{Identity, MetaError, QueueEntry};
use strata_store::Range;

impl Replicator {
    /// Drains the queue until `stop` turns true.
    pub fn spawn_queue(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            let width = this.config.max_concurrent_syncs;
            loop {
                if *stop.borrow() {
                    return;
                }
                let due = match this.objects.meta().queue_due((width * 4) as u32).await {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(error = %e, "reading the replication queue failed");
                        Vec::new()
                    }
                };
                if due.is_empty() {
                    let next = this.objects.meta().queue_next_due().await.ok().flatten();
                    let wait = next.map_or(Duration::from_secs(5), |d| {
                        Duration::from_millis((d - strata_cluster::now_ms() as i64).clamp(10, 5_000) as u64)
                    });
                    tokio::select! {
                        _ = this.queued.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                // Finished entries leave in one statement per round: a
                // transaction each would cost a sync each.
                let done: Vec<i64> = futures::stream::iter(due)
                    .map(|e| this.settle(e))
                    .buffer_unordered(width)
                    .filter_map(std::future::ready)
                    .collect()
                    .await;
                if let Err(e) = this.objects.meta().queue_done(&done).await {
                    warn!(error = %e, "updating the replication queue failed");
                }
            }
        });
    }

    /// Makes one copy; the entry's id if it is done.
    async fn settle(&self, e: QueueEntry) -> Option<i64> {
        let meta = self.objects.meta();
        match self.copy(&e).await {
            Ok(how) => {
                debug!(bucket = %e.bucket, key = %e.key, version = %e.version, node = e.node, how, "queued copy done");
                Some(e.id)
            }
            Err(why) => {
                let delay = self.config.retry_delay.as_millis() as i64 * (1i64 << e.attempts.min(self.config.retry_attempts));
                if e.attempts == self.config.retry_attempts {
                    warn!(bucket = %e.bucket, key = %e.key, node = e.node, error = %why, "a queued copy keeps failing");
                }
                if let Err(err) = meta.queue_retry(e.id, delay, &why).await {
                    warn!(error = %err, "updating the replication queue failed");
                }
                None
            }
        }
    }

    /// Makes one owed copy; says how.
    async fn copy(&self, e: &QueueEntry) -> Result<&'static str, String> {
        let meta = self.objects.meta();
        let rec = match meta.get(&e.bucket, &e.key, Some(&e.version)).await {
            Ok(r) => r,
            Err(MetaError::NoSuchVersion { .. } | MetaError::NoSuchBucket { .. } | MetaError::NotFound { .. }) => {
                return Ok("version gone");
            }
            Err(err) => return Err(err.to_string()),
        };
        if e.node == self.cluster.id {
            return Ok("held here");
        }
        let Some(addr) = self.addr_of(e.node) else {
            info!(node = e.node, "dropping a queued copy to a node that left the cluster");
            return Ok("target left");
        };
        let net = &self.cluster.network;
        let q = Lookup::new(&e.bucket, &e.key, Some(&e.version));
        let q = Lookup { digest: rec.digest, ..q };
        let held = wire::lookup(net, &addr, &q, self.short_timeout()).await.map_err(|e| e.to_string())?;
        if held.found.is_some_and(|f| f.sound) {
            return Ok("already there");
        }
        let replicas = meta.replicas(&e.bucket, &e.key, &e.version).await.map_err(|e| e.to_string())?;
        let parents = meta.parents(&e.bucket, &e.key, &e.version).await.map_err(|e| e.to_string())?;
        let node = e.version.split_once('-').map_or("", |(_, n)| n).to_string();
        let header = VersionHeader {
            bucket: e.bucket.clone(),
            key: e.key.clone(),
            identity: Identity {
                version: rec.version.clone(),
                stamp: rec.stamp,
                node,
                created_ms: rec.created_ms,
                modified_ms: rec.modified_ms,
                replicas,
                parents,
            },
            content_type: rec.content_type.clone(),
            attributes: rec.attributes.clone(),
            digest: rec.digest,
            size: Some(rec.size),
            no_data: held.has_digest,
            marker: rec.digest.is_none(),
            forget: false,
            relist: false,
            request_id: None,
            fence: None,
        };
        let Some(digest) = rec.digest else {
            return self.send_alone(&addr, &header).await.map(|()| "marker");
        };
        let (tx, task) = wire::open_push(net, &addr);
        let timeout = self.config.sync_timeout;
        let send = |f| {
            let tx = tx.clone();
            async move { tokio::time::timeout(timeout, tx.send(f)).await.ok().and_then(|r| r.ok()).ok_or(()) }
        };
        let mut how = "deduplicated";
        if send(wire::header_frame(&header)).await.is_ok() && !held.has_digest {
            how = "sent";
            let (_, mut rx) = self.objects.get(&e.bucket, &e.key, Some(&e.version), Range::ALL).await.map_err(|e| e.to_string())?;
            while let Some(chunk) = rx.recv().await {
                let chunk = chunk.map_err(|e| format!("reading the local copy: {e}"))?;
                if send(wire::data_frame(chunk)).await.is_err() {
                    break; // the target answered; its answer says why
                }
            }
            let _ = send(wire::trailer_frame(&Trailer { digest, size: rec.size, owed: Vec::new(), late: Default::default() })).await;
        }
        drop(tx);
        answer(task, timeout).await.map(|()| how)
    }
}

impl Replicator {
    /// Sends a header that carries no data (a marker, a removal, metadata
    /// for a blob the target holds) and waits for the answer.
    pub(super) async fn send_alone(&self, addr: &str, header: &VersionHeader) -> Result<(), String> {
        let (tx, task) = wire::open_push(&self.cluster.network, addr);
        let _ = tx.send(wire::header_frame(header)).await;
        drop(tx);
        answer(task, self.config.sync_timeout).await
    }
}

/// A push's answer; a push that gives none within `timeout` is cancelled.
async fn answer(task: tokio::task::JoinHandle<Result<wire::PushAck, super::ReplicationError>>, timeout: Duration) -> Result<(), String> {
    let abort = task.abort_handle();
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => {
            abort.abort();
            Err(format!("no answer within {timeout:?}"))
        }
    }
}
