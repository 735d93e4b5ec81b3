//! The client subcommands.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Status;
use tonic::transport::Channel;

use super::output;
use super::{BucketCmd, ClusterCmd, Cmd, IndexCmd, PluginCmd};
use crate::api::pb::{self, strata_client::StrataClient};

/// Upload chunk size: the store's frame size, well under the message limit.
pub const CHUNK: usize = 1 << 20;
/// Client-side message limit (the server has its own).
const MAX_MESSAGE: usize = 64 << 20;

pub type Client = StrataClient<Channel>;

pub async fn connect(addr: &str) -> anyhow::Result<Client> {
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string())
        .map_err(|_| anyhow!("--addr {addr:?} is not a URL like http://127.0.0.1:7400"))?
        .tcp_nodelay(true)
        .initial_stream_window_size(crate::server::WINDOW)
        .initial_connection_window_size(2 * crate::server::WINDOW)
        .max_frame_size(crate::server::MAX_FRAME)
        .connect()
        .await
        .map_err(|e| anyhow!("cannot reach a strata server at {addr} ({e}); is `strata serve` running?"))?;
    Ok(StrataClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE))
}

/// One line: what the server said and its status code.
pub fn status(e: Status) -> anyhow::Error {
    let msg = e.message().replace('\n', " ");
    anyhow!("{msg} ({:?})", e.code())
}

fn bucket(b: Option<String>) -> String {
    b.unwrap_or_default()
}

fn progress(len: Option<u64>) -> ProgressBar {
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

/// Parses `name=value`: numbers, booleans and JSON arrays keep their type.
fn attribute(s: &str) -> anyhow::Result<(String, pb::Value)> {
    let (k, v) = s.split_once('=').ok_or_else(|| anyhow!("-m {s:?}: write attributes as name=value"))?;
    let json = match serde_json::from_str::<serde_json::Value>(v) {
        Ok(j @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_) | serde_json::Value::Array(_))) => j,
        Ok(serde_json::Value::String(s)) => serde_json::Value::String(s),
        _ => serde_json::Value::String(v.to_string()),
    };
    if let serde_json::Value::Array(items) = &json
        && items.iter().any(|i| i.is_null() || i.is_object())
    {
        bail!("-m {s:?}: arrays may hold strings, numbers, booleans and arrays only");
    }
    Ok((k.to_string(), crate::api::validate::from_json(&json)))
}

