//! CreateBucket, ListBuckets, DeleteBucket.

use std::sync::Arc;

use tonic::Status;

use super::{cluster, pb, validate};
use crate::objects::Objects;
use crate::plugin::Plugins;
use crate::replication::Replicator;

/// On a cluster the bucket also gets a replication policy in the cluster
/// state (the defaults unless the request gives one), which makes it known
/// to every node.
pub async fn handle_create(
    objects: &Objects,
    replicator: Option<&Arc<Replicator>>,
    plugins: &Plugins,
    req: pb::CreateBucketRequest,
) -> Result<pb::Bucket, Status> {
    validate::bucket_name(&req.name)?;
    match (replicator, req.policy) {
        (Some(r), p) => {
            let policy = cluster::policy_from_pb(plugins, &r.config, p.unwrap_or_default())?;
            r.cluster.write(crate::cluster::types::Cmd::SetBucketPolicy { bucket: req.name.clone(), policy }).await?;
        }
        (None, Some(_)) => {
            return Err(Status::failed_precondition("a replication policy needs a cluster: this server has no [cluster] section"));
        }
        (None, None) => {}
    }
    let b = objects.meta().create_bucket(&req.name).await?;
    Ok(pb::Bucket { name: b.name, created_ms: b.created_ms, object_count: b.object_count })
}

pub async fn handle_list(objects: &Objects) -> Result<pb::ListBucketsResponse, Status> {
    let buckets = objects.meta().list_buckets().await?;
    Ok(pb::ListBucketsResponse {
        buckets: buckets.into_iter().map(|b| pb::Bucket { name: b.name, created_ms: b.created_ms, object_count: b.object_count }).collect(),
    })
}

pub async fn handle_delete(objects: &Objects, req: pb::DeleteBucketRequest) -> Result<pb::DeleteBucketResponse, Status> {
    validate::bucket_name(&req.name)?;
    objects.meta().delete_bucket(&req.name).await?;
    Ok(pb::DeleteBucketResponse {})
}
