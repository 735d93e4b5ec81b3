//! Least loaded first: the candidates with the lowest utilization (or load)
//! hold the object; rendezvous order breaks ties so equal nodes still share
//! the keys evenly.

use strata_sdk::selector::{NodeSelector, placement_key, rendezvous, wanted};
use strata_sdk::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

#[derive(Clone, Copy)]
enum By {
    /// Fraction of capacity in use.
    Utilization,
    /// The load figure heartbeats carry.
    Load,
}

struct LeastLoaded {
    by: By,
}

impl NodeSelector for LeastLoaded {
    const NAME: &'static str = "least-loaded";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "the least utilized nodes first (by capacity used, or by load)";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&["by"])?;
        let by = match config.get("by").unwrap_or("utilization") {
            "utilization" => By::Utilization,
            "load" => By::Load,
            other => return Err(format!("config key `by`: {other:?} is neither \"utilization\" nor \"load\"")),
        };
        Ok(Self { by })
    }

    fn select(&self, nodes: &[NodeInfo], candidates: &[u32], object: &ObjectInfo, policy: &Policy) -> Result<Vec<u32>, PluginError> {
        let want = wanted(candidates.len(), policy)?;
        let mut ranked = rendezvous(nodes, candidates, &placement_key(object), |_| 1.0);
        let score = |i: &u32| {
            let n = &nodes[*i as usize];
            match self.by {
                By::Utilization => n.utilization(),
                By::Load => n.load,
            }
        };
        // A stable sort keeps the rendezvous order among equal scores.
        ranked.sort_by(|a, b| score(a).total_cmp(&score(b)));
        ranked.truncate(want);
        Ok(ranked)
    }
}

strata_sdk::export_node_selector!(LeastLoaded);
