//! The three kinds of plugin as host types: each binds its world to the
//! instance pool and checks the plugin's answers against the contract.

use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, Resource};

use super::bindings::{index as ix, selector as sel, strategy as st};
use super::engine::Runtime;
use super::pool::{Limits, Plugin, World};
use super::state::{State, Topology};
use super::{Kind, ObjectInfo, PluginError, PluginInfo, PluginStats, ReplicationPolicy, Value};

pub use ix::exports::strata::plugin::indexer::{Bound, Condition, LookupPlan, Op, TermMatch, TermRange};
pub use st::exports::strata::plugin::strategy::{CopyAction, RepairAction, Replica, ReplicaState, VersionInfo, WritePlan};

const LIFECYCLE: &str = "strata:plugin/lifecycle@0.1.0";

macro_rules! world {
    ($world:ty, $pre:ty, $kind:expr, $export:literal, $lifecycle:ident) => {
        impl World for $world {
            const KIND: Kind = $kind;
            const EXPORTS: &'static [&'static str] = &[LIFECYCLE, $export];
            type Pre = $pre;

            fn pre(pre: InstancePre<State>) -> wasmtime::Result<Self::Pre> {
                <$pre>::new(pre)
            }

            fn instantiate(pre: &Self::Pre, store: &mut Store<State>) -> wasmtime::Result<Self> {
                pre.instantiate(store)
            }

            fn info(&self, store: &mut Store<State>) -> wasmtime::Result<(String, String, String)> {
                let i = self.$lifecycle().call_info(store)?;
                Ok((i.name, i.version, i.description))
            }

            fn init(&self, store: &mut Store<State>, config: &[(String, String)]) -> wasmtime::Result<Result<(), String>> {
                self.$lifecycle().call_init(store, config)
            }
        }
    };
}

world!(sel::NodeSelector, sel::NodeSelectorPre<State>, Kind::NodeSelector, "strata:plugin/selector@0.1.0", strata_plugin_lifecycle);
world!(
    st::ReplicationStrategy,
    st::ReplicationStrategyPre<State>,
    Kind::ReplicationStrategy,
    "strata:plugin/strategy@0.1.0",
    strata_plugin_lifecycle
);
world!(ix::IndexType, ix::IndexTypePre<State>, Kind::IndexType, "strata:plugin/indexer@0.1.0", strata_plugin_lifecycle);

/// Run `f` with `topology` in the store's resource table, as a borrow the
/// guest may use for the length of the call.
fn with_topology<R>(
    store: &mut Store<State>,
    topology: &Topology,
    f: impl FnOnce(&mut Store<State>, Resource<Topology>) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let owned = store.data_mut().table.push(topology.clone())?;
    let borrowed = Resource::new_borrow(owned.rep());
    let result = f(store, borrowed);
    store.data_mut().table.delete(owned)?;
    result
}

/// A plugin's own error becomes [`PluginError::Returned`], and is counted.
fn returned<W: World, R>(plugin: &Plugin<W>, r: Result<R, super::WitError>) -> Result<R, PluginError> {
    r.map_err(|e| {
        plugin.count_error();
        PluginError::Returned { plugin: plugin.info.name.clone(), error: e.into() }
    })
}

fn bad<W: World>(plugin: &Plugin<W>, reason: String) -> PluginError {
    plugin.count_error();
    PluginError::BadAnswer { plugin: plugin.info.name.clone(), reason }
}

/// Every index in `chosen` is one of `allowed`, at most once.
fn check_subset<W: World>(plugin: &Plugin<W>, what: &str, chosen: &[u32], allowed: &[u32]) -> Result<(), PluginError> {
    // Answers are a few nodes: scans beat building sets.
    for (n, &i) in chosen.iter().enumerate() {
        if !allowed.contains(&i) {
            return Err(bad(plugin, format!("{what} names node {i}, which was not offered")));
        }
        if chosen[..n].contains(&i) {
            return Err(bad(plugin, format!("{what} names node {i} twice")));
        }
    }
    Ok(())
}

macro_rules! common {
    ($name:ident, $world:ty) => {
        impl $name {
            pub(super) fn load(
                runtime: &Runtime,
                name: &str,
                source: String,
                component: &Component,
                config: Vec<(String, String)>,
                limits: Limits,
            ) -> Result<Self, PluginError> {
                Ok(Self(Plugin::load(runtime, name, source, component, config, limits)?))
            }

            pub fn info(&self) -> &PluginInfo {
                &self.0.info
            }

            pub fn stats(&self) -> PluginStats {
                self.0.stats()
            }

            /// Start (and drop) a fresh instance; returns how long it took.
            pub fn instantiate_fresh(&self) -> Result<std::time::Duration, PluginError> {
                self.0.instantiate_fresh()
            }
        }
    };
}

/// A node-selector plugin.
#[derive(Debug)]
pub struct NodeSelector(Plugin<sel::NodeSelector>);
common!(NodeSelector, sel::NodeSelector);

