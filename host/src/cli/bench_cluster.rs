//! `strata bench-cluster`: three real nodes on loopback; times cluster-state
//! commits (on the leader and forwarded from a follower), lock
//! acquire+release throughput (uncontended and on one shared lock), and
//! leader failover after kill -9.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use super::bench::Child;
use super::bench_plugins::percentiles;
use super::client::{Client, connect};
use crate::api::pb;

#[derive(clap::Args, Debug)]
pub struct BenchClusterArgs {
    /// Commits to time, one after another, on the leader and on a follower each.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    commits: u64,
    /// Concurrent lock clients, spread over the nodes.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..1000))]
    lock_clients: u64,
    /// How long each lock phase runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    lock_time: Duration,
    /// The nodes' heartbeat interval; elections start after 3 to 6 of them.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Directory for the nodes' data; created, and removed afterwards.
    #[arg(long, default_value = "strata-bench-cluster")]
    dir: std::path::PathBuf,
}

pub async fn run(args: BenchClusterArgs) -> anyhow::Result<()> {
    super::bench::in_scratch_dir(&args.dir, nodes_and_bench(&args)).await
}

async fn nodes_and_bench(args: &BenchClusterArgs) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.dir)?;
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{:032x}", rand::random::<u128>()))?;
    let hb = args.heartbeat;
    let env = [
        ("STRATA_CLUSTER__SECRET_FILE", secret.display().to_string()),
        ("STRATA_CLUSTER__HEARTBEAT_INTERVAL", humantime::format_duration(hb).to_string()),
        ("STRATA_CLUSTER__SUSPECT_AFTER", humantime::format_duration(hb * 4).to_string()),
        ("STRATA_CLUSTER__DOWN_AFTER", humantime::format_duration(hb * 12).to_string()),
    ];
    let mut nodes = Vec::new();
    for i in 0..3 {
        let d = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&d)?;
        nodes.push(Child::start_with(&d, &env).await.with_context(|| format!("starting node {i}"))?);
    }
    let result = bench(args, &mut nodes).await;
    for n in &mut nodes {
        n.stop().await;
    }
    result
}

async fn views(clients: &mut [Client]) -> anyhow::Result<Vec<pb::ClusterView>> {
    let mut v = Vec::new();
    for c in clients {
        v.push(c.cluster_status(pb::ClusterStatusRequest {}).await?.into_inner());
    }
    Ok(v)
}

fn policy(i: u64) -> pb::SetReplicationRequest {
    pb::SetReplicationRequest {
        bucket: format!("bench-{:03}", i % 100),
        policy: Some(pb::ReplicationPolicy {
            strategy: "eager".into(),
            selector: "rendezvous".into(),
            replicas: 1 + (i % 3) as u32,
            min_replicas: 1,
            params: Default::default(),
            consistency: String::new(),
        }),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn commits(c: &mut Client, n: u64) -> anyhow::Result<(Duration, Duration)> {
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        c.set_replication(policy(i)).await.map_err(|e| anyhow!("commit failed: {}", e.message()))?;
        samples.push(t.elapsed());
    }
    Ok(percentiles(samples))
}

/// Acquire+release pairs per second by `clients` clients; `shared`: all on
/// one lock, else each on its own.
async fn locks(urls: &[String], clients: u64, time: Duration, shared: bool) -> anyhow::Result<f64> {
    let deadline = Instant::now() + time;
    let mut tasks = Vec::new();
    for i in 0..clients {
        let mut c = connect(&urls[i as usize % urls.len()]).await?;
        tasks.push(tokio::spawn(async move {
            let name = if shared { "bench-shared".to_string() } else { format!("bench-{i}") };
            let mut done = 0u64;
            while Instant::now() < deadline {
                let req =
                    pb::LockAcquireRequest { name: name.clone(), holder: format!("bench-{i}-{done}"), ttl_ms: 10_000, wait_ms: 10_000 };
                let g = c.lock_acquire(req).await?.into_inner();
                c.lock_release(pb::LockReleaseRequest { name: name.clone(), token: g.token }).await?;
                done += 1;
            }
            Ok::<u64, tonic::Status>(done)
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await?.map_err(|e| anyhow!("lock call failed: {}", e.message()))?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn bench(args: &BenchClusterArgs, nodes: &mut [Child]) -> anyhow::Result<()> {
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let mut clients = Vec::new();
    for u in &urls {
        clients.push(connect(u).await?);
    }
    clients[0].cluster_init(pb::ClusterInitRequest {}).await?;
    let first = urls[0].trim_start_matches("http://").to_string();
    for c in &mut clients[1..] {
        c.cluster_join(pb::ClusterJoinRequest { address: first.clone() }).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let v = views(&mut clients).await?;
        if v.iter().all(|w| w.leader != 0 && w.leader == v[0].leader && w.nodes.len() == 3) {
            break v.iter().position(|w| w.node_id == v[0].leader).expect("the leader is a node");
        }
        if Instant::now() > deadline {
            bail!("the three nodes did not form a cluster within 30 s: {v:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let follower = (leader + 1) % 3;
    println!("3 nodes on loopback, heartbeat {:?}, Raft log and state in SQLite (synchronous=FULL)", args.heartbeat);

    let (p50, p99) = commits(&mut clients[leader], args.commits).await?;
    println!("commit on the leader          p50 {:7.2} ms   p99 {:7.2} ms   ({} commits)", ms(p50), ms(p99), args.commits);
    let (p50, p99) = commits(&mut clients[follower], args.commits).await?;
    println!("commit forwarded by follower  p50 {:7.2} ms   p99 {:7.2} ms   ({} commits)", ms(p50), ms(p99), args.commits);

    let own = locks(&urls, args.lock_clients, args.lock_time, false).await?;
    println!("lock acquire+release, {} clients on their own locks: {own:8.0} pairs/s", args.lock_clients);
    let shared = locks(&urls, args.lock_clients, args.lock_time, true).await?;
    println!("lock acquire+release, {} clients on one lock:       {shared:8.0} pairs/s", args.lock_clients);

    // Failover: kill -9 the leader; time a new leader and the first commit after.
    let old = views(&mut clients).await?[leader].node_id;
    nodes[leader].stop().await;
    let killed = Instant::now();
    let mut c = clients[follower].clone();
    let elected = loop {
        let v = c.cluster_status(pb::ClusterStatusRequest {}).await?.into_inner();
        if v.leader != 0 && v.leader != old {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(60) {
            bail!("no new leader within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    c.set_replication(policy(0)).await.map_err(|e| anyhow!("commit after failover failed: {}", e.message()))?;
    let committed = killed.elapsed();
    println!("failover after kill -9 of the leader: new leader in {:.0} ms, first commit after {:.0} ms", ms(elected), ms(committed));
    Ok(())
}
