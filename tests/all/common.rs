//! Starting real `strata serve` processes on ephemeral loopback ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use strata::api::pb::{self, strata_client::StrataClient};
use tempfile::TempDir;
use tonic::transport::Channel;

pub type Client = StrataClient<Channel>;

/// The `strata` binary cargo built for this test run.
pub fn strata_bin() -> &'static Path {
    // Cargo builds the binary for this package's tests and names it here.
    Path::new(env!("CARGO_BIN_EXE_strata"))
}

/// A server in its own temp dir. Killed on drop.
pub struct TestServer {
    pub dir: TempDir,
    pub url: String,
    pub child: Option<Child>,
    pub config: PathBuf,
    /// Extra environment for the server process.
    pub env: Vec<(String, String)>,
    /// The registry's address, once the server printed it.
    pub registry: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// The metrics listener's address, once the server printed it.
    pub metrics: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// The S3 gateway's address, once the server printed it.
    pub s3: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl TestServer {
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts a server with `extra` TOML appended to a test config.
    pub fn start(extra: &str) -> TestServer {
        Self::start_on("127.0.0.1", extra)
    }

    /// Starts a server listening on loopback address `ip`.
    pub fn start_on(ip: &str, extra: &str) -> TestServer {
        Self::start_with_env(ip, extra, Vec::new())
    }

    /// Starts a server with extra environment variables.
    pub fn start_with_env(ip: &str, extra: &str, env: Vec<(String, String)>) -> TestServer {
        let mut s = Self::prepare(ip, extra, env);
        s.boot();
        s
    }

    /// Writes the config and makes the temp dir, without starting the
    /// process (a test can mount something on `data()` first).
    pub fn prepare(ip: &str, extra: &str, env: Vec<(String, String)>) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("strata.toml");
        let base = dir.path().join("data");
        let toml = merge_toml(
            &format!("[server]\nlisten = \"{ip}:0\"\n[storage]\nbase_path = {base:?}\n[wasm]\ncache_dir = {:?}\n", plugin_cache()),
            extra,
        );
        std::fs::write(&config, toml).expect("write config");
        TestServer {
            dir,
            url: String::new(),
            child: None,
            config,
            env,
            registry: Default::default(),
            metrics: Default::default(),
            s3: Default::default(),
        }
    }

