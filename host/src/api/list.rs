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
    // limit must not hold all 10,000 first. `fits`: the records before the
    // one that passes the limit (at least one, so a page always moves on).
    let mut objs = Vec::new();
    let mut missing = Vec::new();
    let mut bytes = 0;
    let mut fits = None;
    let mut from = after;
    while fits.is_none() {
        let want = (limit + 1 - objs.len() as u32).min(CHUNK);
        let listed = service.list(&bucket, &req.prefix, from.as_deref(), want).await?;
        for m in listed.missing {
            if !missing.contains(&m) {
                missing.push(m);
            }
        }
        let got = listed.value.len() as u32;
        from = listed.value.last().map(|o| o.key.clone());
        for o in listed.value {
            if fits.is_none() {
                bytes += o.reply_bytes();
                if bytes > limits.max_reply_bytes {
                    fits = Some(objs.len().max(1));
                }
            }
            objs.push(o);
        }
        if got < want || objs.len() as u32 > limit {
            break;
        }
    }
    let fits = fits.unwrap_or(objs.len());
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
