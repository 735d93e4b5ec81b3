//! `strata bench`: measures this machine (raw write+fsync, SHA-256) and a
//! real strata server started as a child process on loopback, then prints
//! the figures side by side with their ratios and targets.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncBufReadExt;

use super::client::{self, CHUNK};
use crate::api::pb;
use crate::config::parse_size;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Size of the large object put and read back.
    #[arg(long, default_value = "4GiB", value_parser = parse_size)]
    size: u64,
    /// How long the 4 KiB put test and the serial fsync loop run, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients for the 4 KiB puts.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Concurrent clients for the 4 KiB random gets.
    #[arg(long, default_value_t = 16)]
    readers: usize,
    /// Objects the random gets choose from (written first, in batches).
    #[arg(long, default_value_t = 10_000)]
    get_objects: usize,
    /// Scratch directory (on the disk to measure); removed afterwards.
    #[arg(long, default_value = "./strata-bench")]
    dir: PathBuf,
}

struct Figures {
    raw_write: f64,
    serial_fsync: f64,
    sha256: f64,
    tcp: f64,
    put: f64,
    get: f64,
    small_puts: f64,
    batched_puts: f64,
    small_gets: f64,
    peak_rss: u64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let f = in_scratch_dir(&args.dir, bench(&args)).await?;
    report(&args, &f);
    Ok(())
}

/// Runs `work` in a new directory `dir` it may fill, and removes it after.
pub(super) async fn in_scratch_dir<T>(dir: &Path, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    if dir.exists() {
        bail!("--dir {} exists; give a path the bench may create and delete", dir.display());
    }
    std::fs::create_dir_all(dir)?;
    let r = work.await;
    let _ = std::fs::remove_dir_all(dir);
    r
}

async fn bench(args: &BenchArgs) -> anyhow::Result<Figures> {
    let raw_dir = args.dir.join("raw");
    std::fs::create_dir_all(&raw_dir)?;
    // The fsync loop goes first: deleting a multi-GB file (with `discard`
    // mounts) would slow the small fsyncs that follow it for a while.
    eprintln!("measuring single-core SHA-256 ...");
    let sha256 = sha256_rate();
    eprintln!("measuring loopback TCP ...");
    let tcp = loopback_tcp(1 << 31).await?;
    eprintln!("measuring a serial 4 KiB write+fsync loop ...");
    let serial_fsync = serial_fsync(&raw_dir, Duration::from_secs(args.seconds))?;
    eprintln!("measuring raw write+fsync bandwidth ...");
    // The same size as the put, so both meet the same page-cache limits.
    let raw_write = raw_write(&raw_dir.join("big"), args.size)?;
    std::fs::remove_dir_all(&raw_dir)?;

    let mut server = Child::start(&args.dir.join("server")).await?;
    let mut c = client::connect(&server.url).await?;
    eprintln!("putting a {} object ...", bytesize::ByteSize(args.size));
    let put = large_put(&mut c, args.size).await?;
    eprintln!("getting it back ...");
    let get = large_get(&mut c, args.size).await?;
    let peak_rss = server.peak_rss()?;
    eprintln!("4 KiB puts from {} clients ...", args.concurrency);
    let small_puts = small_puts(&server.url, args.concurrency, Duration::from_secs(args.seconds)).await?;
    eprintln!("4 KiB puts in PutMany batches ...");
    let batched_puts = batched_puts(&server.url, Duration::from_secs(args.seconds)).await?;
    eprintln!("4 KiB random gets of {} objects from {} clients ...", args.get_objects, args.readers);
    let small_gets = small_gets(&server.url, args.get_objects, args.readers, Duration::from_secs(args.seconds)).await?;
    server.stop().await;
    Ok(Figures { raw_write, serial_fsync, sha256, tcp, put, get, small_puts, batched_puts, small_gets, peak_rss })
}

