//! The object commands: put, put-many, get, rm, ls, stat, restore, versions.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::api::pb;
use crate::cli::client::{Client, get_into, get_to_file, partial, put_file, put_reader, status};
use crate::cli::output;

fn bucket(b: Option<String>) -> String {
    b.unwrap_or_default()
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

/// The fields of `strata put` (a struct: too many, and too alike, to pass one by one).
pub struct PutArgs {
    pub key: String,
    pub file: Option<PathBuf>,
    pub bucket: Option<String>,
    pub meta: Vec<String>,
    pub content_type: Option<String>,
    pub if_absent: bool,
    pub if_version: Option<String>,
    pub request_id: Option<String>,
}

pub async fn put(c: &mut Client, args: PutArgs) -> anyhow::Result<()> {
    let PutArgs { key, file, bucket: b, meta, content_type, if_absent, if_version, request_id } = args;
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
        Some(path) => put_file(c, header, &path).await?,
        None => put_reader(c, header, tokio::io::stdin(), None).await?,
    };
    println!("{} {} {} bytes version {}", info.key, info.digest, info.size, info.version);
    Ok(())
}

pub async fn put_many(c: &mut Client, files: Vec<PathBuf>, b: Option<String>, prefix: String) -> anyhow::Result<()> {
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
    Ok(())
}

pub async fn get(
    c: &mut Client,
    key: String,
    output: Option<PathBuf>,
    b: Option<String>,
    version: Option<String>,
    range: Option<String>,
) -> anyhow::Result<()> {
    let (offset, length) = parse_range(range.as_deref())?;
    let req = pb::GetRequest { bucket: bucket(b), key, version: version.unwrap_or_default(), offset, length };
    match output.filter(|o| o.as_os_str() != "-") {
        Some(path) => get_to_file(c, req, &path).await?,
        None => {
            let mut out = tokio::io::stdout();
            get_into(c, req, &mut out).await?;
            out.flush().await?;
        }
    }
    Ok(())
}

pub async fn rm(c: &mut Client, keys: Vec<String>, b: Option<String>, version: Option<String>) -> anyhow::Result<()> {
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
    Ok(())
}

pub async fn ls(c: &mut Client, prefix: String, b: Option<String>, limit: u64, json: bool, allow_partial: bool) -> anyhow::Result<()> {
    let mut token = String::new();
    let mut all = Vec::new();
    let mut missing = std::collections::BTreeSet::new();
    loop {
        let page = c
            .list(pb::ListRequest { bucket: bucket(b.clone()), prefix: prefix.clone(), page_token: token, limit: 1000 })
            .await
            .map_err(status)?
            .into_inner();
        all.extend(page.objects);
        missing.extend(page.missing);
        token = page.next_page_token;
        if token.is_empty() || (limit > 0 && all.len() as u64 >= limit) {
            break;
        }
    }
    if limit > 0 {
        all.truncate(limit as usize);
    }
    output::objects(&all, json);
    partial(&missing.into_iter().collect::<Vec<_>>(), allow_partial)
}

pub async fn stat(c: &mut Client, key: String, b: Option<String>, version: Option<String>, json: bool) -> anyhow::Result<()> {
    let info = c.stat(pb::StatRequest { bucket: bucket(b), key, version: version.unwrap_or_default() }).await.map_err(status)?.into_inner();
    output::object(&info, json);
    Ok(())
}

pub async fn restore(c: &mut Client, key: String, version: String, b: Option<String>, json: bool) -> anyhow::Result<()> {
    let info = c.restore(pb::RestoreRequest { bucket: bucket(b), key, version }).await.map_err(status)?.into_inner();
    output::object(&info, json);
    Ok(())
}

pub async fn versions(c: &mut Client, key: String, b: Option<String>, json: bool, allow_partial: bool) -> anyhow::Result<()> {
    let v = c.list_versions(pb::ListVersionsRequest { bucket: bucket(b), key }).await.map_err(status)?.into_inner();
    output::versions(&v.versions, json);
    partial(&v.missing, allow_partial)
}
