//! CreateBucket, ListBuckets, DeleteBucket.

use tonic::Status;

use super::{pb, validate};
use crate::objects::Objects;

pub async fn handle_create(objects: &Objects, req: pb::CreateBucketRequest) -> Result<pb::Bucket, Status> {
    validate::bucket_name(&req.name)?;
    let b = objects.meta().create_bucket(&req.name).await?;
    Ok(pb::Bucket { name: b.name, created_ms: b.created_ms, object_count: b.object_count })
}

pub async fn handle_list(objects: &Objects) -> Result<pb::ListBucketsResponse, Status> {
    let buckets = objects.meta().list_buckets().await?;
    Ok(pb::ListBucketsResponse {
        buckets: buckets
            .into_iter()
            .map(|b| pb::Bucket { name: b.name, created_ms: b.created_ms, object_count: b.object_count })
            .collect(),
    })
}

pub async fn handle_delete(objects: &Objects, req: pb::DeleteBucketRequest) -> Result<pb::DeleteBucketResponse, Status> {
    validate::bucket_name(&req.name)?;
    objects.meta().delete_bucket(&req.name).await?;
    Ok(pb::DeleteBucketResponse {})
}
