//! Concurrent writes of one key (siblings) and their resolution by the
//! bucket's replication-strategy plugin.
//!
//! Every version names its parents (`strata_meta::lineage`): what its
//! coordinator saw of the key among the nodes it reached (the newest version
//! and every head), so two versions written without seeing each other (on
//! both sides of a partition, or at the same moment through two nodes) are
//! both *heads* of the key, and a later write supersedes every head it saw.
//! Until siblings are resolved the newest of them is live, as it always
//! was. The metadata store notes each key left with two heads as versions
//! are recorded; a worker ([`Replicator::spawn_siblings`]) asks the
//! strategy's `resolve` about each. When the newest wins nothing is written: each node
//! settles its own heads. Otherwise one node, the *resolver* (the
//! lowest-id healthy node meant to hold every head), writes a
//! *resolution*: a new version with the winner's content (its blob shared,
//! not copied) whose parents are every head, so it is live everywhere it
//! lands and supersedes the siblings, which stay in the history. Its copies
//! are queued to the nodes the siblings were meant for; the other nodes
//! send the resolver any head it may lack. The placement pass sweeps for
//! siblings left over (a resolver that died mid-way).
//!
//! One resolver per key keeps resolutions from multiplying: a resolution is
//! an ordinary version, so two written at once (nodes that disagreed for a
//! moment on who is healthy) are siblings in turn and get resolved too; it
//! converges, with more history.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::plan;
use super::{ReplicationError, Replicator};
use strata_cluster::detector::Health;
use strata_meta::lineage::Head;
use strata_objects::{ObjectError, PutSpec};
use strata_plugin::VersionInfo;

/// Most heads handed to one resolution (or named by one write).
pub const MOST_HEADS: u32 = 64;
/// How long after start the first sweep for siblings waits.
const START_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);
/// Most keys with siblings one sweep resolves.
const SWEEP: u32 = 10_000;

