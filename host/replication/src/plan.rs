//! Where a write goes: the bucket's policy (its own from the cluster state,
//! else `[replication]`), the node selector's targets among the healthy
//! members, and the replication strategy's plan over them.

use std::sync::Arc;
use std::time::Instant;

use super::ReplicationError;
use strata_cluster::detector::Health as Seen;
use strata_cluster::node::Cluster;
use strata_cluster::types::{BucketPolicy, Consistency as ConsistencyLevel};
use strata_config::ReplicationConfig;
use strata_plugin::{Consistency, Health, NodeInfo, ObjectInfo, Plugins, RepairAction, Replica, ReplicationPolicy, Topology};

/// A bucket's policy with the defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub strategy: String,
    pub selector: String,
    pub replicas: u32,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub consistency: ConsistencyLevel,
    pub params: Vec<(String, String)>,
}

impl Policy {
    pub fn of(own: Option<&BucketPolicy>, defaults: &ReplicationConfig) -> Self {
        match own {
            Some(p) => Self {
                strategy: p.strategy.clone(),
                selector: p.selector.clone(),
                replicas: p.replicas,
                min_replicas: p.min_replicas.clamp(1, p.replicas.max(1)),
                max_replicas: defaults.max_replicas.max(p.replicas),
                consistency: p.consistency.unwrap_or(defaults.consistency_level.into()),
                params: p.params.clone().into_iter().collect(),
            },
            None => Self {
                strategy: defaults.default_strategy.clone(),
                selector: defaults.default_selector.clone(),
                replicas: defaults.replication_factor,
                min_replicas: defaults.min_replicas,
                max_replicas: defaults.max_replicas,
                consistency: defaults.consistency_level.into(),
                params: Vec::new(),
            },
        }
    }

    fn wit(&self) -> ReplicationPolicy {
        ReplicationPolicy {
            replicas: self.replicas,
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            consistency: match self.consistency {
                ConsistencyLevel::Strong => Consistency::Strong,
                ConsistencyLevel::Eventual => Consistency::Eventual,
            },
            params: self.params.clone(),
        }
    }
}

/// One member as placement sees it.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    pub zone: String,
    pub region: String,
    pub health: Seen,
    pub load: f64,
    /// Time since its last heartbeat, if one came since this node started.
    pub silent: Option<std::time::Duration>,
}

/// The members with their health, load and free space.
pub fn members(c: &Cluster) -> (Vec<Member>, Vec<NodeInfo>) {
    let now = Instant::now();
    let mut members = Vec::new();
    let mut infos = Vec::new();
    for (id, n, _) in c.members() {
        let seen = c.detector.seen(id, now);
        let beat = seen.beat.unwrap_or_default();
        infos.push(NodeInfo {
            id: id.to_string(),
            address: n.addr.clone(),
            region: n.region.clone(),
            zone: n.zone.clone(),
            capacity_total: n.capacity,
            capacity_available: n.capacity.saturating_sub(beat.used),
            load: beat.load,
            health: match seen.health {
                Seen::Healthy => Health::Healthy,
                Seen::Suspect => Health::Suspect,
                Seen::Down => Health::Down,
            },
            labels: n.labels.clone().into_iter().collect(),
        });
        members.push(Member {
            id,
            addr: n.addr,
            zone: n.zone,
            region: n.region,
            health: seen.health,
            load: beat.load,
            silent: seen.silent,
        });
    }
    (members, infos)
}

/// Refuses (`UNAVAILABLE`, saying `why`) when this node reaches no
/// majority of `members`.
pub fn refuse_minority(members: &[Member], why: &str) -> Result<(), ReplicationError> {
    let reachable = members.iter().filter(|m| m.health != Seen::Down).count();
    if reachable * 2 <= members.len() {
        return Err(ReplicationError::Unavailable(format!("this node reaches {reachable} of {} members; {why}", members.len())));
    }
    Ok(())
}

