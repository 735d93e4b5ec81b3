//! `strata bench-namespace`: the cluster-wide namespace against one node.
//! Three cluster nodes (a bucket with 2 replicas) and one single node hold
//! the same keys; times a whole listing in pages, first-page searches, and
//! conditional against unconditional puts, each pair in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::bench::Child;
use super::client::{Client, connect};
use crate::api::pb;

#[derive(clap::Args, Debug)]
pub struct BenchNamespaceArgs {
    /// Keys written to each side (64-byte objects).
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Keys per listing page.
    #[arg(long, default_value_t = 1000)]
    page: u32,
    /// Searches timed on each side.
    #[arg(long, default_value_t = 200)]
    searches: usize,
    /// Puts timed of each kind.
    #[arg(long, default_value_t = 300)]
    puts: usize,
    /// Directory for the nodes' data; created, and removed afterwards.
    #[arg(long, default_value = "strata-bench-namespace")]
    dir: std::path::PathBuf,
}

pub async fn run(args: BenchNamespaceArgs) -> anyhow::Result<()> {
    super::bench::in_scratch_dir(&args.dir, nodes_and_bench(&args)).await
}

async fn nodes_and_bench(args: &BenchNamespaceArgs) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.dir)?;
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{:032x}", rand::random::<u128>()))?;
    let env = [
        ("STRATA_CLUSTER__SECRET_FILE", secret.display().to_string()),
        ("STRATA_CLUSTER__HEARTBEAT_INTERVAL", "100ms".to_string()),
        ("STRATA_REPLICATION__RETRY_DELAY", "200ms".to_string()),
        // Batches of puts keep every plugin instance busy on a small
        // machine: a placement call may wait for the CPU.
        ("STRATA_WASM__CALL_TIMEOUT", "1s".to_string()),
    ];
    let mut nodes = Vec::new();
    for i in 0..3 {
        let d = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&d)?;
        nodes.push(Child::start_with(&d, &env).await.with_context(|| format!("starting node {i}"))?);
    }
    let d = dir.join("single");
    std::fs::create_dir_all(&d)?;
    nodes.push(Child::start(&d).await.context("starting the single node")?);
    let result = bench(args, &nodes).await;
    for n in &mut nodes {
        n.stop().await;
    }
    result
}

async fn form(clients: &mut [Client], first: &str) -> anyhow::Result<()> {
    clients[0].cluster_init(pb::ClusterInitRequest {}).await?;
    for c in clients[1..].iter_mut() {
        c.cluster_join(pb::ClusterJoinRequest { address: first.to_string() }).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for c in clients.iter_mut() {
        loop {
            let v = c.cluster_status(pb::ClusterStatusRequest {}).await?.into_inner();
            if v.nodes.iter().filter(|n| n.state == "healthy").count() == 3 && v.leader != 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("the nodes did not form a cluster within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn attr(name: &str, n: f64) -> (String, pb::Value) {
    (name.to_string(), pb::Value { kind: Some(pb::value::Kind::Number(n)) })
}

async fn fill(c: &mut Client, keys: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for first in (0..keys).step_by(200) {
        let items = (first..(first + 200).min(keys))
            .map(|i| pb::PutManyItem {
                header: Some(pb::PutHeader {
                    bucket: "wide".into(),
                    key: format!("k/{i:08}"),
                    attributes: [attr("class", (i % 50) as f64)].into(),
                    ..Default::default()
                }),
                data: format!("{i:064}").into_bytes().into(),
            })
            .collect();
        let r = c.put_many(futures::stream::iter(vec![pb::PutManyRequest { items }])).await?.into_inner();
        if let Some(bad) = r.results.iter().find(|r| !r.error.is_empty()) {
            bail!("put {}: {}", bad.key, bad.error);
        }
    }
    Ok(start.elapsed())
}

/// A whole listing of the bucket in pages: the time, and the keys seen.
async fn list_all(c: &mut Client, page: u32) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let (mut n, mut token) = (0, String::new());
    loop {
        let r =
            c.list(pb::ListRequest { bucket: "wide".into(), prefix: String::new(), page_token: token, limit: page }).await?.into_inner();
        n += r.objects.len();
        if !r.missing.is_empty() {
            bail!("the listing is partial: {:?}", r.missing);
        }
        token = r.next_page_token;
        if token.is_empty() {
            return Ok((start.elapsed(), n));
        }
    }
}

/// First pages of `class = N` by size descending, 20 a page: p50 and p99.
async fn searches(c: &mut Client, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let filter = pb::Filter {
            kind: Some(pb::filter::Kind::Condition(pb::Condition {
                field: "class".into(),
                op: "eq".into(),
                values: vec![pb::Value { kind: Some(pb::value::Kind::Number((i % 50) as f64)) }],
            })),
        };
        let req = pb::SearchRequest { bucket: "wide".into(), filter: Some(filter), sort: "key".into(), limit: 20, ..Default::default() };
        let start = Instant::now();
        let r = c.search(req).await?.into_inner();
        took.push(start.elapsed());
        if r.objects.len() != 20 {
            bail!("a search found {} objects, not 20", r.objects.len());
        }
    }
    Ok(percentiles(took))
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() * 99 / 100).min(v.len() - 1)])
}

