//! `strata bench-auth`: what token checks cost, in one run: 4 KiB puts
//! from several clients and a large get, against a server without `[auth]`
//! and one with it (each call carrying a scoped token).

use std::time::{Duration, Instant};

use super::bench::{Child, small_puts};
use super::bench_remote::{put, random};
use super::client::{self, connect};
use crate::api::pb;

#[derive(clap::Args, Debug)]
pub struct BenchAuthArgs {
    /// Seconds of 4 KiB puts on each server.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Clients putting at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// MiB in the large object got.
    #[arg(long, default_value_t = 256)]
    size_mib: usize,
    /// Directory for the servers' data; created, and removed afterwards.
    #[arg(long, default_value = "strata-bench-auth")]
    dir: std::path::PathBuf,
}

pub async fn run(args: BenchAuthArgs) -> anyhow::Result<()> {
    super::bench::in_scratch_dir(&args.dir, bench(&args)).await
}

/// (puts per second, get MiB/s) on one server.
async fn measure(args: &BenchAuthArgs, url: &str) -> anyhow::Result<(f64, f64)> {
    let puts = small_puts(url, args.concurrency, Duration::from_secs(args.seconds)).await?;
    let mut c = connect(url).await?;
    let size = args.size_mib << 20;
    put(&mut c, "bench/large", random(size)).await?;
    let t = Instant::now();
    let mut s = c.get(pb::GetRequest { key: "bench/large".into(), ..Default::default() }).await.map_err(client::status)?.into_inner();
    let mut n = 0;
    while let Some(m) = s.message().await.map_err(client::status)? {
        if let Some(pb::get_response::Part::Chunk(b)) = m.part {
            n += b.len();
        }
    }
    anyhow::ensure!(n == size, "the get returned {n} bytes, not {size}");
    Ok((puts, size as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()))
}

async fn bench(args: &BenchAuthArgs) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.dir)?;
    eprintln!("without [auth] ...");
    std::fs::write(dir.join("plain.toml"), "")?;
    let mut plain = Child::start_config(&dir.join("plain"), &dir.join("plain.toml")).await?;
    client::set_token(None);
    let a = measure(args, &plain.url).await;
    plain.stop().await;
    let (plain_puts, plain_get) = a?;

    eprintln!("with [auth] and a scoped token ...");
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{:064x}", rand::random::<u128>()))?;
    std::fs::write(dir.join("auth.toml"), format!("[auth]\ntoken_secret_file = {secret:?}\n"))?;
    let key = std::fs::read(&secret)?;
    let scopes = ["bucket:default:read".to_string(), "bucket:default:write".to_string()];
    let (token, _) = crate::api::auth::create(&key, &scopes, Duration::from_secs(3600), None).map_err(|e| anyhow::anyhow!(e))?;
    let mut authed = Child::start_config(&dir.join("auth"), &dir.join("auth.toml")).await?;
    client::set_token(Some(token));
    let b = measure(args, &authed.url).await;
    client::set_token(None);
    authed.stop().await;
    let (auth_puts, auth_get) = b?;

    println!("{:<34} {:>14} {:>14} {:>8}", "", "no [auth]", "tokens", "ratio");
    println!(
        "{:<34} {:>12.0}/s {:>12.0}/s {:>8.3}",
        format!("4 KiB puts, {} clients", args.concurrency),
        plain_puts,
        auth_puts,
        auth_puts / plain_puts
    );
    println!(
        "{:<34} {:>9.1} MiB/s {:>9.1} MiB/s {:>8.3}",
        format!("get of {} MiB", args.size_mib),
        plain_get,
        auth_get,
        auth_get / plain_get
    );
    Ok(())
}
