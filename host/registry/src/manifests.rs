//! Manifests (by tag or digest, stored and served byte-exact), tags with
//! pagination, and referrers (v1.1: the manifests whose `subject` is a
//! given digest).

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use oci_spec::distribution::{ErrorCode, TagListBuilder};
use oci_spec::image::{DescriptorBuilder, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use strata_meta::{Condition, ObjectRecord};
use strata_objects::{Kind, PutSpec};

use crate::error::{RegistryError, Result, digest_invalid, manifest_invalid, manifest_unknown, oci};
use crate::{Registry, names, query_param, respond, uploads};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn key_of(name: &str, reference: &str) -> Result<String> {
    Ok(if reference.contains(':') {
        Registry::key(name, "manifests", &names::digest(reference)?.to_string())
    } else {
        Registry::key(name, "tags", reference)
    })
}

/// Reads (a range of) a small object; `None` if it is not there.
pub(crate) async fn fetch(r: &Registry, key: &str, range: strata_store::Range) -> Result<Option<(ObjectRecord, Bytes)>> {
    let (rec, mut chunks) = match r.service.get(&r.bucket, key, None, range).await {
        Ok(got) => got,
        Err(e) if e.kind() == Kind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if rec.is_delete_marker() {
        return Ok(None);
    }
    let mut buf = BytesMut::with_capacity(range.len.unwrap_or(rec.size).min(rec.size) as usize);
    while let Some(c) = chunks.recv().await {
        buf.extend_from_slice(&c.map_err(|e| RegistryError::Service(e.into()))?);
    }
    Ok(Some((rec, buf.freeze())))
}

/// Reads a small object whole; `None` if it is not there.
pub(crate) async fn read(r: &Registry, key: &str) -> Result<Option<(ObjectRecord, Bytes)>> {
    fetch(r, key, strata_store::Range::ALL).await
}

/// `GET`/`HEAD`: the manifest's bytes as pushed, whatever `Accept` says
/// (Ollama sends one that does not match its own manifests).
pub async fn get(r: &Arc<Registry>, name: &str, reference: &str, head: bool) -> Result<Response> {
    let Some((rec, bytes)) = read(r, &key_of(name, reference)?).await? else { return Err(manifest_unknown(reference)) };
    let digest = format!("sha256:{}", rec.digest.map(|d| d.to_string()).unwrap_or_default());
    let headers =
        [("Content-Type", rec.content_type.clone()), ("Docker-Content-Digest", digest), ("Content-Length", bytes.len().to_string())];
    Ok(respond(StatusCode::OK, &headers, if head { Body::empty() } else { Body::from(bytes) }))
}

/// What a manifest points at.
pub(crate) struct Parsed {
    pub media_type: String,
    /// Blobs (config and layers) of an image manifest, with their sizes.
    pub blobs: Vec<(String, u64)>,
    /// Manifests of an index.
    pub manifests: Vec<String>,
    pub subject: Option<String>,
    pub artifact_type: Option<String>,
}

pub(crate) fn parse(media_type: &str, bytes: &[u8]) -> Result<Parsed> {
    let raw: Value = serde_json::from_slice(bytes).map_err(|e| manifest_invalid(format!("not JSON: {e}")))?;
    if let Some(inner) = raw.get("mediaType").and_then(Value::as_str)
        && inner != media_type
    {
        return Err(manifest_invalid(format!("Content-Type is {media_type} but the manifest's mediaType is {inner}")));
    }
    if raw.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(manifest_invalid("schemaVersion must be 2 (schema 1 manifests are not taken)"));
    }
    let bad = |e: oci_spec::OciSpecError| {
        let why = match e {
            oci_spec::OciSpecError::SerDe(e) => e.to_string(),
            e => e.to_string(),
        };
        manifest_invalid(format!("not a valid {media_type}: {why}"))
    };
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m = ImageManifest::from_reader(bytes).map_err(bad)?;
            let mut blobs = vec![(m.config().digest().to_string(), m.config().size())];
            blobs.extend(m.layers().iter().map(|l| (l.digest().to_string(), l.size())));
            Ok(Parsed {
                media_type: media_type.into(),
                blobs,
                manifests: Vec::new(),
                subject: m.subject().as_ref().map(|s| s.digest().to_string()),
                artifact_type: m.artifact_type().as_ref().map(|t| t.to_string()).or_else(|| Some(m.config().media_type().to_string())),
            })
        }
        OCI_INDEX | DOCKER_LIST => {
            let i = ImageIndex::from_reader(bytes).map_err(bad)?;
            Ok(Parsed {
                media_type: media_type.into(),
                blobs: Vec::new(),
                manifests: i.manifests().iter().map(|m| m.digest().to_string()).collect(),
                subject: i.subject().as_ref().map(|s| s.digest().to_string()),
                artifact_type: i.artifact_type().as_ref().map(|t| t.to_string()),
            })
        }
        other => Err(oci(
            StatusCode::BAD_REQUEST,
            ErrorCode::ManifestInvalid,
            format!(
                "media type {other:?} is not a manifest this registry takes ({OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST})"
            ),
        )),
    }
}

