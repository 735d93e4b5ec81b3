//! `strata bench-s3`: the S3 gateway against the gRPC API, in one run on
//! one server: a put and a get of a large object, and 4 KiB puts and gets
//! from many clients at once. The S3 client is compiled (`object_store`'s,
//! signing every request with SigV4 and hashing every payload, as SDKs
//! do), so the figures measure the gateway, not an interpreter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::bench::{Child, clients, connect_many, small_puts};
use super::bench_remote::{put, random};
use super::client::{self, connect};
use crate::api::pb;
use crate::remote::object_store::{ObjectStore, ObjectStoreExt, aws::AmazonS3Builder, path::Path as ObjectPath};

#[derive(clap::Args, Debug)]
pub struct BenchS3Args {
    /// MiB in the large object.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Clients at once for the 4 KiB puts and gets.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of each 4 KiB run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// GiB sent as a multipart upload, twice (in 100 parts, then in 1,000),
    /// timing each completion and watching the server's memory; 0 skips it.
    #[arg(long, default_value_t = 5)]
    multipart_gib: u64,
    /// Directory for the server's data; created, and removed afterwards.
    #[arg(long, default_value = "strata-bench-s3")]
    dir: std::path::PathBuf,
}

pub async fn run(args: BenchS3Args) -> anyhow::Result<()> {
    super::bench::in_scratch_dir(&args.dir, bench(&args)).await
}

async fn bench(args: &BenchS3Args) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let key = crate::s3::keys::Key {
        access_key: "SKBENCH0000000000000".into(),
        secret_key: format!("{:040x}", rand::random::<u128>()),
        bucket: "*".into(),
        read: true,
        write: true,
    };
    crate::s3::keys::KeyFile { keys: vec![key.clone()] }.write(&data.join("s3-keys.json")).map_err(anyhow::Error::msg)?;
    let config = dir.join("strata.toml");
    std::fs::write(&config, format!("[s3]\nlisten = \"127.0.0.1:{port}\"\n"))?;
    let mut server = Child::start_config(&data, &config).await?;
    let client = AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_bucket_name("default")
        .with_region("us-east-1")
        .with_access_key_id(&key.access_key)
        .with_secret_access_key(&key.secret_key)
        .build()?;
    let s3: Arc<dyn ObjectStore> = Arc::new(client.clone());
    let mut r = measure(args, &server.url, s3).await;
    // Last: its 10 GiB of writes would slow the figures after it.
    if r.is_ok() && args.multipart_gib > 0 {
        r = multipart(args.multipart_gib, &server, &client).await;
    }
    server.stop().await;
    r
}