    /// (Re)starts the process on the same config and data.
    pub fn boot(&mut self) {
        // A restarted server prints its S3 address again (a new port).
        *self.s3.lock().unwrap() = None;
        let mut child = Command::new(strata_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("STRATA_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn strata serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        let s3 = self.s3.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("strata listening on ") {
                    let _ = tx.send(a.to_string());
                }
                if let Some(a) = line.strip_prefix("strata registry listening on ") {
                    *registry.lock().unwrap() = Some(a.to_string());
                }
                if let Some(a) = line.strip_prefix("strata metrics listening on ") {
                    *metrics.lock().unwrap() = Some(a.to_string());
                }
                if let Some(a) = line.strip_prefix("strata s3 listening on ") {
                    *s3.lock().unwrap() = Some(a.to_string());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("server did not print its address within 60 s");
        self.url = format!("http://{addr}");
        self.child = Some(child);
    }

    /// Where `/metrics`, `/healthz` and `/readyz` listen (`[metrics] listen`).
    pub fn metrics_addr(&self) -> String {
        for _ in 0..200 {
            if let Some(a) = self.metrics.lock().unwrap().clone() {
                return a;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not print its metrics address");
    }

    /// Where the S3 gateway listens (`[s3] listen`).
    pub fn s3_addr(&self) -> String {
        for _ in 0..200 {
            if let Some(a) = self.s3.lock().unwrap().clone() {
                return a;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not print its S3 address");
    }

    /// The address the server listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url.trim_start_matches("http://").parse().expect("listen address")
    }

    /// Keeps the port the server got, so a restart listens on it again
    /// (cluster members are known by address).
    pub fn pin_port(&self) {
        let toml = std::fs::read_to_string(&self.config).expect("config");
        let ip = self.addr().ip();
        let toml = toml.replace(&format!("listen = \"{ip}:0\""), &format!("listen = \"{}\"", self.addr()));
        std::fs::write(&self.config, toml).expect("write config");
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            send_sigterm(c.id());
            let _ = c.wait();
        }
    }

    pub async fn client(&self) -> Client {
        let ch = tonic::transport::Endpoint::from_shared(self.url.clone()).expect("url").connect().await.expect("connect");
        StrataClient::new(ch).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.url, args, None)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends SIGTERM with the `kill` command (no unsafe, no libc in tests).
fn send_sigterm(pid: u32) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

pub fn cli(url: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(strata_bin())
        .arg("--addr")
        .arg(url)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata cli");
    if let Some(data) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(data).expect("write stdin");
    }
    child.wait_with_output().expect("cli output")
}

/// Appends `extra` to `base`, merging tables of the same name. Arrays of
/// tables (`[[plugins]]`) and their sub-tables are kept as written.
fn merge_toml(base: &str, extra: &str) -> String {
    let mut tables: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    let mut current = 0;
    for text in [base, extra] {
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                let in_array = t.starts_with("[[") || t.starts_with("[plugins.");
                match tables.iter().position(|(n, _)| n == t) {
                    Some(i) if !in_array => current = i,
                    _ => {
                        tables.push((t.to_string(), Vec::new()));
                        current = tables.len() - 1;
                    }
                }
            } else if !t.is_empty() {
                tables[current].1.push(t.to_string());
            }
        }
        current = 0;
    }
    let mut out = String::new();
    for (name, lines) in tables {
        if !name.is_empty() {
            out.push_str(&name);
            out.push('\n');
        }
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// Compiled plugins shared by every test server, so each start does not
/// compile the built-ins again.
/// A command a PyPI package provides (`componentize-py`, `moto_server`),
/// installed with pip when missing so the suite runs on a machine that has
/// only Python. Tests installing at once take turns.
pub fn pip_tool(command: &str, requirement: &str) -> PathBuf {
    pip_tool_checked(command, requirement, "--help")
}

/// The same, for a command whose `--help` fails (`aws`): `check` is an
/// argument it answers with success.
pub fn pip_tool_checked(command: &str, requirement: &str, check: &str) -> PathBuf {
    let _turn = PIP.lock().unwrap_or_else(|e| e.into_inner());
    let works = |cmd: &Path| Command::new(cmd).arg(check).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    // On PATH, or where pip puts scripts (the interpreter's, the user's).
    let find = || {
        let script_dirs = Command::new("python3")
            .args([
                "-c",
                "import sysconfig, os; print(sysconfig.get_path('scripts')); print(sysconfig.get_path('scripts', os.name + '_user'))",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(PathBuf::from).collect::<Vec<_>>())
            .unwrap_or_default();
        std::iter::once(PathBuf::from(command)).chain(script_dirs.into_iter().map(|d| d.join(command))).find(|c| works(c))
    };
    if let Some(c) = find() {
        return c;
    }
    pip_install(requirement);
    find().unwrap_or_else(|| panic!("could not install {requirement:?} with pip: install it with `python3 -m pip install '{requirement}'`"))
}

/// Tests installing with pip at once take turns.
static PIP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A Python module (`boto3`), installed with pip when missing.
pub fn pip_module(module: &str, requirement: &str) {
    let _turn = PIP.lock().unwrap_or_else(|e| e.into_inner());
    let works = || Command::new("python3").args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success());
    if !works() {
        pip_install(requirement);
        assert!(works(), "could not install {requirement:?} with pip: install it with `python3 -m pip install '{requirement}'`");
    }
}

fn pip_install(requirement: &str) {
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(extra)
            .arg(requirement)
            .status()
            .is_ok_and(|s| s.success())
    };
    // A distribution's own Python refuses plain installs (PEP 668).
    let _ = pip(&[]) || pip(&["--user", "--break-system-packages"]);
}

/// Replaces `to` with a copy of `from` by a rename, as deploy tools do: a
/// reader never sees half a file.
pub fn replace_file(from: &Path, to: &Path) {
    let tmp = to.with_extension("partial");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// A command a Debian package provides (`skopeo`), installed with apt-get
/// when missing, so `cargo test` runs on a machine that lacks it.
pub fn apt_tool(command: &str, package: &str) -> PathBuf {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = APT.lock().unwrap_or_else(|e| e.into_inner());
    let works = || Command::new(command).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !works() {
        let install =
            || Command::new("apt-get").args(["install", "-y", "-q", package]).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
        if !install() {
            let _ = Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()).status();
            install();
        }
    }
    assert!(works(), "{command} is missing and `apt-get install {package}` did not provide it: install it");
    PathBuf::from(command)
}

pub fn plugin_cache() -> PathBuf {
    strata_bin().parent().expect("target/<profile>").join("test-plugin-cache")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::fill(&mut v[..]);
    v
}

pub fn header(key: &str) -> pb::PutHeader {
    pb::PutHeader { key: key.into(), ..Default::default() }
}

/// Puts `data` in 1 MiB chunks.
pub async fn put(c: &mut Client, h: pb::PutHeader, data: &[u8]) -> Result<pb::ObjectInfo, tonic::Status> {
    let data = Bytes::copy_from_slice(data);
    let mut msgs = vec![pb::PutRequest { part: Some(pb::put_request::Part::Header(h)) }];
    let mut off = 0;
    while off < data.len() {
        let end = (off + (1 << 20)).min(data.len());
        msgs.push(pb::PutRequest { part: Some(pb::put_request::Part::Chunk(data.slice(off..end))) });
        off = end;
    }
    Ok(c.put(futures::stream::iter(msgs)).await?.into_inner().object.expect("object info"))
}

pub async fn put_key(c: &mut Client, key: &str, data: &[u8]) -> pb::ObjectInfo {
    put(c, header(key), data).await.expect("put")
}

/// Gets a whole object (or a range): its info and bytes.
pub async fn get(c: &mut Client, req: pb::GetRequest) -> Result<(pb::ObjectInfo, Vec<u8>), tonic::Status> {
    let mut s = c.get(req).await?.into_inner();
    let mut info = None;
    let mut data = Vec::new();
    while let Some(m) = s.message().await? {
        match m.part {
            Some(pb::get_response::Part::Info(i)) => info = Some(i),
            Some(pb::get_response::Part::Chunk(b)) => data.extend_from_slice(&b),
            None => {}
        }
    }
    Ok((info.expect("info first"), data))
}

pub async fn get_key(c: &mut Client, key: &str) -> Result<Vec<u8>, tonic::Status> {
    get(c, pb::GetRequest { key: key.into(), ..Default::default() }).await.map(|r| r.1)
}

/// Every blob file under a data dir.
pub fn blob_files(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![data.join("blobs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn temp_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("tmp")).map(|r| r.count()).unwrap_or(0)
}

/// Every version of a key in the default bucket, newest first.
pub async fn versions(c: &mut Client, key: &str) -> Vec<pb::ObjectInfo> {
    c.list_versions(pb::ListVersionsRequest { key: key.into(), ..Default::default() }).await.expect("list versions").into_inner().versions
}

pub async fn stats(c: &mut Client) -> pb::StatsResponse {
    c.stats(pb::StatsRequest {}).await.expect("stats").into_inner()
}

/// One PutMany call with `items`; a result per item.
pub async fn put_many(c: &mut Client, items: Vec<pb::PutManyItem>) -> Vec<pb::ItemResult> {
    c.put_many(futures::stream::iter(vec![pb::PutManyRequest { items }])).await.expect("put many").into_inner().results
}

/// Flips one bit of the byte at `at` in a file (damage for tests).
pub fn flip_a_byte(path: &std::path::Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x40]).unwrap();
    f.sync_all().unwrap();
}

/// A tmpfs mounted for one test; lazily unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

pub fn mount_tmpfs(at: &Path, size: &str) -> Option<Tmpfs> {
    std::fs::create_dir_all(at).expect("mount point");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: mounting a tmpfs was refused (the test needs root, as CI has)");
    }
    ok.then(|| Tmpfs(at.to_path_buf()))
}

/// How a raw HTTP/2 put ends.
#[derive(Clone, Copy, Debug)]
pub enum RawEnd {
    /// RST_STREAM with this reason after the data.
    Reset(h2::Reason),
    /// The TCP connection is closed after the data.
    Drop,
    /// END_STREAM after the data: a clean end (the control case).
    Clean,
}

/// Sends a Put over a raw HTTP/2 connection: the header, `data` in 64 KiB
/// chunks, then ends the stream as `end` says. hyper reports
/// a RST_STREAM with NO_ERROR to the server as a clean end of the body, so
/// this is the case a server must catch by itself.
pub async fn raw_put_cut(addr: std::net::SocketAddr, h: pb::PutHeader, data: &[u8], end: RawEnd) {
    use prost::Message as _;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("h2 ready");
    let req = http::Request::post(format!("http://{addr}/strata.v1.Strata/Put"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut send) = client.send_request(req, false).expect("send request");
    let frame = |m: pb::PutRequest| {
        let body = m.encode_to_vec();
        let mut f = Vec::with_capacity(5 + body.len());
        f.push(0);
        f.extend_from_slice(&(body.len() as u32).to_be_bytes());
        f.extend_from_slice(&body);
        Bytes::from(f)
    };
    let mut msgs = vec![frame(pb::PutRequest { part: Some(pb::put_request::Part::Header(h)) })];
    msgs.extend(
        data.chunks(64 << 10).map(|c| frame(pb::PutRequest { part: Some(pb::put_request::Part::Chunk(Bytes::copy_from_slice(c))) })),
    );
    for m in msgs {
        send.reserve_capacity(m.len());
        let _ = send.send_data(m, false);
    }
    // Let the data reach the server before the stream is cut.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    match end {
        RawEnd::Reset(reason) => send.send_reset(reason),
        RawEnd::Clean => {
            let _ = send.send_data(Bytes::new(), true);
            let _ = response.await;
        }
        RawEnd::Drop => {
            drop(send);
            drop(response);
            drop(client);
            conn.abort();
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// How a test cuts off a put whose stream never ends.
#[derive(Clone, Copy, Debug)]
pub enum Cut {
    /// The client gives up: the call is dropped after this long, its
    /// stream reset.
    Drop(Duration),
    /// A deadline the server enforces (grpc-timeout); the answer must say so.
    Deadline(Duration),
}

/// Sends a put whose stream never ends and cuts it off as `how` says.
pub async fn cut_put<S>(c: &Client, stream: S, how: Cut)
where
    S: futures::Stream<Item = pb::PutRequest> + Send + 'static,
{
    match how {
        Cut::Drop(after) => {
            let mut c2 = c.clone();
            let call = tokio::spawn(async move { c2.put(stream).await });
            tokio::time::sleep(after).await;
            call.abort();
            let _ = call.await;
        }
        Cut::Deadline(d) => {
            let mut req = tonic::Request::new(stream);
            req.set_timeout(d);
            let err = c.clone().put(req).await.expect_err("a stream that never ends cannot be stored");
            assert!(matches!(err.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled), "{err:?}");
        }
    }
}
