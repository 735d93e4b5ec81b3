//! The object service of a cluster node: writes, reads and deletes go
//! through the replicator to the nodes each key's policy names; listings,
//! versions and bucket counts are merged from every node's answer
//! (`strata_replication::namespace`).

use std::sync::Arc;

use bytes::Bytes;

use super::{Body, Chunks, Feature, Indexes, Local, Merged, ObjectService, ReplicaInfo, ServiceError};
use strata_cluster::types::Cmd;
use strata_meta::{Bucket, Deleted, IndexDef, ObjectRecord};
use strata_objects::PutSpec;
use strata_replication::{PolicySpec, Replicator, plan};
use strata_search::run::{Found, Search};
use strata_store::Range;

pub struct Clustered {
    local: Local,
    replicator: Arc<Replicator>,
}

impl Clustered {
    pub fn new(local: Local, replicator: Arc<Replicator>) -> Self {
        Self { local, replicator }
    }
}

#[async_trait::async_trait]
impl ObjectService for Clustered {
    fn offered(&self, feature: Feature) -> Result<(), ServiceError> {
        self.local.offered(feature)
    }

    async fn put(&self, spec: PutSpec, body: Body<'_>) -> Result<ObjectRecord, ServiceError> {
        Ok(self.replicator.put(spec, body).await?)
    }

    /// Each item is its own replicated write, all in flight at once.
    async fn put_many(&self, items: Vec<(PutSpec, Bytes)>) -> Vec<Result<ObjectRecord, ServiceError>> {
        tokio::task::yield_now().await; // see `Objects::commit`
        let puts = items.into_iter().map(|(spec, data)| {
            let body: Body<'static> = Box::pin(futures::stream::iter([Ok(data)]));
            self.replicator.put(spec, body)
        });
        futures::future::join_all(puts).await.into_iter().map(|r| r.map_err(ServiceError::from)).collect()
    }

    async fn get(&self, bucket: &str, key: &str, version: Option<&str>, range: Range) -> Result<(ObjectRecord, Chunks), ServiceError> {
        Ok(self.replicator.get(bucket, key, version, range).await?)
    }

    async fn stat(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<(ObjectRecord, Vec<ReplicaInfo>), ServiceError> {
        Ok(self.replicator.stat(bucket, key, version).await?)
    }

    async fn delete(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Deleted, ServiceError> {
        Ok(self.replicator.delete(bucket, key, version).await?)
    }

    async fn list(&self, bucket: &str, prefix: &str, after: Option<&str>, limit: u32) -> Result<Merged<Vec<ObjectRecord>>, ServiceError> {
        Ok(self.replicator.list(bucket, prefix, after, limit).await?)
    }

    async fn versions(&self, bucket: &str, key: &str) -> Result<Merged<Vec<ObjectRecord>>, ServiceError> {
        Ok(self.replicator.versions(bucket, key).await?)
    }

    async fn restore(&self, _bucket: &str, _key: &str, _version: &str) -> Result<ObjectRecord, ServiceError> {
        Err(ServiceError::Unsupported("restore is not available on a cluster yet: get the old version and put it again".into()))
    }

    async fn search(&self, search: &Search, indexes: bool) -> Result<Merged<Found>, ServiceError> {
        self.local.search(search, indexes).await
    }

    /// The bucket also gets a replication policy in the cluster state (the
    /// defaults unless the request gives one), which makes it known to
    /// every node.
    async fn create_bucket(&self, name: &str, policy: Option<PolicySpec>) -> Result<Bucket, ServiceError> {
        let r = &self.replicator;
        let policy = plan::resolve(&r.plugins, &r.config, policy.unwrap_or_default())?;
        r.cluster.write(Cmd::SetBucketPolicy { bucket: name.into(), policy }).await.map_err(strata_replication::ReplicationError::from)?;
        self.local.create_bucket(name, None).await
    }

    /// Every bucket the cluster knows, each counted across the cluster.
    async fn list_buckets(&self) -> Result<Merged<Vec<Bucket>>, ServiceError> {
        let r = &self.replicator;
        for name in r.cluster.state.state().await.buckets.keys() {
            r.require_bucket(name).await?;
        }
        let mut buckets = self.local.list_buckets().await?.value;
        let mut missing = std::collections::BTreeSet::new();
        for b in &mut buckets {
            let n = r.count(&b.name).await?;
            b.object_count = n.value;
            missing.extend(n.missing);
        }
        Ok(Merged { value: buckets, missing: missing.into_iter().collect() })
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), ServiceError> {
        self.local.delete_bucket(name).await
    }

    async fn create_index(&self, bucket: &str, name: &str, fields: &[String], kind: &str) -> Result<(IndexDef, i64), ServiceError> {
        self.local.create_index(bucket, name, fields, kind).await
    }

    async fn list_indexes(&self, bucket: Option<&str>) -> Result<Indexes, ServiceError> {
        self.local.list_indexes(bucket).await
    }

    async fn drop_index(&self, bucket: &str, name: &str) -> Result<(), ServiceError> {
        self.local.drop_index(bucket, name).await
    }
}
