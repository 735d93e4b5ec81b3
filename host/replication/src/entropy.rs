//! Anti-entropy: replicas that missed a copy (a coordinator killed before
//! it queued it, a queue entry given up with its target) are found by
//! comparing metadata, never blob bytes. The key space is cut into
//! partitions by a hash of (bucket, key). Each node keeps, per peer and
//! partition, the XOR and count of a hash of every version it holds that is
//! placed on that peer (kept by the metadata store as versions are written,
//! see `strata_meta::entropy`). Every `anti_entropy_interval` a node fetches
//! each healthy peer's digests *for it* and compares them with its own for
//! the peer: when nothing is missing they are equal whatever else either
//! node holds. Only for a partition that differs does it read version
//! rows, its own and the peer's, and queue a copy of each version it holds,
//! the peer is meant to hold, and the peer lacks. The peer's own pass does
//! the same the other way. A pass costs what differs, not what is stored.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use metrics::counter;
use tokio::sync::watch;
use tracing::{info, warn};

use super::plan;
use super::{ReplicationError, Replicator};
use strata_cluster::detector::Health;
use strata_meta::Placed;
pub use strata_meta::entropy::PARTITIONS;
use strata_meta::entropy::PartDigest;

/// Version rows read per step.
const STEP: u32 = 4096;
/// Passes a partition may differ with nothing to copy before it is checked
/// against its rows.
const STUCK_PASSES: u32 = 3;
/// Rows given their mark per transaction when an older database is filled in.
const BACKFILL_STEP: u32 = 4096;

/// A version's name in a partition listing.
pub type Name = (String, String, String);

/// A request for a page of a partition's listing.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PartitionPage {
    pub part: u16,
    /// The row id the page starts after (the previous page's `next`).
    pub after: i64,
}

impl Replicator {
    /// Every version this node holds in partition `part`.
    async fn partition_rows(&self, part: u16) -> Result<Vec<Placed>, ReplicationError> {
        let meta = self.objects.meta();
        let (mut after, mut out) = (0, Vec::new());
        loop {
            let batch = meta.placed_in_partition(part, after, STEP).await?;
            let Some(last) = batch.last() else { return Ok(out) };
            after = last.id;
            out.extend(batch);
        }
    }

    /// This node's digests for `peer`; none until an older database has
    /// been filled in.
    pub async fn digests_for(&self, peer: u64) -> Result<Option<Vec<PartDigest>>, ReplicationError> {
        Ok(self.objects.meta().entropy_digests(peer).await?)
    }

    /// A page of the names of the versions this node holds in partition
    /// `q.part`, after row `q.after`, and where the next page starts.
    pub async fn partition_names(&self, q: &PartitionPage) -> Result<(Vec<Name>, Option<i64>), ReplicationError> {
        let rows = self.objects.meta().placed_in_partition(q.part, q.after, STEP).await?;
        counter!("strata_anti_entropy_rows_served_total").increment(rows.len() as u64);
        let next = if rows.len() as u32 == STEP { rows.last().map(|p| p.id) } else { None };
        Ok((rows.into_iter().map(|p| (p.bucket, p.key, p.version)).collect(), next))
    }

    /// Every version the peer at `addr` holds in partition `part`, asked a
    /// page at a time (a key with very many versions makes a large one).
    async fn held_by(&self, addr: &str, part: u16) -> Result<HashSet<Name>, ReplicationError> {
        let (mut held, mut after) = (HashSet::new(), 0);
        loop {
            let (names, next): (Vec<Name>, Option<i64>) = self.ask(addr, false, &PartitionPage { part, after }).await?;
            held.extend(names);
            match next {
                Some(n) if n > after => after = n,
                _ => return Ok(held),
            }
        }
    }

    /// Queues a copy to `peer` of every version this node holds in `part`
    /// that is placed on the peer and the peer lacks; returns how many.
    async fn repair_partition(&self, peer: &plan::Member, part: u16) -> Result<u64, ReplicationError> {
        let held = self.held_by(&peer.addr, part).await?;
        let rows = self.partition_rows(part).await?;
        counter!("strata_anti_entropy_rows_read_total").increment(rows.len() as u64);
        let mut queued = 0;
        for p in rows {
            if p.replicas.contains(&peer.id) && !held.contains(&(p.bucket.clone(), p.key.clone(), p.version.clone())) {
                self.objects.meta().enqueue(&p.bucket, &p.key, &p.version, &[peer.id]).await?;
                queued += 1;
            }
        }
        Ok(queued)
    }

