//! `strata bench-replication`: three real nodes on loopback sharing this
//! machine's disk. Times a large put and get with 3 eager replicas against
//! the raw write+fsync bandwidth measured in the same run, 4 KiB replicated
//! puts from many clients, and repair: a node is killed and a new one
//! takes its copies.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::bench::{Child, large_get, large_put, raw_write, small_puts};
use super::client::{Client, connect};
use crate::api::pb;

#[derive(clap::Args, Debug)]
pub struct BenchReplicationArgs {
    /// Size of the large object.
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    size: u64,
    /// Concurrent clients for the 4 KiB puts.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long the 4 KiB put test runs.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    time: Duration,
    /// Objects (64 KiB each) the repair test copies to a new node.
    #[arg(long, default_value_t = 2000)]
    repair_objects: usize,
    /// Directory for the nodes' data; created, and removed afterwards.
    #[arg(long, default_value = "strata-bench-replication")]
    dir: std::path::PathBuf,
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>().map(|b| b.0).map_err(|e| e.to_string())
}

pub async fn run(args: BenchReplicationArgs) -> anyhow::Result<()> {
    super::bench::in_scratch_dir(&args.dir, nodes_and_bench(&args)).await
}

async fn nodes_and_bench(args: &BenchReplicationArgs) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.dir)?;
    eprintln!("measuring raw write+fsync bandwidth ...");
    std::fs::create_dir_all(dir.join("raw"))?;
    let single = raw_write(&dir.join("raw/big"), args.size)?;
    // What three replicas on one disk do: three writers of `size` each at
    // once, each fsyncing its file; the aggregate bandwidth.
    let start = Instant::now();
    let writers: Vec<_> = (0..3)
        .map(|i| {
            let (path, size) = (dir.join(format!("raw/big{i}")), args.size);
            std::thread::spawn(move || raw_write(&path, size))
        })
        .collect();
    for w in writers {
        w.join().map_err(|_| anyhow::anyhow!("a raw writer panicked"))??;
    }
    let raw = 3.0 * args.size as f64 / start.elapsed().as_secs_f64();
    println!("machine  raw write+fsync, one writer     {:>9.1} MB/s", single / 1e6);
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{:032x}", rand::random::<u128>()))?;
    let env = [
        ("STRATA_CLUSTER__SECRET_FILE", secret.display().to_string()),
        ("STRATA_CLUSTER__HEARTBEAT_INTERVAL", "100ms".to_string()),
        ("STRATA_CLUSTER__SUSPECT_AFTER", "400ms".to_string()),
        ("STRATA_CLUSTER__DOWN_AFTER", "1s".to_string()),
        ("STRATA_REPLICATION__REPAIR_DELAY", "1s".to_string()),
        ("STRATA_REPLICATION__HEALTH_CHECK_INTERVAL", "200ms".to_string()),
        ("STRATA_REPLICATION__RETRY_DELAY", "200ms".to_string()),
        // Every copy synchronously: the figure is for three eager replicas.
        ("STRATA_REPLICATION__DEFAULT_STRATEGY", "eager".to_string()),
    ];
    let mut nodes = Vec::new();
    for i in 0..4 {
        let d = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&d)?;
        nodes.push(Child::start_with(&d, &env).await.with_context(|| format!("starting node {i}"))?);
    }
    let result = bench(args, raw, &mut nodes).await;
    for n in &mut nodes {
        n.stop().await;
    }
    result
}

async fn members(c: &mut Client) -> anyhow::Result<usize> {
    let v = c.cluster_status(pb::ClusterStatusRequest {}).await?.into_inner();
    Ok(v.nodes.iter().filter(|n| n.state == "healthy").count())
}

async fn objects(c: &mut Client) -> anyhow::Result<u64> {
    Ok(c.stats(pb::StatsRequest {}).await?.into_inner().objects)
}

