//! `strata bench-search`: loads real servers with objects carrying three
//! attributes, with 0, 1 and 3 eager indexes, then times a backfill and
//! searches by equality, range, prefix and full text, each with its index
//! and by scan.

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
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    objects: u64,
    /// Times each query runs with its index.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Times each query runs by scan (a scan of a million objects takes
    /// about a second); 0 skips the scans.
    #[arg(long, default_value_t = 5)]
    scan_runs: u64,
    /// Load only the server with three indexes (at 10 million objects the
    /// other two would take an hour more).
    #[arg(long)]
    indexed_only: bool,
    /// Scratch directory; removed afterwards unless --keep.
    #[arg(long, default_value = "./strata-bench-search")]
    dir: PathBuf,
    /// Keep the loaded data (with --reuse, a later run skips the loading).
    #[arg(long)]
    keep: bool,
    /// Time the searches on the data a --keep run left, without loading.
    #[arg(long)]
    reuse: bool,
}

/// An index to make: name, field, type.
type IndexSpec<'a> = (&'a str, &'a str, &'a str);

/// The data directory of the server loaded with three indexes.
const LOADED: &str = "3-eager-indexes";

/// Distinct title words.
const VOCABULARY: u64 = 512;

pub async fn run(args: BenchSearchArgs) -> anyhow::Result<()> {
    if args.dir.exists() && !args.reuse {
        bail!("--dir {} exists; give a path the bench may create and delete", args.dir.display());
    }
    if args.reuse && !args.dir.join(LOADED).exists() {
        bail!("--reuse: {} holds no data a --keep run left", args.dir.display());
    }
    std::fs::create_dir_all(&args.dir)?;
    let r = bench(&args).await;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&args.dir);
    }
    r
}

fn value(v: pb::value::Kind) -> pb::Value {
    pb::Value { kind: Some(v) }
}

