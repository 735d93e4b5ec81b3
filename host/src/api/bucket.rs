//! CreateBucket, ListBuckets, DeleteBucket.

use super::error::ApiError;
use super::{cluster, pb, validate};
use crate::meta::Bucket;
use crate::service::ObjectService;

fn bucket_pb(b: Bucket) -> pb::Bucket {
    pb::Bucket { name: b.name, created_ms: b.created_ms, object_count: b.object_count }
}

pub async fn handle_create(service: &dyn ObjectService, req: pb::CreateBucketRequest) -> Result<pb::Bucket, ApiError> {
    validate::bucket_name(&req.name)?;
    let policy = req.policy.map(cluster::policy_spec);
    Ok(bucket_pb(service.create_bucket(&req.name, policy).await?))
}

pub async fn handle_list(service: &dyn ObjectService) -> Result<pb::ListBucketsResponse, ApiError> {
    let buckets = service.list_buckets().await?;
    Ok(pb::ListBucketsResponse { buckets: buckets.value.into_iter().map(bucket_pb).collect(), missing: buckets.missing })
}

pub async fn handle_delete(service: &dyn ObjectService, req: pb::DeleteBucketRequest) -> Result<pb::DeleteBucketResponse, ApiError> {
    validate::bucket_name(&req.name)?;
    service.delete_bucket(&req.name).await?;
    Ok(pb::DeleteBucketResponse {})
}