pub async fn run(addr: &str, cmd: Cmd) -> anyhow::Result<()> {
    let mut c = connect(addr).await?;
    match cmd {
        Cmd::Put { key, file, bucket: b, meta, content_type, if_absent, if_version, request_id } => {
            let attributes = meta.iter().map(|m| attribute(m)).collect::<anyhow::Result<_>>()?;
            let header = pb::PutHeader {
                bucket: bucket(b),
                key,
                content_type: content_type.unwrap_or_default(),
                attributes,
                size: None,
                expected_digest: String::new(),
                if_absent,
                if_version: if_version.unwrap_or_default(),
                request_id: request_id.unwrap_or_default(),
            };
            let info = match file.filter(|f| f.as_os_str() != "-") {
                Some(path) => put_file(&mut c, header, &path).await?,
                None => put_reader(&mut c, header, tokio::io::stdin(), None).await?,
            };
            println!("{} {} {} bytes version {}", info.key, info.digest, info.size, info.version);
        }
        Cmd::PutMany { files, bucket: b, prefix } => {
            let mut items = Vec::new();
            for f in &files {
                let data = tokio::fs::read(f).await.with_context(|| format!("cannot read {}", f.display()))?;
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                items.push(pb::PutManyItem {
                    header: Some(pb::PutHeader { bucket: bucket(b.clone()), key: format!("{prefix}{name}"), ..Default::default() }),
                    data: Bytes::from(data),
                });
            }
            let res = c.put_many(futures::stream::iter(vec![pb::PutManyRequest { items }])).await.map_err(status)?.into_inner();
            let mut failed = 0;
            for r in res.results {
                if r.error.is_empty() {
                    println!("{} ok", r.key);
                } else {
                    failed += 1;
                    eprintln!("{} failed: {}", r.key, r.error);
                }
            }
            if failed > 0 {
                bail!("{failed} of {} puts failed", files.len());
            }
        }
        Cmd::Get { key, output, bucket: b, version, range } => {
            let (offset, length) = parse_range(range.as_deref())?;
            let req = pb::GetRequest { bucket: bucket(b), key, version: version.unwrap_or_default(), offset, length };
            match output.filter(|o| o.as_os_str() != "-") {
                Some(path) => get_to_file(&mut c, req, &path).await?,
                None => {
                    let mut out = tokio::io::stdout();
                    get_into(&mut c, req, &mut out).await?;
                    out.flush().await?;
                }
            }
        }
        Cmd::Rm { keys, bucket: b, version } => {
            if version.is_some() && keys.len() > 1 {
                bail!("--version names one version of one key; give a single key");
            }
            if keys.len() == 1 {
                let r = c
                    .delete(pb::DeleteRequest { bucket: bucket(b), key: keys[0].clone(), version: version.unwrap_or_default() })
                    .await
                    .map_err(status)?
                    .into_inner();
                if r.marker_version.is_empty() {
                    println!("{} deleted", keys[0]);
                } else {
                    println!("{} deleted (delete marker {})", keys[0], r.marker_version);
                }
            } else {
                let n = keys.len();
                let r = c.delete_many(pb::DeleteManyRequest { bucket: bucket(b), keys }).await.map_err(status)?.into_inner();
                let mut failed = 0;
                for item in r.results {
                    if item.error.is_empty() {
                        println!("{} deleted", item.key);
                    } else {
                        failed += 1;
                        eprintln!("{}: {}", item.key, item.error);
                    }
                }
                if failed > 0 {
                    bail!("{failed} of {n} deletes failed");
                }
            }
        }
        Cmd::Ls { prefix, bucket: b, limit, json } => {
            let mut token = String::new();
            let mut all = Vec::new();
            loop {
                let page = c
                    .list(pb::ListRequest { bucket: bucket(b.clone()), prefix: prefix.clone(), page_token: token, limit: 1000 })
                    .await
                    .map_err(status)?
                    .into_inner();
                all.extend(page.objects);
                token = page.next_page_token;
                if token.is_empty() || (limit > 0 && all.len() as u64 >= limit) {
                    break;
                }
            }
            if limit > 0 {
                all.truncate(limit as usize);
            }
            output::objects(&all, json);
        }
        Cmd::Stat { key, bucket: b, version, json } => {
            let info = c
                .stat(pb::StatRequest { bucket: bucket(b), key, version: version.unwrap_or_default() })
                .await
                .map_err(status)?
                .into_inner();
            output::object(&info, json);
        }
        Cmd::Restore { key, version, bucket: b, json } => {
            let info = c.restore(pb::RestoreRequest { bucket: bucket(b), key, version }).await.map_err(status)?.into_inner();
            output::object(&info, json);
        }
        Cmd::Versions { key, bucket: b, json } => {
            let v = c.list_versions(pb::ListVersionsRequest { bucket: bucket(b), key }).await.map_err(status)?.into_inner();
            output::versions(&v.versions, json);
        }
        Cmd::Bucket { cmd } => match cmd {
            BucketCmd::Create { name, policy } => {
                let policy = (!policy.is_empty()).then(|| policy_pb(policy)).transpose()?;
                c.create_bucket(pb::CreateBucketRequest { name: name.clone(), policy }).await.map_err(status)?;
                println!("bucket {name} created");
            }
            BucketCmd::Ls { json } => {
                let r = c.list_buckets(pb::ListBucketsRequest {}).await.map_err(status)?.into_inner();
                output::buckets(&r.buckets, json);
            }
            BucketCmd::Rm { name } => {
                c.delete_bucket(pb::DeleteBucketRequest { name: name.clone() }).await.map_err(status)?;
                println!("bucket {name} deleted");
            }
        },
        Cmd::Stats { json } => {
            let s = c.stats(pb::StatsRequest {}).await.map_err(status)?.into_inner();
            output::stats(&s, json);
        }
        Cmd::Plugin { cmd } => match cmd {
            PluginCmd::Ls { json } => {
                let r = c.list_plugins(pb::ListPluginsRequest {}).await.map_err(status)?.into_inner();
                output::plugins(&r.plugins, json);
            }
            PluginCmd::Place { key, bucket, selector, strategy, replicas, nodes, coordinator, params, json } => {
                let nodes = nodes.iter().map(|n| parse_node(n)).collect::<anyhow::Result<Vec<_>>>()?;
                let params = params
                    .iter()
                    .map(|p| {
                        p.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .ok_or_else(|| anyhow::anyhow!("--param {p:?}: write name=value"))
                    })
                    .collect::<anyhow::Result<_>>()?;
                let req = pb::PlaceRequest {
                    selector: selector.clone(),
                    strategy: strategy.clone().unwrap_or_default(),
                    bucket: bucket.clone().unwrap_or_default(),
                    key: key.clone(),
                    nodes,
                    replicas,
                    params,
                    coordinator: coordinator.clone().unwrap_or_default(),
                    ..Default::default()
                };
                let r = c.place(req).await.map_err(status)?.into_inner();
                output::placement(&r, json);
            }
        },
        Cmd::Search { query, bucket, sort, limit, cursor, explain, no_index, json } => {
            let filter = match query.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
                None => None,
                Some(q) => match crate::search::parse(q) {
                    Ok(expr) => Some(filter_of(&expr)),
                    Err(e) => {
                        eprintln!("{}", e.pointer(q));
                        bail!("bad query {e}");
                    }
                },
            };
            let (sort, descending) = match sort.as_deref() {
                Some(s) => s.strip_prefix('-').map_or((s.to_string(), false), |f| (f.to_string(), true)),
                None => (String::new(), false),
            };
            let req = pb::SearchRequest {
                bucket: bucket.clone().unwrap_or_default(),
                filter,
                sort,
                descending,
                limit,
                cursor: cursor.clone().unwrap_or_default(),
                no_index,
            };
            let r = c.search(req).await.map_err(status)?.into_inner();
            output::search(&r, explain, json);
        }
        Cmd::Cluster { cmd } => match cmd {
            ClusterCmd::Init => {
                let v = c.cluster_init(pb::ClusterInitRequest {}).await.map_err(status)?.into_inner();
                output::cluster(&v, false);
            }
            ClusterCmd::Join { node } => {
                let v = c.cluster_join(pb::ClusterJoinRequest { address: node }).await.map_err(status)?.into_inner();
                output::cluster(&v, false);
            }
            ClusterCmd::Status { json } => {
                let v = c.cluster_status(pb::ClusterStatusRequest {}).await.map_err(status)?.into_inner();
                output::cluster(&v, json);
            }
            ClusterCmd::Leave => {
                let v = c.cluster_leave(pb::ClusterLeaveRequest {}).await.map_err(status)?.into_inner();
                println!("node {} left the cluster", v.node_id);
            }
            ClusterCmd::Remove { id } => {
                let v = c.cluster_remove(pb::ClusterRemoveRequest { node_id: id }).await.map_err(status)?.into_inner();
                println!("removed node {id}");
                output::cluster(&v, false);
            }
            ClusterCmd::Repair { dry_run } | ClusterCmd::Rebalance { dry_run } => {
                let r = c.cluster_repair(pb::ClusterRepairRequest { dry_run }).await.map_err(status)?.into_inner();
                let verb = if dry_run { "would copy" } else { "queued" };
                println!(
                    "checked {} versions led by this node: {verb} {} copies ({} bytes), {} {} surplus copies",
                    r.checked,
                    r.copies,
                    r.copy_bytes,
                    if dry_run { "would drop" } else { "dropped" },
                    r.dropped
                );
            }
            ClusterCmd::Replication { bucket, policy } => {
                let p = if policy.is_empty() {
                    c.get_replication(pb::GetReplicationRequest { bucket }).await.map_err(status)?.into_inner()
                } else {
                    let req = pb::SetReplicationRequest { bucket, policy: Some(policy_pb(policy)?) };
                    c.set_replication(req).await.map_err(status)?.into_inner()
                };
                let consistency = if p.consistency.is_empty() { "the server's default" } else { &p.consistency };
                println!(
                    "strategy {}, selector {}, {} replicas (at least {}), consistency {consistency}",
                    p.strategy, p.selector, p.replicas, p.min_replicas
                );
            }
        },
        Cmd::Lock { cmd } => super::lock::run(&mut c, cmd).await?,
        Cmd::Index { cmd } => match cmd {
            IndexCmd::Create { name, fields, kind, bucket, wait } => {
                let req = pb::CreateIndexRequest { bucket: bucket.clone().unwrap_or_default(), name, fields, r#type: kind };
                let mut info = c.create_index(req).await.map_err(status)?.into_inner();
                while wait && info.state == "building" {
                    if std::io::stderr().is_terminal() {
                        eprint!("\rbackfilling {}: {:5.1}%", info.name, info.progress * 100.0);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    let all = c.list_indexes(pb::ListIndexesRequest { bucket: info.bucket.clone() }).await.map_err(status)?.into_inner();
                    info = all
                        .indexes
                        .into_iter()
                        .find(|i| i.name == info.name)
                        .ok_or_else(|| anyhow!("index {} was dropped while it was built", info.name))?;
                }
                if wait && std::io::stderr().is_terminal() {
                    eprintln!();
                }
                if info.state == "failing" {
                    bail!("index {} is failing: {}", info.name, info.error);
                }
                output::indexes(std::slice::from_ref(&info), false);
            }
            IndexCmd::Ls { bucket, json } => {
                let r = c.list_indexes(pb::ListIndexesRequest { bucket: bucket.unwrap_or_default() }).await.map_err(status)?.into_inner();
                output::indexes(&r.indexes, json);
            }
            IndexCmd::Rm { name, bucket } => {
                c.drop_index(pb::DropIndexRequest { bucket: bucket.unwrap_or_default(), name }).await.map_err(status)?;
            }
        },
        Cmd::Health => {
            let channel = tonic::transport::Endpoint::from_shared(addr.to_string())?.connect().await?;
            let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
            let r = h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.map_err(status)?.into_inner();
            let serving = r.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
            println!("{}", if serving { "SERVING" } else { "NOT_SERVING" });
            if !serving {
                bail!("the server is not serving");
            }
        }
        Cmd::Serve { .. }
        | Cmd::Fsck { .. }
        | Cmd::Bench(_)
        | Cmd::BenchPlugins(_)
        | Cmd::BenchSearch(_)
        | Cmd::BenchCluster(_)
        | Cmd::BenchReplication(_) => bail!("serve, fsck and bench are not client commands"),
    }
    Ok(())
}

fn parse_range(r: Option<&str>) -> anyhow::Result<(u64, u64)> {
    let Some(r) = r else { return Ok((0, 0)) };
    let bad = || anyhow!("--range {r:?}: write START-END (inclusive) or START-, in bytes");
    let (a, b) = r.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.parse().map_err(|_| bad())?;
    if b.is_empty() {
        return Ok((start, 0));
    }
    let end: u64 = b.parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((start, end - start + 1))
}

pub async fn put_file(c: &mut Client, mut header: pb::PutHeader, path: &Path) -> anyhow::Result<pb::ObjectInfo> {
    let f = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let len = f.metadata().await?.len();
    header.size = Some(len);
    put_reader(c, header, f, Some(len)).await
}

/// Streams a reader as a put; the progress bar shows when stderr is a terminal.
pub async fn put_reader<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    c: &mut Client,
    header: pb::PutHeader,
    mut r: R,
    len: Option<u64>,
) -> anyhow::Result<pb::ObjectInfo> {
    let pb_bar = progress(len);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::PutRequest { part: Some(pb::put_request::Part::Header(header)) }).await.expect("receiver alive");
    let bar = pb_bar.clone();
    let reader = tokio::spawn(async move {
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
                return Ok::<_, std::io::Error>(());
            }
            buf.truncate(filled);
            bar.inc(filled as u64);
            if tx.send(pb::PutRequest { part: Some(pb::put_request::Part::Chunk(Bytes::from(buf))) }).await.is_err() {
                return Ok(());
            }
            if filled < CHUNK {
                return Ok(());
            }
        }
    });
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
async fn get_to_file(c: &mut Client, req: pb::GetRequest, path: &Path) -> anyhow::Result<()> {
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

/// `id=n1,region=eu,zone=a,capacity=1TiB,available=600GiB,load=0.2`.
fn parse_node(spec: &str) -> anyhow::Result<pb::Node> {
    let mut node = pb::Node::default();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| anyhow::anyhow!("--node {spec:?}: {part:?} is not key=value"))?;
        let size = |v: &str| crate::config::parse_size(v).map_err(|e| anyhow::anyhow!("--node {spec:?}: {k}: {e}"));
        match k {
            "id" => node.id = v.into(),
            "address" => node.address = v.into(),
            "region" => node.region = v.into(),
            "zone" => node.zone = v.into(),
            "capacity" => node.capacity_total = size(v)?,
            "available" => node.capacity_available = size(v)?,
            "load" => node.load = v.parse().map_err(|_| anyhow::anyhow!("--node {spec:?}: load {v:?} is not a number"))?,
            "health" => node.health = v.into(),
            other => {
                anyhow::bail!("--node {spec:?}: unknown key {other:?}; use id, address, region, zone, capacity, available, load, health")
            }
        }
    }
    if node.id.is_empty() {
        anyhow::bail!("--node {spec:?}: give an id, e.g. id=n1");
    }
    if !spec.split(',').any(|p| p.starts_with("available=")) {
        node.capacity_available = node.capacity_total;
    }
    Ok(node)
}

/// The structured filter the API takes, from a parsed query.
fn filter_of(e: &crate::search::Expr) -> pb::Filter {
    use crate::search::{Expr, Literal};
    let kind = match e {
        Expr::And(parts) => pb::filter::Kind::All(pb::FilterList { filters: parts.iter().map(filter_of).collect() }),
        Expr::Or(parts) => pb::filter::Kind::Any(pb::FilterList { filters: parts.iter().map(filter_of).collect() }),
        Expr::Cond(c) => pb::filter::Kind::Condition(pb::Condition {
            field: c.field.to_string(),
            op: format!("{:?}", c.op).to_lowercase(),
            values: c
                .operands
                .iter()
                .map(|l| pb::Value {
                    kind: Some(match l {
                        Literal::Text(t) => pb::value::Kind::String(t.clone()),
                        Literal::Number(n) => pb::value::Kind::Number(*n),
                        Literal::Bool(b) => pb::value::Kind::Boolean(*b),
                    }),
                })
                .collect(),
        }),
    };
    pb::Filter { kind: Some(kind) }
}

fn policy_pb(p: super::PolicyArgs) -> anyhow::Result<pb::ReplicationPolicy> {
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