async fn put_small(r: &Registry, key: String, content_type: &str, attributes: serde_json::Map<String, Value>, bytes: Bytes) -> Result<()> {
    let spec = PutSpec {
        bucket: r.bucket.clone(),
        key,
        content_type: content_type.into(),
        attributes,
        size: Some(bytes.len() as u64),
        expected_digest: None,
        condition: Condition::Always,
        identity: None,
        request_id: None,
        late: None,
    };
    r.service.put(spec, futures::stream::once(async { Ok(bytes) }).boxed()).await?;
    Ok(())
}

/// `PUT`: checks the manifest and that what it references is here, then
/// stores it under its digest and, for a tag, under the tag.
pub async fn put(r: &Arc<Registry>, base: &str, name: &str, reference: &str, req: Request) -> Result<Response> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    let mut body = req.into_body().into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(c) = body.next().await {
        let c = c.map_err(|e| oci(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, format!("the body broke off: {e}")))?;
        if buf.len() + c.len() > r.max_manifest {
            return Err(too_large(r));
        }
        buf.extend_from_slice(&c);
    }
    let (digest, subject) = store(r, name, reference, &content_type, buf.freeze(), serde_json::Map::new()).await?;
    let mut headers = vec![("Location", format!("{base}/v2/{name}/manifests/{digest}")), ("Docker-Content-Digest", digest.clone())];
    if let Some(s) = subject {
        headers.push(("OCI-Subject", s));
    }
    headers.push(("Content-Length", "0".into()));
    Ok(respond(StatusCode::CREATED, &headers, Body::empty()))
}

fn too_large(r: &Registry) -> RegistryError {
    oci(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SizeInvalid,
        format!("the manifest is larger than registry.max_manifest_size ({} bytes)", r.max_manifest),
    )
}

/// Checks manifest `bytes` (of `content_type`, or the `mediaType` it
/// names when that is empty or plain JSON) and that what it references is
/// in repository `name`, then stores it under its digest and, when
/// `reference` is a tag, under the tag with `tag_attributes` added.
/// Answers the digest and the subject.
pub(crate) async fn store(
    r: &Registry,
    name: &str,
    reference: &str,
    content_type: &str,
    bytes: Bytes,
    tag_attributes: serde_json::Map<String, Value>,
) -> Result<(String, Option<String>)> {
    if bytes.len() > r.max_manifest {
        return Err(too_large(r));
    }
    let media_type = if content_type.is_empty() || content_type == "application/json" {
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| manifest_invalid("no Content-Type and no mediaType in the manifest"))?
    } else {
        content_type.to_string()
    };
    let parsed = parse(&media_type, &bytes)?;
    r.ensure_bucket().await?;
    // Checked and written under the repository's lock: a delete cannot
    // free a blob between the check and the write.
    let _repo = r.lock_repo(name).await;
    for (b, want) in &parsed.blobs {
        let d = names::digest(b)?;
        match uploads::size_of(r, name, &d).await? {
            None => {
                return Err(oci(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::ManifestBlobUnknown,
                    format!("blob {b} is not in repository {name}: push it first"),
                ));
            }
            Some(n) if n != *want => return Err(manifest_invalid(format!("blob {b} holds {n} bytes, the manifest says {want}"))),
            Some(_) => {}
        }
    }
    for m in &parsed.manifests {
        let d = names::digest(m)?;
        if read(r, &Registry::key(name, "manifests", &d.to_string())).await?.is_none() {
            return Err(oci(
                StatusCode::BAD_REQUEST,
                ErrorCode::ManifestBlobUnknown,
                format!("manifest {m} is not in repository {name}: push it first"),
            ));
        }
    }
    let model = describe_layers(r, name, &parsed).await;
    let hex = hex::encode(Sha256::digest(&bytes));
    let digest = format!("sha256:{hex}");
    if reference.contains(':') && reference != digest {
        return Err(digest_invalid(format!("the manifest's digest is {digest}, not {reference}")));
    }
    let mut attrs = serde_json::Map::new();
    attrs.insert("oci.media_type".into(), json!(parsed.media_type));
    if let Some(s) = &parsed.subject {
        attrs.insert("oci.subject".into(), json!(s));
    }
    if let Some(t) = &parsed.artifact_type {
        attrs.insert("oci.artifact_type".into(), json!(t));
    }
    attrs.extend(model.clone());
    put_small(r, Registry::key(name, "manifests", &hex), &media_type, attrs, bytes.clone()).await?;
    if !reference.contains(':') {
        let mut attrs = model;
        attrs.extend(tag_attributes);
        attrs.insert("oci.digest".into(), json!(digest));
        put_small(r, Registry::key(name, "tags", reference), &media_type, attrs, bytes).await?;
    }
    Ok((digest, parsed.subject))
}

