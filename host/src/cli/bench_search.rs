//! `strata bench-search`: loads a real server with objects carrying three
//! attributes, then times searches by equality, range, prefix and full
//! text. Today every search scans; these are the figures indexes must beat.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;

use super::bench::{Child, put_many};
use super::client;
use crate::api::pb;

#[derive(clap::Args, Debug)]
pub struct BenchSearchArgs {
    /// Objects to load.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1000..))]
    objects: u64,
    /// Times each query runs.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Scratch directory; removed afterwards.
    #[arg(long, default_value = "./strata-bench-search")]
    dir: PathBuf,
}

const WORDS: [&str; 16] = [
    "alpha", "beta", "gamma", "delta", "llama", "mistral", "quant", "shard", "tensor", "vision", "audio",
    "robust", "sparse", "dense", "kernel", "fleet",
];

pub async fn run(args: BenchSearchArgs) -> anyhow::Result<()> {
    if args.dir.exists() {
        bail!("--dir {} exists; give a path the bench may create and delete", args.dir.display());
    }
    std::fs::create_dir_all(&args.dir)?;
    let r = bench(&args).await;
    let _ = std::fs::remove_dir_all(&args.dir);
    r
}

fn value(v: pb::value::Kind) -> pb::Value {
    pb::Value { kind: Some(v) }
}

/// Object `i`: category c0..c99, score 0..9999, a title of three words.
fn item(i: u64) -> pb::PutManyItem {
    let title = format!(
        "{} {} {}",
        WORDS[(i % 16) as usize],
        WORDS[((i / 16) % 16) as usize],
        WORDS[((i / 256) % 16) as usize]
    );
    let attributes = [
        ("category".to_string(), value(pb::value::Kind::String(format!("c{}", i % 100)))),
        ("score".to_string(), value(pb::value::Kind::Number((i * 7919 % 10_000) as f64))),
        ("title".to_string(), value(pb::value::Kind::String(title))),
    ];
    pb::PutManyItem {
        header: Some(pb::PutHeader {
            key: format!("obj/{i:08}"),
            attributes: attributes.into_iter().collect(),
            ..Default::default()
        }),
        data: Bytes::from(i.to_le_bytes().to_vec()),
    }
}

fn condition(field: &str, op: &str, values: Vec<pb::Value>) -> pb::Filter {
    pb::Filter {
        kind: Some(pb::filter::Kind::Condition(pb::Condition { field: field.into(), op: op.into(), values })),
    }
}

async fn bench(args: &BenchSearchArgs) -> anyhow::Result<()> {
    let mut server = Child::start(&args.dir.join("server")).await?;
    let mut c = client::connect(&server.url).await?;
    let started = Instant::now();
    let mut i = 0;
    while i < args.objects {
        let items: Vec<pb::PutManyItem> = (i..(i + 1000).min(args.objects)).map(item).collect();
        let n = items.len() as u64;
        put_many(&mut c, items).await?;
        i += n;
    }
    let load = started.elapsed();
    println!(
        "loaded {} objects with 3 attributes in {:.1} s: {:.0} objects/s (no indexes)",
        args.objects,
        load.as_secs_f64(),
        args.objects as f64 / load.as_secs_f64()
    );
    let text = |s: &str| value(pb::value::Kind::String(s.into()));
    let queries = [
        ("equality  category = \"c42\"", condition("category", "eq", vec![text("c42")])),
        ("range     score >= 9990", condition("score", "gte", vec![value(pb::value::Kind::Number(9990.0))])),
        ("prefix    key prefix \"obj/0000123\"", condition("key", "prefix", vec![text("obj/0000123")])),
        ("full text title match \"llama kernel\"", condition("title", "match", vec![text("llama kernel")])),
    ];
    for (name, filter) in queries {
        let mut times = Vec::new();
        let mut found = 0;
        let mut scanned = 0;
        for _ in 0..args.runs {
            let t = Instant::now();
            let r = c
                .search(pb::SearchRequest { filter: Some(filter.clone()), limit: 100, ..Default::default() })
                .await
                .map_err(client::status)?
                .into_inner();
            times.push(t.elapsed());
            found = r.objects.len();
            scanned = r.scanned;
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "search {name:<40} p50 {:>9.2} ms  p99 {:>9.2} ms  ({found} found, {scanned} scanned; plan: scan)",
            ms(at(0.5)),
            ms(at(0.99))
        );
    }
    server.stop().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