impl Replicator {
    /// Resolves the siblings of every key the metadata store finds with two
    /// heads as versions are recorded, until `stop`.
    pub fn spawn_siblings(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            // Siblings found before a restart were noted in memory only: one
            // sweep once the node has heard the others' heartbeats.
            tokio::select! {
                _ = tokio::time::sleep(START_SWEEP) => {
                    if let Err(e) = this.resolve_all_siblings().await {
                        warn!(error = %e, "the sweep for concurrent versions failed");
                    }
                }
                _ = stop.changed() => return,
            }
            loop {
                let keys = tokio::select! {
                    keys = this.objects.meta().take_conflicts() => keys,
                    _ = stop.changed() => return,
                };
                for (bucket, key) in keys {
                    if let Err(e) = this.resolve_siblings(&bucket, &key).await {
                        warn!(%bucket, %key, error = %e, "could not resolve concurrent versions; the newest stays live");
                    }
                }
            }
        });
    }

    /// Resolves the key's siblings, if it has any; answers the resolution's
    /// version when this node wrote one.
    ///
    /// Every node that sees siblings asks the strategy: when the newest
    /// wins, nothing needs writing and each node settles its own heads.
    /// Only a winner older than the newest needs a resolution, written by
    /// one node (the resolver); the others make sure it holds every head
    /// they see (a queued copy is skipped where it is held already).
    pub async fn resolve_siblings(&self, bucket: &str, key: &str) -> Result<Option<String>, ReplicationError> {
        let meta = self.objects.meta();
        if meta.heads(bucket, key, 2).await.map_err(ObjectError::from)?.len() < 2 {
            return Ok(None);
        }
        // One resolution at a time here, on heads read under the lock.
        let _one = self.resolving.lock().await;
        let heads = meta.heads(bucket, key, MOST_HEADS).await.map_err(ObjectError::from)?;
        if heads.len() < 2 {
            return Ok(None);
        }
        let winner = self.winner(bucket, &heads).await?;
        let versions: Vec<String> = heads.iter().map(|h| h.record.version.clone()).collect();
        if winner == 0 {
            // The newest head, live already: the others are settled here.
            debug!(%bucket, %key, siblings = heads.len(), "the newest sibling won");
            meta.settle_heads(bucket, key, &versions[1..]).await.map_err(ObjectError::from)?;
            return Ok(None);
        }
        let me = self.cluster.id;
        let resolver = self.resolver(&heads);
        if resolver != me {
            for v in &versions {
                self.enqueue_on(me, bucket, key, v, &[resolver]).await?;
            }
            debug!(%bucket, %key, resolver, "siblings to resolve; the resolver is sent every head");
            return Ok(None);
        }
        let won = &heads[winner];
        let replicas: BTreeSet<u64> = heads.iter().flat_map(|h| h.replicas.iter().copied()).collect();
        let mut id = meta.mint(replicas.iter().copied().collect());
        id.parents = Some(versions);
        id.created_ms = won.record.created_ms;
        let version = id.version.clone();
        match won.record.digest {
            None => meta.record_marker(bucket, key, &id).await.map_err(ObjectError::from)?,
            Some(digest) => {
                let spec = PutSpec {
                    bucket: bucket.into(),
                    key: key.into(),
                    content_type: won.record.content_type.clone(),
                    attributes: won.record.attributes.clone(),
                    size: Some(won.record.size),
                    expected_digest: Some(digest),
                    condition: strata_meta::Condition::Always,
                    identity: Some(id),
                    request_id: None,
                    late: None,
                };
                if self.objects.put_known(spec, digest, won.record.size).await?.is_none() {
                    return Err(ReplicationError::Unavailable(format!(
                        "the winning version {} has no sound blob here",
                        won.record.version
                    )));
                }
            }
        }
        let others: Vec<u64> = replicas.into_iter().filter(|n| *n != me).collect();
        self.enqueue_on(me, bucket, key, &version, &others).await?;
        info!(%bucket, %key, winner = %won.record.version, resolution = %version, siblings = heads.len(), "resolved concurrent versions");
        Ok(Some(version))
    }

    /// Resolves every key with siblings here (run at start and by the
    /// placement pass, so that siblings whose resolver died or missed them
    /// get resolved once membership or health changes); answers how many
    /// resolutions this node wrote.
    pub async fn resolve_all_siblings(&self) -> Result<u64, ReplicationError> {
        let mut written = 0;
        for (bucket, key) in self.objects.meta().conflicted(SWEEP).await.map_err(ObjectError::from)? {
            match self.resolve_siblings(&bucket, &key).await {
                Ok(Some(_)) => written += 1,
                Ok(None) => {}
                Err(e) => warn!(%bucket, %key, error = %e, "could not resolve concurrent versions"),
            }
        }
        Ok(written)
    }

    /// The index of the winning head, by the bucket's strategy.
    async fn winner(&self, bucket: &str, heads: &[Head]) -> Result<usize, ReplicationError> {
        let infos: Vec<VersionInfo> = heads
            .iter()
            .map(|h| VersionInfo {
                stamp: h.record.stamp,
                node_id: h.node.clone(),
                digest: h.record.digest.map(|d| d.to_string()).unwrap_or_default(),
                size: h.record.size,
                deleted: h.record.digest.is_none(),
            })
            .collect();
        let policy = self.policy(bucket).await;
        let (plugins, strategy) = (self.plugins.clone(), policy.strategy.clone());
        tokio::task::spawn_blocking(move || plugins.strategy(&strategy)?.resolve(&infos))
            .await
            .map_err(|e| ReplicationError::Internal(format!("resolve task failed: {e}")))?
            .map_err(|e| ReplicationError::Unavailable(format!("strategy {}: resolve: {e}", policy.strategy)))
    }

    /// The node that writes the resolution of these heads: the lowest-id
    /// healthy node meant to hold every one of them (it receives them all),
    /// else meant to hold any, else this one.
    fn resolver(&self, heads: &[Head]) -> u64 {
        let me = self.cluster.id;
        let (members, _) = plan::members(&self.cluster);
        let healthy = |n: &u64| *n == me || members.iter().any(|m| m.id == *n && m.health == Health::Healthy);
        let mut every: BTreeSet<u64> = heads[0].replicas.iter().copied().collect();
        for h in &heads[1..] {
            every.retain(|n| h.replicas.contains(n));
        }
        let any = heads.iter().flat_map(|h| h.replicas.iter().copied());
        every.into_iter().filter(healthy).min().or_else(|| any.filter(healthy).min()).unwrap_or(me)
    }
}
