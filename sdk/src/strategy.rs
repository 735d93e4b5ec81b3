//! Replication strategies: how a write is made durable, which of two
//! concurrent versions wins, and how a damaged object is repaired.

use crate::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

/// The plan for one write. Indices refer to the topology's node list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WritePlan {
    /// Sent before the write is acknowledged.
    pub sync_targets: Vec<u32>,
    /// Copied after the acknowledgement, through the persistent queue.
    pub async_targets: Vec<u32>,
    /// Durable copies among `sync_targets` that acknowledge the write.
    pub acks_required: u32,
}

/// One version of a key, as conflict resolution sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Hybrid logical clock stamp.
    pub stamp: u64,
    /// The node that wrote it; breaks ties.
    pub node_id: String,
    /// Hex SHA-256 of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// A delete marker.
    pub deleted: bool,
}

/// A replica's state after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Present and verified.
    Healthy,
    /// The node should hold it and does not.
    Missing,
    /// Failed verification.
    Corrupt,
    /// An older version.
    Stale,
    /// The node does not answer.
    Unreachable,
}

/// Where a replica is and in what state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    /// Index into the topology.
    pub node: u32,
    /// Its state.
    pub state: ReplicaState,
}

/// One step of a repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairAction {
    /// Copy from a healthy replica to a node.
    Copy {
        /// Node holding a healthy replica.
        source: u32,
        /// Node to copy to.
        target: u32,
    },
    /// Drop a surplus or bad replica.
    Remove(u32),
}

/// A replication strategy.
pub trait ReplicationStrategy: Sized + 'static {
    /// The plugin's name for itself.
    const NAME: &'static str;
    /// Semantic version.
    const VERSION: &'static str;
    /// One line on what it does.
    const DESCRIPTION: &'static str;

    /// Build from the plugin's config table; an error stops the server.
    fn new(config: &Config) -> Result<Self, String>;

    /// Plan a write coordinated by `coordinator` onto `targets` (the
    /// selector's choice, in its order).
    fn plan_write(
        &self,
        nodes: &[NodeInfo],
        coordinator: u32,
        targets: &[u32],
        object: &ObjectInfo,
        policy: &Policy,
    ) -> Result<WritePlan, PluginError>;

    /// The winner among concurrent versions. Default: last writer wins by
    /// stamp, the larger node id breaking ties.
    fn resolve(&self, versions: &[VersionInfo]) -> Result<u32, PluginError> {
        last_writer_wins(versions)
    }

    /// Actions that restore the policy. Default: [`repair_to_placement`].
    fn plan_repair(
        &self,
        nodes: &[NodeInfo],
        object: &ObjectInfo,
        policy: &Policy,
        replicas: &[Replica],
        placement: &[u32],
    ) -> Result<Vec<RepairAction>, PluginError> {
        let _ = (nodes, object);
        repair_to_placement(policy, replicas, placement)
    }
}

/// Last writer wins: the highest stamp, then the highest node id.
pub fn last_writer_wins(versions: &[VersionInfo]) -> Result<u32, PluginError> {
    versions
        .iter()
        .enumerate()
        .max_by(|(_, a), (_, b)| (a.stamp, &a.node_id).cmp(&(b.stamp, &b.node_id)))
        .map(|(i, _)| i as u32)
        .ok_or_else(|| PluginError::InvalidInput("no versions to resolve".into()))
}

