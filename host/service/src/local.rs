//! The object service of one node: this node's stores are the truth.

use std::sync::Arc;

use bytes::Bytes;

use super::{Body, Chunks, ObjectService, ReplicaInfo, ServiceError};
use strata_meta::{Bucket, Deleted, ObjectRecord};
use strata_objects::{Objects, PutSpec};
use strata_plugin::Plugins;
use strata_replication::PolicySpec;
use strata_search::run::{self, Found, Search};
use strata_store::Range;

pub struct Local {
    pub objects: Arc<Objects>,
    pub plugins: Arc<Plugins>,
    /// `metadata.enable_search`.
    pub search: bool,
}

#[async_trait::async_trait]
impl ObjectService for Local {
    async fn put(&self, spec: PutSpec, body: Body<'_>) -> Result<ObjectRecord, ServiceError> {
        Ok(self.objects.put(spec, body).await?)
    }

    async fn put_many(&self, items: Vec<(PutSpec, Bytes)>) -> Vec<Result<ObjectRecord, ServiceError>> {
        self.objects.put_many(items).await.into_iter().map(|r| r.map_err(ServiceError::from)).collect()
    }

    async fn get(&self, bucket: &str, key: &str, version: Option<&str>, range: Range) -> Result<(ObjectRecord, Chunks), ServiceError> {
        Ok(self.objects.get(bucket, key, version, range).await?)
    }

    async fn stat(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<(ObjectRecord, Vec<ReplicaInfo>), ServiceError> {
        Ok((self.objects.meta().get(bucket, key, version).await?, Vec::new()))
    }

    async fn delete(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Deleted, ServiceError> {
        Ok(self.objects.delete(bucket, key, version).await?)
    }

    async fn list(&self, bucket: &str, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<ObjectRecord>, ServiceError> {
        Ok(self.objects.meta().list(bucket, prefix, after, limit).await?)
    }

    async fn versions(&self, bucket: &str, key: &str) -> Result<Vec<ObjectRecord>, ServiceError> {
        Ok(self.objects.meta().list_versions(bucket, key).await?)
    }

    async fn restore(&self, bucket: &str, key: &str, version: &str) -> Result<ObjectRecord, ServiceError> {
        Ok(self.objects.meta().restore(bucket, key, version).await?)
    }

    async fn search(&self, search: &Search, indexes: bool) -> Result<Found, ServiceError> {
        if !self.search {
            return Err(ServiceError::Unsupported("search is disabled on this server (metadata.enable_search = false)".into()));
        }
        Ok(run::run(self.objects.meta(), indexes.then_some(&*self.plugins), search).await?)
    }

    async fn create_bucket(&self, name: &str, policy: Option<PolicySpec>) -> Result<Bucket, ServiceError> {
        if policy.is_some() {
            return Err(ServiceError::Unsupported("a replication policy needs a cluster: this server has no [cluster] section".into()));
        }
        Ok(self.objects.meta().create_bucket(name).await?)
    }

    async fn list_buckets(&self) -> Result<Vec<Bucket>, ServiceError> {
        Ok(self.objects.meta().list_buckets().await?)
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), ServiceError> {
        Ok(self.objects.meta().delete_bucket(name).await?)
    }
}
