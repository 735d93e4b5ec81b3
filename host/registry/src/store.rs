//! The model store without HTTP: what `strata models` does over gRPC
//! (import, export, ls, show, tag, rm). Every write goes through the same
//! checks as the registry's endpoints, so a model stored either way is the
//! same objects.

use bytes::Bytes;
use serde_json::{Map, Value};
use strata_objects::Kind;

use crate::error::{Result, manifest_invalid};
use crate::manifests::{self, list_all, parse, read};
use crate::uploads::{self, Chunks};
use crate::{Registry, names};

fn no_model(name: &str, reference: &str) -> crate::RegistryError {
    let sep = if reference.contains(':') { '@' } else { ':' };
    crate::error::oci(
        axum::http::StatusCode::NOT_FOUND,
        crate::error::ErrorCode::ManifestUnknown,
        format!("there is no model {name}{sep}{reference}"),
    )
}

/// A tagged manifest.
#[derive(Clone, Debug)]
pub struct Model {
    pub repository: String,
    pub tag: String,
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
    pub media_type: String,
    /// The manifest's bytes plus every blob it references.
    pub size: u64,
    /// When the tag last changed (Unix ms).
    pub modified_ms: i64,
    /// What the registry recorded: `gguf`, `safetensors`, `oci.*`, and
    /// what the importer added (`ollama.host`).
    pub attributes: Map<String, Value>,
}

/// A blob a manifest references.
#[derive(Clone, Debug)]
pub struct Layer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A manifest as stored, with what it references.
pub struct Shown {
    pub model: Model,
    pub manifest: Bytes,
    pub config: Option<Layer>,
    pub layers: Vec<Layer>,
    /// An index's manifests.
    pub manifests: Vec<Layer>,
}

impl Registry {
    /// The bucket model calls use when they name none.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Which of `digests` repository `name` has.
    pub async fn has_blobs(&self, name: &str, digests: &[String]) -> Result<Vec<bool>> {
        let name = names::repository(name)?;
        let mut out = Vec::with_capacity(digests.len());
        for d in digests {
            out.push(uploads::has(self, &name, &names::digest(d)?).await?);
        }
        Ok(out)
    }

    /// Stores a blob of repository `name`; fails (storing nothing) unless
    /// the bytes hash to `digest` and, if given, are `size` long.
    pub async fn put_blob(&self, name: &str, digest: &str, size: Option<u64>, body: Chunks) -> Result<()> {
        let name = names::repository(name)?;
        uploads::store(self, &name, names::digest(digest)?, size, body).await
    }