/// `gib` GiB as a multipart upload in 100 parts, then in 1,000 (distinct
/// bytes each time): the time of each completion, and the server's peak
/// memory before and after.
async fn multipart(gib: u64, server: &Child, s3: &crate::remote::object_store::aws::AmazonS3) -> anyhow::Result<()> {
    use crate::remote::object_store::multipart::MultipartStore;
    let total = gib << 30;
    let rss_before = server.rss_probe()().ok_or_else(|| anyhow::anyhow!("cannot read the server's memory"))?;
    // The server's memory, sampled while the parts stream in.
    let most = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (most, sampling, pid_rss) = (most.clone(), sampling.clone(), server.rss_probe());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(n) = pid_rss() {
                    most.fetch_max(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut rows = Vec::new();
    for parts in [100u64, 1000] {
        let part = total / parts;
        anyhow::ensure!(part >= 5 << 20, "{gib} GiB in {parts} parts makes parts under S3's 5 MiB");
        let path = ObjectPath::from(format!("bench/multipart-{parts}"));
        eprintln!("{gib} GiB multipart upload in {parts} parts ...");
        let id = s3.create_multipart(&path).await?;
        let block = random(1 << 20);
        let t = Instant::now();
        let mut ids = Vec::with_capacity(parts as usize);
        for i in 0..parts {
            // Each part its own bytes (no part a dedup hit): a 1 MiB block
            // with the part's number written over its head, repeated.
            let mut data = Vec::with_capacity(part as usize);
            let mut b = block.to_vec();
            b[..16].copy_from_slice(&(u128::from(parts) << 64 | u128::from(i)).to_le_bytes());
            while (data.len() as u64) < part {
                let n = (part as usize - data.len()).min(b.len());
                data.extend_from_slice(&b[..n]);
            }
            ids.push(s3.put_part(&path, &id, i as usize, bytes::Bytes::from(data).into()).await?);
        }
        let sent = t.elapsed();
        let t = Instant::now();
        s3.complete_multipart(&path, &id, ids).await?;
        let complete = t.elapsed();
        let head = ObjectStoreExt::head(s3, &path).await?;
        anyhow::ensure!(head.size == part * parts, "the object holds {} bytes, not {}", head.size, part * parts);
        rows.push((parts, part, mbps(part * parts, sent), complete));
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let rss_most = most.load(Ordering::Relaxed);
    println!();
    println!("{:<34} {:>14} {:>14}", format!("multipart upload of {gib} GiB"), "parts sent", "completion");
    for (parts, part, rate, complete) in &rows {
        println!(
            "{:<34} {:>9.0} MiB/s {:>11.1} ms",
            format!("{parts} parts of {:.1} MiB", *part as f64 / (1 << 20) as f64),
            rate,
            complete.as_secs_f64() * 1e3
        );
    }
    let ratio = rows[1].3.as_secs_f64() / rows[0].3.as_secs_f64().max(1e-9);
    println!("{:<34} {ratio:>14.2}", "completion, 1000 parts / 100 parts");
    println!(
        "{:<34} {:>11.0} MiB {:>11.0} MiB",
        "server RSS, before / most during",
        rss_before as f64 / (1 << 20) as f64,
        rss_most as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / t.as_secs_f64().max(1e-9)
}

async fn measure(args: &BenchS3Args, api: &str, s3: Arc<dyn ObjectStore>) -> anyhow::Result<()> {
    let size = (args.size_mib as u64) << 20;
    let mut c = connect(api).await?;
    // Distinct bytes for each write, so none is a dedup hit.
    let (a, b) = (random(size as usize), random(size as usize));

    eprintln!("large put and get, gRPC ...");
    let t = Instant::now();
    put(&mut c, "bench/large-grpc", a).await?;
    let grpc_put = mbps(size, t.elapsed());
    let t = Instant::now();
    let n = grpc_get(&mut c, "bench/large-grpc").await?;
    anyhow::ensure!(n == size, "the gRPC get returned {n} bytes");
    let grpc_get = mbps(size, t.elapsed());

    eprintln!("large put and get, S3 ...");
    let path = ObjectPath::from("bench/large-s3");
    let t = Instant::now();
    s3.put(&path, b.into()).await?;
    let s3_put = mbps(size, t.elapsed());
    let t = Instant::now();
    let mut stream = s3.get(&path).await?.into_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk?.len() as u64;
    }
    anyhow::ensure!(n == size, "the S3 get returned {n} bytes");
    let s3_get = mbps(size, t.elapsed());

    let time = Duration::from_secs(args.seconds);
    eprintln!("4 KiB puts, gRPC ...");
    let grpc_puts = small_puts(api, args.concurrency, time).await?;
    eprintln!("4 KiB puts, S3 ...");
    let s3_puts = s3_small(s3.clone(), args.concurrency, time, true).await?;
    eprintln!("4 KiB gets, gRPC ...");
    let grpc_gets = grpc_small_gets(api, args.concurrency, time).await?;
    eprintln!("4 KiB gets, S3 ...");
    let s3_gets = s3_small(s3, args.concurrency, time, false).await?;

    println!("{:<34} {:>14} {:>14} {:>8}", "", "gRPC", "S3", "S3/gRPC");
    println!("{:<34} {:>9.0} MiB/s {:>9.0} MiB/s {:>8.2}", format!("put of {} MiB", args.size_mib), grpc_put, s3_put, s3_put / grpc_put);
    println!("{:<34} {:>9.0} MiB/s {:>9.0} MiB/s {:>8.2}", format!("get of {} MiB", args.size_mib), grpc_get, s3_get, s3_get / grpc_get);
    let c = args.concurrency;
    println!("{:<34} {:>12.0}/s {:>12.0}/s {:>8.2}", format!("4 KiB puts, {c} clients"), grpc_puts, s3_puts, s3_puts / grpc_puts);
    println!("{:<34} {:>12.0}/s {:>12.0}/s {:>8.2}", format!("4 KiB gets, {c} clients"), grpc_gets, s3_gets, s3_gets / grpc_gets);
    Ok(())
}

async fn grpc_get(c: &mut client::Client, key: &str) -> anyhow::Result<u64> {
    let mut s = c.get(pb::GetRequest { key: key.into(), ..Default::default() }).await.map_err(client::status)?.into_inner();
    let mut n = 0;
    while let Some(m) = s.message().await.map_err(client::status)? {
        if let Some(pb::get_response::Part::Chunk(b)) = m.part {
            n += b.len() as u64;
        }
    }
    Ok(n)
}

/// The small objects the gets read: written once, before the clock starts.
const GET_KEYS: usize = 256;

async fn grpc_small_gets(api: &str, concurrency: usize, time: Duration) -> anyhow::Result<f64> {
    let mut c = connect(api).await?;
    for i in 0..GET_KEYS {
        put(&mut c, &format!("bench/get-grpc/{i}"), random(4096)).await?;
    }
    clients(connect_many(api, concurrency).await?, time, 1, |mut c, w, i| async move {
        let n = grpc_get(&mut c, &format!("bench/get-grpc/{}", (w + 7 * i as usize) % GET_KEYS)).await?;
        anyhow::ensure!(n == 4096, "a 4 KiB get returned {n} bytes");
        Ok(c)
    })
    .await
}

/// 4 KiB puts (new keys) or gets (of keys written first) through S3.
async fn s3_small(s3: Arc<dyn ObjectStore>, concurrency: usize, time: Duration, puts: bool) -> anyhow::Result<f64> {
    if !puts {
        for i in 0..GET_KEYS {
            s3.put(&ObjectPath::from(format!("bench/get-s3/{i}")), random(4096).into()).await?;
        }
    }
    clients(vec![s3; concurrency], time, 1, move |s3, w, i| async move {
        if puts {
            s3.put(&ObjectPath::from(format!("bench/small-s3/{w}/{i}")), random(4096).into()).await?;
        } else {
            let b = s3.get(&ObjectPath::from(format!("bench/get-s3/{}", (w + 7 * i as usize) % GET_KEYS))).await?.bytes().await?;
            anyhow::ensure!(b.len() == 4096, "a 4 KiB get returned {} bytes", b.len());
        }
        Ok(s3)
    })
    .await
}