/// `n` sequential 1 KiB puts of one key: unconditional, or each
/// `if_version` the previous one.
async fn puts(c: &mut Client, key: &str, n: usize, conditional: bool) -> anyhow::Result<(Duration, Duration)> {
    let data = vec![7u8; 1024];
    let mut last = String::new();
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let header = pb::PutHeader {
            bucket: "wide".into(),
            key: key.into(),
            if_absent: conditional && i == 0,
            if_version: if conditional { last.clone() } else { String::new() },
            ..Default::default()
        };
        let start = Instant::now();
        let info = super::client::put_reader(c, header, std::io::Cursor::new(data.clone()), Some(data.len() as u64)).await?;
        took.push(start.elapsed());
        last = info.version;
    }
    Ok(percentiles(took))
}

async fn bench(args: &BenchNamespaceArgs, nodes: &[Child]) -> anyhow::Result<()> {
    let mut clients = Vec::new();
    for n in nodes {
        clients.push(connect(&n.url).await?);
    }
    let first = nodes[0].url.trim_start_matches("http://").to_string();
    form(&mut clients[..3], &first).await?;
    let policy = pb::ReplicationPolicy { replicas: 2, ..Default::default() };
    clients[0].create_bucket(pb::CreateBucketRequest { name: "wide".into(), policy: Some(policy) }).await?;
    clients[3].create_bucket(pb::CreateBucketRequest { name: "wide".into(), policy: None }).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;

    eprintln!("writing {} keys to the cluster and to the single node ...", args.keys);
    let wrote_cluster = fill(&mut clients[0], args.keys).await?;
    let wrote_single = fill(&mut clients[3], args.keys).await?;
    println!("3 nodes on loopback sharing one disk, bucket with 2 replicas; the same keys on one single node");
    println!(
        "writes    {} keys: cluster {:.1} s, single node {:.1} s (batches of 200)",
        args.keys,
        wrote_cluster.as_secs_f64(),
        wrote_single.as_secs_f64()
    );

    let (single, n1) = list_all(&mut clients[3], args.page).await?;
    let (cluster, n3) = list_all(&mut clients[1], args.page).await?;
    if n1 != args.keys || n3 != args.keys {
        bail!("listed {n3} keys on the cluster and {n1} on the single node, not {}", args.keys);
    }
    let rate = |d: Duration| args.keys as f64 / d.as_secs_f64();
    println!(
        "ls        {} keys in pages of {}: cluster {:.2} s ({:.0} keys/s), single node {:.2} s ({:.0} keys/s); cluster/single time {:.2}",
        args.keys,
        args.page,
        cluster.as_secs_f64(),
        rate(cluster),
        single.as_secs_f64(),
        rate(single),
        cluster.as_secs_f64() / single.as_secs_f64()
    );

    let (s50, s99) = searches(&mut clients[3], args.searches).await?;
    let (c50, c99) = searches(&mut clients[2], args.searches).await?;
    println!(
        "search    class = N (2% match), first 20 by key, {} queries: cluster p50 {:.2} ms p99 {:.2} ms; single p50 {:.2} ms p99 {:.2} ms; p50 ratio {:.2}",
        args.searches,
        ms(c50),
        ms(c99),
        ms(s50),
        ms(s99),
        ms(c50) / ms(s50)
    );

    let (u50, u99) = puts(&mut clients[1], "plain", args.puts, false).await?;
    let (k50, k99) = puts(&mut clients[1], "cas", args.puts, true).await?;
    println!(
        "put       1 KiB, one client, {} each: unconditional p50 {:.2} ms p99 {:.2} ms; if_version p50 {:.2} ms p99 {:.2} ms; p50 ratio {:.2}",
        args.puts,
        ms(u50),
        ms(u99),
        ms(k50),
        ms(k99),
        ms(k50) / ms(u50)
    );
    Ok(())
}
