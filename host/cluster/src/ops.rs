//! What any member serves: cluster-state writes (proposed here when this
//! node leads, forwarded to the leader otherwise), linearizable reads,
//! membership changes and locks.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::decompose::DecomposeResult;
use openraft::errors::{ChangeMembershipError, ClientWriteError, LinearizableReadError};
use openraft::{ChangeMembers, ReadPolicy};

use super::error::ClusterError;
use super::network::{Call, not_leader};
use super::node::{Cluster, JoinRequest};
use super::now_ms;
use super::state::ClusterState;
use super::types::{Cmd, CmdResult, LockGrant, NodeMeta};

/// How long one proposal may wait to commit; longer means no quorum.
const COMMIT_WAIT: Duration = Duration::from_secs(5);
/// How long a write keeps looking for a leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Answered when only the leader may serve: the leader, if known.
pub type Elsewhere = Option<NodeMeta>;

fn no_quorum(what: &'static str) -> ClusterError {
    ClusterError::NoQuorum { what, waited: COMMIT_WAIT }
}

impl Cluster {
    fn leader_node(&self) -> Option<(u64, NodeMeta)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node))
    }

    fn am_leader(&self) -> Result<(), Elsewhere> {
        match self.leader_node() {
            Some((id, _)) if id == self.id => Ok(()),
            other => Err(other.map(|(_, n)| n)),
        }
    }

    /// Proposes `cmd` if this node leads; otherwise names the leader.
    pub async fn propose(&self, cmd: Cmd) -> Result<Result<CmdResult, Elsewhere>, ClusterError> {
        let r =
            tokio::time::timeout(COMMIT_WAIT, self.raft.client_write(cmd.stamped(now_ms()))).await.map_err(|_| no_quorum("the change"))?;
        match r.decompose() {
            Ok(Ok(r)) => Ok(Ok(r.data)),
            Ok(Err(ClientWriteError::ForwardToLeader(f))) => Ok(Err(f.leader_node)),
            Ok(Err(e)) => Err(ClusterError::Unavailable(e.to_string())),
            Err(fatal) => Err(ClusterError::Internal(format!("raft stopped: {fatal}"))),
        }
    }

    /// Commits `cmd` through the leader, wherever it is.
    pub async fn write(&self, cmd: Cmd) -> Result<CmdResult, ClusterError> {
        let started = Instant::now();
        let r = self.write_through_leader(cmd).await;
        if r.is_ok() {
            metrics::histogram!("strata_raft_commit_duration_seconds").record(started.elapsed().as_secs_f64());
        }
        r
    }

    async fn write_through_leader(&self, cmd: Cmd) -> Result<CmdResult, ClusterError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let why = match self.propose(cmd.clone()).await? {
                Ok(r) => return Ok(r),
                Err(Some(leader)) => {
                    match self.network.call(&leader.addr, Call::Write, &cmd, COMMIT_WAIT + Duration::from_secs(1)).await {
                        Ok(r) => return Ok(r),
                        // It is no longer the leader: nothing was proposed there.
                        Err(e @ ClusterError::NotLeader { .. }) => e.to_string(),
                        // The call never reached it.
                        Err(e @ ClusterError::Unreachable { .. }) => format!("the leader {} did not answer: {e}", leader.addr),
                        // Anything else may have committed: retrying could apply it twice.
                        Err(s) => return Err(s),
                    }
                }
                Err(None) => "no leader is known".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::Unavailable(format!(
                    "cannot commit: {why} (waited {LEADER_WAIT:?}); is a majority of voters up?"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader's read index, after a quorum confirmed its leadership.
    pub async fn read_index(&self) -> Result<Result<u64, Elsewhere>, ClusterError> {
        let r = tokio::time::timeout(COMMIT_WAIT, self.raft.ensure_linearizable(ReadPolicy::ReadIndex))
            .await
            .map_err(|_| no_quorum("the read"))?;
        match r.decompose() {
            Ok(Ok(read)) => Ok(Ok(read.log_id().index)),
            Ok(Err(LinearizableReadError::ForwardToLeader(f))) => Ok(Err(f.leader_node)),
            Ok(Err(e)) => Err(ClusterError::Unavailable(e.to_string())),
            Err(fatal) => Err(ClusterError::Internal(format!("raft stopped: {fatal}"))),
        }
    }

    /// The cluster state, linearizable: it reflects every change committed
    /// before the call, on whichever node serves it.
    pub async fn read(&self) -> Result<ClusterState, ClusterError> {
        let index = match self.read_index().await? {
            Ok(_) => return Ok(self.state.state().await),
            Err(Some(leader)) => {
                self.network.call::<_, u64>(&leader.addr, Call::ReadIndex, &(), COMMIT_WAIT + Duration::from_secs(1)).await?
            }
            Err(None) => return Err(not_leader(None)),
        };
        self.raft
            .wait(Some(COMMIT_WAIT))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| ClusterError::Unavailable(format!("this node did not catch up with the leader: {e}")))?;
        Ok(self.state.state().await)
    }

    /// Makes this node a one-voter cluster with a new cluster id; a node
    /// restored from a cluster backup adopts that cluster's id and state
    /// (replication policies, indexes, retired ids) instead.
    pub async fn init(&self) -> Result<(), ClusterError> {
        use openraft::errors::{InitializeError, RaftError};
        let adopt = super::node::pending_adoption(&self.pool)
            .await
            .map_err(|e| ClusterError::Internal(format!("reading the restored cluster state: {e}")))?;
        match self.raft.initialize(std::collections::BTreeMap::from([(self.id, self.me.clone())])).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                return Err(ClusterError::Exists("this node already belongs to a cluster; see `strata cluster status`".into()));
            }
            Err(e) => return Err(ClusterError::Internal(format!("cluster init failed: {e}"))),
        }
        match adopt {
            Some(state) => {
                let r = self.write(Cmd::Adopt { state }).await?;
                if let Some(why) = r.refused {
                    return Err(ClusterError::Refused(why));
                }
                let _ = sqlx::query("DELETE FROM raft_meta WHERE k = 'adopt'").execute(&self.pool).await;
            }
            None => {
                let id = format!("{:032x}", rand::random::<u128>());
                self.write(Cmd::SetClusterId { id }).await?;
            }
        }
        Ok(())
    }

    /// On the leader: adds a node as a learner, then makes it a voter.
    pub async fn admit(&self, j: JoinRequest) -> Result<(), ClusterError> {
        self.am_leader().map_err(|l| not_leader(l.as_ref()))?;
        let st = self.state.state().await;
        if st.retired.contains(&j.id) {
            return Err(ClusterError::Refused(format!(
                "node id {} was removed from this cluster and may never return; give the node an empty data directory (or a new cluster.node_id)",
                j.id
            )));
        }
        if !j.cluster_id.is_empty() && j.cluster_id != st.cluster_id {
            return Err(ClusterError::Refused(format!(
                "the joining node belongs to cluster {}, not to this cluster {}; a node joins with an empty data directory",
                j.cluster_id, st.cluster_id
            )));
        }
        let members = self.members();
        if j.initialized && !members.iter().any(|(id, ..)| *id == j.id) {
            return Err(ClusterError::Refused(format!(
                "node {} already has a cluster of its own (it ran `cluster init`, or was a member elsewhere); a node joins with an empty data directory (a restored node: restore it again and join without init)",
                j.id
            )));
        }
        if let Some((id, n, voter)) = members.iter().find(|(id, ..)| *id == j.id) {
            if n.addr != j.node.addr {
                return Err(ClusterError::Exists(format!("node id {id} is already used by the member at {}", n.addr)));
            }
            if *voter {
                return Ok(());
            }
        } else if let Some((id, n, _)) = members.iter().find(|(_, n, _)| n.addr == j.node.addr) {
            return Err(ClusterError::Exists(format!("node {id} already has address {}", n.addr)));
        }
        let map = |what: String| {
            move |e: openraft::errors::RaftError<_, ClientWriteError<_>>| match e.forward_to_leader() {
                Some(f) => not_leader(f.leader_node.as_ref()),
                None => ClusterError::Refused(format!("{what}: {e}")),
            }
        };
        let add = self.raft.add_learner(j.id, j.node, true);
        tokio::time::timeout(Duration::from_secs(30), add)
            .await
            .map_err(|_| ClusterError::Unavailable("the new node did not catch up within 30s".into()))?
            .map_err(map(format!("cannot add node {}", j.id)))?;
        let promote = self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([j.id])), false);
        tokio::time::timeout(COMMIT_WAIT * 2, promote)
            .await
            .map_err(|_| no_quorum("the promotion"))?
            .map_err(map(format!("cannot make node {} a voter", j.id)))?;
        Ok(())
    }

    /// On the leader: removes node `id` from the membership for good.
    pub async fn remove_here(&self, id: u64) -> Result<Result<(), Elsewhere>, ClusterError> {
        if let Err(l) = self.am_leader() {
            return Ok(Err(l));
        }
        let members = self.members();
        let Some((_, _, voter)) = members.iter().find(|(m, ..)| *m == id) else {
            return Err(ClusterError::NotFound(format!("node {id} is not a member; see `strata cluster status`")));
        };
        let voters: Vec<u64> = members.iter().filter(|m| m.2).map(|m| m.0).collect();
        if voters == [id] {
            return Err(ClusterError::Refused(format!("node {id} is the cluster's last voter; removing it would leave no one to decide")));
        }
        // Retired first: if the leader steps down once the change commits
        // (it removed itself), the id is already never to return.
        self.write(Cmd::Retire { id }).await?;
        let change =
            if *voter { ChangeMembers::RemoveVoters(BTreeSet::from([id])) } else { ChangeMembers::RemoveNodes(BTreeSet::from([id])) };
        let r = tokio::time::timeout(COMMIT_WAIT * 2, self.raft.change_membership(change, false))
            .await
            .map_err(|_| no_quorum("the removal"))?;
        match r.decompose() {
            Ok(Ok(_)) => {}
            Ok(Err(ClientWriteError::ForwardToLeader(f))) => return Ok(Err(f.leader_node)),
            Ok(Err(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_)))) => {
                return Err(ClusterError::Refused("another membership change is in progress; try again".into()));
            }
            Ok(Err(e)) => return Err(ClusterError::Refused(format!("cannot remove node {id}: {e}"))),
            Err(fatal) => return Err(ClusterError::Internal(format!("raft stopped: {fatal}"))),
        }
        Ok(Ok(()))
    }

    /// Removes node `id`, through the leader.
    pub async fn remove(&self, id: u64) -> Result<(), ClusterError> {
        match self.remove_here(id).await? {
            Ok(()) => Ok(()),
            Err(Some(leader)) => self.network.call(&leader.addr, Call::Remove, &id, Duration::from_secs(20)).await,
            Err(None) => Err(not_leader(None)),
        }
    }

    /// Takes this node out of the cluster for good, then stops its Raft so
    /// it never campaigns with a stale membership.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.remove(self.id).await?;
        self.left.store(true, std::sync::atomic::Ordering::Relaxed);
        *self.problem.lock().expect("problem") =
            Some(format!("node {} left the cluster; its id is retired: start it with an empty data directory to join again", self.id));
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "stopping raft after leaving");
        }
        Ok(())
    }

    /// Takes lock `name` for `holder`. With `wait`, waits that long for the
    /// holder before to release it or for its lease to run out.
    pub async fn acquire(&self, name: &str, holder: &str, ttl: Duration, wait: Option<Duration>) -> Result<LockGrant, ClusterError> {
        let queue = self.lock_queues.lock().expect("lock queues").entry(name.to_string()).or_default().clone();
        let _forget = ForgetQueue { cluster: self, name, queue: queue.clone() };
        let granted = self.acquire_in_turn(name, holder, ttl, wait, &queue).await;
        if granted.is_ok() {
            metrics::counter!("strata_lock_grants_total").increment(1);
        }
        granted
    }

    async fn acquire_in_turn(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        wait: Option<Duration>,
        queue: &tokio::sync::Mutex<()>,
    ) -> Result<LockGrant, ClusterError> {
        let deadline = wait.map(|w| Instant::now() + w);
        // Waiters on this node take turns, so one of them proposes at a time.
        let _turn = match deadline {
            Some(d) => Some(
                tokio::time::timeout_at(d.into(), queue.lock())
                    .await
                    .map_err(|_| ClusterError::TimedOut(format!("lock {name} was not free within {:?}", wait.unwrap_or_default())))?,
            ),
            None => None,
        };
        let ttl_ms = ttl.as_millis() as u64;
        let request = rand::random::<u64>();
        loop {
            let applied = self.state.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            let cmd = Cmd::Lock { name: name.into(), holder: holder.into(), request, ttl_ms, now_ms: 0 };
            let r = self.write(cmd).await?;
            let (why, grant) = match (r.refused, r.lock) {
                (None, Some(g)) => return Ok(g),
                // An earlier try of this acquisition committed after all.
                (Some(_), Some(g)) if g.request == request => return Ok(g),
                (why, g) => (why.unwrap_or_default(), g),
            };
            let Some(deadline) = deadline else {
                return Err(ClusterError::Refused(format!("lock {name} is {why}; to wait for it, acquire with a wait")));
            };
            let lease_left = grant.as_ref().map_or(ttl_ms, |g| g.expires_ms.saturating_sub(r.now_ms));
            let retry_at = (Instant::now() + Duration::from_millis(lease_left)).min(deadline);
            // Sleep until the lease ends or the grant is gone here. This
            // node may lag behind the entry that refused us: the grant it
            // names (its token is its log index) must be applied here first.
            loop {
                tokio::select! {
                    _ = &mut applied => {}
                    _ = tokio::time::sleep_until(retry_at.into()) => break,
                }
                // Listen before looking, so no change slips between.
                applied.set(self.state.applied.notified());
                applied.as_mut().enable();
                let Some(g) = &grant else { break };
                let (current, applied_to) = self.state.lock_token(name).await;
                if applied_to >= g.token && current != Some(g.token) {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::TimedOut(format!("lock {name} is still {why} (waited {:?})", wait.unwrap_or_default())));
            }
        }
    }

    pub async fn renew(&self, name: &str, token: u64, ttl: Duration) -> Result<LockGrant, ClusterError> {
        let r = self.write(Cmd::Renew { name: name.into(), token, ttl_ms: ttl.as_millis() as u64, now_ms: 0 }).await?;
        match (r.refused, r.lock) {
            (None, Some(g)) => Ok(g),
            (why, _) => Err(ClusterError::Refused(format!("cannot renew lock {name}: {}", why.unwrap_or_default()))),
        }
    }

    pub async fn release(&self, name: &str, token: u64) -> Result<(), ClusterError> {
        let r = self.write(Cmd::Unlock { name: name.into(), token }).await?;
        match r.refused {
            None => Ok(()),
            Some(why) => Err(ClusterError::Refused(format!("cannot release lock {name}: {why}"))),
        }
    }
}

/// Drops a lock's wait queue when its last waiter leaves, also when the
/// waiting call is cancelled.
struct ForgetQueue<'a> {
    cluster: &'a Cluster,
    name: &'a str,
    queue: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for ForgetQueue<'_> {
    fn drop(&mut self) {
        let mut queues = self.cluster.lock_queues.lock().expect("lock queues");
        // The map's reference, ours here, and the caller's.
        if Arc::strong_count(&self.queue) <= 3 {
            queues.remove(self.name);
        }
    }
}