/// The first bytes of a blob of `name`.
async fn head_of(r: &Registry, name: &str, digest: &str, len: u64) -> Option<Bytes> {
    let key = Registry::key(name, "blobs", &names::digest(digest).ok()?.to_string());
    fetch(r, &key, strata_store::Range { offset: 0, len: Some(len) }).await.ok().flatten().map(|(_, b)| b)
}

/// What the model layers of a manifest hold (GGUF or safetensors
/// headers), as attributes of the manifest and its tags: `gguf.*`,
/// `safetensors.*`. A layer of other content costs one 16-byte read.
async fn describe_layers(r: &Registry, name: &str, parsed: &Parsed) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (digest, size) in parsed.blobs.iter().skip(1) {
        let Some(peek) = head_of(r, name, digest, 16).await else { continue };
        let want = if peek.starts_with(b"GGUF") {
            crate::models::HEADER_WINDOW
        } else if peek.len() >= 9 && peek[8] == b'{' {
            8 + u64::from_le_bytes(peek[..8].try_into().expect("8 bytes")).min(100 << 20)
        } else {
            continue;
        };
        let Some(head) = head_of(r, name, digest, want.min(*size)).await else { continue };
        if let Some((kind, v)) = crate::models::describe(&head, *size) {
            out.entry(kind).or_insert(v);
        }
    }
    out
}

/// Every live object under `prefix`, in key order.
pub(crate) async fn list_all(r: &Registry, prefix: &str) -> Result<Vec<ObjectRecord>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = r.service.list(&r.bucket, prefix, after.as_deref(), 1000).await?.value;
        let full = page.len() == 1000;
        after = page.last().map(|o| o.key.clone());
        out.extend(page.into_iter().filter(|o| !o.is_delete_marker()));
        if !full {
            return Ok(out);
        }
    }
}

/// `DELETE`: a tag, or a manifest with every tag that names it; the blobs
/// only it referenced leave the repository too (and their bytes go once
/// nothing else references them).
pub async fn delete(r: &Arc<Registry>, name: &str, reference: &str) -> Result<Response> {
    remove(r, name, reference).await?;
    Ok(respond(StatusCode::ACCEPTED, &[], Body::empty()))
}

/// Removes a tag, or a manifest with its tags and the repository's links
/// to the blobs no other of its manifests references.
pub(crate) async fn remove(r: &Registry, name: &str, reference: &str) -> Result<()> {
    if !reference.contains(':') {
        if !r.forget(&Registry::key(name, "tags", reference)).await? {
            return Err(manifest_unknown(reference));
        }
        return Ok(());
    }
    let _repo = r.lock_repo(name).await;
    remove_locked(r, name, reference).await
}

