//! Cluster calls: membership, status, replication policies, locks.

use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use tonic::Status;

use super::error::{ApiError, invalid};
use super::pb;
use super::validate;
use crate::cluster::node::Cluster;
use crate::cluster::types::{BucketPolicy, Consistency, LockGrant};
use crate::replication::{PolicySpec, Replicator, plan};

/// The cluster of a cluster node; refused on a single node.
pub fn require(r: Option<&std::sync::Arc<Replicator>>) -> Result<&std::sync::Arc<Replicator>, ApiError> {
    r.ok_or_else(|| {
        ApiError::Status(Status::failed_precondition("this server is not a cluster node: add a [cluster] section to its config"))
    })
}

pub async fn handle_init(c: &Cluster) -> Result<pb::ClusterView, ApiError> {
    c.init().await?;
    handle_status(c).await
}

/// This node's view: Raft's membership and figures, and the failure
/// detector's judgement of each member.
pub async fn handle_status(c: &Cluster) -> Result<pb::ClusterView, ApiError> {
    let m = c.raft.metrics().borrow_watched().clone();
    let now = Instant::now();
    let nodes = c
        .members()
        .into_iter()
        .map(|(id, n, voter)| {
            let seen = c.detector.seen(id, now);
            let beat = seen.beat.unwrap_or_default();
            pb::ClusterNode {
                id,
                address: n.addr,
                region: n.region,
                zone: n.zone,
                capacity: n.capacity,
                role: if voter { "voter" } else { "learner" }.into(),
                state: seen.health.to_string(),
                last_heartbeat_ms: seen.silent.map_or(-1, |d| d.as_millis() as i64),
                load: beat.load,
                used: beat.used,
                ops_per_second: beat.ops,
                term: beat.term,
                applied: beat.applied,
            }
        })
        .collect();
    let st = c.state.state().await;
    Ok(pb::ClusterView {
        node_id: c.id,
        leader: m.current_leader.unwrap_or(0),
        term: m.current_term,
        applied: m.last_applied.map_or(0, |l| l.index),
        epoch: st.epoch,
        nodes,
        cluster_id: st.cluster_id,
        problem: c.problem().unwrap_or_default(),
        snapshot: m.snapshot.map_or(0, |l| l.index),
        purged: m.purged.map_or(0, |l| l.index),
        ..Default::default()
    })
}

/// The members as node selectors see them, for a placement dry run.
pub fn placement_nodes(c: &Cluster) -> Vec<pb::Node> {
    let now = Instant::now();
    c.members()
        .into_iter()
        .map(|(id, n, _)| {
            let seen = c.detector.seen(id, now);
            let beat = seen.beat.unwrap_or_default();
            pb::Node {
                id: id.to_string(),
                address: n.addr,
                region: n.region,
                zone: n.zone,
                capacity_total: n.capacity,
                capacity_available: n.capacity.saturating_sub(beat.used),
                load: beat.load,
                health: seen.health.to_string(),
                labels: n.labels.into_iter().collect(),
            }
        })
        .collect()
}

/// A policy as a request gives it (unset fields take the defaults; the
/// replicator checks it).
pub fn policy_spec(p: pb::ReplicationPolicy) -> PolicySpec {
    PolicySpec {
        strategy: p.strategy,
        selector: p.selector,
        replicas: p.replicas,
        min_replicas: p.min_replicas,
        params: p.params.into_iter().collect(),
        consistency: p.consistency,
    }
}

pub async fn handle_set_replication(r: &Replicator, req: pb::SetReplicationRequest) -> Result<pb::ReplicationPolicy, ApiError> {
    validate::bucket_name(&req.bucket)?;
    let p = req.policy.ok_or_else(|| invalid("policy: give strategy, selector and replicas"))?;
    let policy = plan::resolve(&r.plugins, &r.config, policy_spec(p))?;
    r.cluster.write(crate::cluster::types::Cmd::SetBucketPolicy { bucket: req.bucket, policy: policy.clone() }).await?;
    Ok(policy_pb(policy))
}

