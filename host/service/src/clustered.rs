//! The object service of a cluster node: writes, reads and deletes go
//! through the replicator to the nodes each key's policy names; listings,
//! versions and bucket counts are merged from every node's answer
//! (`strata_replication::namespace`).

use std::sync::Arc;

use bytes::Bytes;

use super::{Body, Chunks, Feature, Local, Merged, NodeIndexes, ObjectService, PartRef, ReplicaInfo, ServiceError};
use futures::StreamExt;
use strata_cluster::types::{Cmd, IndexSpec};
use strata_meta::{Bucket, Condition, Deleted, IndexDef, MetaError, ObjectRecord};
use strata_objects::PutSpec;
use strata_replication::{PolicySpec, ReplicationError, Replicator, plan};
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

    /// The parts may live on any nodes, so their bytes are streamed, in
    /// order, into one replicated put (a copy, unlike on one node).
    async fn compose(&self, spec: PutSpec, parts: &[PartRef]) -> Result<ObjectRecord, ServiceError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(4);
        let (r, parts) = (self.replicator.clone(), parts.to_vec());
        let feed = tokio::spawn(async move {
            for p in parts {
                let mut chunks = match r.get(&p.bucket, &p.key, Some(&p.version), Range::ALL).await {
                    Ok((_, c)) => c,
                    Err(e) => {
                        let _ = tx.send(Err(format!("reading part {:?}: {e}", p.key))).await;
                        return;
                    }
                };
                while let Some(c) = chunks.recv().await {
                    let failed = c.is_err();
                    if tx.send(c.map_err(|e| format!("reading part {:?}: {e}", p.key))).await.is_err() || failed {
                        return;
                    }
                }
            }
        });
        let body = tokio_stream::wrappers::ReceiverStream::new(rx);
        let out = self.replicator.put(spec, body).await;
        feed.abort();
        Ok(out?)
    }

    /// Each item is its own replicated write, all in flight at once.
    async fn put_many(&self, items: Vec<(PutSpec, Bytes)>) -> Vec<Result<ObjectRecord, ServiceError>> {
        tokio::task::yield_now().await; // see `Objects::commit`
        self.replicator.put_many(items).await.into_iter().map(|r| r.map_err(ServiceError::from)).collect()
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
        Ok(self.replicator.list(bucket, prefix, after, limit, false).await?)
    }

    async fn list_newest(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Merged<Vec<ObjectRecord>>, ServiceError> {
        Ok(self.replicator.list(bucket, prefix, after, limit, true).await?)
    }

    /// Every node follows `[metadata] enable_versioning`.
    async fn versioning(&self, bucket: &str) -> Result<bool, ServiceError> {
        self.replicator.require_bucket(bucket).await?;
        Ok(self.replicator.objects.meta().versioning_of(bucket))
    }

    /// Not on a cluster: each node records the versions it holds by its
    /// own setting, and a setting per bucket would have to reach every node
    /// with the bucket's policy. `[metadata] enable_versioning` applies.
    async fn set_versioning(&self, _bucket: &str, _on: bool) -> Result<(), ServiceError> {
        Err(ServiceError::Unsupported(
            "versioning per bucket is not built for clusters yet: every bucket follows [metadata] enable_versioning".into(),
        ))
    }

    async fn versions(&self, bucket: &str, key: &str) -> Result<Merged<Vec<ObjectRecord>>, ServiceError> {
        Ok(self.replicator.versions(bucket, key).await?)
    }

    /// A new version with the old one's content and metadata, ordered with
    /// the key's conditional writes.
    async fn restore(&self, bucket: &str, key: &str, version: &str) -> Result<ObjectRecord, ServiceError> {
        let r = &self.replicator;
        let (old, chunks) = r.get(bucket, key, Some(version), Range::ALL).await?;
        let spec = PutSpec {
            bucket: bucket.into(),
            key: key.into(),
            content_type: old.content_type,
            attributes: old.attributes,
            size: Some(old.size),
            expected_digest: old.digest,
            condition: Condition::Always,
            identity: None,
            request_id: None,
            late: None,
        };
        let body = tokio_stream::wrappers::ReceiverStream::new(chunks).map(|c| c.map_err(|e| e.to_string()));
        Ok(r.put_decided(spec, body).await?)
    }

    async fn search(&self, search: &Search, indexes: bool) -> Result<Merged<Found>, ServiceError> {
        self.local.offered(Feature::Search)?;
        Ok(self.replicator.search(search, indexes).await?)
    }

    /// The bucket also gets a replication policy in the cluster state (the
    /// defaults unless the request gives one), which makes it known to
    /// every node.
    async fn create_bucket(&self, name: &str, policy: Option<PolicySpec>) -> Result<Bucket, ServiceError> {
        let r = &self.replicator;
        let policy = plan::resolve(&r.plugins, &r.config, policy.unwrap_or_default())?;
        r.cluster.write(Cmd::SetBucketPolicy { bucket: name.into(), policy }).await.map_err(ReplicationError::from)?;
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

    /// Defined in the cluster state, so every node builds it (one that
    /// joins later too); answered with this node's copy.
    async fn create_index(&self, bucket: &str, name: &str, fields: &[String], kind: &str) -> Result<(IndexDef, i64), ServiceError> {
        self.local.check_index(fields, kind)?;
        let r = &self.replicator;
        r.require_bucket(bucket).await?;
        let index = IndexSpec { bucket: bucket.into(), name: name.into(), fields: fields.to_vec(), kind: kind.into() };
        let done = r.cluster.write(Cmd::CreateIndex { index }).await.map_err(ReplicationError::from)?;
        if done.refused.is_some() {
            return Err(MetaError::IndexExists { bucket: bucket.into(), name: name.into() }.into());
        }
        // A follower may not have applied the change yet: read through.
        r.cluster.read().await.map_err(ReplicationError::from)?;
        r.reconcile_indexes().await?;
        let meta = r.objects.meta();
        let def = meta.list_indexes().await?.into_iter().find(|d| d.bucket == bucket && d.name == name);
        // Dropped again meanwhile by another client.
        let def = def.ok_or_else(|| MetaError::NoSuchIndex { bucket: bucket.into(), name: name.into() })?;
        Ok((def, meta.head().await?))
    }

    async fn list_indexes(&self, bucket: Option<&str>) -> Result<Merged<Vec<(String, NodeIndexes)>>, ServiceError> {
        if let Some(b) = bucket {
            self.replicator.require_bucket(b).await?;
        }
        Ok(self.replicator.indexes(bucket).await?)
    }

    /// Removed from the cluster state; every node drops its copy.
    async fn drop_index(&self, bucket: &str, name: &str) -> Result<(), ServiceError> {
        self.local.offered(Feature::Indexes)?;
        let r = &self.replicator;
        let done = r.cluster.write(Cmd::DropIndex { bucket: bucket.into(), name: name.into() }).await.map_err(ReplicationError::from)?;
        if done.refused.is_some() {
            return Err(MetaError::NoSuchIndex { bucket: bucket.into(), name: name.into() }.into());
        }
        r.cluster.read().await.map_err(ReplicationError::from)?;
        r.reconcile_indexes().await?;
        Ok(())
    }
}