async fn join(clients: &mut [Client], first: &str, want: usize) -> anyhow::Result<()> {
    for c in clients.iter_mut() {
        c.cluster_join(pb::ClusterJoinRequest { address: first.to_string() }).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for c in clients.iter_mut() {
        while members(c).await? < want {
            if Instant::now() > deadline {
                bail!("the nodes did not form a cluster of {want} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn bench(args: &BenchReplicationArgs, raw: f64, nodes: &mut [Child]) -> anyhow::Result<()> {
    let mut clients = Vec::new();
    for n in nodes.iter() {
        clients.push(connect(&n.url).await?);
    }
    clients[0].cluster_init(pb::ClusterInitRequest {}).await?;
    let first = nodes[0].url.trim_start_matches("http://").to_string();
    // Three nodes first; the fourth joins for the repair test.
    join(&mut clients[1..3], &first, 3).await?;
    let mb = |b: f64| b / 1e6;
    println!("3 nodes on loopback sharing one disk; default policy: eager, rendezvous, 3 replicas, strong reads");
    println!("machine  raw write+fsync, 3 at once      {:>9.1} MB/s (aggregate; the baseline below)", mb(raw));

    eprintln!("putting a {} object through node 0 ...", bytesize::ByteSize(args.size));
    let put = large_put(&mut clients[0], args.size).await?;
    let target = 0.8 * raw / 3.0;
    let verdict = |v: f64| if v >= target { "ok" } else { "BELOW TARGET" };
    println!(
        "strata   large put, 3 eager replicas   {:>9.1} MB/s  = {:.2} x raw/3 (target >= 0.8) {}",
        mb(put),
        put / (raw / 3.0),
        verdict(put)
    );
    eprintln!("getting it back through node 1 ...");
    let get = large_get(&mut clients[1], args.size).await?;
    println!("strata   large get (strong, verified) {:>9.1} MB/s", mb(get));
    let rss: Vec<String> =
        nodes[..3].iter().map(|n| n.peak_rss().map(|b| format!("{:.1}", b as f64 / (1 << 20) as f64))).collect::<anyhow::Result<_>>()?;
    println!("strata   peak RSS of the 3 nodes        {} MiB (coordinator first)", rss.join(" / "));

    eprintln!("4 KiB puts from {} clients ...", args.concurrency);
    let small = small_puts(&nodes[2].url, args.concurrency, args.time).await?;
    println!("strata   4 KiB replicated puts, {} clients {:>9.0} ops/s (each acknowledged on 3 nodes)", args.concurrency, small);

    // Repair: a small-object set, then node 2 dies and node 3 joins: every
    // version must reach node 3.
    eprintln!("writing {} objects of 64 KiB for the repair test ...", args.repair_objects);
    let data: Vec<u8> = (0..64 * 1024).map(|_| rand::random::<u8>()).collect();
    for start in (0..args.repair_objects).step_by(200) {
        let items = (start..(start + 200).min(args.repair_objects))
            .map(|i| {
                let mut d = data.clone();
                d[..8].copy_from_slice(&(i as u64).to_le_bytes());
                pb::PutManyItem { header: Some(pb::PutHeader { key: format!("bench/repair/{i}"), ..Default::default() }), data: d.into() }
            })
            .collect();
        let r = clients[0].put_many(futures::stream::iter(vec![pb::PutManyRequest { items }])).await?.into_inner();
        if let Some(bad) = r.results.iter().find(|r| !r.error.is_empty()) {
            bail!("put {}: {}", bad.key, bad.error);
        }
    }
    let total = objects(&mut clients[0]).await?;
    nodes[2].stop().await;
    let killed = Instant::now();
    join(&mut clients[3..4], &first, 3).await?;
    let start = Instant::now();
    loop {
        let have = objects(&mut clients[3]).await?;
        if have == total {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("repair copied {have} of {total} objects in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    let bytes = clients[3].stats(pb::StatsRequest {}).await?.into_inner().logical_bytes;
    println!(
        "strata   repair to a new node          {:>9.1} MB/s, {:.0} objects/s ({total} objects, {} in {:.1} s; {:.1} s after the kill)",
        mb(bytes as f64 / took.as_secs_f64()),
        total as f64 / took.as_secs_f64(),
        bytesize::ByteSize(bytes),
        took.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    Ok(())
}
