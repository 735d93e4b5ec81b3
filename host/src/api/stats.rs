//! Stats: totals from the metadata store, live figures from the metrics.

use super::error::ApiError;
use super::pb;
use crate::objects::Objects;

pub async fn handle_stats(objects: &Objects) -> Result<pb::StatsResponse, ApiError> {
    let s = objects.meta().stats().await?;
    let q = objects.meta().queue_stats().await?;
    let space = objects.space().await?;
    Ok(pb::StatsResponse {
        replication_pending: q.pending,
        replication_retrying: q.retrying,
        replication_lag_ms: q.oldest_ms,
        objects: s.objects,
        versions: s.versions,
        blobs: s.blobs,
        logical_bytes: s.live_bytes,
        physical_bytes: s.stored_bytes,
        dedup_ratio: if s.blob_bytes == 0 { 1.0 } else { s.version_bytes as f64 / s.blob_bytes as f64 },
        cache_hits: s.cache.hits,
        cache_misses: s.cache.misses,
        cache_hit_ratio: s.cache.hit_ratio(),
        ops: objects
            .metrics
            .figures()
            .into_iter()
            .map(|f| pb::OpStats { op: f.op, count: f.count, errors: f.errors, mean_ms: f.mean_ms, p50_ms: f.p50_ms, p99_ms: f.p99_ms })
            .collect(),
        corrupt_blobs: s.corrupt_blobs,
        max_size: objects.store().quota.max,
        free_bytes: space.free,
        reserved_bytes: space.reserve,
        low_space: space.is_low(),
    })
}