/// Removes manifest `reference` (a digest) as [`remove`] does, with the
/// repository's lock held.
pub(crate) async fn remove_locked(r: &Registry, name: &str, reference: &str) -> Result<()> {
    let d = names::digest(reference)?;
    let key = Registry::key(name, "manifests", &d.to_string());
    let Some((rec, bytes)) = read(r, &key).await? else { return Err(manifest_unknown(reference)) };
    let gone: Vec<String> = parse(&rec.content_type, &bytes).map(|p| p.blobs.into_iter().map(|(d, _)| d).collect()).unwrap_or_default();
    r.forget(&key).await?;
    for t in list_all(r, &format!("{name}/_tags/")).await? {
        if t.digest == Some(d) {
            r.forget(&t.key).await?;
        }
    }
    // Blobs another manifest of the repository still references stay.
    let mut kept = BTreeSet::new();
    for m in list_all(r, &format!("{name}/_manifests/")).await? {
        if let Some((rec, bytes)) = read(r, &m.key).await?
            && let Ok(p) = parse(&rec.content_type, &bytes)
        {
            kept.extend(p.blobs.into_iter().map(|(d, _)| d));
        }
    }
    for b in gone.iter().filter(|b| !kept.contains(*b)) {
        if let Ok(bd) = names::digest(b) {
            r.forget(&Registry::key(name, "blobs", &bd.to_string())).await?;
        }
    }
    Ok(())
}

/// `GET /tags/list?n=&last=`: tags in order, a page at a time, with a
/// `Link` to the next page when this one is full.
pub async fn tags(r: &Arc<Registry>, name: &str, query: Option<&str>) -> Result<Response> {
    let n = match query_param(query, "n") {
        Some(n) => n.parse::<u32>().map_err(|_| oci(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, "n must be a number"))?.min(10_000),
        None => 10_000,
    };
    let prefix = format!("{name}/_tags/");
    let after = query_param(query, "last").map(|l| format!("{prefix}{l}"));
    let page = if n == 0 { Vec::new() } else { r.service.list(&r.bucket, &prefix, after.as_deref(), n).await?.value };
    let tags: Vec<String> =
        page.iter().filter(|o| !o.is_delete_marker()).filter_map(|o| o.key.strip_prefix(&prefix).map(str::to_string)).collect();
    if tags.is_empty() && after.is_none() && list_all(r, &format!("{name}/_manifests/")).await?.is_empty() {
        return Err(oci(StatusCode::NOT_FOUND, ErrorCode::NameUnknown, format!("repository {name} is not known")));
    }
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if n > 0
        && page.len() == n as usize
        && let Some(last) = tags.last()
    {
        headers.push(("Link", format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\"")));
    }
    let list = TagListBuilder::default().name(name).tags(tags).build().map_err(|e| manifest_invalid(e.to_string()))?;
    let body = serde_json::to_vec(&list).map_err(|e| manifest_invalid(e.to_string()))?;
    Ok(respond(StatusCode::OK, &headers, Body::from(body)))
}

/// `GET /referrers/<digest>[?artifactType=]`: an image index of the
/// manifests whose subject is `digest`.
pub async fn referrers(r: &Arc<Registry>, name: &str, digest: &str, query: Option<&str>) -> Result<Response> {
    names::digest(digest)?;
    let filter = query_param(query, "artifactType");
    let mut descriptors = Vec::new();
    for m in list_all(r, &format!("{name}/_manifests/")).await? {
        if m.attributes.get("oci.subject").and_then(Value::as_str) != Some(digest) {
            continue;
        }
        let artifact_type = m.attributes.get("oci.artifact_type").and_then(Value::as_str).map(str::to_string);
        if filter.is_some() && filter != artifact_type {
            continue;
        }
        let Some((rec, bytes)) = read(r, &m.key).await? else { continue };
        let annotations = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("annotations").cloned())
            .and_then(|a| serde_json::from_value::<std::collections::HashMap<String, String>>(a).ok());
        let d = format!("sha256:{}", rec.digest.map(|d| d.to_string()).unwrap_or_default());
        let mut b = DescriptorBuilder::default()
            .media_type(MediaType::from(rec.content_type.as_str()))
            .digest(oci_spec::image::Digest::from_str(&d).map_err(|e| manifest_invalid(e.to_string()))?)
            .size(rec.size);
        if let Some(t) = artifact_type {
            b = b.artifact_type(MediaType::from(t.as_str()));
        }
        if let Some(a) = annotations {
            b = b.annotations(a);
        }
        descriptors.push(b.build().map_err(|e| manifest_invalid(e.to_string()))?);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(descriptors)
        .build()
        .map_err(|e| manifest_invalid(e.to_string()))?;
    let body = serde_json::to_vec(&index).map_err(|e| manifest_invalid(e.to_string()))?;
    let mut headers = vec![("Content-Type", OCI_INDEX.to_string())];
    if query_param(query, "artifactType").is_some() {
        headers.push(("OCI-Filters-Applied", "artifactType".into()));
    }
    Ok(respond(StatusCode::OK, &headers, Body::from(body)))
}
