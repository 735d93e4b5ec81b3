//! `strata models import|export`: an Ollama models directory
//! (`manifests/<host>/<namespace>/<model>/<tag>`, `blobs/sha256-<hex>`)
//! in and out of the registry's repositories. Manifests travel byte-exact;
//! blobs are checked against their digests both ways (by the server on
//! import, here on export), so what Ollama reads is what it wrote.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::models::{attributes, model_ref};
use crate::api::pb;
use crate::cli::client::{CHUNK, Client, progress, pump, status};

/// Where `ollama pull` puts models it fetched by a bare name.
const DEFAULT_HOST: &str = "registry.ollama.ai";

/// Larger manifests are refused here (the server's own limit,
/// `registry.max_manifest_size`, is 4 MiB unless raised).
const MAX_MANIFEST: u64 = 16 << 20;

/// One manifest of the tree.
struct Local {
    path: PathBuf,
    host: String,
    /// `<namespace>/<model>` as on disk (Ollama keeps case).
    name: String,
    /// The repository: the name in lowercase, as OCI names are.
    repository: String,
    tag: String,
    bytes: Vec<u8>,
    /// Config and layers: digest and size.
    blobs: Vec<(String, u64)>,
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs").join(digest.replace(':', "-"))
}

/// Every regular file under `dir`, as its path components below it.
fn files(dir: &Path, below: &[String], out: &mut Vec<Vec<String>>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let mut path = below.to_vec();
        path.push(name);
        // Followed through symbolic links, as Ollama would read them.
        let kind = std::fs::metadata(e.path()).with_context(|| format!("cannot read {}", e.path().display()))?;
        if kind.is_dir() {
            files(&e.path(), &path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// A model a command names: `[host/]namespace/model:tag` (the host only
/// narrows an import).
struct Want {
    host: Option<String>,
    repository: String,
    tag: String,
}

fn wants(names: &[String]) -> anyhow::Result<Vec<Want>> {
    let mut out = Vec::new();
    for n in names {
        let (repository, tag) = model_ref(n)?;
        let first = n.split('/').next().unwrap_or_default();
        let host = (n.split('/').count() > 2 && (first.contains(['.', ':']) || first == "localhost")).then(|| first.to_string());
        out.push(Want { host, repository: repository.to_lowercase(), tag });
    }
    Ok(out)
}

fn wanted(filter: &[Want], host: Option<&str>, repository: &str, tag: &str) -> bool {
    filter.is_empty()
        || filter.iter().any(|w| w.repository == repository && w.tag == tag && (w.host.is_none() || w.host.as_deref() == host))
}

/// Reads and checks one manifest (and that its blobs are there, whole).
fn local(dir: &Path, path: PathBuf, host: &str, name: String, tag: &str) -> anyhow::Result<Local> {
    let repository = name.to_lowercase();
    crate::registry::names::repository(&repository).map_err(|e| anyhow!("{e}"))?;
    crate::registry::names::tag(tag).map_err(|e| anyhow!("{e}"))?;
    let len = std::fs::metadata(&path)?.len();
    if len > MAX_MANIFEST {
        bail!("the manifest is {len} bytes: manifests over {} MiB are not taken", MAX_MANIFEST >> 20);
    }
    let bytes = std::fs::read(&path)?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| anyhow!("not a manifest (not JSON: {e})"))?;
    if doc.get("manifests").is_some() {
        bail!("an image index, not a model manifest: import models (image manifests) only");
    }
    let descriptor = |what: &str, v: &Value| -> anyhow::Result<(String, u64)> {
        let d = v.get("digest").and_then(Value::as_str).ok_or_else(|| anyhow!("its {what} has no digest"))?;
        crate::registry::names::digest(d).map_err(|e| anyhow!("{e}"))?;
        let n = v.get("size").and_then(Value::as_u64).ok_or_else(|| anyhow!("{d}: size must be a whole number of bytes"))?;
        Ok((d.to_string(), n))
    };
    let mut blobs = vec![descriptor("config", doc.get("config").ok_or_else(|| anyhow!("a manifest without a config"))?)?];
    for l in doc.get("layers").and_then(Value::as_array).ok_or_else(|| anyhow!("a manifest without layers"))? {
        blobs.push(descriptor("layer", l)?);
    }
    for (d, n) in &blobs {
        let p = blob_path(dir, d);
        match std::fs::metadata(&p) {
            Ok(m) if !m.is_file() => bail!("its blob {} is not a file", p.display()),
            Ok(m) if m.len() == *n => {}
            Ok(m) => bail!("{} holds {} bytes, the manifest says {n}", p.display(), m.len()),
            Err(e) => bail!("cannot read its blob {}: {e}", p.display()),
        }
    }
    Ok(Local { path, host: host.to_string(), name, repository, tag: tag.to_string(), bytes, blobs })
}

/// A manifest left out: its path and why.
type Failed = (String, String);

/// Reads the tree's manifests; a bad one is reported (path and why) and
/// left out, before anything is sent.
fn scan(dir: &Path, filter: &[Want]) -> anyhow::Result<(Vec<Local>, Vec<Failed>)> {
    let root = dir.join("manifests");
    if !root.is_dir() {
        bail!("{} has no manifests/ directory: give an Ollama models directory (such as ~/.ollama/models)", dir.display());
    }
    let mut found = Vec::new();
    files(&root, &[], &mut found)?;
    found.sort();
    let (mut out, mut bad, mut matched) = (Vec::<Local>::new(), Vec::new(), Vec::new());
    for parts in found {
        let path = root.join(parts.join("/"));
        let [host, namespace, model, tag] = parts.as_slice() else {
            bad.push((path.display().to_string(), "not at manifests/<host>/<namespace>/<model>/<tag>".to_string()));
            continue;
        };
        let name = format!("{namespace}/{model}");
        if !wanted(filter, Some(host), &name.to_lowercase(), tag) {
            continue;
        }
        matched.push((name.to_lowercase(), tag.clone()));
        match local(dir, path.clone(), host, name, tag) {
            Ok(l) => out.push(l),
            Err(e) => bad.push((path.display().to_string(), format!("{e:#}"))),
        }
    }
    // Two hosts' (or two spellings') models would be one model here.
    for (i, l) in out.iter().enumerate() {
        if let Some(o) = out[..i].iter().find(|o| o.repository == l.repository && o.tag == l.tag) {
            bail!(
                "{} and {} are both {}:{} here: import one of them by name (such as {}/{}:{})",
                o.path.display(),
                l.path.display(),
                l.repository,
                l.tag,
                l.host,
                l.name,
                l.tag
            );
        }
    }
    if out.is_empty() && bad.is_empty() {
        bail!("no models to import under {}{}", root.display(), if filter.is_empty() { "" } else { " by those names" });
    }
    for w in filter {
        if !matched.iter().any(|(r, t)| *r == w.repository && *t == w.tag) {
            bail!("{}:{} is not in {}", w.repository, w.tag, root.display());
        }
    }
    Ok((out, bad))
}

/// Streams file `path` as blob `digest` of `repository`.
async fn send(c: &mut Client, repository: &str, digest: &str, path: &Path, bar: &indicatif::ProgressBar) -> anyhow::Result<()> {
    let f = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let size = f.metadata().await?.len();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let header =
        pb::ModelBlobHeader { repository: repository.into(), digest: digest.into(), size: Some(size), from_repository: String::new() };
    tx.send(pb::ModelPutBlobRequest { part: Some(pb::model_put_blob_request::Part::Header(header)) }).await.expect("receiver alive");
    let reader = pump(f, tx, bar.clone(), |b| pb::ModelPutBlobRequest { part: Some(pb::model_put_blob_request::Part::Chunk(b)) });
    let res = c.model_put_blob(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    reader.await?.with_context(|| format!("cannot read {}", path.display()))?;
    res.map_err(status).with_context(|| format!("sending {}", path.display()))?;
    Ok(())
}

async fn lacking(c: &mut Client, l: &Local) -> anyhow::Result<Vec<(String, u64)>> {
    let digests: Vec<String> = l.blobs.iter().map(|(d, _)| d.clone()).collect();
    let present = c
        .model_has_blobs(pb::ModelHasBlobsRequest { repository: l.repository.clone(), digests })
        .await
        .map_err(status)?
        .into_inner()
        .present;
    let mut seen = BTreeSet::new();
    Ok(l.blobs.iter().zip(present).filter(|((d, _), p)| !p && seen.insert(d.clone())).map(|(b, _)| b.clone()).collect())
}

pub async fn import(c: &mut Client, dir: &Path, names: &[String], json: bool) -> anyhow::Result<()> {
    let (locals, mut failed) = scan(dir, &wants(names)?)?;
    let manifests = locals.len() + failed.len();
    for (path, why) in &failed {
        eprintln!("error: {path}: {why}");
    }
    // The bytes to send, for the progress bar: each blob the server lacks, once.
    let mut total = 0;
    let mut counted = BTreeSet::new();
    for l in &locals {
        for (d, n) in lacking(c, l).await? {
            if counted.insert(d) {
                total += n;
            }
        }
    }
    let bar = progress(Some(total));
    let mut out = Vec::new();
    for l in &locals {
        match import_one(c, dir, l, &bar).await {
            Ok((m, sent, linked)) => {
                let row = json!({
                    "name": format!("{}:{}", m.repository, m.tag), "digest": m.digest, "blobs": l.blobs.len(),
                    "sent_bytes": sent, "linked": linked, "size": m.size,
                });
                if json {
                    out.push(row);
                } else {
                    let (size, sent) = (bytesize::ByteSize(m.size), bytesize::ByteSize(sent));
                    let line =
                        format!("imported {}:{} ({size}, {} blobs, {sent} sent, {linked} linked)", m.repository, m.tag, l.blobs.len());
                    bar.suspend(|| println!("{line}"));
                }
            }
            Err(e) => {
                bar.suspend(|| eprintln!("error: {}: {e:#}", l.path.display()));
                failed.push((l.path.display().to_string(), format!("{e:#}")));
            }
        }
    }
    bar.finish_and_clear();
    if json {
        out.extend(failed.iter().map(|(p, e)| json!({"path": p, "error": e})));
        println!("{}", Value::Array(out));
    }
    if !failed.is_empty() {
        bail!("{} of {manifests} manifests were not imported (see above)", failed.len());
    }
    Ok(())
}

/// Sends what the server lacks of one model (linking blobs another
/// repository has), then its manifest. Answers the model, the bytes sent
/// and the blobs linked.
async fn import_one(c: &mut Client, dir: &Path, l: &Local, bar: &indicatif::ProgressBar) -> anyhow::Result<(pb::Model, u64, usize)> {
    let (mut sent, mut linked) = (0u64, 0usize);
    for (d, n) in lacking(c, l).await? {
        let header =
            pb::ModelBlobHeader { repository: l.repository.clone(), digest: d.clone(), size: Some(n), from_repository: "*".into() };
        let req = pb::ModelPutBlobRequest { part: Some(pb::model_put_blob_request::Part::Header(header)) };
        match c.model_put_blob(futures::stream::iter([req])).await {
            Ok(_) => linked += 1,
            Err(e) if e.code() == tonic::Code::NotFound => {
                send(c, &l.repository, &d, &blob_path(dir, &d), bar).await?;
                sent += n;
            }
            Err(e) => return Err(status(e)),
        }
    }
    let mut ollama = HashMap::from([("host".to_string(), l.host.clone())]);
    if l.name != l.repository {
        ollama.insert("name".into(), l.name.clone());
    }
    let req = pb::ModelPutManifestRequest {
        repository: l.repository.clone(),
        tag: l.tag.clone(),
        media_type: String::new(),
        manifest: Bytes::from(l.bytes.clone()),
        ollama,
    };
    let m = c.model_put_manifest(req).await.map_err(status)?.into_inner();
    Ok((m, sent, linked))
}

/// Whether file `path` is blob `digest` (`sha256:<hex>`) of `size` bytes.
async fn holds(path: &Path, digest: &str, size: u64) -> bool {
    let Ok(mut f) = tokio::fs::File::open(path).await else { return false };
    if f.metadata().await.map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match f.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    format!("sha256:{}", hex::encode(h.finalize())) == digest
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees half of it.
async fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a path without a directory")?;
    tokio::fs::create_dir_all(dir).await.with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".strata-partial-{:08x}", rand::random::<u32>()));
    let result = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(bytes).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, path).await
    }
    .await
    .with_context(|| format!("cannot write {}", path.display()));
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// Removes what an export killed part-way left in `dir`: temporary files
/// no one has written to for 10 minutes (a running export writes its own
/// all the time).
fn sweep_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let stale = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() > 600);
        if stale && e.file_name().to_string_lossy().contains(".strata-partial-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Downloads blob `digest` of `repository` into `path`, checking it.
async fn fetch(c: &mut Client, repository: &str, digest: &str, path: &Path, bar: &indicatif::ProgressBar) -> anyhow::Result<()> {
    let dir = path.parent().context("a path without a directory")?;
    tokio::fs::create_dir_all(dir).await.with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.strata-partial-{:08x}", digest.replace(':', "-"), rand::random::<u32>()));
    let result = async {
        let mut f = tokio::fs::File::create(&tmp).await.with_context(|| format!("cannot write into {}", dir.display()))?;
        let req = pb::ModelGetBlobRequest { repository: repository.into(), digest: digest.into() };
        let mut s = c.model_get_blob(req).await.map_err(status)?.into_inner();
        let mut h = Sha256::new();
        while let Some(m) = s.message().await.map_err(status)? {
            if let Some(pb::get_response::Part::Chunk(b)) = m.part {
                h.update(&b);
                bar.inc(b.len() as u64);
                f.write_all(&b).await.with_context(|| format!("cannot write {}", tmp.display()))?;
            }
        }
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        if got != digest {
            bail!("blob {digest} of {repository} arrived as {got}: nothing was written");
        }
        f.sync_all().await.with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(f);
        tokio::fs::rename(&tmp, path).await.with_context(|| format!("cannot create {}", path.display()))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// A directory name for `manifests/<host>`: one plain path component.
fn host_dir(host: &str) -> anyhow::Result<&str> {
    if host.is_empty() || host == "." || host == ".." || host.contains(['/', '\\', '\0']) {
        bail!("host {host:?} is not a directory name (such as registry.ollama.ai or 127.0.0.1:5000)");
    }
    Ok(host)
}

pub async fn export(c: &mut Client, dir: &Path, names: &[String], host: Option<&str>, json: bool) -> anyhow::Result<()> {
    let filter = wants(names)?;
    if let Some(h) = host {
        host_dir(h)?;
    }
    let all = c.model_list(pb::ModelListRequest { prefix: String::new() }).await.map_err(status)?.into_inner().models;
    let mut chosen = Vec::new();
    for m in all.into_iter().filter(|m| wanted(&filter, None, &m.repository, &m.tag)) {
        if m.repository.split('/').count() != 2 {
            if !filter.is_empty() {
                bail!("{}:{}: Ollama names a model <namespace>/<model>; this repository has another shape", m.repository, m.tag);
            }
            eprintln!("skipped {}:{}: not an Ollama name (<namespace>/<model>)", m.repository, m.tag);
            continue;
        }
        chosen.push(m);
    }
    for w in &filter {
        if !chosen.iter().any(|m| m.repository == w.repository && m.tag == w.tag) {
            bail!("there is no model {}:{}", w.repository, w.tag);
        }
    }
    sweep_partials(&dir.join("blobs"));
    // Shown first, so the bar knows the bytes to fetch.
    let mut plans = Vec::new();
    let mut failed = Vec::new();
    let mut total = 0;
    let mut planned = BTreeSet::new();
    for m in chosen {
        let name = format!("{}:{}", m.repository, m.tag);
        let req = pb::ModelShowRequest { repository: m.repository.clone(), reference: m.tag.clone() };
        let s = match c.model_show(req).await {
            Ok(s) => s.into_inner(),
            Err(e) => {
                eprintln!("error: {name}: {}", status(e));
                failed.push(name);
                continue;
            }
        };
        if !s.manifests.is_empty() {
            if !filter.is_empty() {
                bail!("{name} is an image index, not a model: Ollama cannot run it");
            }
            eprintln!("skipped {name}: an image index, not a model");
            continue;
        }
        let blobs: Vec<(String, u64)> = s.config.iter().chain(s.layers.iter()).map(|l| (l.digest.clone(), l.size)).collect();
        let mut fetch_list = Vec::new();
        for (d, n) in &blobs {
            crate::registry::names::digest(d).map_err(|e| anyhow!("{name}: {e}"))?;
            if planned.contains(d) || holds(&blob_path(dir, d), d, *n).await {
                continue;
            }
            planned.insert(d.clone());
            total += n;
            fetch_list.push((d.clone(), *n));
        }
        plans.push((m, s.manifest, blobs.len(), fetch_list));
    }
    let bar = progress(Some(total));
    let mut out = Vec::new();
    for (m, manifest, blobs, fetch_list) in plans {
        let name = format!("{}:{}", m.repository, m.tag);
        let result = async {
            let mut fetched = 0;
            for (d, n) in &fetch_list {
                fetch(c, &m.repository, d, &blob_path(dir, d), &bar).await?;
                fetched += n;
            }
            let a = attributes(&m);
            let h = match host {
                Some(h) => h.to_string(),
                None => a.get("ollama.host").and_then(Value::as_str).unwrap_or(DEFAULT_HOST).to_string(),
            };
            // The name as Ollama spelled it, when the import had to lowercase it.
            let on_disk =
                a.get("ollama.name").and_then(Value::as_str).filter(|n| n.to_lowercase() == m.repository).unwrap_or(&m.repository);
            let path = dir.join("manifests").join(host_dir(&h)?).join(on_disk).join(&m.tag);
            write_whole(&path, &manifest).await?;
            anyhow::Ok((path, fetched))
        }
        .await;
        match result {
            Ok((path, fetched)) if json => {
                out.push(json!({"name": name, "digest": m.digest, "path": path, "blobs": blobs, "fetched_bytes": fetched}))
            }
            Ok((path, fetched)) => {
                bar.suspend(|| println!("exported {name} to {} ({} fetched)", path.display(), bytesize::ByteSize(fetched)))
            }
            Err(e) => {
                bar.suspend(|| eprintln!("error: {name}: {e:#}"));
                failed.push(name);
            }
        }
    }
    bar.finish_and_clear();
    if json {
        println!("{}", Value::Array(out));
    }
    if !failed.is_empty() {
        bail!("{} models were not exported: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}