/// Indices of the healthy nodes: a selector's candidates.
pub fn healthy(topology: &Topology) -> Vec<u32> {
    topology.nodes().iter().enumerate().filter(|(_, n)| n.health == Health::Healthy).map(|(i, _)| i as u32).collect()
}

/// A write's plan, by cluster node id.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The selector's choice, in its order: where the version should live.
    pub targets: Vec<u64>,
    pub sync: Vec<u64>,
    pub asynchronous: Vec<u64>,
    pub acks: u32,
    /// Where the selector would put the version if every member were
    /// healthy; those missing from `targets` are owed a copy (queued), so
    /// a write made while nodes are down or cut off reaches them later.
    pub ideal: Vec<u64>,
}

/// An object as placement plugins see it: what they may decide on (the
/// digest, type and attributes are not known when a write is planned).
pub fn object_info(bucket: &str, key: &str, size: u64) -> ObjectInfo {
    ObjectInfo { bucket: bucket.into(), key: key.into(), digest: String::new(), size, content_type: String::new(), attributes: Vec::new() }
}

/// Asks the plugins where `key` goes. The coordinator is this node.
pub async fn plan(
    plugins: &Arc<Plugins>,
    cluster: &Cluster,
    policy: &Policy,
    bucket: &str,
    key: &str,
    size: u64,
    async_allowed: bool,
) -> Result<Plan, ReplicationError> {
    let (members, infos) = members(cluster);
    let Some(coordinator) = members.iter().position(|m| m.id == cluster.id) else {
        return Err(ReplicationError::Unavailable("this node is not a cluster member yet: `strata cluster init` or `join` first".into()));
    };
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let object = object_info(bucket, key, size);
    let wit = policy.wit();
    let (plugins, selector, strategy) = (plugins.clone(), policy.selector.clone(), policy.strategy.clone());
    // Plugin calls are bounded by their deadline, not short: off the async workers.
    let plan = tokio::task::spawn_blocking(move || {
        let topology = Topology::new(infos);
        let healthy = healthy(&topology);
        let sel = plugins.selector(&selector)?;
        let targets = sel.select(&topology, &healthy, &object, &wit)?;
        let plan = plugins.strategy(&strategy)?.plan_write(&topology, coordinator as u32, &targets, &object, &wit)?;
        let all: Vec<u32> = (0..topology.nodes().len() as u32).collect();
        let ideal =
            if healthy.len() == all.len() { targets.clone() } else { sel.select(&topology, &all, &object, &wit).unwrap_or_default() };
        Ok::<_, strata_plugin::PluginError>((targets, plan, ideal))
    })
    .await
    .map_err(|e| ReplicationError::Internal(format!("placement task failed: {e}")))?;
    let (targets, plan, ideal) = plan.map_err(|e| ReplicationError::Unavailable(format!("cannot place {bucket}/{key}: {e}")))?;
    let id = |i: &u32| ids[*i as usize];
    let mut out = Plan {
        targets: targets.iter().map(id).collect(),
        sync: plan.sync_targets.iter().map(id).collect(),
        asynchronous: plan.async_targets.iter().map(id).collect(),
        acks: plan.acks_required,
        ideal: ideal.iter().map(id).collect(),
    };
    if !async_allowed {
        out.sync.append(&mut out.asynchronous);
    }
    Ok(out)
}

/// Asks the plugins about each of `items` over one topology, in one
/// blocking task (plugin calls are bounded by their deadline, not short);
/// a plugin's refusal is that item's error.
async fn ask_each<T, R, F>(
    plugins: &Arc<Plugins>,
    infos: Vec<NodeInfo>,
    items: Vec<T>,
    ask: F,
) -> Result<Vec<Result<R, String>>, ReplicationError>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(&Plugins, &Topology, T) -> Result<R, strata_plugin::PluginError> + Send + 'static,
{
    let plugins = plugins.clone();
    tokio::task::spawn_blocking(move || {
        let topology = Topology::new(infos);
        items.into_iter().map(|item| ask(&plugins, &topology, item).map_err(|e| e.to_string())).collect()
    })
    .await
    .map_err(|e| ReplicationError::Internal(format!("placement task failed: {e}")))
}

