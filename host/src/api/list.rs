//! List (keyset-paginated) and ListVersions.

use super::error::{ApiError, invalid};
use super::{Limits, object_info, pb, validate};
use crate::service::ObjectService;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;
/// Records read from the service at a time for one page.
const CHUNK: u32 = 1000;

pub async fn handle_list(service: &dyn ObjectService, limits: &Limits, req: pb::ListRequest) -> Result<pb::ListResponse, ApiError> {
    let bucket = validate::bucket(&req.bucket)?;
    let limit = match req.limit {
        0 => DEFAULT_LIMIT,
        n if n > MAX_LIMIT => return Err(invalid(format!("limit {n} is above the maximum {MAX_LIMIT}"))),
        n => n,
    };
    // The token is the last key of the previous page, hex-encoded.
    let after = if req.page_token.is_empty() {
        None
    } else {
        let raw = hex::decode(&req.page_token).map_err(|_| invalid("page_token is not one this server issued"))?;
        Some(String::from_utf8(raw).map_err(|_| invalid("page_token is not one this server issued"))?)
    };
    // Read in chunks, and stop once the page is over the reply's size
    // limit: a page of 10,000 large records cut to a few hundred by that
    // limit must not hold all 10,000 first.
    let mut objs = Vec::new();
    let mut missing = Vec::new();
    let mut read_bytes = 0;
    let mut from = after;
    loop {
        let want = (limit + 1 - objs.len() as u32).min(CHUNK);
        let listed = service.list(&bucket, &req.prefix, from.as_deref(), want).await?;
        for m in listed.missing {
            if !missing.contains(&m) {
                missing.push(m);
            }
        }
        let got = listed.value.len() as u32;
        read_bytes += listed.value.iter().map(|o| o.reply_bytes()).sum::<usize>();
        from = listed.value.last().map(|o| o.key.clone());
        objs.extend(listed.value);
        if got < want || objs.len() as u32 > limit || read_bytes > limits.max_reply_bytes {
            break;
        }
    }
    // A page also ends before it would pass the reply's size limit.
    let mut bytes = 0;
    let fits = objs
        .iter()
        .position(|o| {
            bytes += o.reply_bytes();
            bytes > limits.max_reply_bytes
        })
        .map_or(objs.len(), |i| i.max(1));
    let keep = fits.min(limit as usize);
    let next_page_token = if objs.len() > keep {
        objs.truncate(keep);
        hex::encode(&objs.last().expect("non-empty").key)
    } else {
        String::new()
    };
    Ok(pb::ListResponse { objects: objs.iter().map(object_info).collect(), next_page_token, missing })
}

pub async fn handle_list_versions(
    service: &dyn ObjectService,
    limits: &Limits,
    req: pb::ListVersionsRequest,
) -> Result<pb::ListVersionsResponse, ApiError> {
    let bucket = validate::bucket(&req.bucket)?;
    validate::key(&req.key, limits.max_key_length)?;
    let versions = service.versions(&bucket, &req.key).await?;
    Ok(pb::ListVersionsResponse { versions: versions.value.iter().map(object_info).collect(), missing: versions.missing })
}
