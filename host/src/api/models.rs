//! Model storage over gRPC: the registry's repositories without HTTP, for
//! `strata models import/export/ls/show/tag/rm`.

use futures::StreamExt;
use tonic::{Status, Streaming};

use super::error::{ApiError, invalid};
use super::{GetStream, Limits, pb};
use crate::registry::Registry;
use crate::registry::store::{Layer, Model};

fn model(m: Model) -> pb::Model {
    pb::Model {
        repository: m.repository,
        tag: m.tag,
        digest: m.digest,
        media_type: m.media_type,
        size: m.size,
        modified_ms: m.modified_ms,
        attributes_json: serde_json::Value::Object(m.attributes).to_string(),
    }
}

fn layer(l: Layer) -> pb::ModelLayer {
    pb::ModelLayer { media_type: l.media_type, digest: l.digest, size: l.size }
}

pub async fn handle_has_blobs(r: &Registry, req: pb::ModelHasBlobsRequest) -> Result<pb::ModelHasBlobsResponse, ApiError> {
    if req.digests.len() > 10_000 {
        return Err(invalid("ask about at most 10,000 digests at once"));
    }
    Ok(pb::ModelHasBlobsResponse { present: r.has_blobs(&req.repository, &req.digests).await? })
}

pub async fn handle_put_blob(r: &Registry, mut stream: Streaming<pb::ModelPutBlobRequest>) -> Result<pb::ModelPutBlobResponse, ApiError> {
    let h = match stream.message().await? {
        Some(pb::ModelPutBlobRequest { part: Some(pb::model_put_blob_request::Part::Header(h)) }) => h,
        Some(_) => return Err(invalid("the first message of a blob put must be its header")),
        None => return Err(invalid("the blob stream is empty: send a header, then chunks")),
    };
    if !h.from_repository.is_empty() {
        if !r.link_blob(&h.repository, &h.from_repository, &h.digest).await? {
            return Err(ApiError::Status(Status::not_found(format!("repository {} has no blob {}", h.from_repository, h.digest))));
        }
        return Ok(pb::ModelPutBlobResponse {});
    }
    let chunks = stream
        .map(|m| match m {
            Ok(pb::ModelPutBlobRequest { part: Some(pb::model_put_blob_request::Part::Chunk(c)) }) => Ok(c),
            Ok(_) => Err("a blob put sends one header, then only chunks".to_string()),
            Err(e) => Err(format!("the client's stream broke off: {}", e.message())),
        })
        .boxed();
    r.put_blob(&h.repository, &h.digest, h.size, chunks).await?;
    Ok(pb::ModelPutBlobResponse {})
}

pub async fn handle_get_blob(r: &Registry, limits: &Limits, req: pb::ModelGetBlobRequest) -> Result<GetStream, ApiError> {
    let (size, rx) = r.get_blob(&req.repository, &req.digest).await?;
    let info = pb::ObjectInfo { size, digest: req.digest.trim_start_matches("sha256:").to_string(), ..Default::default() };
    let head = pb::GetResponse { part: Some(pb::get_response::Part::Info(info)) };
    let body = super::get::chunked(rx, limits.max_chunk);
    Ok(Box::pin(futures::stream::once(async { Ok(head) }).chain(body)))
}

pub async fn handle_put_manifest(r: &Registry, req: pb::ModelPutManifestRequest) -> Result<pb::Model, ApiError> {
    let mut attributes = serde_json::Map::new();
    for (k, v) in req.ollama {
        if k.is_empty() || k.len() > 64 || !k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') || v.len() > 1024 {
            return Err(invalid(format!("ollama label {k:?}: names are up to 64 letters, digits and '_', values up to 1 KiB")));
        }
        attributes.insert(format!("ollama.{k}"), serde_json::Value::String(v));
    }
    Ok(model(r.put_manifest(&req.repository, &req.tag, &req.media_type, req.manifest, attributes).await?))
}

pub async fn handle_list(r: &Registry, req: pb::ModelListRequest) -> Result<pb::ModelListResponse, ApiError> {
    Ok(pb::ModelListResponse { models: r.models(&req.prefix).await?.into_iter().map(model).collect() })
}

pub async fn handle_show(r: &Registry, req: pb::ModelShowRequest) -> Result<pb::ModelShowResponse, ApiError> {
    let s = r.show(&req.repository, &req.reference).await?;
    Ok(pb::ModelShowResponse {
        model: Some(model(s.model)),
        manifest: s.manifest,
        config: s.config.map(layer),
        layers: s.layers.into_iter().map(layer).collect(),
        manifests: s.manifests.into_iter().map(layer).collect(),
    })
}

pub async fn handle_tag(r: &Registry, req: pb::ModelTagRequest) -> Result<pb::Model, ApiError> {
    Ok(model(r.tag(&req.repository, &req.reference, &req.to_repository, &req.to_tag).await?))
}

pub async fn handle_remove(r: &Registry, req: pb::ModelRemoveRequest) -> Result<pb::ModelRemoveResponse, ApiError> {
    let (digest, manifest_removed) = r.remove(&req.repository, &req.tag).await?;
    Ok(pb::ModelRemoveResponse { manifest_removed, digest })
}
