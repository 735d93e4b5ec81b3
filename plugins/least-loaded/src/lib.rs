//! Least loaded first: the candidates with the lowest utilization (or load)
//! hold the object; rendezvous order breaks ties so equal nodes still share
//! the keys evenly.

use strata_sdk::selector::{NodeSelector, node_hash, placement_key, wanted};
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
        let key = placement_key(object);
        // Lowest score first; among equals, the rendezvous hash (highest
        // first) spreads keys evenly and keeps placement stable.
        let mut ranked: Vec<(f64, std::cmp::Reverse<u64>, u32)> = candidates
            .iter()
            .map(|&i| {
                let n = &nodes[i as usize];
                let score = match self.by {
                    By::Utilization => n.utilization(),
                    By::Load => n.load,
                };
                (score, std::cmp::Reverse(node_hash(&n.id, &key)), i)
            })
            .collect();
        let order = |a: &(f64, std::cmp::Reverse<u64>, u32), b: &(f64, std::cmp::Reverse<u64>, u32)| {
            a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
        };
        if want > 0 && want < ranked.len() {
            ranked.select_nth_unstable_by(want - 1, order);
            ranked.truncate(want);
        }
        ranked.sort_unstable_by(order);
        Ok(ranked.into_iter().take(want).map(|(_, _, i)| i).collect())
    }
}

strata_sdk::export_node_selector!(LeastLoaded);
