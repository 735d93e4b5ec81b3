//! Larger wins: quorum writes (every target at once, a majority
//! acknowledges), and of two concurrent versions of a key the larger object
//! wins, the last writer breaking ties. An example of a strategy with a
//! resolution of its own; the host tests run it.

use strata_sdk::strategy::{ReplicationStrategy, VersionInfo, WritePlan, last_writer_wins};
use strata_sdk::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

struct LargerWins;

impl ReplicationStrategy for LargerWins {
    const NAME: &'static str = "larger-wins";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "quorum writes; of concurrent versions the larger object wins";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&[])?;
        Ok(Self)
    }

    fn plan_write(&self, _nodes: &[NodeInfo], _coordinator: u32, targets: &[u32], _object: &ObjectInfo, _policy: &Policy) -> Result<WritePlan, PluginError> {
        let n = targets.len() as u32;
        if n == 0 {
            return Err(PluginError::Unsatisfiable("no targets".into()));
        }
        Ok(WritePlan { sync_targets: targets.to_vec(), async_targets: vec![], acks_required: n / 2 + 1 })
    }

    fn resolve(&self, versions: &[VersionInfo]) -> Result<u32, PluginError> {
        let largest = versions.iter().map(|v| v.size).max().ok_or_else(|| PluginError::InvalidInput("no versions to resolve".into()))?;
        let tied: Vec<VersionInfo> = versions.iter().filter(|v| v.size == largest).cloned().collect();
        let pick = &tied[last_writer_wins(&tied)? as usize];
        Ok(versions.iter().position(|v| v == pick).expect("picked from the list") as u32)
    }
}

strata_sdk::export_replication_strategy!(LargerWins);
