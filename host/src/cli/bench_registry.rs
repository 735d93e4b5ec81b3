//! `strata bench-registry`: the OCI registry against the gRPC API, in one
//! run on one server: a push of a large layer (one monolithic request, and
//! chunked in 64 MiB PATCHes) against a plain put of as many bytes, and a
//! 16-way ranged pull of the layer against a plain get of the same blob.

use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

use super::bench::Child;
use super::bench_remote::{put, random};
use super::client::connect;
use crate::api::pb;

#[derive(clap::Args, Debug)]
pub struct BenchRegistryArgs {
    /// MiB in the layer.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Ranged GETs in parallel (Ollama uses 16).
    #[arg(long, default_value_t = 16)]
    parts: usize,
    /// Directory for the server's data; created, and removed afterwards.
    #[arg(long, default_value = "strata-bench-registry")]
    dir: std::path::PathBuf,
}

pub async fn run(args: BenchRegistryArgs) -> anyhow::Result<()> {
    super::bench::in_scratch_dir(&args.dir, bench(&args)).await
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

async fn bench(args: &BenchRegistryArgs) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.dir)?;
    // A free port for the registry (the server prints only the API's).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.join("strata.toml");
    std::fs::write(&config, format!("[registry]\nlisten = \"127.0.0.1:{port}\"\nanonymous = \"push\"\n"))?;
    let mut server = Child::start_config(&dir.join("data"), &config).await?;
    let r = measure(args, &server.url, &format!("http://127.0.0.1:{port}")).await;
    server.stop().await;
    r
}

async fn measure(args: &BenchRegistryArgs, api: &str, reg: &str) -> anyhow::Result<()> {
    let size = (args.size_mib as u64) << 20;
    let http = reqwest::Client::new();
    let mut c = connect(api).await?;
    // Distinct bytes for each write, so none is a dedup hit.
    let (plain, mono, chunked) = (random(size as usize), random(size as usize), random(size as usize));
    let digest = |b: &Bytes| format!("sha256:{}", hex::encode(Sha256::digest(b)));

    eprintln!("plain put of {} MiB ...", args.size_mib);
    let t = Instant::now();
    put(&mut c, "bench/plain", plain).await?;
    let plain_put = mbps(size, t.elapsed().as_secs_f64());

    eprintln!("registry push, one request ...");
    let d = digest(&mono);
    let t = Instant::now();
    let r = http.post(format!("{reg}/v2/bench/layer/blobs/uploads/?digest={d}")).body(mono).send().await?;
    if r.status() != 201 {
        bail!("monolithic push: {}", r.status());
    }
    let push_mono = mbps(size, t.elapsed().as_secs_f64());

    eprintln!("registry push, chunked ...");
    let dc = digest(&chunked);
    let t = Instant::now();
    let r = http.post(format!("{reg}/v2/bench/chunked/blobs/uploads/")).send().await?;
    let mut loc = r.headers().get("location").and_then(|v| v.to_str().ok()).context("no Location")?.to_string();
    let part = 64usize << 20;
    let mut at = 0usize;
    while at < chunked.len() {
        let end = (at + part).min(chunked.len());
        let r = http
            .patch(&loc)
            .header("Content-Range", format!("{at}-{}", end - 1))
            .header("Content-Type", "application/octet-stream")
            .body(chunked.slice(at..end))
            .send()
            .await?;
        if r.status() != 202 {
            bail!("PATCH: {}", r.status());
        }
        loc = r.headers().get("location").and_then(|v| v.to_str().ok()).context("no Location")?.to_string();
        at = end;
    }
    let r = http.put(format!("{loc}?digest={dc}")).send().await?;
    if r.status() != 201 {
        bail!("PUT: {}", r.status());
    }
    let push_chunked = mbps(size, t.elapsed().as_secs_f64());

    eprintln!("plain get of the layer's blob ...");
    let key = format!("bench/layer/_blobs/{}", d.trim_start_matches("sha256:"));
    let t = Instant::now();
    let mut s = c.get(pb::GetRequest { bucket: "oci".into(), key, ..Default::default() }).await?.into_inner();
    let mut got = 0u64;
    while let Some(m) = s.next().await {
        if let Some(pb::get_response::Part::Chunk(b)) = m?.part {
            got += b.len() as u64;
        }
    }
    let plain_get = mbps(got, t.elapsed().as_secs_f64());
    if got != size {
        bail!("the plain get returned {got} bytes");
    }

    eprintln!("registry pull, {} ranges in parallel ...", args.parts);
    let url = format!("{reg}/v2/bench/layer/blobs/{d}");
    let n = size / args.parts as u64;
    let t = Instant::now();
    let tasks: Vec<_> = (0..args.parts as u64)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            let (a, b) = (i * n, if i + 1 == args.parts as u64 { size - 1 } else { (i + 1) * n - 1 });
            tokio::spawn(async move {
                let mut r = http.get(&url).header("Range", format!("bytes={a}-{b}")).send().await?;
                if r.status() != 206 {
                    bail!("ranged GET: {}", r.status());
                }
                let mut got = 0u64;
                while let Some(chunk) = r.chunk().await? {
                    got += chunk.len() as u64;
                }
                if got != b - a + 1 {
                    bail!("a range returned {got} bytes, not {}", b - a + 1);
                }
                anyhow::Ok(got)
            })
        })
        .collect();
    let mut pulled = 0;
    for t in tasks {
        pulled += t.await??;
    }
    let pull = mbps(pulled, t.elapsed().as_secs_f64());

    println!("layer: {} MiB, {} ranges", args.size_mib, args.parts);
    println!("plain put (gRPC)              {plain_put:8.1} MB/s");
    println!("registry push, one request    {push_mono:8.1} MB/s   {:.2} of the plain put", push_mono / plain_put);
    println!("registry push, 64 MiB PATCHes {push_chunked:8.1} MB/s   {:.2} of the plain put", push_chunked / plain_put);
    println!("plain get (gRPC)              {plain_get:8.1} MB/s");
    println!("registry pull, {:2} ranges      {pull:8.1} MB/s   {:.2} of the plain get", args.parts, pull / plain_get);
    Ok(())
}