pub async fn handle_get_replication(c: &Cluster, req: pb::GetReplicationRequest) -> Result<pb::ReplicationPolicy, ApiError> {
    validate::bucket_name(&req.bucket)?;
    let st = c.read().await?;
    st.buckets.get(&req.bucket).cloned().map(policy_pb).ok_or_else(|| {
        ApiError::Status(Status::not_found(format!(
            "bucket {:?} has no replication policy; set one with `strata cluster replication BUCKET --replicas N`",
            req.bucket
        )))
    })
}

fn policy_pb(p: BucketPolicy) -> pb::ReplicationPolicy {
    pb::ReplicationPolicy {
        strategy: p.strategy,
        selector: p.selector,
        replicas: p.replicas,
        min_replicas: p.min_replicas,
        params: p.params.into_iter().collect(),
        consistency: match p.consistency {
            None => String::new(),
            Some(Consistency::Strong) => "strong".into(),
            Some(Consistency::Eventual) => "eventual".into(),
        },
    }
}

/// Lock names: 1 to 200 printable characters.
fn lock_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(format!("lock name {name:?}: use 1 to 200 printable characters")));
    }
    Ok(())
}

fn ttl(ms: u64) -> Result<Duration, ApiError> {
    if !(100..=86_400_000).contains(&ms) {
        return Err(invalid(format!("ttl: {ms} ms is out of range; use 100ms to 24h")));
    }
    Ok(Duration::from_millis(ms))
}

fn grant_pb(g: LockGrant, ttl_ms: u64) -> pb::LockGrant {
    pb::LockGrant { name: g.name, holder: g.holder, token: g.token, ttl_ms }
}

pub async fn handle_acquire(c: &Cluster, req: pb::LockAcquireRequest) -> Result<pb::LockGrant, ApiError> {
    lock_name(&req.name)?;
    let ttl = ttl(req.ttl_ms)?;
    if req.holder.len() > 200 {
        return Err(invalid("holder: at most 200 bytes"));
    }
    let holder = match req.holder.is_empty() {
        true => format!("anonymous-{:016x}", rand::random::<u64>()),
        false => req.holder,
    };
    let wait = (req.wait_ms > 0).then(|| Duration::from_millis(req.wait_ms.min(3_600_000)));
    let g = c.acquire(&req.name, &holder, ttl, wait).await?;
    Ok(grant_pb(g, req.ttl_ms))
}

pub async fn handle_renew(c: &Cluster, req: pb::LockRenewRequest) -> Result<pb::LockGrant, ApiError> {
    lock_name(&req.name)?;
    let g = c.renew(&req.name, req.token, ttl(req.ttl_ms)?).await?;
    Ok(grant_pb(g, req.ttl_ms))
}

pub async fn handle_release(c: &Cluster, req: pb::LockReleaseRequest) -> Result<pb::LockReleaseResponse, ApiError> {
    lock_name(&req.name)?;
    c.release(&req.name, req.token).await?;
    Ok(pb::LockReleaseResponse {})
}

/// Live grants, read linearizably; ttl_ms is what is left of each lease.
pub async fn handle_list_locks(c: &Cluster) -> Result<pb::ListLocksResponse, ApiError> {
    let st = c.read().await?;
    // The log's clock moves only with lock commands; a lease that ran out
    // since then has run out by the wall clock.
    let now = st.clock_ms.max(crate::cluster::now_ms());
    let locks = st.locks.all().filter(|g| g.expires_ms > now).map(|g| grant_pb(g.clone(), g.expires_ms - now)).collect();
    Ok(pb::ListLocksResponse { locks })
}

pub fn report_pb(r: crate::replication::placement::RepairReport) -> pb::ClusterRepairReport {
    pb::ClusterRepairReport { checked: r.checked, copies: r.copies, copy_bytes: r.copy_bytes, dropped: r.dropped, dry_run: r.dry_run }
}
