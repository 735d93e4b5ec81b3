//! The client subcommands: connects and hands each command to its group
//! under `cmd/`; the connection and transfer helpers the groups share.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Status;
use tonic::transport::Channel;

use super::Cmd;
use super::cmd::{bucket, cluster, index, lock, objects, plugin, search, server, tier};
use crate::api::pb::{self, strata_client::StrataClient};

/// Upload chunk size: the store's frame size, well under the message limit.
pub const CHUNK: usize = 1 << 20;
/// Client-side message limit (the server has its own).
const MAX_MESSAGE: usize = 64 << 20;

pub type Client = StrataClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// For callers that hold the token themselves.
    pub fn new(token: Option<&str>) -> anyhow::Result<Bearer> {
        match token {
            None => Ok(Bearer(None)),
            Some(t) => Ok(Bearer(Some(format!("Bearer {t}").parse().map_err(|_| anyhow!("the token is not a valid header value"))?))),
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

static TOKEN: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

/// Sets the token the next connections carry (`--token` or `STRATA_TOKEN`).
pub fn set_token(token: Option<String>) {
    *TOKEN.write().unwrap_or_else(|p| p.into_inner()) = token;
}

fn bearer() -> anyhow::Result<Bearer> {
    let token = TOKEN.read().unwrap_or_else(|p| p.into_inner()).clone().filter(|t| !t.trim().is_empty());
    Bearer::new(token.as_deref().map(str::trim)).map_err(|_| anyhow!("the token (--token or STRATA_TOKEN) is not a valid header value"))
}

/// Set when the CLI connected without TLS, for the hint in [`status`].
static PLAINTEXT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

static CA_CERT: std::sync::RwLock<Option<PathBuf>> = std::sync::RwLock::new(None);

/// Sets the CA the next https connections trust (`--ca-cert` or `STRATA_CA_CERT`).
pub fn set_ca_cert(path: Option<PathBuf>) {
    *CA_CERT.write().unwrap_or_else(|p| p.into_inner()) = path;
}

/// The endpoint for `addr`: over TLS, trusting `--ca-cert`, for https.
pub fn endpoint(addr: &str) -> anyhow::Result<tonic::transport::Endpoint> {
    let ep = tonic::transport::Endpoint::from_shared(addr.to_string())
        .map_err(|_| anyhow!("--addr {addr:?} is not a URL like http://127.0.0.1:7400"))?;
    let ca = CA_CERT.read().unwrap_or_else(|p| p.into_inner()).clone();
    match (ep.uri().scheme_str(), ca) {
        (Some("https"), Some(ca)) => {
            let pem = std::fs::read(&ca).with_context(|| format!("--ca-cert: cannot read {}", ca.display()))?;
            use rustls::pki_types::pem::PemObject as _;
            if !rustls::pki_types::CertificateDer::pem_slice_iter(&pem).any(|c| c.is_ok()) {
                bail!("--ca-cert {}: the file holds no PEM certificate", ca.display());
            }
            let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
            ep.tls_config(tls).map_err(|e| anyhow!("--ca-cert {}: {e}", ca.display()))
        }
        (Some("https"), None) => {
            bail!("--addr {addr} is https: give the CA that signed the server's certificate with --ca-cert (or STRATA_CA_CERT)")
        }
        (_, Some(_)) => bail!("--ca-cert is for TLS: use an https:// --addr"),
        _ => {
            PLAINTEXT.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(ep)
        }
    }
}

pub async fn connect(addr: &str) -> anyhow::Result<Client> {
    let channel = endpoint(addr)?
        .tcp_nodelay(true)
        .initial_stream_window_size(crate::server::WINDOW)
        .initial_connection_window_size(2 * crate::server::WINDOW)
        .max_frame_size(crate::server::MAX_FRAME)
        .connect()
        .await
        .map_err(|e| {
            let why = chain(&e);
            if why.contains("certificate") || why.contains("alert") {
                anyhow!("cannot connect to {addr} over TLS: {why}")
            } else {
                anyhow!("cannot reach a strata server at {addr} ({why}); is `strata serve` running?")
            }
        })?;
    Ok(StrataClient::with_interceptor(channel, bearer()?).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE))
}

/// An error with its causes, on one line ("transport error: invalid peer
/// certificate: UnknownIssuer").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::cluster::network::with_causes(e.to_string(), e.source())
}