/// Where each of many versions should live among `candidates` (indices
/// into `infos`), by their buckets' selectors: one blocking call for all.
pub async fn select_many(
    plugins: &Arc<Plugins>,
    infos: Vec<NodeInfo>,
    candidates: Vec<u32>,
    items: Vec<(Policy, ObjectInfo)>,
) -> Result<Vec<Result<Vec<u32>, String>>, ReplicationError> {
    ask_each(plugins, infos, items, move |plugins, topology, (policy, object)| {
        plugins.selector(&policy.selector)?.select(topology, &candidates, &object, &policy.wit())
    })
    .await
}

/// A version the placement pass asks its strategy about: where its
/// replicas are (indices into the topology) and where it should live.
pub struct RepairQuestion {
    pub policy: Policy,
    pub object: ObjectInfo,
    pub replicas: Vec<Replica>,
    pub placement: Vec<u32>,
}

/// Each version's repair actions, by its bucket's strategy's `plan-repair`:
/// one blocking call for all.
pub async fn repair_many(
    plugins: &Arc<Plugins>,
    infos: Vec<NodeInfo>,
    questions: Vec<RepairQuestion>,
) -> Result<Vec<Result<Vec<RepairAction>, String>>, ReplicationError> {
    ask_each(plugins, infos, questions, |plugins, topology, q| {
        plugins.strategy(&q.policy.strategy)?.plan_repair(topology, &q.object, &q.policy.wit(), &q.replicas, &q.placement)
    })
    .await
}

/// A bucket policy as a client asks for it: empty strings and zeros take
/// the `[replication]` defaults.
#[derive(Clone, Debug, Default)]
pub struct PolicySpec {
    pub strategy: String,
    pub selector: String,
    pub replicas: u32,
    pub min_replicas: u32,
    pub params: std::collections::BTreeMap<String, String>,
    /// `strong`, `eventual`, or empty for the default.
    pub consistency: String,
}

/// The policy to store for a request: unset fields take the defaults;
/// plugin names must be loaded plugins.
pub fn resolve(plugins: &Plugins, d: &ReplicationConfig, p: PolicySpec) -> Result<BucketPolicy, ReplicationError> {
    let strategy = if p.strategy.is_empty() { d.default_strategy.clone() } else { p.strategy };
    let selector = if p.selector.is_empty() { d.default_selector.clone() } else { p.selector };
    plugins.strategy(&strategy).map_err(|e| ReplicationError::Invalid(format!("policy.strategy: {e}")))?;
    plugins.selector(&selector).map_err(|e| ReplicationError::Invalid(format!("policy.selector: {e}")))?;
    let replicas = if p.replicas == 0 { d.replication_factor } else { p.replicas };
    if replicas > d.max_replicas {
        return Err(ReplicationError::Invalid(format!("policy.replicas: at most {} (replication.max_replicas)", d.max_replicas)));
    }
    let min_replicas = if p.min_replicas == 0 { d.min_replicas.min(replicas) } else { p.min_replicas };
    if min_replicas > replicas {
        return Err(ReplicationError::Invalid("policy.min_replicas: at most replicas".into()));
    }
    let consistency = match p.consistency.as_str() {
        "" => None,
        "strong" => Some(ConsistencyLevel::Strong),
        "eventual" => Some(ConsistencyLevel::Eventual),
        other => return Err(ReplicationError::Invalid(format!("policy.consistency: {other:?} is neither strong nor eventual"))),
    };
    Ok(BucketPolicy { strategy, selector, replicas, min_replicas, params: p.params, consistency })
}
