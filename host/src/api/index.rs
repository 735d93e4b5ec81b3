//! Search indexes: create, list, drop.

use super::error::{ApiError, invalid};
use super::{pb, validate};
use crate::meta::IndexDef;
use crate::search::Field;
use crate::service::{Feature, ObjectService};

/// Most fields one index may cover.
const MAX_FIELDS: usize = 8;

fn info(d: &IndexDef, head: i64, node: &str) -> pb::IndexInfo {
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
        lag: d.lag(head) as u64,
        error: d.error.clone().unwrap_or_default(),
        created_ms: d.created_ms,
        node: node.into(),
    }
}

fn index_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(invalid(format!("invalid index name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"))) }
}

pub async fn handle_create(service: &dyn ObjectService, req: pb::CreateIndexRequest) -> Result<pb::IndexInfo, ApiError> {
    service.offered(Feature::Indexes)?;
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
    let (def, head) = service.create_index(&bucket, &req.name, &fields, &req.r#type).await?;
    Ok(info(&def, head, ""))
}

pub async fn handle_list(service: &dyn ObjectService, req: pb::ListIndexesRequest) -> Result<pb::ListIndexesResponse, ApiError> {
    let bucket = if req.bucket.is_empty() { None } else { Some(validate::bucket(&req.bucket)?) };
    let found = service.list_indexes(bucket.as_deref()).await?;
    let indexes = found.value.iter().flat_map(|(node, n)| n.defs.iter().map(|d| info(d, n.head, node))).collect();
    Ok(pb::ListIndexesResponse { indexes, missing: found.missing })
}

pub async fn handle_drop(service: &dyn ObjectService, req: pb::DropIndexRequest) -> Result<pb::DropIndexResponse, ApiError> {
    let bucket = validate::bucket(&req.bucket)?;
    index_name(&req.name)?;
    service.drop_index(&bucket, &req.name).await?;
    Ok(pb::DropIndexResponse {})
}