fn mix(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Object `i`: category c0..c9999 (100 objects each per million), score
/// 0..99999 (10 each per million), a title of three words from 512.
fn item(i: u64) -> pb::PutManyItem {
    let word = |n: u64| format!("w{}", mix(i * 3 + n) % VOCABULARY);
    let title = format!("{} {} {}", word(0), word(1), word(2));
    let attributes = [
        ("category".to_string(), value(pb::value::Kind::String(format!("c{}", i % 10_000)))),
        ("score".to_string(), value(pb::value::Kind::Number((i * 7919 % 100_000) as f64))),
        ("title".to_string(), value(pb::value::Kind::String(title))),
    ];
    pb::PutManyItem {
        header: Some(pb::PutHeader { key: format!("obj/{i:08}"), attributes: attributes.into_iter().collect(), ..Default::default() }),
        data: Bytes::from(i.to_le_bytes().to_vec()),
    }
}

fn condition(field: &str, op: &str, values: Vec<pb::Value>) -> pb::Filter {
    pb::Filter { kind: Some(pb::filter::Kind::Condition(pb::Condition { field: field.into(), op: op.into(), values })) }
}

async fn create_index(c: &mut client::Client, name: &str, field: &str, kind: &str) -> anyhow::Result<pb::IndexInfo> {
    let req = pb::CreateIndexRequest { name: name.into(), fields: vec![field.into()], r#type: kind.into(), ..Default::default() };
    Ok(c.create_index(req).await.map_err(client::status)?.into_inner())
}

/// How a load went: the whole rate, and the rates of its first and last
/// tenths (how ingest slows as the store grows).
struct Ingest {
    rate: f64,
    first_tenth: f64,
    last_tenth: f64,
}

/// Loads `n` objects into a fresh server with these indexes; returns the
/// server (still running) and the objects per second.
async fn load(dir: &std::path::Path, n: u64, indexes: &[IndexSpec<'_>]) -> anyhow::Result<(Child, Ingest)> {
    let server = Child::start(dir).await?;
    let mut c = client::connect(&server.url).await?;
    for (name, field, kind) in indexes {
        create_index(&mut c, name, field, kind).await?;
    }
    let started = Instant::now();
    let tenth = (n / 10).max(1);
    let mut tenths = Vec::new();
    let mut tenth_started = Instant::now();
    let mut i = 0;
    while i < n {
        let items: Vec<pb::PutManyItem> = (i..(i + 1000).min(n)).map(item).collect();
        let k = items.len() as u64;
        put_many(&mut c, items).await?;
        i += k;
        if i % tenth == 0 || i == n {
            let rate = (i - tenths.len() as u64 * tenth).min(tenth) as f64 / tenth_started.elapsed().as_secs_f64();
            tenths.push(rate);
            eprintln!("  loaded {i} of {n}: {rate:.0} objects/s over the last {tenth}");
            tenth_started = Instant::now();
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    Ok((server, Ingest { rate, first_tenth: tenths[0], last_tenth: *tenths.last().expect("one tenth at least") }))
}

/// Pages of `limit` keys listed from random places in the key space: p50
/// and p99 of the client's time.
async fn time_list(c: &mut client::Client, n: u64, limit: u32, runs: u64) -> anyhow::Result<(Duration, Duration)> {
    let mut times = Vec::new();
    for _ in 0..runs {
        // Keys are obj/00000000..; a random 4-digit prefix of the space.
        let prefix = format!("obj/{:04}", rand::random_range(0..(n / 10_000).max(1)));
        let req = pb::ListRequest { prefix, limit, ..Default::default() };
        let t = Instant::now();
        let r = c.list(req).await.map_err(client::status)?.into_inner();
        times.push(t.elapsed());
        anyhow::ensure!(!r.objects.is_empty(), "a listed page came back empty");
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

struct Timing {
    /// The server's own time (took_ms), median.
    server_p50: f64,
    p50: Duration,
    p99: Duration,
    found: usize,
    scanned: u64,
    plan: String,
}

async fn time_search(c: &mut client::Client, filter: &pb::Filter, runs: u64, no_index: bool) -> anyhow::Result<Timing> {
    let mut times = Vec::new();
    let mut server = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let req = pb::SearchRequest { filter: Some(filter.clone()), limit: 100, no_index, ..Default::default() };
        let t = Instant::now();
        let r = c.search(req).await.map_err(client::status)?.into_inner();
        times.push(t.elapsed());
        server.push(r.took_ms);
        last = Some(r);
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let r = last.expect("runs >= 1");
    server.sort_by(f64::total_cmp);
    Ok(Timing {
        server_p50: server[server.len() / 2],
        p50: at(0.5),
        p99: at(0.99),
        found: r.objects.len(),
        scanned: r.scanned,
        plan: r.plan,
    })
}

async fn bench(args: &BenchSearchArgs) -> anyhow::Result<()> {
    let n = args.objects;
    let three = [("category", "category", "btree"), ("score", "score", "btree"), ("title", "title", "fulltext")];
    let mut rates = Vec::new();
    let configs: &[(&str, &[IndexSpec])] = if args.reuse || args.indexed_only {
        &[("3 eager indexes", &three[..])]
    } else {
        &[("no indexes", &three[..0]), ("1 eager index", &three[..1]), ("3 eager indexes", &three[..])]
    };
    for (label, indexes) in configs {
        let dir = args.dir.join(label.replace(' ', "-"));
        let mut server = if args.reuse {
            Child::start(&dir).await?
        } else {
            let (server, ingest) = load(&dir, n, indexes).await?;
            println!(
                "ingest {n} objects, 3 attributes each, {label:<16} {:>8.0} objects/s (first tenth {:.0}, last {:.0}: {:.2} x; target >= 0.7)",
                ingest.rate,
                ingest.first_tenth,
                ingest.last_tenth,
                ingest.last_tenth / ingest.first_tenth
            );
            rates.push(ingest.rate);
            server
        };
        if indexes.len() < three.len() {
            server.stop().await;
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        }
        if rates.len() == 3 {
            println!(
                "ingest with 3 eager indexes / without: {:.2} (target >= 0.5); with 1: {:.2}",
                rates[2] / rates[0],
                rates[1] / rates[0]
            );
        }
        let mut c = client::connect(&server.url).await?;
        for limit in [100, 1000] {
            let (p50, p99) = time_list(&mut c, n, limit, args.runs).await?;
            println!(
                "list a page of {limit:>4} keys from a random place    p50 {:>7.2} ms p99 {:>7.2} ms (target p99 <= 5 ms)",
                ms(p50),
                ms(p99)
            );
        }
        if args.reuse {
            let _ = c.drop_index(pb::DropIndexRequest { name: "key".into(), ..Default::default() }).await;
        }

        // A backfill: index the key of every object already stored.
        let started = Instant::now();
        let mut info = create_index(&mut c, "key", "key", "btree").await?;
        while info.state == "building" {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let all = c.list_indexes(pb::ListIndexesRequest::default()).await.map_err(client::status)?.into_inner();
            info = all.indexes.into_iter().find(|i| i.name == "key").ok_or_else(|| anyhow::anyhow!("index gone"))?;
        }
        if info.state != "ready" {
            bail!("the backfill failed: {}", info.error);
        }
        let took = started.elapsed().as_secs_f64();
        println!("backfill a btree index on key over {n} objects: {took:.1} s ({:.0} objects/s)", n as f64 / took);

        let text = |s: &str| value(pb::value::Kind::String(s.into()));
        // The two most common words' pair would be unfair; these are typical.
        let queries = [
            ("equality  category = \"c4242\"", condition("category", "eq", vec![text("c4242")])),
            ("range     score >= 99900", condition("score", "gte", vec![value(pb::value::Kind::Number(99_900.0))])),
            ("prefix    category prefix \"c424\"", condition("category", "prefix", vec![text("c424")])),
            ("full text title match \"w7 w300\"", condition("title", "match", vec![text("w7 w300")])),
        ];
        // The targets: p99 <= 5 ms at a million objects, 10 ms at ten.
        let target = if n >= 10_000_000 { 10 } else { 5 };
        for (name, filter) in &queries {
            let ix = time_search(&mut c, filter, args.runs, false).await?;
            if args.scan_runs == 0 {
                println!(
                    "search {name:<36} indexed p50 {:>7.2} ms p99 {:>7.2} ms (server {:.2} ms; target p99 <= {target} ms) | no scan | ({} found, {} read indexed)",
                    ms(ix.p50),
                    ms(ix.p99),
                    ix.server_p50,
                    ix.found,
                    ix.scanned,
                );
                println!("  plan: {}", ix.plan);
                continue;
            }
            let scan = time_search(&mut c, filter, args.scan_runs, true).await?;
            if ix.found != scan.found {
                bail!("{name}: the index found {} objects, the scan {}", ix.found, scan.found);
            }
            println!(
                "search {name:<36} indexed p50 {:>7.2} ms p99 {:>7.2} ms (server {:.2} ms) | scan p50 {:>8.1} ms p99 {:>8.1} ms | {:>6.0}x  ({} found, {} read indexed, {} scanned)",
                ms(ix.p50),
                ms(ix.p99),
                ix.server_p50,
                ms(scan.p50),
                ms(scan.p99),
                ms(scan.p50) / ms(ix.p50),
                ix.found,
                ix.scanned,
                scan.scanned,
            );
            println!("  plan: {}", ix.plan);
        }
        // The same searches while a second client searches without pause.
        let busy = {
            let mut other = client::connect(&server.url).await?;
            let filters: Vec<pb::Filter> = queries.iter().map(|(_, f)| f.clone()).collect();
            tokio::spawn(async move {
                for f in filters.iter().cycle() {
                    let req = pb::SearchRequest { filter: Some(f.clone()), limit: 100, ..Default::default() };
                    if other.search(req).await.is_err() {
                        return;
                    }
                }
            })
        };
        for (name, filter) in &queries {
            let ix = time_search(&mut c, filter, args.runs, false).await?;
            println!(
                "search {name:<36} indexed p50 {:>7.2} ms p99 {:>7.2} ms (server {:.2} ms; target p99 <= {target} ms) with a second client searching",
                ms(ix.p50),
                ms(ix.p99),
                ix.server_p50,
            );
        }
        busy.abort();
        server.stop().await;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
