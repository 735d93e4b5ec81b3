//! Tiers: what each holds, moving one version's blob now, and the
//! policies that move them.

use tonic::Status;

use super::error::{ApiError, invalid};
use super::{pb, validate};
use crate::cluster::node::Cluster;
use crate::cluster::types::{Cmd, TierRule};
use crate::meta::tiers::LOCAL;
use crate::objects::{ObjectError, Objects, TierPolicy};

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

fn ms(d: Option<std::time::Duration>) -> u64 {
    d.map_or(0, |d| d.as_millis() as u64)
}

fn policy_pb(p: &TierPolicy) -> pb::TierPolicy {
    pb::TierPolicy { bucket: p.bucket.clone(), tier: p.tier.clone(), after_ms: ms(p.after), idle_ms: ms(p.idle), min_size: p.min_size }
}

/// The tier policies this node applies: the cluster's on a cluster node,
/// else `[[tier_policies]]`.
pub async fn policies(cluster: Option<&Cluster>, configured: &[TierPolicy]) -> Result<Vec<TierPolicy>, ApiError> {
    let Some(c) = cluster else { return Ok(configured.to_vec()) };
    Ok(from_state(&c.read().await?.tier_policies))
}

/// The cluster state's tier policies, as the mover takes them.
pub fn from_state(rules: &std::collections::BTreeMap<String, TierRule>) -> Vec<TierPolicy> {
    let dur = |ms: Option<u64>| ms.map(std::time::Duration::from_millis);
    rules
        .iter()
        .map(|(bucket, r)| TierPolicy {
            bucket: bucket.clone(),
            tier: r.tier.clone(),
            after: dur(r.after_ms),
            idle: dur(r.idle_ms),
            min_size: r.min_size,
        })
        .collect()
}

pub async fn handle_list_policies(cluster: Option<&Cluster>, configured: &[TierPolicy]) -> Result<pb::TierPolicies, ApiError> {
    Ok(pb::TierPolicies { policies: policies(cluster, configured).await?.iter().map(policy_pb).collect() })
}

/// Sets a bucket's policy in the cluster state. The tier must be one this
/// node has; a node without a tier of that name moves nothing and says so
/// in its log.
pub async fn handle_set_policy(
    cluster: Option<&Cluster>,
    objects: &Objects,
    configured: &[TierPolicy],
    req: pb::SetTierPolicyRequest,
) -> Result<pb::TierPolicies, ApiError> {
    let Some(c) = cluster else {
        return Err(ApiError::Status(Status::failed_precondition(
            "a single-node server takes its tier policies from [[tier_policies]] in its config",
        )));
    };
    let p = req.policy.ok_or_else(|| invalid("policy: give the bucket, and a tier with limits (or no tier to remove the policy)"))?;
    validate::bucket_name(&p.bucket)?;
    let policy = if p.tier.is_empty() {
        None
    } else {
        if objects.tiers().is_none_or(|t| t.get(&p.tier).is_err()) {
            let have: Vec<_> = objects.tiers().map(|t| t.list().into_iter().map(|(n, _)| n).collect()).unwrap_or_default();
            return Err(invalid(format!(
                "this node has no tier {:?} (its tiers: {}); every node needs a [[tiers]] of that name",
                p.tier,
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            )));
        }
        if p.after_ms == 0 && p.idle_ms == 0 && p.min_size == 0 {
            return Err(invalid("a tier policy needs after, idle or min_size"));
        }
        let set = |v: u64| (v > 0).then_some(v);
        Some(TierRule { tier: p.tier, after_ms: set(p.after_ms), idle_ms: set(p.idle_ms), min_size: p.min_size })
    };
    let r = c.write(Cmd::SetTierPolicy { bucket: p.bucket, policy }).await?;
    if let Some(why) = r.refused {
        return Err(ApiError::Status(Status::not_found(why)));
    }
    handle_list_policies(cluster, configured).await
}
