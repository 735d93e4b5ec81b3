//! A node selector to start from: the first healthy candidates, in the
//! order the host offers them, optionally skipping nodes of one zone.
//!
//! Build: `cargo build --release --target wasm32-wasip2`, then declare the
//! component in the server's TOML:
//!
//! ```toml
//! [[plugins]]
//! name = "first"
//! kind = "node-selector"
//! path = "target/wasm32-wasip2/release/strata_plugin_template.wasm"
//! [plugins.config]
//! avoid_zone = "z9"
//! ```

use strata_sdk::selector::{NodeSelector, wanted};
use strata_sdk::{Config, Health, NodeInfo, ObjectInfo, PluginError, Policy};

struct First {
    /// Never place on nodes of this zone.
    avoid_zone: Option<String>,
}

impl NodeSelector for First {
    const NAME: &'static str = "first";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "the first healthy candidates, in order (SDK template)";

    fn new(config: &Config) -> Result<Self, String> {
        // Refuse unknown keys: a typo in the server's TOML should stop it.
        config.only(&["avoid_zone"])?;
        Ok(Self { avoid_zone: config.get("avoid_zone").map(str::to_string) })
    }

    fn select(
        &self,
        nodes: &[NodeInfo],
        candidates: &[u32],
        object: &ObjectInfo,
        policy: &Policy,
    ) -> Result<Vec<u32>, PluginError> {
        let usable: Vec<u32> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let n = &nodes[i as usize];
                n.health == Health::Healthy && self.avoid_zone.as_deref() != Some(n.zone.as_str())
            })
            .collect();
        let want = wanted(usable.len(), policy)?;
        strata_sdk::debug!("{}/{}: {} of {} candidates usable", object.bucket, object.key, usable.len(), candidates.len());
        Ok(usable[..want].to_vec())
    }
}

strata_sdk::export_node_selector!(First);