/// One line: what the server said and its status code.
pub fn status(e: Status) -> anyhow::Error {
    let mut msg = e.message().replace('\n', " ");
    // A plaintext client on a TLS port sees only a broken or cancelled
    // HTTP/2 stream.
    let broken = matches!(e.code(), tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Internal)
        && ["h2 protocol error", "transport error", "operation was canceled"].iter().any(|m| msg.contains(m));
    if broken && PLAINTEXT.load(std::sync::atomic::Ordering::Relaxed) {
        msg.push_str(" (the connection broke: if the server has [tls], use an https:// --addr and --ca-cert)");
    }
    anyhow!("{msg} ({:?})", e.code())
}

/// After printing a cluster answer that may lack what `missing` (nodes)
/// hold: a warning, and a failure unless the caller accepts it.
pub fn partial(missing: &[String], allow: bool) -> anyhow::Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let who = missing.join(", ");
    if allow {
        eprintln!("warning: partial answer: {who} could not be asked and may hold keys it lacks");
        return Ok(());
    }
    bail!("partial answer: {who} could not be asked and may hold keys it lacks; bring them back, or pass --allow-partial to accept it")
}

pub fn progress(len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}") {
        pb.set_style(style);
    }
    pb
}

/// Connects, then runs the command with its group's file under `cmd/`.
pub async fn run(addr: &str, cmd: Cmd, allow_partial: bool) -> anyhow::Result<()> {
    let mut c = connect(addr).await?;
    let c = &mut c;
    match cmd {
        Cmd::Put { key, file, bucket, meta, content_type, if_absent, if_version, request_id } => {
            objects::put(c, objects::PutArgs { key, file, bucket, meta, content_type, if_absent, if_version, request_id }).await
        }
        Cmd::PutMany { files, bucket, prefix } => objects::put_many(c, files, bucket, prefix).await,
        Cmd::Get { key, output, bucket, version, range } => objects::get(c, key, output, bucket, version, range).await,
        Cmd::Rm { keys, bucket, version } => objects::rm(c, keys, bucket, version).await,
        Cmd::Ls { prefix, bucket, limit, json } => objects::ls(c, prefix, bucket, limit, json, allow_partial).await,
        Cmd::Stat { key, bucket, version, json } => objects::stat(c, key, bucket, version, json).await,
        Cmd::Restore { key, version, bucket, json } => objects::restore(c, key, version, bucket, json).await,
        Cmd::Versions { key, bucket, json } => objects::versions(c, key, bucket, json, allow_partial).await,
        Cmd::Search { query, bucket, sort, limit, cursor, explain, no_index, json } => {
            search::run(c, search::SearchArgs { query, bucket, sort, limit, cursor, explain, no_index, json }, allow_partial).await
        }
        Cmd::Bucket { cmd } => bucket::run(c, cmd, allow_partial).await,
        Cmd::Cluster { cmd } => cluster::run(c, cmd).await,
        Cmd::Index { cmd } => index::run(c, cmd).await,
        Cmd::Plugin { cmd } => plugin::run(c, cmd).await,
        Cmd::Lock { cmd } => lock::run(c, cmd).await,
        Cmd::Stats { json } => server::stats(c, json).await,
        Cmd::Health { json } => server::health(c, json).await,
        Cmd::Reload { json } => server::reload(c, json).await,
        Cmd::Tier { cmd } => tier::run(c, cmd).await,
        Cmd::Models { cmd } => super::cmd::models::run(c, cmd).await,
        Cmd::Serve { .. }
        | Cmd::Token { .. }
        | Cmd::Cert { .. }
        | Cmd::S3 { .. }
        | Cmd::BenchS3(_)
        | Cmd::Fsck { .. }
        | Cmd::Backup { .. }
        | Cmd::Bench(_)
        | Cmd::BenchPlugins(_)
        | Cmd::BenchSearch(_)
        | Cmd::BenchCluster(_)
        | Cmd::BenchNamespace(_)
        | Cmd::BenchReplication(_)
        | Cmd::BenchRemote(_)
        | Cmd::BenchRegistry(_)
        | Cmd::BenchAuth(_) => bail!("serve, fsck and bench are not client commands"),
    }
}

