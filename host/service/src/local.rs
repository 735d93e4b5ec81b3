//! The object service of one node: this node's stores are the truth.

use std::sync::Arc;

use bytes::Bytes;

use super::{Body, Chunks, Feature, Merged, NodeIndexes, ObjectService, PartRef, ReplicaInfo, ServiceError};
use strata_config::IndexingMode;
use strata_meta::{Bucket, Deleted, IndexDef, MetaError, ObjectRecord};
use strata_objects::{Objects, PutSpec};
use strata_plugin::{Kind, PluginError, Plugins};
use strata_replication::PolicySpec;
use strata_search::index::check_fields;
use strata_search::run::{self, Found, Search};
use strata_store::Range;

pub struct Local {
    pub objects: Arc<Objects>,
    pub plugins: Arc<Plugins>,
    /// `metadata.enable_search`.
    pub search: bool,
}

impl Local {
    /// Indexes are on, `kind` is a loaded index-type plugin and it can
    /// index that many fields.
    pub fn check_index(&self, fields: &[String], kind: &str) -> Result<(), ServiceError> {
        self.offered(Feature::Indexes)?;
        match self.plugins.index(kind) {
            Ok(_) => {}
            Err(PluginError::NotFound { .. }) => {
                let known: Vec<String> =
                    self.plugins.list().into_iter().filter(|(i, _)| i.kind == Kind::IndexType).map(|(i, _)| i.name).collect();
                return Err(ServiceError::Invalid(format!("type: no index-type plugin {kind:?}; loaded ones are {}", known.join(", "))));
            }
            Err(e) => return Err(e.into()),
        }
        check_fields(&self.plugins, kind, fields.len())
            .map_err(|e| ServiceError::Invalid(format!("type {kind} cannot index {} field(s): {e}", fields.len())))
    }
}

#[async_trait::async_trait]
impl ObjectService for Local {
    fn offered(&self, feature: Feature) -> Result<(), ServiceError> {
        match feature {
            Feature::Search if !self.search => {
                Err(ServiceError::Unsupported("search is disabled on this server (metadata.enable_search = false)".into()))
            }
            Feature::Indexes if self.objects.meta().indexing() == IndexingMode::Disabled => {
                Err(ServiceError::Unsupported("indexes are disabled on this server (metadata.indexing_mode = \"disabled\")".into()))
            }
            _ => Ok(()),
        }
    }

    async fn put(&self, spec: PutSpec, body: Body<'_>) -> Result<ObjectRecord, ServiceError> {
        Ok(self.objects.put(spec, body).await?)
    }

    /// The composite checks that each part's blob is still stored and
    /// sound, and holds it from then on.
    async fn compose(&self, spec: PutSpec, parts: &[PartRef]) -> Result<ObjectRecord, ServiceError> {
        Ok(self.objects.compose(spec, parts.iter().map(|p| (p.digest, p.size)).collect()).await?)
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

    async fn list(&self, bucket: &str, prefix: &str, after: Option<&str>, limit: u32) -> Result<Merged<Vec<ObjectRecord>>, ServiceError> {
        Ok(Merged::whole(self.objects.meta().list(bucket, prefix, after, limit).await?))
    }

    async fn list_newest(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Merged<Vec<ObjectRecord>>, ServiceError> {
        let meta = self.objects.meta();
        if !meta.bucket_exists(bucket).await? {
            return Err(MetaError::NoSuchBucket { bucket: bucket.into() }.into());
        }
        Ok(Merged::whole(meta.newest_after(bucket, prefix, after, limit).await?))
    }

    async fn versioning(&self, bucket: &str) -> Result<bool, ServiceError> {
        let meta = self.objects.meta();
        if !meta.bucket_exists(bucket).await? {
            return Err(MetaError::NoSuchBucket { bucket: bucket.into() }.into());
        }
        Ok(meta.versioning_of(bucket))
    }

    async fn set_versioning(&self, bucket: &str, on: bool) -> Result<(), ServiceError> {
        Ok(self.objects.meta().set_versioning(bucket, on).await?)
    }

    async fn versions(&self, bucket: &str, key: &str) -> Result<Merged<Vec<ObjectRecord>>, ServiceError> {
        Ok(Merged::whole(self.objects.meta().list_versions(bucket, key).await?))
    }

    async fn restore(&self, bucket: &str, key: &str, version: &str) -> Result<ObjectRecord, ServiceError> {
        Ok(self.objects.meta().restore(bucket, key, version).await?)
    }

    async fn search(&self, search: &Search, indexes: bool) -> Result<Merged<Found>, ServiceError> {
        self.offered(Feature::Search)?;
        Ok(Merged::whole(run::run(self.objects.meta(), indexes.then_some(&*self.plugins), search).await?))
    }

    async fn create_bucket(&self, name: &str, policy: Option<PolicySpec>) -> Result<Bucket, ServiceError> {
        if policy.is_some() {
            return Err(ServiceError::Unsupported("a replication policy needs a cluster: this server has no [cluster] section".into()));
        }
        Ok(self.objects.meta().create_bucket(name).await?)
    }

    async fn list_buckets(&self) -> Result<Merged<Vec<Bucket>>, ServiceError> {
        Ok(Merged::whole(self.objects.meta().list_buckets().await?))
    }

    async fn delete_bucket(&self, name: &str) -> Result<(), ServiceError> {
        Ok(self.objects.meta().delete_bucket(name).await?)
    }

    async fn create_index(&self, bucket: &str, name: &str, fields: &[String], kind: &str) -> Result<(IndexDef, i64), ServiceError> {
        self.check_index(fields, kind)?;
        let meta = self.objects.meta();
        let def = meta.create_index(bucket, name, fields, kind).await?;
        Ok((def, meta.head().await?))
    }

    async fn list_indexes(&self, bucket: Option<&str>) -> Result<Merged<Vec<(String, NodeIndexes)>>, ServiceError> {
        let meta = self.objects.meta();
        if let Some(b) = bucket
            && !meta.bucket_exists(b).await?
        {
            return Err(MetaError::NoSuchBucket { bucket: b.into() }.into());
        }
        let head = meta.head().await?;
        let defs = meta.list_indexes().await?.into_iter().filter(|d| bucket.is_none_or(|b| b == d.bucket)).collect();
        Ok(Merged::whole(vec![(String::new(), NodeIndexes { defs, head })]))
    }

    async fn drop_index(&self, bucket: &str, name: &str) -> Result<(), ServiceError> {
        Ok(self.objects.meta().drop_index(bucket, name).await?)
    }
}
