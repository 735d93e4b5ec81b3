//! `strata tier`: the tiers and what they hold; move and recall now;
//! the policies.

use serde_json::json;

use crate::api::pb;
use crate::cli::TierCmd;
use crate::cli::client::{Client, status};

pub async fn run(c: &mut Client, cmd: TierCmd) -> anyhow::Result<()> {
    match cmd {
        TierCmd::Ls { json } | TierCmd::Status { json } if json => {
            let r = c.tier_list(pb::TierListRequest {}).await.map_err(status)?.into_inner();
            let tiers: Vec<_> = r
                .tiers
                .iter()
                .map(|t| json!({"name": t.name, "url": t.url, "blobs": t.blobs, "bytes": t.bytes, "stored_bytes": t.stored_bytes}))
                .collect();
            println!("{}", json!({"tiers": tiers, "cached_bytes": r.cached_bytes}));
        }
        TierCmd::Ls { .. } => {
            let r = c.tier_list(pb::TierListRequest {}).await.map_err(status)?.into_inner();
            for t in &r.tiers {
                println!("{:<12} {}", t.name, t.url);
            }
        }
        TierCmd::Status { .. } => {
            let r = c.tier_list(pb::TierListRequest {}).await.map_err(status)?.into_inner();
            println!("{:<12} {:>10} {:>12} {:>12}", "TIER", "BLOBS", "BYTES", "STORED");
            for t in &r.tiers {
                println!(
                    "{:<12} {:>10} {:>12} {:>12}",
                    t.name,
                    t.blobs,
                    bytesize::ByteSize(t.bytes).to_string(),
                    bytesize::ByteSize(t.stored_bytes).to_string()
                );
            }
            println!("cached locally: {}", bytesize::ByteSize(r.cached_bytes));
        }
        TierCmd::Move { key, tier, bucket, version } => {
            let req =
                pb::TierMoveRequest { bucket: bucket.unwrap_or_default(), key: key.clone(), version: version.unwrap_or_default(), tier };
            let r = c.tier_move(req).await.map_err(status)?.into_inner();
            println!("{key}: {} {} tier {}", r.digest, if r.moved { "moved to" } else { "already on" }, r.tier);
        }
        TierCmd::Policy { bucket: None, json, .. } => {
            show_policies(&c.list_tier_policies(pb::ListTierPoliciesRequest {}).await.map_err(status)?.into_inner(), json)
        }
        TierCmd::Policy { bucket: Some(bucket), tier, after, idle, min_size, remove, json } => {
            if tier.is_none() && !remove {
                anyhow::bail!("give the bucket's tier (--tier NAME with --after, --idle or --min-size), or --remove");
            }
            let ms = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_millis() as u64);
            let policy = pb::TierPolicy {
                bucket,
                tier: if remove { String::new() } else { tier.unwrap_or_default() },
                after_ms: ms(after),
                idle_ms: ms(idle),
                min_size: min_size.unwrap_or(0),
            };
            let r = c.set_tier_policy(pb::SetTierPolicyRequest { policy: Some(policy) }).await.map_err(status)?.into_inner();
            show_policies(&r, json);
        }
        TierCmd::Recall { key, bucket, version } => {
            let req = pb::TierMoveRequest {
                bucket: bucket.unwrap_or_default(),
                key: key.clone(),
                version: version.unwrap_or_default(),
                tier: String::new(),
            };
            let r = c.tier_recall(req).await.map_err(status)?.into_inner();
            println!("{key}: {} {} tier {}", r.digest, if r.moved { "recalled to" } else { "already on" }, r.tier);
        }
    }
    Ok(())
}

fn show_policies(r: &pb::TierPolicies, json: bool) {
    let opt = |ms: u64| (ms > 0).then(|| humantime::format_duration(std::time::Duration::from_millis(ms)).to_string());
    if json {
        let rows: Vec<_> = r
            .policies
            .iter()
            .map(|p| json!({"bucket": p.bucket, "tier": p.tier, "after_ms": p.after_ms, "idle_ms": p.idle_ms, "min_size": p.min_size}))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    if r.policies.is_empty() {
        println!("no tier policies");
        return;
    }
    println!("{:<20} {:<12} {:>10} {:>10} {:>10}", "BUCKET", "TIER", "AFTER", "IDLE", "MIN_SIZE");
    for p in &r.policies {
        println!(
            "{:<20} {:<12} {:>10} {:>10} {:>10}",
            p.bucket,
            p.tier,
            opt(p.after_ms).unwrap_or_else(|| "-".into()),
            opt(p.idle_ms).unwrap_or_else(|| "-".into()),
            if p.min_size > 0 { bytesize::ByteSize(p.min_size).to_string() } else { "-".into() }
        );
    }
}
