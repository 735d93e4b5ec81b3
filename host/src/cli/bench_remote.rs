//! `strata bench-remote`: tiers and backups against the object store's own
//! speed. In one run: raw puts and gets through `object_store`, then a
//! server with a tier and a backup target on the same store: tier moves,
//! cold whole and 16-way ranged reads, a backup against copying the data
//! directory, and an incremental backup after 1% of the data changed.

use std::path::Path;
use std::time::Instant;

use crate::remote::object_store::{ObjectStoreExt, PutPayload};
use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;

use super::bench::Child;
use super::client::{CHUNK, Client, connect};
use crate::api::pb;
use crate::config::TargetSpec;
use crate::remote::Target;

#[derive(clap::Args, Debug)]
pub struct BenchRemoteArgs {
    /// The object store (default: a file:// directory in --dir). Tiers go
    /// under `<url>/tier`, backups under `<url>/backup`, raw objects under
    /// `<url>/raw`; the bench removes none of them from a remote store.
    #[arg(long)]
    url: Option<String>,
    /// A provider option, `name=value`; repeatable.
    #[arg(long = "option", value_name = "NAME=VALUE")]
    options: Vec<String>,
    /// Large objects (tier moves, cold reads).
    #[arg(long, default_value_t = 8)]
    large: usize,
    /// MiB per large object.
    #[arg(long, default_value_t = 64)]
    large_mib: usize,
    /// 1 MiB objects beside them (1% of the data changes among these).
    #[arg(long, default_value_t = 512)]
    small: usize,
    /// Ranged reads of 1 MiB, 16 at a time.
    #[arg(long, default_value_t = 256)]
    ranges: usize,
    /// Directory for the server's data; created, and removed afterwards.
    #[arg(long, default_value = "strata-bench-remote")]
    dir: std::path::PathBuf,
}

