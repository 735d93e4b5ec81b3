//! Tiers: what each holds, and moving one version's blob now.

use super::error::ApiError;
use super::pb;
use crate::meta::tiers::LOCAL;
use crate::objects::{ObjectError, Objects};

pub async fn handle_list(objects: &Objects) -> Result<pb::TierListResponse, ApiError> {
    let totals = objects.meta().tier_totals().await?;
    let mut listed = vec![(LOCAL.to_string(), objects.store().root().display().to_string())];
    listed.extend(objects.tiers().map(|t| t.list()).unwrap_or_default());
    let mut tiers: Vec<pb::TierInfo> = listed
        .into_iter()
        .map(|(name, url)| {
            let t = totals.iter().find(|t| t.tier == name);
            pb::TierInfo {
                blobs: t.map_or(0, |t| t.blobs),
                bytes: t.map_or(0, |t| t.bytes),
                stored_bytes: t.map_or(0, |t| t.stored_bytes),
                name,
                url,
            }
        })
        .collect();
    // Blobs on a tier that is no longer configured still show.
    let unlisted: Vec<_> = totals.iter().filter(|t| !tiers.iter().any(|i| i.name == t.tier)).collect();
    for t in unlisted {
        tiers.push(pb::TierInfo {
            name: t.tier.clone(),
            url: "(not configured)".into(),
            blobs: t.blobs,
            bytes: t.bytes,
            stored_bytes: t.stored_bytes,
        });
    }
    Ok(pb::TierListResponse { tiers, cached_bytes: objects.tiers().map_or(0, |t| t.cached_bytes()) })
}

pub async fn handle_move(objects: &Objects, req: pb::TierMoveRequest, recall: bool) -> Result<pb::TierMoveResponse, ApiError> {
    let bucket = if req.bucket.is_empty() { "default" } else { req.bucket.as_str() };
    let version = (!req.version.is_empty()).then_some(req.version.as_str());
    let rec = objects.meta().get(bucket, &req.key, version).await?;
    let Some(digest) = rec.digest else {
        return Err(ObjectError::DeleteMarker { key: req.key, version: rec.version }.into());
    };
    if rec.size <= crate::store::format::INLINE_MAX {
        return Err(super::error::invalid(format!(
            "{:?} holds {} bytes: blobs up to 32 KiB live in the metadata database and stay local",
            req.key, rec.size
        )));
    }
    let moved = if recall {
        objects.recall(digest).await?
    } else {
        if objects.tiers().is_none_or(|t| t.get(&req.tier).is_err()) {
            let have: Vec<_> = objects.tiers().map(|t| t.list().into_iter().map(|(n, _)| n).collect()).unwrap_or_default();
            return Err(super::error::invalid(format!("no tier {:?} is configured (tiers: {})", req.tier, have.join(", "))));
        }
        objects.move_to_tier(digest, rec.size, &req.tier).await?
    };
    let tier = objects.meta().blob_tier(&digest).await?.unwrap_or_default();
    Ok(pb::TierMoveResponse { digest: digest.to_string(), tier, moved })
}
