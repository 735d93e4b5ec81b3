//! Delete and DeleteMany.

use tonic::Status;

use super::error::invalid;
use super::{Limits, pb, validate};
use crate::meta::Deleted;
use std::sync::Arc;

use crate::objects::Objects;
use crate::replication::Replicator;

/// One delete, through the cluster when there is one.
async fn delete_one(
    objects: &Objects,
    replicator: Option<&Arc<Replicator>>,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Deleted, Status> {
    match replicator {
        Some(r) => r.delete(bucket, key, version).await,
        None => objects.delete(bucket, key, version).await.map_err(Status::from),
    }
}

pub async fn handle_delete(
    objects: &Objects,
    replicator: Option<&Arc<Replicator>>,
    limits: &Limits,
    req: pb::DeleteRequest,
) -> Result<pb::DeleteResponse, Status> {
    let bucket = validate::bucket(&req.bucket)?;
    validate::key(&req.key, limits.max_key_length)?;
    let done = delete_one(objects, replicator, &bucket, &req.key, validate::version(&req.version)).await?;
    Ok(pb::DeleteResponse {
        marker_version: match done {
            Deleted::Marker(v) => v,
            Deleted::Removed => String::new(),
        },
    })
}

pub async fn handle_delete_many(
    objects: &Objects,
    replicator: Option<&Arc<Replicator>>,
    limits: &Limits,
    req: pb::DeleteManyRequest,
) -> Result<pb::DeleteManyResponse, Status> {
    let bucket = validate::bucket(&req.bucket)?;
    if req.keys.len() > limits.max_batch_items {
        return Err(invalid(format!("DeleteMany names {} keys; the limit is {}", req.keys.len(), limits.max_batch_items)));
    }
    let mut results = Vec::with_capacity(req.keys.len());
    for key in req.keys {
        let mut r = pb::ItemResult { key: key.clone(), ..Default::default() };
        let outcome = match validate::key(&key, limits.max_key_length) {
            Ok(()) => delete_one(objects, replicator, &bucket, &key, None).await,
            Err(st) => Err(st),
        };
        if let Err(st) = outcome {
            r.error = st.message().into();
            r.code = st.code() as i32;
        }
        results.push(r);
    }
    Ok(pb::DeleteManyResponse { results })
}