impl NodeSelector {
    /// The nodes (indices into `topology`, among `candidates`) that should
    /// hold `object`, most preferred first.
    pub fn select(
        &self,
        topology: &Topology,
        candidates: &[u32],
        object: &ObjectInfo,
        policy: &ReplicationPolicy,
    ) -> Result<Vec<u32>, PluginError> {
        let r = self.0.call(|w, store| {
            with_topology(store, topology, |store, nodes| w.strata_plugin_selector().call_select(store, nodes, candidates, object, policy))
        })?;
        let chosen = returned(&self.0, r)?;
        if chosen.len() > policy.replicas as usize {
            return Err(bad(&self.0, format!("chose {} nodes for {} replicas", chosen.len(), policy.replicas)));
        }
        if chosen.len() < policy.min_replicas as usize {
            return Err(bad(
                &self.0,
                format!("chose {} nodes, below min_replicas {}, instead of saying it cannot", chosen.len(), policy.min_replicas),
            ));
        }
        check_subset(&self.0, "the selection", &chosen, candidates)?;
        Ok(chosen)
    }
}

/// A replication-strategy plugin.
#[derive(Debug)]
pub struct ReplicationStrategy(Plugin<st::ReplicationStrategy>);
common!(ReplicationStrategy, st::ReplicationStrategy);

impl ReplicationStrategy {
    /// How to write `object`, coordinated by `coordinator`, onto `targets`.
    pub fn plan_write(
        &self,
        topology: &Topology,
        coordinator: u32,
        targets: &[u32],
        object: &ObjectInfo,
        policy: &ReplicationPolicy,
    ) -> Result<WritePlan, PluginError> {
        let r = self.0.call(|w, store| {
            with_topology(store, topology, |store, nodes| {
                w.strata_plugin_strategy().call_plan_write(store, nodes, coordinator, targets, object, policy)
            })
        })?;
        let plan = returned(&self.0, r)?;
        let all: Vec<u32> = plan.sync_targets.iter().chain(&plan.async_targets).copied().collect();
        check_subset(&self.0, "the write plan", &all, targets)?;
        if plan.acks_required as usize > plan.sync_targets.len() {
            return Err(bad(
                &self.0,
                format!("wants {} acknowledgements from {} synchronous targets", plan.acks_required, plan.sync_targets.len()),
            ));
        }
        if plan.acks_required == 0 {
            return Err(bad(&self.0, "a write plan needs at least one acknowledgement".into()));
        }
        Ok(plan)
    }

    /// Index of the winning version.
    pub fn resolve(&self, versions: &[VersionInfo]) -> Result<usize, PluginError> {
        let r = self.0.call(|w, store| w.strata_plugin_strategy().call_resolve(store, versions))?;
        let winner = returned(&self.0, r)? as usize;
        if winner >= versions.len() {
            return Err(bad(&self.0, format!("chose version {winner} of {}", versions.len())));
        }
        Ok(winner)
    }

    /// Actions that restore `policy` for `object`.
    pub fn plan_repair(
        &self,
        topology: &Topology,
        object: &ObjectInfo,
        policy: &ReplicationPolicy,
        replicas: &[Replica],
        placement: &[u32],
    ) -> Result<Vec<RepairAction>, PluginError> {
        let r = self.0.call(|w, store| {
            with_topology(store, topology, |store, nodes| {
                w.strata_plugin_strategy().call_plan_repair(store, nodes, object, policy, replicas, placement)
            })
        })?;
        let actions = returned(&self.0, r)?;
        let n = topology.nodes().len() as u32;
        for a in &actions {
            let ok = match a {
                RepairAction::Copy(c) => c.source < n && c.target < n,
                RepairAction::Remove(i) => *i < n,
            };
            if !ok {
                return Err(bad(&self.0, format!("repair action {a:?} names a node outside the topology")));
            }
        }
        Ok(actions)
    }
}

/// An index-type plugin.
#[derive(Debug)]
pub struct IndexType(Plugin<ix::IndexType>);
common!(IndexType, ix::IndexType);

impl IndexType {
    /// Terms for each document (the values of the index's fields, in order).
    pub fn terms(&self, docs: &[Vec<Value>]) -> Result<Vec<Vec<Vec<u8>>>, PluginError> {
        let r = self.0.call(|w, store| w.strata_plugin_indexer().call_terms(store, docs))?;
        let terms = returned(&self.0, r)?;
        if terms.len() != docs.len() {
            return Err(bad(&self.0, format!("{} term lists for {} documents", terms.len(), docs.len())));
        }
        Ok(terms)
    }

    /// How to answer `condition` from this index, or none when it cannot.
    pub fn lookup(&self, condition: &Condition) -> Result<Option<LookupPlan>, PluginError> {
        let r = self.0.call(|w, store| w.strata_plugin_indexer().call_lookup(store, condition))?;
        returned(&self.0, r)
    }
}
