//! The object service: what every front end calls (the gRPC API today;
//! the S3 gateway, the OCI registry, backups and tiers next), the same on
//! one node and on a cluster node. This is the one seam between the two:
//! [`Local`] answers from this node's stores, [`Clustered`] places and
//! reads versions across the cluster. Its types are Strata's own, so a
//! front end needs no gRPC.

mod clustered;
mod error;
mod local;

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

pub use clustered::Clustered;
pub use error::ServiceError;
pub use local::Local;

use strata_meta::{Bucket, Deleted, IndexDef, ObjectRecord};
use strata_objects::{ObjectError, PutSpec};
use strata_replication::PolicySpec;
pub use strata_replication::namespace::Merged;
pub use strata_replication::read::ReplicaInfo;
pub use strata_replication::wire::NodeIndexes;
use strata_search::run::{Found, Search};
use strata_store::Range;

/// A put's bytes as the client sends them; an error says why the stream
/// broke off.
pub type Body<'a> = BoxStream<'a, Result<Bytes, String>>;

/// A get's bytes, verified as they are read; an error ends the stream.
pub type Chunks = mpsc::Receiver<Result<Bytes, ObjectError>>;

/// A stored version used as a part of a composed object, with the digest
/// and size its record shows (a node that holds the blob composes from
/// them; the version is read where it does not).
#[derive(Clone, Debug)]
pub struct PartRef {
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub digest: strata_store::Digest,
    pub size: u64,
}

/// What a server may have switched off in its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// `metadata.enable_search`.
    Search,
    /// `metadata.indexing_mode` other than `disabled`.
    Indexes,
}

#[async_trait::async_trait]
pub trait ObjectService: Send + Sync {
    /// Refuses a feature this server has switched off. Front ends ask first,
    /// so such a request is refused before its contents are examined; the
    /// calls that need the feature check again.
    fn offered(&self, feature: Feature) -> Result<(), ServiceError>;

    /// Stores an object. Nothing is visible unless the whole body arrived
    /// and matched its promises (size, digest).
    async fn put(&self, spec: PutSpec, body: Body<'_>) -> Result<ObjectRecord, ServiceError>;

    /// Stores an object whose bytes are those of `parts` (stored versions)
    /// one after another. On one node it records O(parts) metadata and
    /// copies no data; a cluster node streams the parts into a put.
    async fn compose(&self, spec: PutSpec, parts: &[PartRef]) -> Result<ObjectRecord, ServiceError>;

    /// Stores small objects together, one answer per item.
    async fn put_many(&self, items: Vec<(PutSpec, Bytes)>) -> Vec<Result<ObjectRecord, ServiceError>>;

    /// A version (the newest without one) and its bytes in `range`.
    async fn get(&self, bucket: &str, key: &str, version: Option<&str>, range: Range) -> Result<(ObjectRecord, Chunks), ServiceError>;

    /// A version's record; on a cluster, with the state of each replica.
    async fn stat(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<(ObjectRecord, Vec<ReplicaInfo>), ServiceError>;

    /// Deletes a key (a delete marker when the bucket keeps versions) or
    /// removes one version for good.
    async fn delete(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Deleted, ServiceError>;

    /// Deletes keys one by one, one answer per key.
    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Vec<Result<Deleted, ServiceError>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.delete(bucket, key, None).await);
        }
        out
    }

    /// Live keys under `prefix`, after `after`, in key order; on a cluster
    /// each with its newest version on any node.
    async fn list(&self, bucket: &str, prefix: &str, after: Option<&str>, limit: u32) -> Result<Merged<Vec<ObjectRecord>>, ServiceError>;

    /// Keys under `prefix` after `after` that have any version, in key
    /// order, each with its newest (a delete marker included).
    async fn list_newest(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Merged<Vec<ObjectRecord>>, ServiceError>;

    /// Whether a bucket keeps old versions.
    async fn versioning(&self, bucket: &str) -> Result<bool, ServiceError>;

    /// Makes a bucket keep old versions from now on, or stop keeping them
    /// (those kept stay).
    async fn set_versioning(&self, bucket: &str, on: bool) -> Result<(), ServiceError>;

    /// Every version of a key, newest first.
    async fn versions(&self, bucket: &str, key: &str) -> Result<Merged<Vec<ObjectRecord>>, ServiceError>;

    /// Makes an old version the newest again.
    async fn restore(&self, bucket: &str, key: &str, version: &str) -> Result<ObjectRecord, ServiceError>;

    /// A page of the objects a filter matches; `indexes: false` scans.
    async fn search(&self, search: &Search, indexes: bool) -> Result<Merged<Found>, ServiceError>;

    /// Makes a bucket; on a cluster with its replication policy.
    async fn create_bucket(&self, name: &str, policy: Option<PolicySpec>) -> Result<Bucket, ServiceError>;

    /// Buckets with their live key counts.
    async fn list_buckets(&self) -> Result<Merged<Vec<Bucket>>, ServiceError>;

    /// Deletes an empty bucket.
    async fn delete_bucket(&self, name: &str) -> Result<(), ServiceError>;

    /// Makes an index of `kind` (an index-type plugin) over `fields` (in
    /// their canonical spelling) and starts building it; answers it with
    /// the log's head.
    async fn create_index(&self, bucket: &str, name: &str, fields: &[String], kind: &str) -> Result<(IndexDef, i64), ServiceError>;

    /// The indexes (of one bucket, or all) as each node holds them ("" on
    /// a single node, else "node N (ADDR)"), with where its log is now.
    async fn list_indexes(&self, bucket: Option<&str>) -> Result<Merged<Vec<(String, NodeIndexes)>>, ServiceError>;

    async fn drop_index(&self, bucket: &str, name: &str) -> Result<(), ServiceError>;
}

/// The service a node runs: on a cluster node when it has a replicator.
pub fn for_node(local: Local, replicator: Option<Arc<strata_replication::Replicator>>) -> Arc<dyn ObjectService> {
    match replicator {
        Some(r) => Arc::new(Clustered::new(local, r)),
        None => Arc::new(local),
    }
}
