//! `strata bench-auth`: what TLS and token checks cost, in one run: 4 KiB
//! puts from several clients and a large get, against a plaintext server
//! without `[auth]`, one with tokens, one with `[tls]`, and one with both.

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

/// One server configuration of the run.
struct Setup {
    name: &'static str,
    tls: bool,
    tokens: bool,
}

async fn bench(args: &BenchAuthArgs) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.dir)?;
    let certs = dir.join("certs");
    let (ca, _) = super::cert::write_ca(&certs, 1)?;
    let (crt, key) = super::cert::write_node(&certs, "node", &["127.0.0.1".to_string()], &certs, 1)?;
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{:064x}", rand::random::<u128>()))?;
    let scopes = ["bucket:default:read".to_string(), "bucket:default:write".to_string()];
    let (token, _) =
        crate::api::auth::create(&std::fs::read(&secret)?, &scopes, Duration::from_secs(3600), None).map_err(|e| anyhow::anyhow!(e))?;

    let setups = [
        Setup { name: "plaintext", tls: false, tokens: false },
        Setup { name: "tokens", tls: false, tokens: true },
        Setup { name: "TLS", tls: true, tokens: false },
        Setup { name: "TLS + tokens", tls: true, tokens: true },
    ];
    let mut figures = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        eprintln!("{} ...", s.name);
        let mut toml = String::new();
        if s.tokens {
            toml.push_str(&format!("[auth]\ntoken_secret_file = {secret:?}\n"));
        }
        if s.tls {
            toml.push_str(&format!("[tls]\ncert_file = {crt:?}\nkey_file = {key:?}\n"));
        }
        let config = dir.join(format!("{i}.toml"));
        std::fs::write(&config, toml)?;
        let mut server = Child::start_config(&dir.join(format!("data{i}")), &config).await?;
        let url = if s.tls { server.url.replace("http://", "https://") } else { server.url.clone() };
        client::set_token(s.tokens.then(|| token.clone()));
        client::set_ca_cert(s.tls.then(|| ca.clone()));
        let r = measure(args, &url).await;
        client::set_token(None);
        client::set_ca_cert(None);
        server.stop().await;
        figures.push(r?);
    }

    let (base_puts, base_get) = figures[0];
    print!("{:<26}", "");
    for s in &setups {
        print!(" {:>20}", s.name);
    }
    println!();
    print!("{:<26}", format!("4 KiB puts, {} clients", args.concurrency));
    for (puts, _) in &figures {
        print!(" {:>20}", format!("{puts:.0}/s ({:.2})", puts / base_puts));
    }
    println!();
    print!("{:<26}", format!("get of {} MiB", args.size_mib));
    for (_, get) in &figures {
        print!(" {:>20}", format!("{get:.0} MiB/s ({:.2})", get / base_get));
    }
    println!();
    println!("(ratio to plaintext in brackets; one server after the other, in one run)");
    Ok(())
}
