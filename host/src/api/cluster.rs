//! Cluster calls: init and status.

use std::collections::BTreeMap;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::InitializeError;
use openraft::errors::RaftError;
use tonic::Status;

use super::pb;
use crate::cluster::node::Cluster;

pub fn require(c: Option<&std::sync::Arc<Cluster>>) -> Result<&Cluster, Status> {
    c.map(|c| &**c).ok_or_else(|| {
        Status::failed_precondition("this server is not a cluster node: add a [cluster] section to its config")
    })
}

pub async fn handle_init(c: &Cluster) -> Result<pb::ClusterView, Status> {
    match c.raft.initialize(BTreeMap::from([(c.id, c.me.clone())])).await {
        Ok(()) => {}
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            return Err(Status::already_exists("this node already belongs to a cluster; see `strata cluster status`"));
        }
        Err(e) => return Err(Status::internal(format!("cluster init failed: {e}"))),
    }
    handle_status(c).await
}

pub async fn handle_status(c: &Cluster) -> Result<pb::ClusterView, Status> {
    let m = c.raft.metrics().borrow_watched().clone();
    let membership = m.membership_config.membership().clone();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let nodes = membership
        .nodes()
        .map(|(id, n)| pb::ClusterNode {
            id: *id,
            address: n.addr.clone(),
            region: n.region.clone(),
            zone: n.zone.clone(),
            capacity: n.capacity,
            role: if voters.contains(id) { "voter" } else { "learner" }.into(),
        })
        .collect();
    Ok(pb::ClusterView {
        node_id: c.id,
        leader: m.current_leader.unwrap_or(0),
        term: m.current_term,
        applied: m.last_applied.map_or(0, |l| l.index),
        epoch: c.state.state().await.epoch,
        nodes,
    })
}