fn report(args: &BenchArgs, f: &Figures) {
    let mb = |b: f64| b / 1e6;
    let size = bytesize::ByteSize(args.size);
    println!("strata bench ({size} object, {} clients for 4 KiB puts)", args.concurrency);
    println!("machine  raw write+fsync            {:>9.1} MB/s", mb(f.raw_write));
    println!("machine  serial 4 KiB write+fsync   {:>9.0} ops/s", f.serial_fsync);
    println!("machine  SHA-256, one core          {:>9.1} MB/s", mb(f.sha256));
    println!("machine  loopback TCP, one stream   {:>9.1} MB/s", mb(f.tcp));
    let line = |name: &str, v: String, ratio: f64, target: f64, of: &str| {
        let verdict = if ratio >= target { "ok" } else { "BELOW TARGET" };
        println!("strata   {name:<28} {v}  = {ratio:.2} x {of} (target >= {target}) {verdict}");
    };
    let absolute = |name: &str, v: f64, target: f64| {
        let verdict = if v >= target { "ok" } else { "BELOW TARGET" };
        println!("strata   {name:<28} {v:>9.0} ops/s  (target >= {target}) {verdict}");
    };
    line("large put", format!("{:>9.1} MB/s", mb(f.put)), f.put / f.raw_write, 0.9, "raw write+fsync");
    let (floor, of) = if f.sha256 <= f.tcp { (f.sha256, "SHA-256") } else { (f.tcp, "loopback TCP") };
    line("large get (verified)", format!("{:>9.1} MB/s", mb(f.get)), f.get / floor, 0.8, of);
    line("4 KiB puts, sync_writes", format!("{:>9.0} ops/s", f.small_puts), f.small_puts / f.serial_fsync, 3.0, "serial loop");
    absolute("4 KiB puts, sync_writes", f.small_puts, 10_000.0);
    line("4 KiB puts, PutMany x256", format!("{:>9.0} ops/s", f.batched_puts), f.batched_puts / f.serial_fsync, 3.0, "serial loop");
    absolute(&format!("4 KiB random gets, {} clients", args.readers), f.small_gets, 20_000.0);
    let rss_mib = f.peak_rss as f64 / (1 << 20) as f64;
    println!(
        "strata   server peak RSS              {rss_mib:>9.1} MiB (target <= 100 MiB) {}",
        if rss_mib <= 100.0 { "ok" } else { "ABOVE TARGET" }
    );
}

/// Writes `size` bytes in 1 MiB writes, then fsyncs; bytes per second.
pub(super) fn raw_write(path: &Path, size: u64) -> anyhow::Result<f64> {
    let buf = random_chunk();
    let start = Instant::now();
    let mut f = std::fs::File::create(path)?;
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    let rate = size as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(rate)
}

/// Creates a file, writes 4 KiB, fsyncs; repeated for `time`. Ops per second.
fn serial_fsync(dir: &Path, time: Duration) -> anyhow::Result<f64> {
    let buf = vec![7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time {
        let mut f = std::fs::File::create(dir.join(format!("f{n}")))?;
        f.write_all(&buf)?;
        f.sync_all()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn sha256_rate() -> f64 {
    let buf = random_chunk();
    let total = 1u64 << 30;
    let start = Instant::now();
    let mut h = Sha256::new();
    for _ in 0..(total / buf.len() as u64) {
        h.update(&buf);
    }
    std::hint::black_box(h.finalize());
    total as f64 / start.elapsed().as_secs_f64()
}

/// Sends `total` bytes over one loopback TCP connection in 1 MiB writes,
/// read into a reused buffer on the other side; bytes per second.
pub(super) async fn loopback_tcp(total: u64) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            match s.read(&mut buf).await? {
                0 => return Ok::<_, std::io::Error>(got),
                n => got += n as u64,
            }
        }
    });
    let buf = random_chunk();
    let start = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let got = reader.await??;
    anyhow::ensure!(got == total, "loopback TCP carried {got} of {total} bytes");
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn random_chunk() -> Vec<u8> {
    let mut buf = vec![0u8; CHUNK];
    rand::fill(&mut buf[..]);
    buf
}

