//! Geographic replication: targets in the coordinator's region are written
//! synchronously (all must acknowledge), targets in other regions
//! asynchronously, so a write waits only on local round trips. With no
//! target in the coordinator's region the first target is the synchronous
//! one.

use strata_sdk::strategy::{ReplicationStrategy, WritePlan};
use strata_sdk::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

struct Geographic;

impl ReplicationStrategy for Geographic {
    const NAME: &'static str = "geographic";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "synchronous within the coordinator's region, asynchronous to other regions";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&[])?;
        Ok(Geographic)
    }

    fn plan_write(&self, nodes: &[NodeInfo], coordinator: u32, targets: &[u32], _object: &ObjectInfo, _policy: &Policy) -> Result<WritePlan, PluginError> {
        if targets.is_empty() {
            return Err(PluginError::Unsatisfiable("no targets".into()));
        }
        let home = &nodes[coordinator as usize].region;
        let (mut local, mut remote): (Vec<u32>, Vec<u32>) =
            targets.iter().partition(|&&t| &nodes[t as usize].region == home);
        if local.is_empty() {
            local.push(remote.remove(0));
        }
        Ok(WritePlan { acks_required: local.len() as u32, sync_targets: local, async_targets: remote })
    }
}

strata_sdk::export_replication_strategy!(Geographic);
