//! Quorum replication: every target is written in parallel and the write is
//! acknowledged once a majority (or the configured `write_quorum`) has it.

use strata_sdk::strategy::{ReplicationStrategy, WritePlan};
use strata_sdk::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

struct Quorum {
    /// Fixed acknowledgement count; a majority of the targets when absent.
    write_quorum: Option<u32>,
}

impl ReplicationStrategy for Quorum {
    const NAME: &'static str = "quorum";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "synchronous to every target; a majority (or write_quorum) acknowledges";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&["write_quorum"])?;
        let write_quorum = match config.get("write_quorum") {
            None => None,
            Some(_) => Some(config.parse_or("write_quorum", 0u32)?).filter(|&q| q > 0),
        };
        if config.get("write_quorum").is_some() && write_quorum.is_none() {
            return Err("config key `write_quorum`: must be at least 1".into());
        }
        Ok(Self { write_quorum })
    }

    fn plan_write(&self, _nodes: &[NodeInfo], _coordinator: u32, targets: &[u32], _object: &ObjectInfo, policy: &Policy) -> Result<WritePlan, PluginError> {
        let n = targets.len() as u32;
        if n == 0 {
            return Err(PluginError::Unsatisfiable("no targets".into()));
        }
        // A per-bucket `write_quorum` parameter overrides the plugin config.
        let fixed = match policy.param("write_quorum") {
            Some(raw) => Some(raw.parse::<u32>().map_err(|_| {
                PluginError::InvalidInput(format!("policy parameter write_quorum: {raw:?} is not a count"))
            })?),
            None => self.write_quorum,
        };
        let acks = fixed.unwrap_or(n / 2 + 1);
        if acks == 0 || acks > n {
            return Err(PluginError::Unsatisfiable(format!("write quorum {acks} with {n} targets")));
        }
        Ok(WritePlan { sync_targets: targets.to_vec(), async_targets: vec![], acks_required: acks })
    }
}

strata_sdk::export_replication_strategy!(Quorum);
