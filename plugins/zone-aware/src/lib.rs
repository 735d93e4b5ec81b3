//! Zone-aware placement: replicas spread across regions first, then across
//! zones, and only then share a zone; within those rules the rendezvous
//! order (weighted by capacity) decides, so placement stays stable.

use strata_sdk::selector::{NodeSelector, placement_key, rendezvous, wanted};
use strata_sdk::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

struct ZoneAware {
    /// Refuse (unsatisfiable) rather than put two replicas in one zone.
    strict: bool,
}

impl NodeSelector for ZoneAware {
    const NAME: &'static str = "zone-aware";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "spread replicas across regions, then zones";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&["strict"])?;
        Ok(Self { strict: config.parse_or("strict", false)? })
    }

    fn select(&self, nodes: &[NodeInfo], candidates: &[u32], object: &ObjectInfo, policy: &Policy) -> Result<Vec<u32>, PluginError> {
        let want = wanted(candidates.len(), policy)?;
        let weighted = candidates.iter().any(|&i| nodes[i as usize].capacity_total > 0);
        let ranked = rendezvous(nodes, candidates, &placement_key(object), |n| {
            if weighted { n.capacity_total as f64 } else { 1.0 }
        });
        let mut chosen: Vec<u32> = Vec::with_capacity(want);
        // Few regions and zones: a scan beats hashing them.
        let mut regions: Vec<&str> = Vec::with_capacity(want);
        let mut zones: Vec<(&str, &str)> = Vec::with_capacity(want);
        // Pass 1: a new region; pass 2: a new zone; pass 3: anything.
        for pass in 0..3 {
            for &i in &ranked {
                if chosen.len() == want {
                    break;
                }
                let n = &nodes[i as usize];
                let zone = (n.region.as_str(), n.zone.as_str());
                let fresh = match pass {
                    0 => !regions.contains(&n.region.as_str()),
                    1 => !zones.contains(&zone),
                    _ => !self.strict,
                };
                if fresh && !chosen.contains(&i) {
                    chosen.push(i);
                    if !regions.contains(&n.region.as_str()) {
                        regions.push(n.region.as_str());
                    }
                    if !zones.contains(&zone) {
                        zones.push(zone);
                    }
                }
            }
        }
        if chosen.len() < want && self.strict {
            return Err(PluginError::Unsatisfiable(format!(
                "{want} replicas need {want} distinct zones; the candidates span {}",
                zones.len()
            )));
        }
        Ok(chosen)
    }
}

strata_sdk::export_node_selector!(ZoneAware);