/// Move the object to `placement` (the selector's current choice): remove
/// corrupt or stale replicas, copy from the first healthy replica to every
/// placement node without a copy (an unreachable replica counts as one: it
/// may come back), and remove every copy off the placement. The host
/// applies removals only once every placement node holds a sound copy, so
/// copies made for a new placement land before old ones go. With no
/// healthy replica nothing can be copied.
pub fn repair_to_placement(policy: &Policy, replicas: &[Replica], placement: &[u32]) -> Result<Vec<RepairAction>, PluginError> {
    let _ = policy;
    let held = |n: u32| replicas.iter().any(|r| r.node == n && matches!(r.state, ReplicaState::Healthy | ReplicaState::Unreachable));
    let mut actions: Vec<RepairAction> = replicas
        .iter()
        .filter(|r| matches!(r.state, ReplicaState::Corrupt | ReplicaState::Stale))
        .map(|r| RepairAction::Remove(r.node))
        .collect();
    let missing: Vec<u32> = placement.iter().copied().filter(|&n| !held(n)).collect();
    if !missing.is_empty() {
        let Some(source) = replicas.iter().find(|r| r.state == ReplicaState::Healthy).map(|r| r.node) else {
            return Err(PluginError::Unsatisfiable("no healthy replica to copy from".into()));
        };
        actions.extend(missing.into_iter().map(|target| RepairAction::Copy { source, target }));
    }
    actions.extend(replicas.iter().filter(|r| held(r.node) && !placement.contains(&r.node)).map(|r| RepairAction::Remove(r.node)));
    Ok(actions)
}

/// Export `$ty` (a [`ReplicationStrategy`]) as the component's
/// `replication-strategy` world. Needs the `replication-strategy` feature.
#[cfg(feature = "replication-strategy")]
#[macro_export]
#[rustfmt::skip] // rustfmt does not settle on one layout for the macro body
macro_rules! export_replication_strategy {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::exports::strata::plugin::strategy as __s;
            use $crate::bindings::strata::plugin::{topology as __topo, types as __t};

            $crate::__plugin_state!($ty);

            struct Export;

            $crate::__plugin_lifecycle!($ty, $crate::strategy::ReplicationStrategy);

            impl __s::Guest for Export {
                fn plan_write(
                    nodes: &__topo::Topology,
                    coordinator: u32,
                    targets: ::std::vec::Vec<u32>,
                    object: __t::ObjectInfo,
                    policy: __t::ReplicationPolicy,
                ) -> ::std::result::Result<__s::WritePlan, __t::PluginError> {
                    let nodes = $crate::__glue::nodes(nodes);
                    $crate::__glue::check_indices(&nodes, &targets)?;
                    $crate::__glue::check_indices(&nodes, &[coordinator])?;
                    let object = $crate::__glue::object(object);
                    let policy = $crate::__glue::policy(policy);
                    with(|p| {
                        <$ty as $crate::strategy::ReplicationStrategy>::plan_write(
                            p, &nodes, coordinator, &targets, &object, &policy,
                        )
                    })
                        .map($crate::__glue::write_plan)
                }
                fn resolve(
                    versions: ::std::vec::Vec<__s::VersionInfo>,
                ) -> ::std::result::Result<u32, __t::PluginError> {
                    let versions: ::std::vec::Vec<_> =
                        versions.into_iter().map($crate::__glue::version).collect();
                    with(|p| <$ty as $crate::strategy::ReplicationStrategy>::resolve(p, &versions))
                }
                fn plan_repair(
                    nodes: &__topo::Topology,
                    object: __t::ObjectInfo,
                    policy: __t::ReplicationPolicy,
                    replicas: ::std::vec::Vec<__s::Replica>,
                    placement: ::std::vec::Vec<u32>,
                ) -> ::std::result::Result<::std::vec::Vec<__s::RepairAction>, __t::PluginError> {
                    let nodes = $crate::__glue::nodes(nodes);
                    $crate::__glue::check_indices(&nodes, &placement)?;
                    let object = $crate::__glue::object(object);
                    let policy = $crate::__glue::policy(policy);
                    let replicas: ::std::vec::Vec<_> =
                        replicas.into_iter().map($crate::__glue::replica).collect();
                    with(|p| {
                        <$ty as $crate::strategy::ReplicationStrategy>::plan_repair(
                            p, &nodes, &object, &policy, &replicas, &placement,
                        )
                    })
                        .map(|a| a.into_iter().map($crate::__glue::repair_action).collect())
                }
            }

            $crate::bindings::export!(Export with_types_in $crate::bindings);
        };
    };
}
