//! `strata cluster`: form and change the cluster, repair and rebalance, and
//! buckets' replication policies.

use crate::api::pb;
use crate::cli::ClusterCmd;
use crate::cli::client::{Client, policy_pb, status};
use crate::cli::output;

pub async fn run(c: &mut Client, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Init => {
            let v = c.cluster_init(pb::ClusterInitRequest {}).await.map_err(status)?.into_inner();
            output::cluster(&v, false);
        }
        ClusterCmd::Join { node } => {
            let mut v = c.cluster_join(pb::ClusterJoinRequest { address: node }).await.map_err(status)?.into_inner();
            // The join has committed; this node learns the membership as it
            // applies the log, a moment later.
            for _ in 0..50 {
                if !v.nodes.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                v = c.cluster_status(pb::ClusterStatusRequest {}).await.map_err(status)?.into_inner();
            }
            output::cluster(&v, false);
        }
        ClusterCmd::Status { json } => {
            let v = c.cluster_status(pb::ClusterStatusRequest {}).await.map_err(status)?.into_inner();
            output::cluster(&v, json);
        }
        ClusterCmd::Leave => {
            let v = c.cluster_leave(pb::ClusterLeaveRequest {}).await.map_err(status)?.into_inner();
            println!("node {} left the cluster", v.node_id);
        }
        ClusterCmd::Remove { id } => {
            let v = c.cluster_remove(pb::ClusterRemoveRequest { node_id: id }).await.map_err(status)?.into_inner();
            println!("removed node {id}");
            output::cluster(&v, false);
        }
        ClusterCmd::Repair { dry_run } | ClusterCmd::Rebalance { dry_run } => {
            let r = c.cluster_repair(pb::ClusterRepairRequest { dry_run }).await.map_err(status)?.into_inner();
            let verb = if dry_run { "would copy" } else { "queued" };
            println!(
                "checked {} versions led by this node: {verb} {} copies ({} bytes), {} {} surplus copies",
                r.checked,
                r.copies,
                r.copy_bytes,
                if dry_run { "would drop" } else { "dropped" },
                r.dropped
            );
        }
        ClusterCmd::Replication { bucket, policy } => {
            let p = if policy.is_empty() {
                c.get_replication(pb::GetReplicationRequest { bucket }).await.map_err(status)?.into_inner()
            } else {
                let req = pb::SetReplicationRequest { bucket, policy: Some(policy_pb(policy)?) };
                c.set_replication(req).await.map_err(status)?.into_inner()
            };
            let consistency = if p.consistency.is_empty() { "the server's default" } else { &p.consistency };
            println!(
                "strategy {}, selector {}, {} replicas (at least {}), consistency {consistency}",
                p.strategy, p.selector, p.replicas, p.min_replicas
            );
        }
    }
    Ok(())
}
