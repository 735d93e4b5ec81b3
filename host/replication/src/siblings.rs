//! Concurrent writes of one key (siblings) and their resolution by the
//! bucket's replication-strategy plugin.
//!
//! Every version names its parents (`strata_meta::lineage`): a write's is
//! the newest version of the key its coordinator saw among the nodes it
//! reached, so two versions written without seeing each other (on both
//! sides of a partition, or at the same moment through two nodes) are both
//! *heads* of the key. Until they are resolved the newest of them is live,
//! as it always was. Once a node records a version and finds two heads or
//! more, one node resolves them: the lowest-id healthy node meant to hold
//! them. It calls the strategy's `resolve`; when the winner is not the
//! newest head it writes a *resolution*, a new version with the winner's
//! content (its blob shared, not copied) whose parents are every head, so
//! it is live everywhere it lands and supersedes the siblings, which stay in
//! the history. Its copies are queued to the nodes the siblings were meant
//! for. When the newest head wins nothing is written; the losers stop being
//! heads on the resolving node.
//!
//! One resolver per key keeps resolutions from multiplying: a resolution is
//! an ordinary version, so two written at once would be siblings in turn
//! (the next pass resolves them too; it converges, just with more history).

use std::collections::BTreeSet;
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::plan;
use super::{ReplicationError, Replicator};
use strata_cluster::detector::Health;
use strata_meta::lineage::Head;
use strata_objects::{ObjectError, PutSpec};
use strata_plugin::VersionInfo;

/// Most heads handed to one resolution.
const MOST_HEADS: u32 = 64;

impl Replicator {
    /// After a version of the key was recorded here: resolves its siblings
    /// in the background, if it has any and this node is their resolver.
    pub fn check_siblings(self: &Arc<Self>, bucket: &str, key: &str) {
        let (this, bucket, key) = (self.clone(), bucket.to_string(), key.to_string());
        tokio::spawn(async move {
            if let Err(e) = this.resolve_siblings(&bucket, &key).await {
                warn!(%bucket, %key, error = %e, "could not resolve concurrent versions; the newest stays live");
            }
        });
    }

    /// Resolves the key's siblings if this node is their resolver; answers
    /// the resolution's version when it wrote one.
    pub async fn resolve_siblings(&self, bucket: &str, key: &str) -> Result<Option<String>, ReplicationError> {
        let meta = self.objects.meta();
        let heads = meta.heads(bucket, key, MOST_HEADS).await.map_err(ObjectError::from)?;
        if heads.len() < 2 || !self.resolves(&heads) {
            return Ok(None);
        }
        // One resolution at a time here, on heads read under the lock.
        let _one = self.resolving.lock().await;
        let heads = meta.heads(bucket, key, MOST_HEADS).await.map_err(ObjectError::from)?;
        if heads.len() < 2 {
            return Ok(None);
        }
        let policy = self.policy(bucket).await;
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
        let plugins = self.plugins.clone();
        let strategy = policy.strategy.clone();
        let winner = tokio::task::spawn_blocking(move || plugins.strategy(&strategy)?.resolve(&infos))
            .await
            .map_err(|e| ReplicationError::Internal(format!("resolve task failed: {e}")))?
            .map_err(|e| ReplicationError::Unavailable(format!("strategy {}: resolve: {e}", policy.strategy)))?;
        let versions: Vec<String> = heads.iter().map(|h| h.record.version.clone()).collect();
        if winner == 0 {
            // The newest head, live already: the others are settled here.
            debug!(%bucket, %key, siblings = heads.len(), "the newest sibling won");
            meta.settle_heads(bucket, key, &versions[1..]).await.map_err(ObjectError::from)?;
            return Ok(None);
        }
        let won = &heads[winner];
        let replicas: BTreeSet<u64> = heads.iter().flat_map(|h| h.replicas.iter().copied()).collect();
        let mut id = meta.mint(replicas.iter().copied().collect());
        id.parents = Some(versions.clone());
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
                };
                if self.objects.put_known(spec, digest, won.record.size).await?.is_none() {
                    return Err(ReplicationError::Unavailable(format!(
                        "the winning version {} has no sound blob here",
                        won.record.version
                    )));
                }
            }
        }
        let others: Vec<u64> = replicas.into_iter().filter(|n| *n != self.cluster.id).collect();
        self.enqueue_on(self.cluster.id, bucket, key, &version, &others).await?;
        info!(%bucket, %key, winner = %won.record.version, resolution = %version, siblings = heads.len(), "resolved concurrent versions");
        Ok(Some(version))
    }

    /// Whether this node resolves these heads: the lowest-id healthy member
    /// among the nodes meant to hold them and this one.
    fn resolves(&self, heads: &[Head]) -> bool {
        let me = self.cluster.id;
        let (members, _) = plan::members(&self.cluster);
        let healthy = |n: u64| n == me || members.iter().any(|m| m.id == n && m.health == Health::Healthy);
        let resolver = heads.iter().flat_map(|h| h.replicas.iter().copied()).chain([me]).filter(|n| healthy(*n)).min();
        resolver == Some(me)
    }
}
