//! Retried puts on a cluster. Every replica records a version's request
//! id with it, so a retry through any coordinator asks the nodes the key
//! maps to whether one of them holds a version the request made.

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::wire::{self, Lookup};
use super::{ReplicationError, Replicator, plan};
use strata_cluster::detector::Health;
use strata_meta::{MetaError, ObjectRecord};
use strata_objects::{ObjectError, PutSpec};

/// How long a node may take to say whether it holds a request id.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl Replicator {
    /// The version an earlier attempt of this put made, if a node it maps
    /// to has the request id on record. A node that does not answer within
    /// a second (or is not seen healthy) is skipped: if every holder of the
    /// first version is out of reach, the retry stores a second one.
    pub(super) async fn replayed(
        &self,
        spec: &PutSpec,
        request_id: &str,
        p: &plan::Plan,
        members: &[plan::Member],
    ) -> Result<Option<ObjectRecord>, ReplicationError> {
        let me = self.cluster.id;
        let mut nodes: Vec<u64> = p.targets.iter().chain(&p.ideal).copied().chain([me]).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let q = Lookup { request_id: Some(request_id.into()), ..Lookup::new(&spec.bucket, &spec.key, None) };
        let mut asks: FuturesUnordered<_> = nodes
            .iter()
            .map(|&n| {
                let q = &q;
                async move {
                    if n == me {
                        return self.holding(q).await.ok();
                    }
                    // Only healthy nodes are asked, briefly: every put with an id
                    // pays for this, and one stalled node must not hold it up.
                    let m = members.iter().find(|m| m.id == n && m.health == Health::Healthy)?;
                    wire::lookup(&self.cluster.network, &m.addr, q, self.short_timeout().min(LOOKUP_TIMEOUT)).await.ok()
                }
            })
            .collect();
        // The first node that has it answers; one out of reach costs a
        // lookup's timeout only when no node has it.
        while let Some(h) = asks.next().await {
            let Some(h) = h else { continue };
            self.objects.meta().observe(h.clock);
            if let Some(key) = h.request_key.filter(|k| *k != spec.key) {
                return Err(ObjectError::from(MetaError::RequestReused { request_id: request_id.into(), key }).into());
            }
            if let Some(found) = h.found {
                return Ok(Some(found.record(&spec.bucket, &spec.key)));
            }
        }
        Ok(None)
    }
}
