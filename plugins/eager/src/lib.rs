//! Eager replication: every target receives the write before it is
//! acknowledged, and all of them must succeed.

use strata_sdk::strategy::{ReplicationStrategy, WritePlan};
use strata_sdk::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

struct Eager;

impl ReplicationStrategy for Eager {
    const NAME: &'static str = "eager";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "synchronous copies to every target; all must acknowledge";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&[])?;
        Ok(Eager)
    }

    fn plan_write(&self, _nodes: &[NodeInfo], _coordinator: u32, targets: &[u32], _object: &ObjectInfo, _policy: &Policy) -> Result<WritePlan, PluginError> {
        if targets.is_empty() {
            return Err(PluginError::Unsatisfiable("no targets".into()));
        }
        Ok(WritePlan { sync_targets: targets.to_vec(), async_targets: vec![], acks_required: targets.len() as u32 })
    }
}

strata_sdk::export_replication_strategy!(Eager);