    async fn ask<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        digests: bool,
        q: &Q,
    ) -> Result<A, ReplicationError> {
        super::wire::entropy(&self.cluster.network, addr, digests, q, self.config.sync_timeout * 6).await
    }

    /// Versions whose copy here was found damaged (by a read or scrub) are
    /// sent again by a replica that holds them sound.
    async fn heal_damaged(&self, members: &[plan::Member]) -> Result<u64, ReplicationError> {
        let me = self.cluster.id;
        let mut asked = 0;
        for p in self.objects.meta().damaged(1000).await? {
            let q = super::wire::Lookup::new(&p.bucket, &p.key, Some(&p.version));
            for m in members.iter().filter(|m| m.id != me && m.health == Health::Healthy && p.replicas.contains(&m.id)) {
                let sound = super::wire::lookup(&self.cluster.network, &m.addr, &q, self.short_timeout())
                    .await
                    .is_ok_and(|h| h.found.is_some_and(|f| f.sound && f.version == p.version));
                if sound && self.enqueue_on(m.id, &p.bucket, &p.key, &p.version, &[me]).await.is_ok() {
                    asked += 1;
                    break;
                }
            }
        }
        Ok(asked)
    }

    /// One pass against every healthy peer; returns the copies queued.
    pub async fn anti_entropy_pass(&self) -> Result<u64, ReplicationError> {
        let (members, _) = plan::members(&self.cluster);
        let me = self.cluster.id;
        let healed = self.heal_damaged(&members).await?;
        if healed > 0 {
            info!(healed, "asked replicas to replace damaged copies");
        }
        counter!("strata_anti_entropy_passes_total").increment(1);
        // Rows from before digests were kept (or whose marking failed) get
        // their marks first; until none is left the digests are not whole.
        match self.objects.meta().backfill_entropy(BACKFILL_STEP).await {
            Ok(0) => {}
            Ok(n) => info!(versions = n, "anti-entropy: filled in the digests of older versions"),
            Err(e) => {
                warn!(error = %e, "anti-entropy: filling in the digests of older versions failed; no pass until it succeeds");
                return Ok(0);
            }
        }
        if let Err(e) = self.objects.meta().heal_entropy().await {
            warn!(error = %e, "anti-entropy: putting right version rows with impossible partitions failed");
        }
        let mut queued = 0u64;
        for m in members.iter().filter(|m| m.id != me && m.health == Health::Healthy) {
            let Some(mine) = self.digests_for(m.id).await? else {
                warn!("anti-entropy: this node's digests are not whole yet");
                return Ok(queued);
            };
            let theirs: Vec<PartDigest> = match self.ask(&m.addr, true, &me).await {
                Ok(Some(t)) => t,
                Ok(None) => {
                    info!(node = m.id, "anti-entropy: the peer's digests are still being filled in");
                    continue;
                }
                Err(e) => {
                    warn!(node = m.id, error = %e, "anti-entropy: the peer sent no digests");
                    continue;
                }
            };
            let (theirs, bad): (Vec<PartDigest>, Vec<PartDigest>) = theirs.into_iter().partition(|d| d.part < PARTITIONS);
            if !bad.is_empty() {
                warn!(node = m.id, count = bad.len(), "anti-entropy: the peer sent partitions out of range; comparing the rest");
            }
            let differ = differing(&mine, &theirs);
            counter!("strata_anti_entropy_partitions_differing_total").increment(differ.len() as u64);
            let mut still = Vec::new();
            // One partition that fails (a peer that stops answering) must not
            // keep the rest from being compared, pass after pass.
            for part in differ {
                match self.repair_partition(m, part).await {
                    Ok(0) => still.push(part),
                    Ok(n) => queued += n,
                    Err(e) => warn!(node = m.id, part, error = %e, "anti-entropy: comparing a partition failed"),
                }
            }
            self.check_stuck(m.id, &still).await;
        }
        counter!("strata_anti_entropy_copies_queued_total").increment(queued);
        if queued > 0 {
            info!(queued, "anti-entropy found copies missing on peers");
            self.wake();
        }
        Ok(queued)
    }

    /// A partition that differs from `peer`'s pass after pass while this
    /// node has nothing to copy is either the peer's to repair (its own pass
    /// does) or wrong here: a digest or a version's mark that no longer
    /// matches the rows (a hand edit, a bug). After [`STUCK_PASSES`] such
    /// passes this node checks the partition against its rows and puts it
    /// right, so a damaged digest cannot make the partition differ forever.
    async fn check_stuck(&self, peer: u64, still: &[u16]) {
        let due: Vec<u16> = {
            let mut stuck = self.stuck.lock().expect("stuck partitions");
            stuck.retain(|(p, part), _| *p != peer || still.contains(part));
            still
                .iter()
                .filter(|part| {
                    let n = stuck.entry((peer, **part)).or_default();
                    *n += 1;
                    *n >= STUCK_PASSES
                })
                .copied()
                .collect()
        };
        for part in due {
            self.stuck.lock().expect("stuck partitions").remove(&(peer, part));
            match self.objects.meta().rebuild_entropy_partition(part).await {
                Ok(r) if r.versions > 0 || r.digests => {
                    counter!("strata_anti_entropy_partitions_rebuilt_total").increment(1);
                    warn!(
                        part,
                        versions = r.versions,
                        digests = r.digests,
                        "anti-entropy: a partition's digests did not match its version rows; recomputed them"
                    );
                }
                Ok(_) => {}
                Err(e) => warn!(part, error = %e, "anti-entropy: checking a partition against its rows failed"),
            }
        }
    }

    pub fn spawn_anti_entropy(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(this.config.anti_entropy_interval) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return;
                }
                if let Err(e) = this.anti_entropy_pass().await {
                    warn!(error = %e, "anti-entropy pass failed");
                }
            }
        });
    }
}

/// Partitions whose digest differs between two sparse lists (a partition
/// missing from one list has none there).
fn differing(mine: &[PartDigest], theirs: &[PartDigest]) -> Vec<u16> {
    let mut all: BTreeMap<u16, [(i64, i64); 2]> = BTreeMap::new();
    for (side, list) in [mine, theirs].into_iter().enumerate() {
        for d in list {
            all.entry(d.part).or_default()[side] = (d.digest, d.n);
        }
    }
    all.into_iter().filter(|(_, [a, b])| a != b).map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partitions_that_differ_are_named() {
        let d = |part, digest, n| PartDigest { part, digest, n };
        let mine = [d(1, 5, 1), d(2, 7, 2), d(9, 1, 1)];
        let theirs = [d(1, 5, 1), d(2, 6, 2), d(4, 3, 1)];
        assert_eq!(differing(&mine, &theirs), vec![2, 4, 9]);
        assert!(differing(&mine, &mine).is_empty());
    }
}