pub(super) async fn large_put(c: &mut client::Client, size: u64) -> anyhow::Result<f64> {
    let chunk = Bytes::from(random_chunk());
    // A fresh first chunk, so the blob is new even if the bench ran before.
    let first = Bytes::from(random_chunk());
    let header = pb::PutHeader { key: "bench/large".into(), size: Some(size), ..Default::default() };
    let mut left = size;
    let head = pb::PutRequest { part: Some(pb::put_request::Part::Header(header)) };
    let mut i = 0u64;
    let body = std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK as u64) as usize;
        left -= n as u64;
        let src = if i == 0 { &first } else { &chunk };
        i += 1;
        Some(pb::PutRequest { part: Some(pb::put_request::Part::Chunk(src.slice(..n))) })
    });
    let stream = futures::stream::iter(std::iter::once(head).chain(body));
    let start = Instant::now();
    c.put(stream).await.map_err(client::status)?;
    Ok(size as f64 / start.elapsed().as_secs_f64())
}

pub(super) async fn large_get(c: &mut client::Client, size: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut s = c.get(pb::GetRequest { key: "bench/large".into(), ..Default::default() }).await.map_err(client::status)?.into_inner();
    let mut got = 0u64;
    while let Some(m) = s.message().await.map_err(client::status)? {
        if let Some(pb::get_response::Part::Chunk(b)) = m.part {
            got += b.len() as u64;
        }
    }
    if got != size {
        bail!("read back {got} bytes of {size}");
    }
    Ok(size as f64 / start.elapsed().as_secs_f64())
}

pub(super) async fn small_puts(url: &str, concurrency: usize, time: Duration) -> anyhow::Result<f64> {
    let conns = connect_many(url, concurrency).await?;
    clients(conns, time, 1, |mut c, w, i| async move {
        let mut data = vec![0u8; 4096];
        rand::fill(&mut data[..]);
        let header = pb::PutHeader { key: format!("bench/small/{w}/{i}"), ..Default::default() };
        let msgs = vec![
            pb::PutRequest { part: Some(pb::put_request::Part::Header(header)) },
            pb::PutRequest { part: Some(pb::put_request::Part::Chunk(Bytes::from(data))) },
        ];
        c.put(futures::stream::iter(msgs)).await.map_err(client::status)?;
        Ok(c)
    })
    .await
}

/// 4 KiB objects in batches of 256 per PutMany call, from 4 clients.
async fn batched_puts(url: &str, time: Duration) -> anyhow::Result<f64> {
    clients(connect_many(url, 4).await?, time, 256, |mut c, w, i| async move {
        put_many(&mut c, small_batch(&format!("bench/batch/{w}/{i}"), 256)).await?;
        Ok(c)
    })
    .await
}

/// `n` fresh 4 KiB objects named `prefix/0`.. for one PutMany call.
fn small_batch(prefix: &str, n: usize) -> Vec<pb::PutManyItem> {
    (0..n)
        .map(|j| {
            let mut data = vec![0u8; 4096];
            rand::fill(&mut data[..]);
            pb::PutManyItem { header: Some(pb::PutHeader { key: format!("{prefix}/{j}"), ..Default::default() }), data: Bytes::from(data) }
        })
        .collect()
}

/// Writes `objects` 4 KiB objects, then reads keys chosen at random among
/// them from `readers` clients; gets per second.
async fn small_gets(url: &str, objects: usize, readers: usize, time: Duration) -> anyhow::Result<f64> {
    let mut c = client::connect(url).await?;
    for first in (0..objects).step_by(1000) {
        let n = (objects - first).min(1000);
        let mut items = small_batch("bench/get", n);
        for (j, item) in items.iter_mut().enumerate() {
            item.header.as_mut().expect("set").key = format!("bench/get/{}", first + j);
        }
        put_many(&mut c, items).await?;
    }
    clients(connect_many(url, readers).await?, time, 1, move |mut c, _, _| async move {
        let key = format!("bench/get/{}", rand::random_range(0..objects));
        let mut s = c.get(pb::GetRequest { key, ..Default::default() }).await.map_err(client::status)?.into_inner();
        let mut got = 0;
        while let Some(m) = s.message().await.map_err(client::status)? {
            if let Some(pb::get_response::Part::Chunk(b)) = m.part {
                got += b.len();
            }
        }
        anyhow::ensure!(got == 4096, "a 4 KiB get returned {got} bytes");
        Ok(c)
    })
    .await
}

