//! `strata tier`: the tiers and what they hold; move and recall now.

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
