//! Lazy replication: one synchronous copy (on the coordinator when it is a
//! target, so the write stays local), the rest copied afterwards.

use strata_sdk::strategy::{ReplicationStrategy, WritePlan};
use strata_sdk::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

struct Lazy;

impl ReplicationStrategy for Lazy {
    const NAME: &'static str = "lazy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "one synchronous copy (the coordinator's if it is a target), the rest asynchronous";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&[])?;
        Ok(Lazy)
    }

    fn plan_write(&self, _nodes: &[NodeInfo], coordinator: u32, targets: &[u32], _object: &ObjectInfo, _policy: &Policy) -> Result<WritePlan, PluginError> {
        let Some(&first) = targets.first() else {
            return Err(PluginError::Unsatisfiable("no targets".into()));
        };
        let primary = if targets.contains(&coordinator) { coordinator } else { first };
        Ok(WritePlan {
            sync_targets: vec![primary],
            async_targets: targets.iter().copied().filter(|&t| t != primary).collect(),
            acks_required: 1,
        })
    }
}

strata_sdk::export_replication_strategy!(Lazy);
