//! Conditional writes (`if_absent`, `if_version`) and restores on a
//! cluster, linearizable per key.
//!
//! A conditional writer first takes the key's lock in the Raft state (a
//! lease): a minority side cannot commit it, so it refuses. The grant's
//! token is its log index, larger for every later grant. With it the
//! writer *fences* the key on the nodes it reaches, reading their newest
//! version as it does: a node records the token and from then on refuses
//! lookups and writes fenced by a lower one. The writer decides the
//! condition on the newest version among the answers and writes the new
//! version fenced by its token, through the usual write path.
//!
//! Why it is linearizable: a write is acknowledged once `acks` nodes have
//! recorded it, and a writer decides only after at least
//! `members - acks + 1` nodes answered its fencing read, so the two sets
//! share a node. On that node the earlier write was either recorded
//! before the fence (the later writer sees it) or refused after it (so it
//! was not acknowledged there, and not by that set). An old writer whose
//! lease ran out while it was paused or partitioned therefore cannot land
//! an acknowledged write behind a newer one; the lease only keeps writers
//! from duelling, and a crashed owner's lease simply runs out. A version
//! minted after the fencing read is newer than every version it saw,
//! since the read moves this node's clock past each answer's.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tracing::{debug, warn};

use super::plan::{self, Member};
use super::read::Views;
use super::wire::Lookup;
use super::{ReplicationError, Replicator};
use strata_meta::{Condition, MetaError, ObjectRecord};
use strata_objects::{ObjectError, PutSpec};

/// How long a conditional writer holds a key's lock at most: a crashed
/// writer's lock frees itself after this. A write still running then is
/// not unsafe (the fence refuses it wherever a newer writer has read).
const LEASE: Duration = Duration::from_secs(10);
/// How long a conditional write waits for another one on the same key:
/// longer than a lease, so a lock whose release was lost is waited out.
const WAIT: Duration = Duration::from_secs(15);

/// The lock of a key's conditional writers. The leading control character
/// keeps it apart from every lock a client can name.
fn lock_name(bucket: &str, key: &str) -> String {
    format!("\u{1}cas/{bucket}/{key}")
}

impl Replicator {
    /// A put whose condition is decided against the key's newest version
    /// across the cluster (`Condition::Always` here: a restore, fenced so
    /// that it is ordered with the conditional writes).
    pub async fn put_decided<S, E>(self: &Arc<Self>, spec: PutSpec, chunks: S) -> Result<ObjectRecord, ReplicationError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        self.require_bucket(&spec.bucket).await?;
        // Refused at once on a side that reaches no majority: its lock
        // could not commit anyway.
        plan::refuse_minority(&plan::members(&self.cluster).0, "conditional writes need a majority")?;
        let name = lock_name(&spec.bucket, &spec.key);
        let holder = format!("node {} (conditional write)", self.cluster.id);
        let grant = match self.cluster.acquire(&name, &holder, LEASE, Some(WAIT)).await {
            Ok(g) => g,
            Err(strata_cluster::error::ClusterError::TimedOut(_)) => {
                return Err(ReplicationError::Unavailable(format!(
                    "other conditional writes on {}/{} kept it for {WAIT:?}; retry",
                    spec.bucket, spec.key
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let r = self.decide(spec, chunks, grant.token).await;
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                match cluster.release(&name, grant.token).await {
                    Ok(()) => return,
                    Err(e) => debug!(error = %e, "releasing a conditional write's lock failed"),
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            warn!("could not release a conditional write's lock; its lease runs out in {LEASE:?}");
        });
        r
    }

    async fn decide<S, E>(self: &Arc<Self>, mut spec: PutSpec, chunks: S, token: u64) -> Result<ObjectRecord, ReplicationError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Display,
    {
        let (p, members) = self.plan_put(&spec).await?;
        // A retry of a write that landed: its answer, not a failed condition.
        if let Some(first) = self.replay(&spec, &p, &members).await? {
            return Ok(first);
        }
        let views = self.fenced_views(&spec.bucket, &spec.key, token, &members, p.acks).await?;
        let newest = views.newest();
        let live = newest.filter(|f| f.digest.is_some()).map(|f| f.version.as_str());
        if let Some(why) = spec.condition.refusal(live) {
            return Err(ObjectError::from(MetaError::ConditionFailed { key: spec.key.clone(), why }).into());
        }
        spec.condition = Condition::Fenced(token);
        self.put_plain(spec, chunks, Some(views.parents())).await
    }

    /// Fences the key with `token` on every node this one reaches and
    /// answers what they hold of it (their newest version and heads); fails
    /// unless enough answered to include a node of every acknowledged write.
    async fn fenced_views(&self, bucket: &str, key: &str, token: u64, members: &[Member], acks: u32) -> Result<Views, ReplicationError> {
        let q = Lookup { fence: Some(token), heads: true, ..Lookup::new(bucket, key, None) };
        let views = self.views_of(members, &q).await?;
        // A newer conditional writer fenced it first.
        if let Some(e) = views.refused {
            return Err(e);
        }
        let answered = views.answered.len();
        let need = members.len().saturating_sub(acks as usize) + 1;
        if answered < need {
            return Err(ReplicationError::Unavailable(format!(
                "a conditional write on {bucket}/{key} must reach {need} of {} nodes to see every acknowledged write; {answered} answered",
                members.len()
            )));
        }
        Ok(views)
    }
}
