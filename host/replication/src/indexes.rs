//! Search indexes on a cluster: defined once in the cluster state (so every
//! node, one that joins later included, has them), built by each node over
//! the versions it holds. A search merges what each node's copy finds.
//!
//! On a cluster node the state is the truth: a local index the state does
//! not define (one made before the node joined) is dropped, and one it
//! defines differently is rebuilt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::namespace::Merged;
use super::wire::{NodeIndexes, Query};
use super::{ReplicationError, Replicator};
use strata_cluster::types::IndexSpec;
use strata_config::IndexingMode;
use strata_meta::MetaError;
use strata_objects::ObjectError;

/// How often a node compares its indexes with the state, besides after
/// every applied change.
const RECHECK: Duration = Duration::from_secs(2);

impl Replicator {
    /// Makes this node's indexes those the cluster state defines.
    pub async fn reconcile_indexes(&self) -> Result<(), ObjectError> {
        let state = self.cluster.state.state().await;
        let meta = self.objects.meta();
        if state.cluster_id.is_empty() || meta.indexing() == IndexingMode::Disabled {
            return Ok(()); // not in a cluster yet, or no indexes here at all
        }
        let have = meta.list_indexes().await?;
        for d in &have {
            let wanted = state.indexes.get(&IndexSpec::key_of(&d.bucket, &d.name));
            if wanted.is_none_or(|w| w.fields != d.fields || w.kind != d.kind) {
                info!(bucket = %d.bucket, index = %d.name, "dropping an index the cluster does not define so");
                match meta.drop_index(&d.bucket, &d.name).await {
                    Ok(()) | Err(MetaError::NoSuchIndex { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let have = meta.list_indexes().await?;
        for spec in state.indexes.values() {
            if have.iter().any(|d| d.bucket == spec.bucket && d.name == spec.name) {
                continue;
            }
            meta.ensure_bucket(&spec.bucket).await?;
            match meta.create_index(&spec.bucket, &spec.name, &spec.fields, &spec.kind).await {
                Ok(_) => info!(bucket = %spec.bucket, index = %spec.name, "building an index the cluster defines"),
                Err(MetaError::IndexExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reconciles at start, after every applied change to the indexes, and
    /// every few seconds.
    pub fn spawn_indexes(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut done: Option<BTreeMap<String, IndexSpec>> = None;
            loop {
                let want = this.cluster.state.state().await.indexes;
                if done.as_ref() != Some(&want) {
                    match this.reconcile_indexes().await {
                        Ok(()) => done = Some(want),
                        Err(e) => warn!(error = %e, "could not bring this node's indexes in line with the cluster's"),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(RECHECK) => {}
                    _ = this.cluster.state.applied.notified() => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return;
                }
            }
        });
    }

    /// This node's copies of the indexes, for an index listing.
    pub async fn local_indexes(&self, bucket: Option<&str>) -> Result<NodeIndexes, ObjectError> {
        let meta = self.objects.meta();
        let head = meta.head().await?;
        let defs = meta.list_indexes().await?.into_iter().filter(|d| bucket.is_none_or(|b| b == d.bucket)).collect();
        Ok(NodeIndexes { defs, head })
    }

    /// Every reachable node's copies of the indexes, by node ("node N
    /// (ADDR)"); the unreachable ones are named.
    pub async fn indexes(&self, bucket: Option<&str>) -> Result<Merged<Vec<(String, NodeIndexes)>>, ReplicationError> {
        let q = Query::Indexes { bucket: bucket.map(String::from) };
        let (answers, down) = self.ask_all::<NodeIndexes, _>(&q, async { Ok(self.local_indexes(bucket).await?) }).await?;
        let addr = |id: u64| self.addr_of(id).unwrap_or_default();
        let mut nodes: Vec<(String, NodeIndexes)> = answers.into_iter().map(|(id, a)| (format!("node {id} ({})", addr(id)), a)).collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Merged { value: nodes, missing: down.into_iter().map(|m| format!("node {} ({})", m.id, m.addr)).collect() })
    }
}
