//! `strata plugin`: list loaded plugins, and dry-run where a placement would
//! put a key.

use crate::api::pb;
use crate::cli::PluginCmd;
use crate::cli::client::{Client, status};
use crate::cli::output;

pub async fn run(c: &mut Client, cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::Ls { json } => {
            let r = c.list_plugins(pb::ListPluginsRequest {}).await.map_err(status)?.into_inner();
            output::plugins(&r.plugins, json);
        }
        PluginCmd::Place { key, bucket, selector, strategy, replicas, nodes, coordinator, params, json } => {
            let nodes = nodes.iter().map(|n| parse_node(n)).collect::<anyhow::Result<Vec<_>>>()?;
            let params = params
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| anyhow::anyhow!("--param {p:?}: write name=value"))
                })
                .collect::<anyhow::Result<_>>()?;
            let req = pb::PlaceRequest {
                selector: selector.clone(),
                strategy: strategy.clone().unwrap_or_default(),
                bucket: bucket.clone().unwrap_or_default(),
                key: key.clone(),
                nodes,
                replicas,
                params,
                coordinator: coordinator.clone().unwrap_or_default(),
                ..Default::default()
            };
            let r = c.place(req).await.map_err(status)?.into_inner();
            output::placement(&r, json);
        }
    }
    Ok(())
}

/// `id=n1,region=eu,zone=a,capacity=1TiB,available=600GiB,load=0.2`.
fn parse_node(spec: &str) -> anyhow::Result<pb::Node> {
    let mut node = pb::Node::default();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| anyhow::anyhow!("--node {spec:?}: {part:?} is not key=value"))?;
        let size = |v: &str| crate::config::parse_size(v).map_err(|e| anyhow::anyhow!("--node {spec:?}: {k}: {e}"));
        match k {
            "id" => node.id = v.into(),
            "address" => node.address = v.into(),
            "region" => node.region = v.into(),
            "zone" => node.zone = v.into(),
            "capacity" => node.capacity_total = size(v)?,
            "available" => node.capacity_available = size(v)?,
            "load" => node.load = v.parse().map_err(|_| anyhow::anyhow!("--node {spec:?}: load {v:?} is not a number"))?,
            "health" => node.health = v.into(),
            other => {
                anyhow::bail!("--node {spec:?}: unknown key {other:?}; use id, address, region, zone, capacity, available, load, health")
            }
        }
    }
    if node.id.is_empty() {
        anyhow::bail!("--node {spec:?}: give an id, e.g. id=n1");
    }
    if !spec.split(',').any(|p| p.starts_with("available=")) {
        node.capacity_available = node.capacity_total;
    }
    Ok(node)
}
