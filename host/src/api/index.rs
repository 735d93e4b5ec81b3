//! Search indexes: create, list, drop.

use super::error::{ApiError, invalid};
use super::{pb, validate};
use crate::config::IndexingMode;
use crate::meta::IndexDef;
use crate::objects::Objects;
use crate::plugin::{Kind, PluginError, Plugins};
use crate::search::Field;
use crate::search::index::check_fields;

/// Most fields one index may cover.
const MAX_FIELDS: usize = 8;

fn info(d: &IndexDef, head: i64) -> pb::IndexInfo {
    let state = if d.error.is_some() {
        "failing"
    } else if d.ready {
        "ready"
    } else {
        "building"
    };
    pb::IndexInfo {
        bucket: d.bucket.clone(),
        name: d.name.clone(),
        fields: d.fields.clone(),
        r#type: d.kind.clone(),
        state: state.into(),
        progress: d.progress(),
        lag: (head - d.watermark).max(0) as u64,
        error: d.error.clone().unwrap_or_default(),
        created_ms: d.created_ms,
    }
}

fn index_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(invalid(format!("invalid index name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"))) }
}

pub async fn handle_create(objects: &Objects, plugins: &Plugins, req: pb::CreateIndexRequest) -> Result<pb::IndexInfo, ApiError> {
    let meta = objects.meta();
    if meta.indexing() == IndexingMode::Disabled {
        return Err(ApiError::Status(tonic::Status::failed_precondition(
            "indexes are disabled on this server (metadata.indexing_mode = \"disabled\")",
        )));
    }
    let bucket = validate::bucket(&req.bucket)?;
    index_name(&req.name)?;
    if req.fields.is_empty() || req.fields.len() > MAX_FIELDS {
        return Err(invalid(format!("fields: give 1 to {MAX_FIELDS} fields, such as size or model.family")));
    }
    let mut fields = Vec::new();
    for f in &req.fields {
        if f.is_empty() || f.len() > 256 || f.split('.').any(str::is_empty) {
            return Err(invalid(format!("fields: {f:?} is not a field name such as size or model.family")));
        }
        // One spelling per field, so searches find the index.
        let canonical = Field::parse(f).to_string();
        if fields.contains(&canonical) {
            return Err(invalid(format!("fields: {canonical} is listed twice")));
        }
        fields.push(canonical);
    }
    match plugins.index(&req.r#type) {
        Ok(_) => {}
        Err(PluginError::NotFound { .. }) => {
            let known: Vec<String> = plugins.list().into_iter().filter(|(i, _)| i.kind == Kind::IndexType).map(|(i, _)| i.name).collect();
            return Err(invalid(format!("type: no index-type plugin {:?}; loaded ones are {}", req.r#type, known.join(", "))));
        }
        Err(e) => return Err(e.into()),
    }
    check_fields(plugins, &req.r#type, fields.len())
        .map_err(|e| invalid(format!("type {} cannot index {} field(s): {e}", req.r#type, fields.len())))?;
    let def = meta.create_index(&bucket, &req.name, &fields, &req.r#type).await?;
    let head = meta.head().await?;
    Ok(info(&def, head))
}

pub async fn handle_list(objects: &Objects, req: pb::ListIndexesRequest) -> Result<pb::ListIndexesResponse, ApiError> {
    let meta = objects.meta();
    let bucket = if req.bucket.is_empty() { None } else { Some(validate::bucket(&req.bucket)?) };
    let head = meta.head().await?;
    let indexes =
        meta.list_indexes().await?.iter().filter(|d| bucket.as_ref().is_none_or(|b| *b == d.bucket)).map(|d| info(d, head)).collect();
    Ok(pb::ListIndexesResponse { indexes })
}

pub async fn handle_drop(objects: &Objects, req: pb::DropIndexRequest) -> Result<pb::DropIndexResponse, ApiError> {
    let bucket = validate::bucket(&req.bucket)?;
    index_name(&req.name)?;
    objects.meta().drop_index(&bucket, &req.name).await?;
    Ok(pb::DropIndexResponse {})
}