pub(super) async fn connect_many(url: &str, n: usize) -> anyhow::Result<Vec<client::Client>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(client::connect(url).await?);
    }
    Ok(conns)
}

/// Runs one task per connection in `conns`, each calling `op(conn, worker,
/// i)` for i = 0, 1, .. until `time` is up; each call counts `per_op`
/// operations. Returns operations per second; any failure fails the run.
pub(super) async fn clients<C, F, Fut>(conns: Vec<C>, time: Duration, per_op: u64, op: F) -> anyhow::Result<f64>
where
    C: Send + 'static,
    F: Fn(C, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<C>> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(w, mut c)| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while start.elapsed() < time {
                    c = op(c, w, i).await?;
                    done.fetch_add(per_op, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(std::sync::atomic::Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// One PutMany batch; any item's failure fails the bench.
pub(super) async fn put_many(c: &mut client::Client, items: Vec<pb::PutManyItem>) -> anyhow::Result<()> {
    let res = c.put_many(futures::stream::iter(vec![pb::PutManyRequest { items }])).await.map_err(client::status)?.into_inner();
    if let Some(bad) = res.results.iter().find(|r| !r.error.is_empty()) {
        bail!("a batched put failed: {}", bad.error);
    }
    Ok(())
}

/// A `strata serve` child on an ephemeral loopback port.
pub(super) struct Child {
    proc: tokio::process::Child,
    pub(super) url: String,
}

impl Child {
    pub(super) async fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, &[]).await
    }

    /// Starts a server with more `STRATA_*` settings in its environment.
    pub(super) async fn start_with(dir: &Path, env: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::spawn(dir, env, None).await
    }

    /// Starts a server with a config file (what the environment cannot
    /// say: arrays of tables).
    pub(super) async fn start_config(dir: &Path, config: &Path) -> anyhow::Result<Self> {
        Self::spawn(dir, &[], Some(config)).await
    }

    async fn spawn(dir: &Path, env: &[(&str, String)], config: Option<&Path>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("serve");
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut proc = cmd
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("STRATA_SERVER__LISTEN", "127.0.0.1:0")
            .env("STRATA_STORAGE__BASE_PATH", dir)
            .env("STRATA_STORAGE__SYNC_WRITES", "true")
            .env("STRATA_STORAGE__SCRUB_INTERVAL", "0s")
            .env("STRATA_STORAGE__GC_INTERVAL", "0s")
            .env("STRATA_LOG", std::env::var("STRATA_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting strata serve")?;
        let out = proc.stdout.take().expect("piped");
        let mut lines = tokio::io::BufReader::new(out).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(l) = lines.next_line().await? {
                if let Some(a) = l.strip_prefix("strata listening on ") {
                    return Ok(a.to_string());
                }
            }
            Err(anyhow!("the server exited before listening"))
        })
        .await
        .map_err(|_| anyhow!("the server did not start within 60 s"))??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { proc, url: format!("http://{addr}") })
    }

    pub(super) fn peak_rss(&self) -> anyhow::Result<u64> {
        self.status_bytes("VmHWM:")
    }

    /// Reads the server's memory now, from another task.
    pub(super) fn rss_probe(&self) -> impl Fn() -> Option<u64> + Send + 'static {
        let pid = self.proc.id();
        move || status_bytes(pid?, "VmRSS:").ok()
    }

    fn status_bytes(&self, field: &str) -> anyhow::Result<u64> {
        status_bytes(self.proc.id().ok_or_else(|| anyhow!("server exited"))?, field)
    }

    pub(super) async fn stop(&mut self) {
        let _ = self.proc.start_kill();
        let _ = self.proc.wait().await;
    }
}

/// A memory figure of process `pid` (`VmRSS:`, `VmHWM:`), in bytes.
fn status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}
