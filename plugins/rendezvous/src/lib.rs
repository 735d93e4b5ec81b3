//! Weighted rendezvous hashing: each object goes to the nodes that score
//! highest for its key, weighted by capacity. Adding a node moves only the
//! keys it now wins, about its share of the total capacity.

use strata_sdk::selector::{NodeSelector, placement_key, rendezvous_top, wanted};
use strata_sdk::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

struct Rendezvous {
    /// Weight nodes by `capacity_total` (true) or equally.
    by_capacity: bool,
}

impl NodeSelector for Rendezvous {
    const NAME: &'static str = "rendezvous";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "weighted rendezvous hashing: stable placement by key, weighted by capacity";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&["weight"])?;
        let by_capacity = match config.get("weight").unwrap_or("capacity") {
            "capacity" => true,
            "equal" => false,
            other => return Err(format!("config key `weight`: {other:?} is neither \"capacity\" nor \"equal\"")),
        };
        Ok(Self { by_capacity })
    }

    fn select(&self, nodes: &[NodeInfo], candidates: &[u32], object: &ObjectInfo, policy: &Policy) -> Result<Vec<u32>, PluginError> {
        let want = wanted(candidates.len(), policy)?;
        let by_capacity = self.by_capacity && candidates.iter().any(|&i| nodes[i as usize].capacity_total > 0);
        Ok(rendezvous_top(nodes, candidates, &placement_key(object), want, |n| {
            if by_capacity { n.capacity_total as f64 } else { 1.0 }
        }))
    }
}

strata_sdk::export_node_selector!(Rendezvous);
