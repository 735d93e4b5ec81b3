//! Conversions between the generated bindings and the SDK's types, used by
//! the export macros.
#![allow(missing_docs)]

use crate::bindings::exports::strata::plugin::lifecycle;
use crate::bindings::strata::plugin::types as t;
use crate::{Consistency, ObjectInfo, PluginError, Policy, Scalar, Value};
#[cfg(any(feature = "node-selector", feature = "replication-strategy"))]
use crate::{Health, NodeInfo};

pub fn info(name: &str, version: &str, description: &str) -> lifecycle::PluginInfo {
    lifecycle::PluginInfo { name: name.into(), version: version.into(), description: description.into() }
}

pub fn error(e: PluginError) -> t::PluginError {
    match e {
        PluginError::InvalidInput(m) => t::PluginError::InvalidInput(m),
        PluginError::Unsatisfiable(m) => t::PluginError::Unsatisfiable(m),
        PluginError::Internal(m) => t::PluginError::Internal(m),
    }
}

pub fn not_initialised() -> t::PluginError {
    t::PluginError::Internal("called before init".into())
}

pub fn scalar(s: t::Scalar) -> Scalar {
    match s {
        t::Scalar::Null => Scalar::Null,
        t::Scalar::Boolean(b) => Scalar::Bool(b),
        t::Scalar::Number(n) => Scalar::Number(n),
        t::Scalar::Text(s) => Scalar::Text(s),
    }
}

pub fn value(v: t::Value) -> Value {
    match v {
        t::Value::Null => Value::Null,
        t::Value::Boolean(b) => Value::Bool(b),
        t::Value::Number(n) => Value::Number(n),
        t::Value::Text(s) => Value::Text(s),
        t::Value::List(l) => Value::List(l.into_iter().map(scalar).collect()),
    }
}

pub fn object(o: t::ObjectInfo) -> ObjectInfo {
    ObjectInfo {
        bucket: o.bucket,
        key: o.key,
        digest: o.digest,
        size: o.size,
        content_type: o.content_type,
        attributes: o.attributes.into_iter().map(|(k, v)| (k, value(v))).collect(),
    }
}

pub fn policy(p: t::ReplicationPolicy) -> Policy {
    Policy {
        replicas: p.replicas,
        min_replicas: p.min_replicas,
        max_replicas: p.max_replicas,
        consistency: match p.consistency {
            t::Consistency::Strong => Consistency::Strong,
            t::Consistency::Eventual => Consistency::Eventual,
        },
        params: p.params,
    }
}

#[cfg(any(feature = "node-selector", feature = "replication-strategy"))]
fn node(n: t::NodeInfo) -> NodeInfo {
    NodeInfo {
        id: n.id,
        address: n.address,
        region: n.region,
        zone: n.zone,
        capacity_total: n.capacity_total,
        capacity_available: n.capacity_available,
        load: n.load,
        health: match n.health {
            t::Health::Healthy => Health::Healthy,
            t::Health::Suspect => Health::Suspect,
            t::Health::Down => Health::Down,
        },
        labels: n.labels,
    }
}

#[cfg(any(feature = "node-selector", feature = "replication-strategy"))]
pub fn check_indices(nodes: &[NodeInfo], indices: &[u32]) -> Result<(), t::PluginError> {
    match indices.iter().find(|&&i| i as usize >= nodes.len()) {
        None => Ok(()),
        Some(i) => Err(t::PluginError::InvalidInput(format!("node index {i} out of range: the topology has {} nodes", nodes.len()))),
    }
}

#[cfg(any(feature = "node-selector", feature = "replication-strategy"))]
mod topology {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::node;
    use crate::NodeInfo;
    use crate::bindings::strata::plugin::topology::Topology;

    thread_local! {
        /// The node list of the last generation seen: copying it in is the
        /// dominant cost of a call, and it rarely changes.
        static CACHE: RefCell<Option<(u64, Rc<Vec<NodeInfo>>)>> = const { RefCell::new(None) };
    }

    pub fn nodes(topology: &Topology) -> Rc<Vec<NodeInfo>> {
        let generation = topology.generation();
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((g, nodes)) = &*cache
                && *g == generation
            {
                return nodes.clone();
            }
            let nodes = Rc::new(topology.nodes().into_iter().map(node).collect::<Vec<_>>());
            *cache = Some((generation, nodes.clone()));
            nodes
        })
    }
}

#[cfg(any(feature = "node-selector", feature = "replication-strategy"))]
pub use topology::nodes;

#[cfg(feature = "replication-strategy")]
mod strategy {
    use crate::bindings::exports::strata::plugin::strategy as s;
    use crate::strategy::{RepairAction, Replica, ReplicaState, VersionInfo, WritePlan};

    pub fn write_plan(p: WritePlan) -> s::WritePlan {
        s::WritePlan { sync_targets: p.sync_targets, async_targets: p.async_targets, acks_required: p.acks_required }
    }

    pub fn version(v: s::VersionInfo) -> VersionInfo {
        VersionInfo { stamp: v.stamp, node_id: v.node_id, digest: v.digest, size: v.size, deleted: v.deleted }
    }

    pub fn replica(r: s::Replica) -> Replica {
        Replica {
            node: r.node,
            state: match r.state {
                s::ReplicaState::Healthy => ReplicaState::Healthy,
                s::ReplicaState::Missing => ReplicaState::Missing,
                s::ReplicaState::Corrupt => ReplicaState::Corrupt,
                s::ReplicaState::Stale => ReplicaState::Stale,
                s::ReplicaState::Unreachable => ReplicaState::Unreachable,
            },
        }
    }

    pub fn repair_action(a: RepairAction) -> s::RepairAction {
        match a {
            RepairAction::Copy { source, target } => s::RepairAction::Copy(s::CopyAction { source, target }),
            RepairAction::Remove(n) => s::RepairAction::Remove(n),
        }
    }
}

#[cfg(feature = "replication-strategy")]
pub use strategy::*;

#[cfg(feature = "index-type")]
mod index {
    use super::value;
    use crate::bindings::exports::strata::plugin::indexer as i;
    use crate::index::{Bound, Condition, Lookup, Op, TermMatch};

    pub fn condition(c: i::Condition) -> Condition {
        Condition {
            field: c.field,
            fields: c.fields,
            op: match c.op {
                i::Op::Eq => Op::Eq,
                i::Op::Ne => Op::Ne,
                i::Op::Gt => Op::Gt,
                i::Op::Gte => Op::Gte,
                i::Op::Lt => Op::Lt,
                i::Op::Lte => Op::Lte,
                i::Op::In => Op::In,
                i::Op::Prefix => Op::Prefix,
                i::Op::Contains => Op::Contains,
                i::Op::Exists => Op::Exists,
                i::Op::Match => Op::Match,
            },
            operands: c.operands.into_iter().map(value).collect(),
        }
    }

    fn bound(b: Bound) -> i::Bound {
        i::Bound { term: b.term, inclusive: b.inclusive }
    }

    fn term_match(m: TermMatch) -> i::TermMatch {
        match m {
            TermMatch::Exact(t) => i::TermMatch::Exact(t),
            TermMatch::Prefix(t) => i::TermMatch::Prefix(t),
            TermMatch::Range { lower, upper } => i::TermMatch::Range(i::TermRange { lower: lower.map(bound), upper: upper.map(bound) }),
        }
    }

    pub fn lookup(l: Lookup) -> i::LookupPlan {
        i::LookupPlan { groups: l.groups.into_iter().map(|g| g.into_iter().map(term_match).collect()).collect(), exact: l.exact }
    }
}

#[cfg(feature = "index-type")]
pub use index::*;