    /// Links repository `from`'s blob into `name`, without sending its
    /// bytes again (`from` = `*`: any repository that has it); false if
    /// none has it (readable).
    pub async fn link_blob(&self, name: &str, from: &str, digest: &str) -> Result<bool> {
        let name = names::repository(name)?;
        let d = names::digest(digest)?;
        let from = match from {
            "*" => match uploads::holder(self, &name, &d).await? {
                Some(f) => f,
                None => return Ok(false),
            },
            f => names::repository(f)?,
        };
        if !uploads::has(self, &from, &d).await? {
            return Ok(false);
        }
        match uploads::link(self, &name, &from, d).await {
            Ok(linked) => Ok(linked),
            // The source's bytes are damaged: the client sends them.
            Err(crate::RegistryError::Oci { code: crate::error::ErrorCode::DigestInvalid, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A blob of repository `name`: its size and bytes.
    pub async fn get_blob(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<(u64, tokio::sync::mpsc::Receiver<std::result::Result<Bytes, strata_objects::ObjectError>>)> {
        let name = names::repository(name)?;
        let key = Self::key(&name, "blobs", &names::digest(digest)?.to_string());
        match self.service.get(&self.bucket, &key, None, strata_store::Range::ALL).await {
            Ok((rec, _)) if rec.is_delete_marker() => Err(crate::error::blob_unknown(digest)),
            Ok((rec, chunks)) => Ok((rec.size, chunks)),
            Err(e) if e.kind() == Kind::NotFound => Err(crate::error::blob_unknown(digest)),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores manifest `bytes` as `name:tag` (checked as a push is: its
    /// blobs must be in the repository); `attributes` go on the tag.
    pub async fn put_manifest(
        &self,
        name: &str,
        tag: &str,
        media_type: &str,
        bytes: Bytes,
        attributes: Map<String, Value>,
    ) -> Result<Model> {
        let name = names::repository(name)?;
        names::tag(tag)?;
        let before = self.model(&name, tag).await.ok().map(|m| m.digest);
        let (digest, _) = manifests::store(self, &name, tag, media_type, bytes, attributes).await?;
        if let Some(old) = before.filter(|old| *old != digest) {
            // The tag moved: its old manifest goes if nothing else names it,
            // as `ollama pull` drops what a new version replaced.
            let _repo = self.lock_repo(&name).await;
            self.drop_if_unnamed(&name, &old).await?;
        }
        self.model(&name, tag).await
    }

    /// Removes manifest `digest` of `name` (the repository's lock held)
    /// unless a tag or an index of the repository names it. Answers whether
    /// it went.
    async fn drop_if_unnamed(&self, name: &str, digest: &str) -> Result<bool> {
        for t in list_all(self, &format!("{name}/_tags/")).await? {
            if t.attributes.get("oci.digest").and_then(Value::as_str) == Some(digest) {
                return Ok(false);
            }
        }
        for m in list_all(self, &format!("{name}/_manifests/")).await? {
            if let Some((rec, bytes)) = read(self, &m.key).await?
                && parse(&rec.content_type, &bytes).is_ok_and(|p| p.manifests.iter().any(|d| d == digest))
            {
                return Ok(false);
            }
        }
        match manifests::remove_locked(self, name, digest).await {
            Ok(()) => Ok(true),
            // A registry client removed it meanwhile.
            Err(crate::RegistryError::Oci { code: crate::error::ErrorCode::ManifestUnknown, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every tag of every repository whose name starts with `prefix`.
    pub async fn models(&self, prefix: &str) -> Result<Vec<Model>> {
        let objects = match list_all(self, prefix).await {
            Ok(o) => o,
            Err(crate::RegistryError::Service(e)) if e.kind() == Kind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for o in objects {
            let Some((repo, tag)) = o.key.split_once("/_tags/") else { continue };
            if let Some((rec, bytes)) = read(self, &o.key).await? {
                out.push(self.describe(repo, tag, &rec, &bytes).await?);
            }
        }
        Ok(out)
    }

    async fn model(&self, name: &str, tag: &str) -> Result<Model> {
        let Some((rec, bytes)) = read(self, &Self::key(name, "tags", tag)).await? else { return Err(no_model(name, tag)) };
        self.describe(name, tag, &rec, &bytes).await
    }

    async fn describe(&self, name: &str, tag: &str, rec: &strata_meta::ObjectRecord, bytes: &[u8]) -> Result<Model> {
        let size = bytes.len() as u64
            + match parse(&rec.content_type, bytes) {
                Ok(p) => p.blobs.iter().map(|(_, n)| n).sum::<u64>(),
                Err(_) => 0,
            };
        Ok(Model {
            repository: name.to_string(),
            tag: tag.to_string(),
            digest: format!("sha256:{}", rec.digest.map(|d| d.to_string()).unwrap_or_default()),
            media_type: rec.content_type.clone(),
            size,
            modified_ms: rec.modified_ms,
            attributes: rec.attributes.clone(),
        })
    }

    /// `name`'s manifest `reference` (a tag or digest) as stored, with
    /// what it references.
    pub async fn show(&self, name: &str, reference: &str) -> Result<Shown> {
        let name = names::repository(name)?;
        let reference = names::reference(reference)?;
        let key = if reference.contains(':') {
            Self::key(&name, "manifests", &names::digest(&reference)?.to_string())
        } else {
            Self::key(&name, "tags", &reference)
        };
        let Some((rec, bytes)) = read(self, &key).await? else { return Err(no_model(&name, &reference)) };
        let model = self.describe(&name, if reference.contains(':') { "" } else { &reference }, &rec, &bytes).await?;
        let raw: Value = serde_json::from_slice(&bytes).map_err(|e| manifest_invalid(e.to_string()))?;
        let layer = |v: &Value| Layer {
            media_type: v.get("mediaType").and_then(Value::as_str).unwrap_or_default().to_string(),
            digest: v.get("digest").and_then(Value::as_str).unwrap_or_default().to_string(),
            size: v.get("size").and_then(Value::as_u64).unwrap_or_default(),
        };
        let list = |k: &str| raw.get(k).and_then(Value::as_array).map(|a| a.iter().map(layer).collect()).unwrap_or_default();
        Ok(Shown { config: raw.get("config").map(layer), layers: list("layers"), manifests: list("manifests"), manifest: bytes, model })
    }

    /// Tags `name`'s manifest `reference` as `to_name:to_tag`; into another
    /// repository, its blobs are linked there first (the bytes stay one
    /// blob). Answers the new tag.
    pub async fn tag(&self, name: &str, reference: &str, to_name: &str, to_tag: &str) -> Result<Model> {
        let to_name = names::repository(to_name)?;
        names::tag(to_tag)?;
        let shown = self.show(name, reference).await?;
        let parsed = parse(&shown.model.media_type, &shown.manifest)?;
        if to_name != shown.model.repository {
            if !parsed.manifests.is_empty() {
                return Err(manifest_invalid("an index is tagged within its own repository (copy it with skopeo to another)"));
            }
            for (digest, _) in &parsed.blobs {
                let d = names::digest(digest)?;
                if !uploads::has(self, &to_name, &d).await? && !uploads::link(self, &to_name, &shown.model.repository, d).await? {
                    return Err(crate::error::blob_unknown(digest));
                }
            }
        }
        let mut attributes = shown.model.attributes.clone();
        attributes.retain(|k, _| k.starts_with("ollama."));
        self.put_manifest(&to_name, to_tag, &shown.model.media_type, shown.manifest, attributes).await
    }

    /// Removes tag `name:tag`; when no other tag (nor an index of the
    /// repository) names its manifest, the manifest goes too, with the
    /// repository's links to blobs nothing else of it references. A digest
    /// instead of a tag removes that manifest with every tag naming it.
    /// Answers the manifest's digest and whether it went.
    pub async fn remove(&self, name: &str, reference: &str) -> Result<(String, bool)> {
        let name = names::repository(name)?;
        let reference = names::reference(reference)?;
        if reference.contains(':') {
            if read(self, &Self::key(&name, "manifests", &names::digest(&reference)?.to_string())).await?.is_none() {
                return Err(no_model(&name, &reference));
            }
            manifests::remove(self, &name, &reference).await?;
            return Ok((reference, true));
        }
        let model = self.model(&name, &reference).await?;
        let _repo = self.lock_repo(&name).await;
        if !self.forget(&Self::key(&name, "tags", &reference)).await? {
            return Err(no_model(&name, &reference));
        }
        let gone = self.drop_if_unnamed(&name, &model.digest).await?;
        Ok((model.digest, gone))
    }
}
