//! `strata bench-plugins`: per-call cost of the built-in plugins through the
//! real host (node selection over 32 nodes, index-term extraction),
//! instantiation from a cached component, and server start-up with every
//! built-in loaded from a warm cache.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::bench::Child;
use crate::config::Config;
use crate::plugin::{Consistency, Health, NodeInfo, ObjectInfo, Plugins, ReplicationPolicy, Scalar, Topology, Value};

#[derive(clap::Args, Debug)]
pub struct BenchPluginsArgs {
    /// Calls measured per plugin.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(100..))]
    calls: u64,
    /// Nodes in the topology the selectors choose from.
    #[arg(long, default_value_t = 32)]
    nodes: usize,
    /// Server starts measured.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// Scratch directory; removed afterwards.
    #[arg(long, default_value = "./strata-bench-plugins")]
    dir: PathBuf,
}

pub async fn run(args: BenchPluginsArgs) -> anyhow::Result<()> {
    super::bench::in_scratch_dir(&args.dir, bench(&args)).await
}

/// Median and 99th percentile of `samples`.
pub(super) fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn line(what: &str, samples: Vec<Duration>, target: Option<Duration>) {
    let (p50, p99) = percentiles(samples);
    let verdict = match target {
        Some(t) if p50 <= t => format!("  (target ≤ {t:?} median: met)"),
        Some(t) => format!("  (target ≤ {t:?} median: NOT met)"),
        None => String::new(),
    };
    println!("{what:<44} median {:>9.2} µs   p99 {:>9.2} µs{verdict}", us(p50), us(p99));
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn nodes(n: usize) -> Vec<NodeInfo> {
    (0..n)
        .map(|i| NodeInfo {
            id: format!("node-{i:03}"),
            address: format!("10.0.{}.{}:7400", i / 256, i % 256),
            region: format!("region-{}", i % 3),
            zone: format!("zone-{}", i % 6),
            capacity_total: (4 + (i % 4) as u64) << 40,
            capacity_available: (1 + (i % 3) as u64) << 40,
            load: (i % 10) as f64 / 10.0,
            health: Health::Healthy,
            labels: vec![("rack".into(), format!("r{}", i % 8))],
        })
        .collect()
}

async fn bench(args: &BenchPluginsArgs) -> anyhow::Result<()> {
    let (calls, n) = (args.calls as usize, args.nodes.max(1));
    let mut config = Config::default();
    config.storage.base_path = args.dir.join("host");
    // The fixture does no work for ordinary keys: its figure is the host's
    // own cost of a call.
    config.plugins.push(crate::config::PluginDecl {
        name: "fixture".into(),
        kind: crate::config::PluginKind::NodeSelector,
        builtin: Some("fixture".into()),
        path: None,
        config: Default::default(),
        call_timeout: None,
        memory_limit: None,
    });
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // The first load compiles and caches; the second is what a restart does.
        drop(Plugins::load(&config)?);
        let started = Instant::now();
        let plugins = Plugins::load(&config)?;
        println!(
            "loading {} built-ins from a warm cache, in process: {:.1} ms",
            plugins.list().len(),
            started.elapsed().as_secs_f64() * 1e3
        );
        measure(&plugins, calls, n)
    })
    .await??;

    // Server start-up: the first start fills the cache in the server's own
    // data dir; the measured ones load from it.
    let server_dir = args.dir.join("server");
    Child::start(&server_dir).await?.stop().await;
    let mut starts = Vec::with_capacity(args.starts);
    for _ in 0..args.starts.max(1) {
        let t = Instant::now();
        let mut s = Child::start(&server_dir).await.context("starting the server")?;
        starts.push(t.elapsed());
        s.stop().await;
    }
    let worst = starts.iter().max().copied().unwrap_or_default();
    let (p50, _) = percentiles(starts);
    println!(
        "server start-up to listening, warm cache       median {:>8.1} ms   max {:>8.1} ms  (target ≤ 300 ms: {})",
        p50.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        if p50 <= Duration::from_millis(300) { "met" } else { "NOT met" }
    );
    Ok(())
}

fn measure(plugins: &Plugins, calls: usize, node_count: usize) -> anyhow::Result<()> {
    let topology = Topology::new(nodes(node_count));
    let candidates: Vec<u32> = (0..node_count as u32).collect();
    let policy = ReplicationPolicy { replicas: 3, min_replicas: 1, max_replicas: 3, consistency: Consistency::Strong, params: vec![] };
    let object = |i: usize| ObjectInfo {
        bucket: "models".into(),
        key: format!("llama-70b/shard-{i:05}"),
        digest: String::new(),
        size: 4 << 30,
        content_type: "application/octet-stream".into(),
        attributes: vec![],
    };
    println!("per call, {calls} calls each, through the real host:");
    for name in ["fixture", "rendezvous", "least-loaded", "zone-aware"] {
        let selector = plugins.selector(name)?;
        let objects: Vec<ObjectInfo> = (0..calls).map(object).collect();
        let mut samples = Vec::with_capacity(calls);
        for o in &objects {
            let t = Instant::now();
            selector.select(&topology, &candidates, o, &policy)?;
            samples.push(t.elapsed());
        }
        if name == "fixture" {
            line(&format!("call overhead (fixture, {node_count} nodes)"), samples, None);
        } else {
            line(&format!("select 3 of {node_count} nodes: {name}"), samples, Some(Duration::from_micros(5)));
        }
    }
    let doc = |i: usize| -> Vec<Value> {
        vec![match i % 4 {
            0 => Value::Number(i as f64),
            1 => Value::Text(format!("research paper {i} on llama quantisation")),
            2 => Value::List(vec![Scalar::Text("gpu".into()), Scalar::Text(format!("team-{}", i % 7))]),
            _ => Value::Text(format!("category-{}", i % 13)),
        }]
    };
    for name in ["btree", "hash", "fulltext", "tags"] {
        let index = plugins.index(name)?;
        let mut samples = Vec::with_capacity(calls);
        for i in 0..calls {
            let docs = [doc(i)];
            let t = Instant::now();
            index.terms(&docs)?;
            samples.push(t.elapsed());
        }
        line(&format!("index terms, one object: {name}"), samples, None);
        let batch: Vec<Vec<Value>> = (0..100).map(doc).collect();
        let mut samples = Vec::with_capacity(calls / 100);
        for _ in 0..(calls / 100).max(10) {
            let t = Instant::now();
            index.terms(&batch)?;
            samples.push(t.elapsed() / 100);
        }
        line(&format!("index terms, per object in 100s: {name}"), samples, None);
    }
    let rendezvous = plugins.selector("rendezvous")?;
    let samples = (0..(calls / 20).max(50)).map(|_| rendezvous.instantiate_fresh()).collect::<Result<Vec<_>, _>>()?;
    line("instantiate + init from the cached component", samples, None);
    Ok(())
}
