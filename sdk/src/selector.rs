//! Node selectors: where an object's replicas live.

use crate::{Config, NodeInfo, ObjectInfo, PluginError, Policy};

/// A node-selection algorithm.
///
/// One value is made per instance by [`NodeSelector::new`] from the plugin's
/// config; the host may run several instances at once, so keep no state that
/// must be shared between calls of different instances.
pub trait NodeSelector: Sized + 'static {
    /// The plugin's name for itself.
    const NAME: &'static str;
    /// Semantic version.
    const VERSION: &'static str;
    /// One line on what it does.
    const DESCRIPTION: &'static str;

    /// Build from the plugin's config table; an error stops the server.
    fn new(config: &Config) -> Result<Self, String>;

    /// Choose at most `policy.replicas` of `candidates` (indices into
    /// `nodes`), most preferred first. Return
    /// [`PluginError::Unsatisfiable`] when fewer than `policy.min_replicas`
    /// can be chosen.
    fn select(&self, nodes: &[NodeInfo], candidates: &[u32], object: &ObjectInfo, policy: &Policy) -> Result<Vec<u32>, PluginError>;
}

/// The count a selector should return: the policy's replicas, capped by the
/// candidates, or an error when that falls short of `min_replicas`.
pub fn wanted(candidates: usize, policy: &Policy) -> Result<usize, PluginError> {
    let want = (policy.replicas as usize).min(candidates);
    if want < policy.min_replicas as usize || want == 0 && policy.replicas > 0 {
        return Err(PluginError::Unsatisfiable(format!(
            "{} replicas wanted (at least {}), {} candidate nodes",
            policy.replicas, policy.min_replicas, candidates
        )));
    }
    Ok(want)
}

/// Export `$ty` (a [`NodeSelector`]) as the component's `node-selector`
/// world. Needs the `node-selector` feature.
#[cfg(feature = "node-selector")]
#[macro_export]
#[rustfmt::skip] // rustfmt does not settle on one layout for the macro body
macro_rules! export_node_selector {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::exports::strata::plugin::selector as __s;
            use $crate::bindings::strata::plugin::{topology as __topo, types as __t};

            $crate::__plugin_state!($ty);

            struct Export;

            $crate::__plugin_lifecycle!($ty, $crate::selector::NodeSelector);

            impl __s::Guest for Export {
                fn select(
                    nodes: &__topo::Topology,
                    candidates: ::std::vec::Vec<u32>,
                    object: __t::ObjectInfo,
                    policy: __t::ReplicationPolicy,
                ) -> ::std::result::Result<::std::vec::Vec<u32>, __t::PluginError> {
                    let nodes = $crate::__glue::nodes(nodes);
                    let object = $crate::__glue::object(object);
                    let policy = $crate::__glue::policy(policy);
                    $crate::__glue::check_indices(&nodes, &candidates)?;
                    with(|plugin| {
                        <$ty as $crate::selector::NodeSelector>::select(
                            plugin, &nodes, &candidates, &object, &policy,
                        )
                    })
                }
            }

            $crate::bindings::export!(Export with_types_in $crate::bindings);
        };
    };
}

/// The placement key of an object: bucket and key, so that every version of
/// a key lands on the same nodes and placement is known before the content
/// (and its digest) has streamed in.
pub fn placement_key(object: &ObjectInfo) -> String {
    format!("{}/{}", object.bucket, object.key)
}

/// A stable 64-bit hash of a node id and a placement key: XXH3 of the key,
/// seeded with the XXH3 of the node id. Both are fixed by this code, so
/// placement never changes between releases or machines unless on purpose.
pub fn node_hash(node_id: &str, key: &str) -> u64 {
    let seed = xxhash_rust::xxh3::xxh3_64(node_id.as_bytes());
    xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), seed)
}

/// Rendezvous scores of `candidates` for `key`, as `(score, index)` in
/// candidate order: higher wins, the lower index breaking ties. What
/// [`rendezvous`] sorts by, for selectors that pick under constraints.
pub fn rendezvous_scores(nodes: &[NodeInfo], candidates: &[u32], key: &str, weight: impl Fn(&NodeInfo) -> f64) -> Vec<(f64, u32)> {
    let weights: Vec<f64> = candidates.iter().map(|&i| weight(&nodes[i as usize]).max(0.0)).collect();
    let equal = weights.windows(2).all(|w| w[0] == w[1]);
    candidates
        .iter()
        .zip(&weights)
        .map(|(&i, &w)| {
            let h = node_hash(&nodes[i as usize].id, key);
            // Equal weights rank by the hash alone; otherwise the top 53
            // bits, centred in their interval (never 0 nor 1), give `u` and
            // the score is `w / -ln(u)`.
            let score = if equal {
                h as f64
            } else {
                let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                w / -u.ln()
            };
            (score, i)
        })
        .collect()
}

fn by_score(a: &(f64, u32), b: &(f64, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Weighted rendezvous (highest random weight) ranking of `candidates` for
/// `key`: each node scores `weight / -ln(u)` with `u` its hash mapped into
/// (0, 1), and the highest score ranks first. Adding a node moves only the
/// keys it wins, about `weight / total weight` of them. `weight` returns a
/// node's weight; a node of weight 0 ranks last.
pub fn rendezvous(nodes: &[NodeInfo], candidates: &[u32], key: &str, weight: impl Fn(&NodeInfo) -> f64) -> Vec<u32> {
    let mut scored = rendezvous_scores(nodes, candidates, key, weight);
    scored.sort_unstable_by(by_score);
    scored.into_iter().map(|(_, i)| i).collect()
}

/// The first `k` of [`rendezvous`]'s ranking, without ranking the rest.
pub fn rendezvous_top(nodes: &[NodeInfo], candidates: &[u32], key: &str, k: usize, weight: impl Fn(&NodeInfo) -> f64) -> Vec<u32> {
    let mut scored = rendezvous_scores(nodes, candidates, key, weight);
    if k == 0 {
        return Vec::new();
    }
    if k < scored.len() {
        scored.select_nth_unstable_by(k - 1, by_score);
        scored.truncate(k);
    }
    scored.sort_unstable_by(by_score);
    scored.into_iter().map(|(_, i)| i).collect()
}
