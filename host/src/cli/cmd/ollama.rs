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
use crate::cli::client::{CHUNK, Client, progress, status};

/// Where `ollama pull` puts models it fetched by a bare name.
const DEFAULT_HOST: &str = "registry.ollama.ai";

/// One manifest of the tree.
struct Local {
    path: PathBuf,
    host: String,
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
        let kind = e.file_type()?;
        if kind.is_dir() {
            files(&e.path(), &path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn wanted(filter: &[(String, String)], repository: &str, tag: &str) -> bool {
    filter.is_empty() || filter.iter().any(|(r, t)| r == repository && t == tag)
}

fn filters(names: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    names.iter().map(|n| model_ref(n)).collect()
}

/// Reads and checks the tree's manifests (and that their blobs are there,
/// whole) before anything is sent.
fn scan(dir: &Path, filter: &[(String, String)]) -> anyhow::Result<Vec<Local>> {
    let root = dir.join("manifests");
    if !root.is_dir() {
        bail!("{} has no manifests/ directory: give an Ollama models directory (such as ~/.ollama/models)", dir.display());
    }
    let mut found = Vec::new();
    files(&root, &[], &mut found)?;
    found.sort();
    let mut out = Vec::new();
    for parts in found {
        let path = root.join(parts.join("/"));
        let [host, namespace, model, tag] = parts.as_slice() else {
            bail!("{}: not at manifests/<host>/<namespace>/<model>/<tag>", path.display());
        };
        let repository = format!("{namespace}/{model}");
        if !wanted(filter, &repository, tag) {
            continue;
        }
        crate::registry::names::repository(&repository).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        crate::registry::names::tag(tag).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| anyhow!("{}: not a manifest (not JSON: {e})", path.display()))?;
        let descriptor = |v: &Value| -> anyhow::Result<(String, u64)> {
            let d = v.get("digest").and_then(Value::as_str).ok_or_else(|| anyhow!("{}: a descriptor has no digest", path.display()))?;
            crate::registry::names::digest(d).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let n = v.get("size").and_then(Value::as_u64).ok_or_else(|| anyhow!("{}: {d} has no size", path.display()))?;
            Ok((d.to_string(), n))
        };
        let mut blobs = Vec::new();
        if let Some(c) = doc.get("config") {
            blobs.push(descriptor(c)?);
        }
        for l in doc.get("layers").and_then(Value::as_array).ok_or_else(|| anyhow!("{}: a manifest without layers", path.display()))? {
            blobs.push(descriptor(l)?);
        }
        for (d, n) in &blobs {
            let p = blob_path(dir, d);
            match std::fs::metadata(&p) {
                Ok(m) if m.len() == *n => {}
                Ok(m) => bail!("{}: {} holds {} bytes, the manifest says {n}", path.display(), p.display(), m.len()),
                Err(e) => bail!("{}: cannot read its blob {}: {e}", path.display(), p.display()),
            }
        }
        out.push(Local { path, host: host.clone(), repository, tag: tag.clone(), bytes, blobs });
    }
    if out.is_empty() {
        bail!("no models to import under {}{}", root.display(), if filter.is_empty() { "" } else { " by those names" });
    }
    for (r, t) in filter {
        if !out.iter().any(|l| &l.repository == r && &l.tag == t) {
            bail!("{r}:{t} is not in {}", root.display());
        }
    }
    Ok(out)
}

/// Streams file `path` as blob `digest` of `repository`.
async fn send(c: &mut Client, repository: &str, digest: &str, path: &Path, bar: &indicatif::ProgressBar) -> anyhow::Result<()> {
    let mut f = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let size = f.metadata().await?.len();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let header =
        pb::ModelBlobHeader { repository: repository.into(), digest: digest.into(), size: Some(size), from_repository: String::new() };
    tx.send(pb::ModelPutBlobRequest { part: Some(pb::model_put_blob_request::Part::Header(header)) }).await.expect("receiver alive");
    let bar = bar.clone();
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                let n = f.read(&mut buf[filled..]).await?;
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
            if tx.send(pb::ModelPutBlobRequest { part: Some(pb::model_put_blob_request::Part::Chunk(Bytes::from(buf))) }).await.is_err() {
                return Ok(());
            }
        }
    });
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
    let locals = scan(dir, &filters(names)?)?;
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
    // A blob sent once in this run is linked into the next repository that
    // needs it (the server copies the link, the bytes stay one blob).
    let mut sent_in: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for l in &locals {
        let (mut sent, mut linked) = (0u64, 0usize);
        for (d, n) in lacking(c, l).await? {
            if let Some(from) = sent_in.get(&d) {
                let header = pb::ModelBlobHeader {
                    repository: l.repository.clone(),
                    digest: d.clone(),
                    size: Some(n),
                    from_repository: from.clone(),
                };
                let req = pb::ModelPutBlobRequest { part: Some(pb::model_put_blob_request::Part::Header(header)) };
                if c.model_put_blob(futures::stream::iter([req])).await.is_ok() {
                    linked += 1;
                    continue;
                }
            }
            send(c, &l.repository, &d, &blob_path(dir, &d), &bar).await?;
            sent += n;
            sent_in.insert(d, l.repository.clone());
        }
        let req = pb::ModelPutManifestRequest {
            repository: l.repository.clone(),
            tag: l.tag.clone(),
            media_type: String::new(),
            manifest: Bytes::from(l.bytes.clone()),
            ollama: [("host".to_string(), l.host.clone())].into(),
        };
        let m = c.model_put_manifest(req).await.map_err(status).with_context(|| format!("importing {}", l.path.display()))?.into_inner();
        if json {
            out.push(json!({
                "name": format!("{}:{}", m.repository, m.tag), "digest": m.digest, "blobs": l.blobs.len(),
                "sent_bytes": sent, "linked": linked, "size": m.size,
            }));
        } else {
            let line = format!(
                "imported {}:{} ({}, {} blobs, {} sent)",
                m.repository,
                m.tag,
                bytesize::ByteSize(m.size),
                l.blobs.len(),
                bytesize::ByteSize(sent)
            );
            bar.suspend(|| println!("{line}"));
        }
    }
    bar.finish_and_clear();
    if json {
        println!("{}", Value::Array(out));
    }
    Ok(())
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
    let mut f = tokio::fs::File::create(&tmp).await.with_context(|| format!("cannot write into {}", dir.display()))?;
    f.write_all(bytes).await?;
    f.sync_all().await?;
    drop(f);
    tokio::fs::rename(&tmp, path).await.with_context(|| format!("cannot create {}", path.display()))
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
                f.write_all(&b).await?;
            }
        }
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        if got != digest {
            bail!("blob {digest} of {repository} arrived as {got}: nothing was written");
        }
        f.sync_all().await?;
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
    let filter = filters(names)?;
    if let Some(h) = host {
        host_dir(h)?;
    }
    let all = c.model_list(pb::ModelListRequest { prefix: String::new() }).await.map_err(status)?.into_inner().models;
    let mut chosen = Vec::new();
    for m in all.into_iter().filter(|m| wanted(&filter, &m.repository, &m.tag)) {
        if m.repository.split('/').count() != 2 {
            if !filter.is_empty() {
                bail!("{}:{}: Ollama names a model <namespace>/<model>; this repository has another shape", m.repository, m.tag);
            }
            eprintln!("skipped {}:{}: not an Ollama name (<namespace>/<model>)", m.repository, m.tag);
            continue;
        }
        chosen.push(m);
    }
    for (r, t) in &filter {
        if !chosen.iter().any(|m| &m.repository == r && &m.tag == t) {
            bail!("there is no model {r}:{t}");
        }
    }
    // Shown first, so the bar knows the bytes to fetch.
    let mut plans = Vec::new();
    let mut total = 0;
    let mut planned = BTreeSet::new();
    for m in chosen {
        let s = c
            .model_show(pb::ModelShowRequest { repository: m.repository.clone(), reference: m.tag.clone() })
            .await
            .map_err(status)?
            .into_inner();
        if !s.manifests.is_empty() {
            eprintln!("skipped {}:{}: an image index, not a model", m.repository, m.tag);
            continue;
        }
        let blobs: Vec<(String, u64)> = s.config.iter().chain(s.layers.iter()).map(|l| (l.digest.clone(), l.size)).collect();
        let mut fetch_list = Vec::new();
        for (d, n) in &blobs {
            crate::registry::names::digest(d).map_err(|e| anyhow!("{}:{}: {e}", m.repository, m.tag))?;
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
        let mut fetched = 0;
        for (d, n) in &fetch_list {
            fetch(c, &m.repository, d, &blob_path(dir, d), &bar).await?;
            fetched += n;
        }
        let h = match host {
            Some(h) => h.to_string(),
            None => attributes(&m).get("ollama.host").and_then(Value::as_str).unwrap_or(DEFAULT_HOST).to_string(),
        };
        let path = dir.join("manifests").join(host_dir(&h)?).join(&m.repository).join(&m.tag);
        write_whole(&path, &manifest).await?;
        if json {
            out.push(json!({"name": format!("{}:{}", m.repository, m.tag), "digest": m.digest, "path": path, "blobs": blobs, "fetched_bytes": fetched}));
        } else {
            bar.suspend(|| println!("exported {}:{} to {} ({} fetched)", m.repository, m.tag, path.display(), bytesize::ByteSize(fetched)));
        }
    }
    bar.finish_and_clear();
    if json {
        println!("{}", Value::Array(out));
    }
    Ok(())
}