pub async fn put_file(c: &mut Client, mut header: pb::PutHeader, path: &Path) -> anyhow::Result<pb::ObjectInfo> {
    let f = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let len = f.metadata().await?.len();
    header.size = Some(len);
    put_reader(c, header, f, Some(len)).await
}

/// Reads `r` in [`CHUNK`]s into `tx` as messages `wrap` makes, counting
/// them on `bar`, until the reader ends or the receiver is gone.
pub fn pump<R, M>(
    mut r: R,
    tx: tokio::sync::mpsc::Sender<M>,
    bar: ProgressBar,
    wrap: fn(Bytes) -> M,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    M: Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                let n = r.read(&mut buf[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                return Ok(());
            }
            buf.truncate(filled);
            bar.inc(filled as u64);
            if tx.send(wrap(Bytes::from(buf))).await.is_err() || filled < CHUNK {
                return Ok(());
            }
        }
    })
}

/// Streams a reader as a put; the progress bar shows when stderr is a terminal.
pub async fn put_reader<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    c: &mut Client,
    header: pb::PutHeader,
    r: R,
    len: Option<u64>,
) -> anyhow::Result<pb::ObjectInfo> {
    let pb_bar = progress(len);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::PutRequest { part: Some(pb::put_request::Part::Header(header)) }).await.expect("receiver alive");
    let reader = pump(r, tx, pb_bar.clone(), |b| pb::PutRequest { part: Some(pb::put_request::Part::Chunk(b)) });
    let res = c.put(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    reader.await??;
    pb_bar.finish_and_clear();
    let res = res.map_err(status)?.into_inner();
    res.object.ok_or_else(|| anyhow!("the server sent no object info"))
}

/// Streams an object into `out`; returns its info.
pub async fn get_into<W: tokio::io::AsyncWrite + Unpin>(
    c: &mut Client,
    req: pb::GetRequest,
    out: &mut W,
) -> anyhow::Result<pb::ObjectInfo> {
    let mut s = c.get(req).await.map_err(status)?.into_inner();
    let info = match s.message().await.map_err(status)? {
        Some(pb::GetResponse { part: Some(pb::get_response::Part::Info(i)) }) => i,
        _ => bail!("the server's reply did not start with the object's metadata"),
    };
    let bar = progress(Some(info.size));
    while let Some(msg) = s.message().await.map_err(status)? {
        if let Some(pb::get_response::Part::Chunk(c)) = msg.part {
            bar.inc(c.len() as u64);
            out.write_all(&c).await?;
        }
    }
    bar.finish_and_clear();
    Ok(info)
}

/// Downloads into a temp file beside `path` and renames it on success, so a
/// failed get leaves no partial file.
pub async fn get_to_file(c: &mut Client, req: pb::GetRequest, path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| anyhow!("-o {}: not a file name", path.display()))?;
    let tmp: PathBuf = dir.join(format!(".{}.strata-partial-{:08x}", name.to_string_lossy(), rand::random::<u32>()));
    let mut f = tokio::fs::File::create(&tmp).await.with_context(|| format!("cannot write into {}", dir.display()))?;
    let r = get_into(c, req, &mut f).await;
    let r = match r {
        Ok(_) => f.flush().await.map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    drop(f);
    match r {
        Ok(()) => {
            tokio::fs::rename(&tmp, path).await.with_context(|| format!("cannot create {}", path.display()))?;
            Ok(())
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

pub fn policy_pb(p: super::PolicyArgs) -> anyhow::Result<pb::ReplicationPolicy> {
    let mut params = std::collections::HashMap::new();
    for kv in p.params {
        let Some((k, v)) = kv.split_once('=') else { bail!("--param {kv:?}: write it as name=value") };
        params.insert(k.to_string(), v.to_string());
    }
    Ok(pb::ReplicationPolicy {
        strategy: p.strategy.unwrap_or_default(),
        selector: p.selector.unwrap_or_default(),
        replicas: p.replicas.unwrap_or(0),
        min_replicas: p.min_replicas.unwrap_or(0),
        params,
        consistency: p.consistency.unwrap_or_default(),
    })
}