pub async fn run(args: BenchRemoteArgs) -> anyhow::Result<()> {
    super::bench::in_scratch_dir(&args.dir, bench(&args)).await
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

fn spec(base: &str, sub: &str, options: &std::collections::BTreeMap<String, String>) -> TargetSpec {
    TargetSpec { options: options.clone(), ..TargetSpec::new(format!("{}/{sub}", base.trim_end_matches('/'))) }
}

async fn bench(args: &BenchRemoteArgs) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&args.dir)?;
    let options = args
        .options
        .iter()
        .map(|o| o.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).context("--option: expected NAME=VALUE"))
        .collect::<anyhow::Result<_>>()?;
    let base = args.url.clone().unwrap_or_else(|| format!("file://{}", dir.join("store").display()));
    let large = (args.large_mib as u64) << 20;
    let total = large * args.large as u64;

    // 1. The store's own speed: whole objects up and down.
    let raw = Target::open(&spec(&base, "raw", &options))?;
    let bodies: Vec<Bytes> = (0..args.large).map(|_| random(large as usize)).collect();
    eprintln!("raw object_store puts and gets ...");
    let t = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        raw.store.put(&raw.path(&format!("o{i}")), PutPayload::from_bytes(b.clone())).await?;
    }
    let raw_put = mbps(total, t.elapsed().as_secs_f64());
    let t = Instant::now();
    for i in 0..args.large {
        raw.store.get(&raw.path(&format!("o{i}"))).await?.bytes().await?;
    }
    let raw_get = mbps(total, t.elapsed().as_secs_f64());
    // And 1 MiB ranges, 16 at a time: the baseline of ranged reads.
    let t = Instant::now();
    let per = args.ranges.div_ceil(16);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let raw = raw.clone();
        let n = args.large;
        tasks.push(tokio::spawn(async move {
            for r in 0..per {
                let at = rand::random::<u64>() % (large - (1 << 20));
                raw.store.get_range(&raw.path(&format!("o{}", (w * per + r) % n)), at..at + (1 << 20)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let raw_ranged = mbps((16 * per as u64) << 20, t.elapsed().as_secs_f64());

    // 2. A server with a tier and a backup target on the same store.
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[tiering]\ncache_size = 0\n[[tiers]]\nname = \"cold\"\ntarget = {}\n[backup.target]\n{}\n",
            toml_inline(&spec(&base, "tier", &options))?,
            toml_table(&spec(&base, "backup", &options))?
        ),
    )?;
    let data = dir.join("data");
    let mut server = Child::start_config(&data, &config).await?;
    let r = served(args, &mut server, &data, &bodies, raw_put, (raw_get, raw_ranged)).await;
    server.stop().await;
    r
}

async fn served(
    args: &BenchRemoteArgs,
    server: &mut Child,
    data: &Path,
    bodies: &[Bytes],
    raw_put: f64,
    (raw_get, raw_ranged): (f64, f64),
) -> anyhow::Result<()> {
    let mut c = connect(&server.url).await?;
    let large = bodies.first().map_or(0, |b| b.len() as u64);
    let total = large * bodies.len() as u64;
    eprintln!("loading {} large and {} small objects ...", bodies.len(), args.small);
    for (i, b) in bodies.iter().enumerate() {
        put(&mut c, &format!("large/{i}"), b.clone()).await?;
    }
    for i in 0..args.small {
        put(&mut c, &format!("small/{i}"), random(1 << 20)).await?;
    }

    eprintln!("hot reads ...");
    let t = Instant::now();
    for i in 0..bodies.len() {
        get(&mut c, &format!("large/{i}"), 0, 0).await?;
    }
    let hot = mbps(total, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let hot_ranged = ranged_reads(&server.url, bodies.len(), large, args.ranges).await?;
    let hot_ranged = mbps(hot_ranged, t.elapsed().as_secs_f64());

    eprintln!("tier moves ...");
    let t = Instant::now();
    for i in 0..bodies.len() {
        let req = pb::TierMoveRequest { key: format!("large/{i}"), tier: "cold".into(), ..Default::default() };
        c.tier_move(req).await?;
    }
    let moves = mbps(total, t.elapsed().as_secs_f64());

    eprintln!("cold reads ...");
    let t = Instant::now();
    for i in 0..bodies.len() {
        let got = get(&mut c, &format!("large/{i}"), 0, 0).await?;
        if got != total / bodies.len() as u64 {
            bail!("a cold read returned {got} bytes");
        }
    }
    let cold = mbps(total, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let ranged_bytes = ranged_reads(&server.url, bodies.len(), large, args.ranges).await?;
    let ranged = mbps(ranged_bytes, t.elapsed().as_secs_f64());
    for i in 0..bodies.len() {
        c.tier_recall(pb::TierMoveRequest { key: format!("large/{i}"), ..Default::default() }).await?;
    }

    eprintln!("backup against copying the data directory ...");
    let data_bytes = total + ((args.small as u64) << 20);
    let t = Instant::now();
    let first = backup(&mut c).await?;
    let backup_secs = t.elapsed().as_secs_f64();
    let copy = data.with_extension("copy");
    let t = Instant::now();
    let status = tokio::process::Command::new("cp").arg("-a").arg(data).arg(&copy).status().await?;
    if !status.success() {
        bail!("cp -a failed");
    }
    tokio::process::Command::new("sync").status().await?;
    let copy_secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&copy);

    let changed = (args.small as u64 + bodies.len() as u64 * (large >> 20)).div_ceil(100) as usize;
    eprintln!("changing {changed} MiB (1%) and backing up again ...");
    for i in 0..changed.min(args.small) {
        put(&mut c, &format!("small/{i}"), random(1 << 20)).await?;
    }
    let t = Instant::now();
    let second = backup(&mut c).await?;
    let incr_secs = t.elapsed().as_secs_f64();

    println!("store: {}", if args.url.is_some() { "--url" } else { "file:// on this disk" });
    println!(
        "raw object_store put: {raw_put:.0} MiB/s, get: {raw_get:.0} MiB/s ({} objects of {} MiB), 16-way 1 MiB ranges: {raw_ranged:.0} MiB/s",
        bodies.len(),
        large >> 20
    );
    println!("tier move: {moves:.0} MiB/s ({:.2} of raw put; copy, read back, record, remove)", moves / raw_put);
    println!(
        "whole read through the server, hot: {hot:.0} MiB/s; cold: {cold:.0} MiB/s ({:.2} of hot, {:.2} of raw get)",
        cold / hot,
        cold / raw_get
    );
    println!(
        "16-way ranged reads of 1 MiB, hot: {hot_ranged:.0} MiB/s; cold: {ranged:.0} MiB/s ({:.2} of hot, {:.2} of raw ranges)",
        ranged / hot_ranged,
        ranged / raw_ranged
    );
    println!(
        "backup of {} MiB: {backup_secs:.2} s ({:.0} MiB/s); cp -a of the data directory: {copy_secs:.2} s; ratio {:.2}",
        data_bytes >> 20,
        mbps(data_bytes, backup_secs),
        backup_secs / copy_secs
    );
    println!(
        "incremental backup after changing 1% ({changed} MiB): {incr_secs:.2} s, {} MiB sent ({:.3} of the first's time, {:.3} of its bytes)",
        second.uploaded_bytes >> 20,
        incr_secs / backup_secs,
        second.uploaded_bytes as f64 / first.uploaded_bytes.max(1) as f64
    );
    Ok(())
}

/// 16 clients each reading `total / 16` ranges of 1 MiB at random offsets
/// of the large objects; returns the bytes read.
async fn ranged_reads(url: &str, n: usize, large: u64, total: usize) -> anyhow::Result<u64> {
    let per = total.div_ceil(16);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&url).await?;
            let mut got = 0;
            for r in 0..per {
                let key = format!("large/{}", (w * per + r) % n);
                let offset = rand::random::<u64>() % (large - (1 << 20));
                got += get(&mut c, &key, offset, 1 << 20).await?;
            }
            anyhow::Ok(got)
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await??;
    }
    Ok(bytes)
}

pub(super) fn random(n: usize) -> Bytes {
    let mut v = vec![0u8; n];
    rand::fill(&mut v[..]);
    Bytes::from(v)
}

pub(super) async fn put(c: &mut Client, key: &str, data: Bytes) -> anyhow::Result<()> {
    let header = pb::PutHeader { key: key.into(), size: Some(data.len() as u64), ..Default::default() };
    let mut msgs = vec![pb::PutRequest { part: Some(pb::put_request::Part::Header(header)) }];
    let mut off = 0;
    while off < data.len() {
        let end = (off + CHUNK).min(data.len());
        msgs.push(pb::PutRequest { part: Some(pb::put_request::Part::Chunk(data.slice(off..end))) });
        off = end;
    }
    c.put(futures::stream::iter(msgs)).await?;
    Ok(())
}

/// Reads (a range of) a key; returns the bytes received.
async fn get(c: &mut Client, key: &str, offset: u64, length: u64) -> anyhow::Result<u64> {
    let mut s = c.get(pb::GetRequest { key: key.into(), offset, length, ..Default::default() }).await?.into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        if let Some(pb::get_response::Part::Chunk(b)) = m?.part {
            n += b.len() as u64;
        }
    }
    Ok(n)
}

async fn backup(c: &mut Client) -> anyhow::Result<pb::BackupInfo> {
    let mut s = c.backup_create(pb::BackupCreateRequest::default()).await?.into_inner();
    let mut done = None;
    while let Some(p) = s.next().await {
        if let Some(d) = p?.done {
            done = Some(d);
        }
    }
    done.context("the backup ended without an answer")
}

/// A target as an inline TOML table.
fn toml_inline(s: &TargetSpec) -> anyhow::Result<String> {
    let mut out = format!("{{ url = {:?}", s.url);
    if !s.options.is_empty() {
        let opts: Vec<String> = s.options.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
        out.push_str(&format!(", options = {{ {} }}", opts.join(", ")));
    }
    out.push_str(" }");
    Ok(out)
}

/// A target as the body of a `[table]`.
fn toml_table(s: &TargetSpec) -> anyhow::Result<String> {
    let mut out = format!("url = {:?}\n", s.url);
    if !s.options.is_empty() {
        let opts: Vec<String> = s.options.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
        out.push_str(&format!("options = {{ {} }}\n", opts.join(", ")));
    }
    Ok(out)
}
