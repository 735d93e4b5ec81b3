//! Delete and DeleteMany.

use tonic::Status;

use super::error::{ApiError, invalid};
use super::{Limits, pb, validate};
use crate::meta::Deleted;
use crate::service::ObjectService;

pub async fn handle_delete(service: &dyn ObjectService, limits: &Limits, req: pb::DeleteRequest) -> Result<pb::DeleteResponse, ApiError> {
    let bucket = validate::bucket(&req.bucket)?;
    validate::key(&req.key, limits.max_key_length)?;
    let done = service.delete(&bucket, &req.key, validate::version(&req.version)).await?;
    Ok(pb::DeleteResponse {
        marker_version: match done {
            Deleted::Marker(v) => v,
            Deleted::Removed => String::new(),
        },
    })
}

pub async fn handle_delete_many(
    service: &dyn ObjectService,
    limits: &Limits,
    req: pb::DeleteManyRequest,
) -> Result<pb::DeleteManyResponse, ApiError> {
    let bucket = validate::bucket(&req.bucket)?;
    if req.keys.len() > limits.max_batch_items {
        return Err(invalid(format!("DeleteMany names {} keys; the limit is {}", req.keys.len(), limits.max_batch_items)));
    }
    let mut results: Vec<pb::ItemResult> = req.keys.iter().map(|k| pb::ItemResult { key: k.clone(), ..Default::default() }).collect();
    let mut valid = Vec::new();
    let mut slots = Vec::new();
    for (i, key) in req.keys.into_iter().enumerate() {
        match validate::key(&key, limits.max_key_length) {
            Ok(()) => {
                slots.push(i);
                valid.push(key);
            }
            Err(e) => fail(&mut results[i], e),
        }
    }
    for (i, r) in slots.into_iter().zip(service.delete_many(&bucket, &valid).await) {
        if let Err(e) = r {
            fail(&mut results[i], e.into());
        }
    }
    Ok(pb::DeleteManyResponse { results })
}

fn fail(slot: &mut pb::ItemResult, e: ApiError) {
    let st = Status::from(e);
    slot.error = st.message().into();
    slot.code = st.code() as i32;
}
