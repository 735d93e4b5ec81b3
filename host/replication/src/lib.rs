//! Replication: every object version lives on the nodes its bucket's policy
//! asks for.
//!
//! The unit copied between nodes is a *version* (its metadata and its
//! blob), never a bare blob: each replica records the version with the
//! identity the coordinator minted (a hybrid-logical-clock stamp and the
//! writer's node id), so all replicas agree on its name and on which
//! version of a key is newest. A write ([`write`]) is planned by the
//! bucket's node-selector and replication-strategy plugins ([`plan`]),
//! streamed to the synchronous targets while the client sends it, and
//! acknowledged once the plan's acknowledgements are durable; the other
//! copies go through a persistent queue ([`queue`]). A read ([`read`]) is
//! served from any node, failing over between replicas. [`service`] is the
//! receiving side, [`wire`] the messages.

pub mod conditional;
pub mod delete;
pub mod entropy;
pub mod error;
pub mod indexes;
pub mod namespace;
pub mod placement;
pub mod plan;
pub mod queue;
pub mod read;
mod retry;
pub mod search;
pub mod service;
pub mod siblings;
pub mod wire;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use strata_cluster::node::Cluster;
use strata_config::ReplicationConfig;
use strata_objects::{ObjectError, Objects};
use strata_plugin::Plugins;

pub use error::ReplicationError;
pub use plan::{Policy, PolicySpec};

pub struct Replicator {
    pub objects: Arc<Objects>,
    pub cluster: Arc<Cluster>,
    pub plugins: Arc<Plugins>,
    pub config: ReplicationConfig,
    /// Wakes the queue worker: copies were queued.
    queued: Notify,
    /// One placement pass at a time.
    pass_lock: tokio::sync::Mutex<()>,
    /// One resolution of siblings at a time.
    resolving: tokio::sync::Mutex<()>,
    pub totals: placement::Totals,
    /// Anti-entropy: passes in a row each (peer, partition) has differed
    /// with nothing to copy from here.
    stuck: std::sync::Mutex<std::collections::HashMap<(u64, u16), u32>>,
}

impl Replicator {
    pub fn new(objects: Arc<Objects>, cluster: Arc<Cluster>, plugins: Arc<Plugins>, config: ReplicationConfig) -> Arc<Self> {
        Arc::new(Self {
            objects,
            cluster,
            plugins,
            config,
            queued: Notify::new(),
            pass_lock: Default::default(),
            resolving: Default::default(),
            totals: Default::default(),
            stuck: Default::default(),
        })
    }

    /// The bucket's policy as this node last applied it.
    pub async fn policy(&self, bucket: &str) -> Policy {
        let own = self.cluster.state.bucket_policy(bucket).await;
        Policy::of(own.as_ref(), &self.config)
    }

    /// The bucket exists here, or the cluster knows it (it is then made here).
    pub async fn require_bucket(&self, bucket: &str) -> Result<(), ReplicationError> {
        let meta = self.objects.meta();
        if meta.bucket_exists(bucket).await.map_err(ObjectError::from)? {
            return Ok(());
        }
        if self.cluster.state.bucket_policy(bucket).await.is_some() {
            meta.ensure_bucket(bucket).await.map_err(ObjectError::from)?;
            return Ok(());
        }
        Err(ObjectError::from(strata_meta::MetaError::NoSuchBucket { bucket: bucket.into() }).into())
    }

    pub fn wake(&self) {
        self.queued.notify_one();
    }

    /// Time to wait for a peer's short answer.
    fn short_timeout(&self) -> Duration {
        self.config.sync_timeout.min(Duration::from_secs(5))
    }

    /// The address of a member, if it is one.
    fn addr_of(&self, node: u64) -> Option<String> {
        self.cluster.members().into_iter().find(|(id, ..)| *id == node).map(|(_, n, _)| n.addr)
    }

    /// Queues copies of a version on `holder`, a node that holds it.
    pub async fn enqueue_on(&self, holder: u64, bucket: &str, key: &str, version: &str, nodes: &[u64]) -> Result<(), ReplicationError> {
        if nodes.is_empty() {
            return Ok(());
        }
        if holder == self.cluster.id {
            self.objects.meta().enqueue(bucket, key, version, nodes).await.map_err(ObjectError::from)?;
            self.wake();
            return Ok(());
        }
        let addr = self.addr_of(holder).ok_or_else(|| ReplicationError::Unavailable(format!("node {holder} is not a member")))?;
        let q = wire::Enqueue { bucket: bucket.into(), key: key.into(), version: version.into(), nodes: nodes.to_vec() };
        wire::enqueue(&self.cluster.network, &addr, &q, self.short_timeout()).await
    }

    pub async fn holding(&self, q: &wire::Lookup) -> Result<wire::Holding, ObjectError> {
        service::holding(self, q).await
    }
}
