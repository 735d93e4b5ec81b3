//! Plugins: the list with call figures, and a placement dry run.

use super::error::ApiError;
use super::error::invalid;
use super::pb;
use crate::plugin::{Consistency, Health, NodeInfo, ObjectInfo, Plugins, ReplicationPolicy, Topology};

pub fn handle_list(plugins: &Plugins) -> pb::ListPluginsResponse {
    let plugins = plugins
        .list()
        .into_iter()
        .map(|(info, stats)| pb::PluginStatus {
            name: info.name,
            kind: info.kind.as_str().into(),
            version: info.version,
            description: info.description,
            source: info.source,
            calls: stats.calls,
            errors: stats.errors,
            traps: stats.traps,
            timeouts: stats.timeouts,
            memory_refusals: stats.memory_refusals,
            instantiations: stats.instantiations,
            instances: stats.instances_live,
            mean_us: stats.mean.as_secs_f64() * 1e6,
            max_us: stats.max.as_secs_f64() * 1e6,
        })
        .collect();
    pb::ListPluginsResponse { plugins }
}

/// Most nodes one dry run may name.
const MAX_NODES: usize = 10_000;

pub async fn handle_place(plugins: std::sync::Arc<Plugins>, req: pb::PlaceRequest) -> Result<pb::PlaceResponse, ApiError> {
    if req.nodes.is_empty() {
        return Err(invalid("nodes: give at least one node"));
    }
    if req.nodes.len() > MAX_NODES {
        return Err(invalid(format!("nodes: at most {MAX_NODES}")));
    }
    if req.replicas == 0 {
        return Err(invalid("replicas: must be at least 1"));
    }
    let min_replicas = req.min_replicas.unwrap_or(req.replicas);
    let max_replicas = req.max_replicas.unwrap_or(req.replicas);
    if min_replicas > req.replicas || max_replicas < req.replicas {
        return Err(invalid("need min_replicas <= replicas <= max_replicas"));
    }
    let mut nodes = Vec::with_capacity(req.nodes.len());
    let mut ids = std::collections::HashSet::new();
    for (i, n) in req.nodes.into_iter().enumerate() {
        if n.id.is_empty() || !ids.insert(n.id.clone()) {
            return Err(invalid(format!("nodes[{i}]: ids must be present and distinct")));
        }
        if !(n.load.is_finite() && n.load >= 0.0) {
            return Err(invalid(format!("nodes[{i}].load: {} is not a load (0.0 and up)", n.load)));
        }
        if n.capacity_available > n.capacity_total {
            return Err(invalid(format!("nodes[{i}]: capacity_available exceeds capacity_total")));
        }
        let health = match n.health.as_str() {
            "" | "healthy" => Health::Healthy,
            "suspect" => Health::Suspect,
            "down" => Health::Down,
            other => return Err(invalid(format!("nodes[{i}].health: {other:?} is not healthy, suspect or down"))),
        };
        nodes.push(NodeInfo {
            id: n.id,
            address: n.address,
            region: n.region,
            zone: n.zone,
            capacity_total: n.capacity_total,
            capacity_available: n.capacity_available,
            load: n.load,
            health,
            // Sorted: plugins see the same order for the same request.
            labels: n.labels.into_iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().collect(),
        });
    }
    let coordinator = if req.coordinator.is_empty() {
        0
    } else {
        nodes
            .iter()
            .position(|n| n.id == req.coordinator)
            .ok_or_else(|| invalid(format!("coordinator: no node {:?} among the nodes", req.coordinator)))? as u32
    };
    let consistency = match req.consistency.as_str() {
        "" | "strong" => Consistency::Strong,
        "eventual" => Consistency::Eventual,
        other => return Err(invalid(format!("consistency: {other:?} is neither strong nor eventual"))),
    };
    let policy = ReplicationPolicy {
        replicas: req.replicas,
        min_replicas,
        max_replicas,
        consistency,
        params: req.params.into_iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().collect(),
    };
    let object = ObjectInfo {
        bucket: req.bucket,
        key: req.key,
        digest: String::new(),
        size: req.size,
        content_type: String::new(),
        attributes: Vec::new(),
    };
    let selector = if req.selector.is_empty() { "rendezvous".to_string() } else { req.selector };
    // Plugin calls are short but bounded only by their deadline: keep them off
    // the async workers.
    tokio::task::spawn_blocking(move || {
        let topology = Topology::new(nodes);
        let healthy = crate::replication::plan::healthy(&topology);
        let targets = plugins.selector(&selector)?.select(&topology, &healthy, &object, &policy)?;
        let id = |i: &u32| topology.nodes()[*i as usize].id.clone();
        let mut resp = pb::PlaceResponse { targets: targets.iter().map(id).collect(), ..Default::default() };
        if !req.strategy.is_empty() {
            let plan = plugins.strategy(&req.strategy)?.plan_write(&topology, coordinator, &targets, &object, &policy)?;
            resp.sync_targets = plan.sync_targets.iter().map(id).collect();
            resp.async_targets = plan.async_targets.iter().map(id).collect();
            resp.acks_required = plan.acks_required;
        }
        Ok::<_, ApiError>(resp)
    })
    .await
    .map_err(|e| ApiError::Status(tonic::Status::internal(format!("placement task failed: {e}"))))?
}
