//! Anti-entropy: replicas that missed a copy (a coordinator killed before
//! it queued it, a queue entry given up with its target) are found by
//! comparing metadata, never blob bytes. The key space is cut into 256
//! partitions by a hash of (bucket, key); each node keeps, per partition,
//! the XOR of a hash of every (bucket, key, version) it holds (an order-free
//! digest). Every `anti_entropy_interval` a node fetches each healthy
//! peer's digests; for each partition that differs it fetches the peer's
//! versions there and queues a copy of each version it holds, the peer is
//! meant to hold (the version's placement lists it), and the peer lacks.
//! The peer's own pass does the same the other way.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::plan;
use super::{ReplicationError, Replicator};
use strata_cluster::detector::Health;
use strata_meta::Placed;

pub const PARTITIONS: usize = 256;
/// Version rows read per step of a scan.
const STEP: u32 = 4096;

/// A version's name in a partition listing.
pub type Name = (String, String, String);

fn hash(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

pub fn partition(bucket: &str, key: &str) -> usize {
    hash(&[bucket, key])[0] as usize
}

fn mark(bucket: &str, key: &str, version: &str) -> u64 {
    u64::from_le_bytes(hash(&[bucket, key, version])[..8].try_into().expect("8 bytes"))
}

impl Replicator {
    /// Walks every version this node holds, delete markers included.
    async fn scan(&self, mut each: impl FnMut(Placed)) -> Result<(), ReplicationError> {
        let meta = self.objects.meta();
        let mut after = 0;
        loop {
            let batch = meta.placed_after(after, STEP, true).await?;
            let Some(last) = batch.last() else { return Ok(()) };
            after = last.id;
            batch.into_iter().for_each(&mut each);
        }
    }

    pub async fn digests(&self) -> Result<Vec<u64>, ReplicationError> {
        let mut d = vec![0u64; PARTITIONS];
        self.scan(|p| d[partition(&p.bucket, &p.key)] ^= mark(&p.bucket, &p.key, &p.version)).await?;
        Ok(d)
    }

    pub async fn partition_names(&self, part: usize) -> Result<Vec<Name>, ReplicationError> {
        let mut out = Vec::new();
        self.scan(|p| {
            if partition(&p.bucket, &p.key) == part {
                out.push((p.bucket, p.key, p.version));
            }
        })
        .await?;
        Ok(out)
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
        let mine = self.digests().await?;
        let mut queued = 0u64;
        for m in members.iter().filter(|m| m.id != me && m.health == Health::Healthy) {
            let theirs: Vec<u64> = match self.ask(&m.addr, true, &()).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(node = m.id, error = %e, "anti-entropy: no digests");
                    continue;
                }
            };
            if theirs.len() != PARTITIONS {
                warn!(node = m.id, "anti-entropy: the peer sent {} digests", theirs.len());
                continue;
            }
            let differ: BTreeSet<usize> = (0..PARTITIONS).filter(|&p| mine[p] != theirs[p]).collect();
            if differ.is_empty() {
                continue;
            }
            let mut held: HashMap<usize, HashSet<Name>> = HashMap::new();
            for &p in &differ {
                let names: Vec<Name> = self.ask(&m.addr, false, &p).await?;
                held.insert(p, names.into_iter().collect());
            }
            // Versions this node holds that the peer should hold but lacks.
            let mut owed: Vec<Placed> = Vec::new();
            self.scan(|p| {
                let part = partition(&p.bucket, &p.key);
                if differ.contains(&part)
                    && p.replicas.contains(&m.id)
                    && !held[&part].contains(&(p.bucket.clone(), p.key.clone(), p.version.clone()))
                {
                    owed.push(p);
                }
            })
            .await?;
            for p in owed {
                self.objects.meta().enqueue(&p.bucket, &p.key, &p.version, &[m.id]).await?;
                queued += 1;
            }
        }
        if queued > 0 {
            info!(queued, "anti-entropy found copies missing on peers");
            self.wake();
        }
        Ok(queued)
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
