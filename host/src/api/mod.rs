//! The client gRPC API (`strata.v1.Strata`).
//!
//! The service impl only times the call and dispatches to a `handle_<op>`
//! in the file of that operation; errors map to statuses in [`error`].

pub mod auth;
pub mod backup;
mod bucket;
pub mod cluster;
mod delete;
pub mod error;
mod get;
mod index;
mod list;
mod models;
mod plugin;
mod put;
mod search;
mod stats;
pub mod tier;
pub mod validate;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::meta::ObjectRecord;
use crate::objects::Objects;
use crate::plugin::Plugins;
use crate::replication::Replicator;
use crate::service::{Feature, ObjectService};
use auth::Need;
use error::ApiError;

/// Generated protobuf types and gRPC stubs.
pub use strata_proto as pb;

/// Limits the API enforces on each request.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_key_length: usize,
    pub max_batch_items: usize,
    /// Largest chunk sent in a Get response.
    pub max_chunk: usize,
    /// `metadata.enable_search`.
    pub search: bool,
    /// Bytes a listing or search page may fill (the message limit, less room
    /// for the envelope).
    pub max_reply_bytes: usize,
    /// `server.max_attribute_bytes`.
    pub max_attribute_bytes: usize,
}

pub struct Api {
    /// Every object call goes through it, on one node or a cluster alike.
    pub service: Arc<dyn ObjectService>,
    /// For what is this node's own: indexes, stats, metrics.
    pub objects: Arc<Objects>,
    pub plugins: Arc<Plugins>,
    /// Set on a cluster node, for the calls that manage the cluster.
    pub cluster: Option<Arc<Replicator>>,
    pub limits: Limits,
    /// `[backup.target]`, the default of backup calls.
    pub backup_target: Option<crate::config::TargetSpec>,
    /// `[[tier_policies]]` (a single-node server's).
    pub tier_policies: Vec<crate::objects::TierPolicy>,
    /// Model storage (the registry's repositories, with or without its listener).
    pub registry: Arc<crate::registry::Registry>,
    /// The health checks' last report, for `Health`.
    pub monitor: Arc<crate::monitor::Monitor>,
    /// `[auth]`: set when calls need tokens.
    pub tokens: Option<Arc<auth::Tokens>>,
    /// What `Reload` (and SIGHUP) reads again.
    pub reloader: Arc<crate::reload::Reloader>,
}

impl Api {
    /// Who sent `req`: its token checked, or anonymous.
    fn caller<T>(&self, req: &Request<T>) -> Result<auth::Caller, Status> {
        match &self.tokens {
            None => Ok(auth::Caller::Open),
            Some(t) => t.caller(req.metadata()),
        }
    }

    /// Fails unless the sender of `req` may do what `need` says; refusals
    /// are counted by code.
    fn authorize<T>(&self, req: &Request<T>, need: auth::Need) -> Result<(), Status> {
        let r = self.caller(req).and_then(|c| c.allow(need));
        if let Err(s) = &r {
            metrics::counter!("strata_auth_refusals_total", "code" => code_name(s.code())).increment(1);
        }
        r
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = Result<T, ApiError>>) -> Result<T, Status> {
        let start = Instant::now();
        let r = f.await.map_err(Status::from);
        let took = start.elapsed();
        self.objects.metrics.record(op, took, r.is_ok());
        let code = match &r {
            Ok(_) => "OK",
            Err(s) => code_name(s.code()),
        };
        metrics::counter!("strata_requests_total", "op" => op, "code" => code).increment(1);
        metrics::histogram!("strata_request_duration_seconds", "op" => op).record(took.as_secs_f64());
        r
    }

    fn cluster(&self) -> Result<&Arc<Replicator>, Status> {
        cluster::require(self.cluster.as_ref()).map_err(Status::from)
    }
}

/// A status code as gRPC names it: a bounded metric label.
fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

pub fn object_info(r: &ObjectRecord) -> pb::ObjectInfo {
    pb::ObjectInfo {
        bucket: r.bucket.clone(),
        key: r.key.clone(),
        version: r.version.clone(),
        digest: r.digest.map(|d| d.to_string()).unwrap_or_default(),
        size: r.size,
        content_type: r.content_type.clone(),
        attributes: r.attributes.iter().map(|(k, v)| (k.clone(), validate::from_json(v))).collect(),
        created_ms: r.created_ms,
        modified_ms: r.modified_ms,
        delete_marker: r.is_delete_marker(),
        latest: r.latest,
        stamp: r.stamp,
        replicas: Vec::new(),
    }
}

type GetStream = Pin<Box<dyn Stream<Item = Result<pb::GetResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::strata_server::Strata for Api {
    async fn put(&self, req: Request<Streaming<pb::PutRequest>>) -> Result<Response<pb::PutResponse>, Status> {
        let who = self.caller(&req)?;
        self.timed("put", put::handle_put(&*self.service, &self.limits, req.into_inner(), &who)).await.map(Response::new)
    }

    async fn put_many(&self, req: Request<Streaming<pb::PutManyRequest>>) -> Result<Response<pb::PutManyResponse>, Status> {
        let who = self.caller(&req)?;
        self.timed("put_many", put::handle_put_many(&*self.service, &self.objects, &self.limits, req.into_inner(), &who))
            .await
            .map(Response::new)
    }

    type GetStream = GetStream;
    type BackupCreateStream = backup::ProgressStream;
    type ModelGetBlobStream = GetStream;

    async fn reload(&self, req: Request<pb::ReloadRequest>) -> Result<Response<pb::ReloadReport>, Status> {
        self.authorize(&req, Need::Admin)?;
        let items = self.reloader.run().await;
        let items = items.into_iter().map(|i| pb::ReloadItem { what: i.what, ok: i.ok, detail: i.detail }).collect();
        Ok(Response::new(pb::ReloadReport { items }))
    }

    async fn health(&self, req: Request<pb::HealthRequest>) -> Result<Response<pb::HealthReport>, Status> {
        self.authorize(&req, Need::Nothing)?;
        let r = self.monitor.health.report();
        let checks = r
            .checks
            .into_iter()
            .map(|c| pb::HealthCheck { name: c.name.into(), ok: c.ok, detail: c.detail, readiness: c.readiness })
            .collect();
        Ok(Response::new(pb::HealthReport { ready: r.ready, checks, checked_ms: r.at_ms }))
    }

    async fn model_has_blobs(&self, req: Request<pb::ModelHasBlobsRequest>) -> Result<Response<pb::ModelHasBlobsResponse>, Status> {
        self.authorize(&req, Need::Read(self.registry.bucket()))?;
        self.timed("model_has_blobs", models::handle_has_blobs(&self.registry, req.into_inner())).await.map(Response::new)
    }

    async fn model_put_blob(&self, req: Request<Streaming<pb::ModelPutBlobRequest>>) -> Result<Response<pb::ModelPutBlobResponse>, Status> {
        self.authorize(&req, Need::Write(self.registry.bucket()))?;
        self.timed("model_put_blob", models::handle_put_blob(&self.registry, req.into_inner())).await.map(Response::new)
    }

    async fn model_get_blob(&self, req: Request<pb::ModelGetBlobRequest>) -> Result<Response<GetStream>, Status> {
        self.authorize(&req, Need::Read(self.registry.bucket()))?;
        self.timed("model_get_blob", models::handle_get_blob(&self.registry, &self.limits, req.into_inner())).await.map(Response::new)
    }

    async fn model_put_manifest(&self, req: Request<pb::ModelPutManifestRequest>) -> Result<Response<pb::Model>, Status> {
        self.authorize(&req, Need::Write(self.registry.bucket()))?;
        self.timed("model_put_manifest", models::handle_put_manifest(&self.registry, req.into_inner())).await.map(Response::new)
    }

    async fn model_list(&self, req: Request<pb::ModelListRequest>) -> Result<Response<pb::ModelListResponse>, Status> {
        self.authorize(&req, Need::Read(self.registry.bucket()))?;
        self.timed("model_list", models::handle_list(&self.registry, req.into_inner())).await.map(Response::new)
    }

    async fn model_show(&self, req: Request<pb::ModelShowRequest>) -> Result<Response<pb::ModelShowResponse>, Status> {
        self.authorize(&req, Need::Read(self.registry.bucket()))?;
        self.timed("model_show", models::handle_show(&self.registry, req.into_inner())).await.map(Response::new)
    }

    async fn model_tag(&self, req: Request<pb::ModelTagRequest>) -> Result<Response<pb::Model>, Status> {
        self.authorize(&req, Need::Write(self.registry.bucket()))?;
        self.timed("model_tag", models::handle_tag(&self.registry, req.into_inner())).await.map(Response::new)
    }

    async fn model_remove(&self, req: Request<pb::ModelRemoveRequest>) -> Result<Response<pb::ModelRemoveResponse>, Status> {
        self.authorize(&req, Need::Write(self.registry.bucket()))?;
        self.timed("model_remove", models::handle_remove(&self.registry, req.into_inner())).await.map(Response::new)
    }

    async fn tier_list(&self, req: Request<pb::TierListRequest>) -> Result<Response<pb::TierListResponse>, Status> {
        self.authorize(&req, Need::Admin)?;
        self.timed("tier_list", tier::handle_list(&self.objects)).await.map(Response::new)
    }

    async fn tier_move(&self, req: Request<pb::TierMoveRequest>) -> Result<Response<pb::TierMoveResponse>, Status> {
        self.authorize(&req, Need::Admin)?;
        self.timed("tier_move", tier::handle_move(&self.objects, req.into_inner(), false)).await.map(Response::new)
    }

    async fn tier_recall(&self, req: Request<pb::TierMoveRequest>) -> Result<Response<pb::TierMoveResponse>, Status> {
        self.authorize(&req, Need::Admin)?;
        self.timed("tier_recall", tier::handle_move(&self.objects, req.into_inner(), true)).await.map(Response::new)
    }

    async fn set_tier_policy(&self, req: Request<pb::SetTierPolicyRequest>) -> Result<Response<pb::TierPolicies>, Status> {
        self.authorize(&req, Need::Admin)?;
        let cluster = self.cluster.as_ref().map(|r| &*r.cluster);
        self.timed("set_tier_policy", tier::handle_set_policy(cluster, &self.objects, &self.tier_policies, req.into_inner()))
            .await
            .map(Response::new)
    }

    async fn list_tier_policies(&self, req: Request<pb::ListTierPoliciesRequest>) -> Result<Response<pb::TierPolicies>, Status> {
        self.authorize(&req, Need::Admin)?;
        let cluster = self.cluster.as_ref().map(|r| &*r.cluster);
        self.timed("list_tier_policies", tier::handle_list_policies(cluster, &self.tier_policies)).await.map(Response::new)
    }

    async fn backup_create(&self, req: Request<pb::BackupCreateRequest>) -> Result<Response<backup::ProgressStream>, Status> {
        self.authorize(&req, Need::Admin)?;
        let configured = self.backup_target.as_ref();
        self.timed(
            "backup_create",
            backup::handle_create(&self.objects, self.cluster.as_ref().map(|r| r.cluster.clone()), configured, req.into_inner()),
        )
        .await
        .map(Response::new)
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<GetStream>, Status> {
        self.authorize(&req, Need::Read(&req.get_ref().bucket))?;
        self.timed("get", get::handle_get(&*self.service, &self.limits, req.into_inner())).await.map(Response::new)
    }

    async fn stat(&self, req: Request<pb::StatRequest>) -> Result<Response<pb::ObjectInfo>, Status> {
        self.authorize(&req, Need::Read(&req.get_ref().bucket))?;
        self.timed("stat", get::handle_stat(&*self.service, &self.limits, req.into_inner())).await.map(Response::new)
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        self.authorize(&req, Need::Write(&req.get_ref().bucket))?;
        self.timed("delete", delete::handle_delete(&*self.service, &self.limits, req.into_inner())).await.map(Response::new)
    }

    async fn delete_many(&self, req: Request<pb::DeleteManyRequest>) -> Result<Response<pb::DeleteManyResponse>, Status> {
        self.authorize(&req, Need::Write(&req.get_ref().bucket))?;
        self.timed("delete_many", delete::handle_delete_many(&*self.service, &self.limits, req.into_inner())).await.map(Response::new)
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        self.authorize(&req, Need::Read(&req.get_ref().bucket))?;
        self.timed("list", list::handle_list(&*self.service, &self.limits, req.into_inner())).await.map(Response::new)
    }

    async fn list_versions(&self, req: Request<pb::ListVersionsRequest>) -> Result<Response<pb::ListVersionsResponse>, Status> {
        self.authorize(&req, Need::Read(&req.get_ref().bucket))?;
        self.timed("list_versions", list::handle_list_versions(&*self.service, &self.limits, req.into_inner())).await.map(Response::new)
    }

    async fn create_bucket(&self, req: Request<pb::CreateBucketRequest>) -> Result<Response<pb::Bucket>, Status> {
        self.authorize(&req, Need::Admin)?;
        self.timed("create_bucket", bucket::handle_create(&*self.service, req.into_inner())).await.map(Response::new)
    }

    async fn list_buckets(&self, req: Request<pb::ListBucketsRequest>) -> Result<Response<pb::ListBucketsResponse>, Status> {
        self.authorize(&req, Need::Admin)?;
        self.timed("list_buckets", bucket::handle_list(&*self.service)).await.map(Response::new)
    }

    async fn delete_bucket(&self, req: Request<pb::DeleteBucketRequest>) -> Result<Response<pb::DeleteBucketResponse>, Status> {
        self.authorize(&req, Need::Admin)?;
        self.timed("delete_bucket", bucket::handle_delete(&*self.service, req.into_inner())).await.map(Response::new)
    }

    async fn list_plugins(&self, req: Request<pb::ListPluginsRequest>) -> Result<Response<pb::ListPluginsResponse>, Status> {
        self.authorize(&req, Need::Any)?;
        self.timed("list_plugins", async { Ok::<_, ApiError>(plugin::handle_list(&self.plugins)) }).await.map(Response::new)
    }

    async fn place(&self, req: Request<pb::PlaceRequest>) -> Result<Response<pb::PlaceResponse>, Status> {
        self.authorize(&req, Need::Admin)?;
        let mut req = req.into_inner();
        if let (true, Some(r)) = (req.nodes.is_empty(), &self.cluster) {
            req.nodes = cluster::placement_nodes(&r.cluster);
            if req.coordinator.is_empty() {
                req.coordinator = r.cluster.id.to_string();
            }
        }
        self.timed("place", plugin::handle_place(self.plugins.clone(), req)).await.map(Response::new)
    }

    async fn search(&self, req: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        self.authorize(&req, Need::Read(&req.get_ref().bucket))?;
        self.service.offered(Feature::Search).map_err(error::service)?;
        self.timed("search", search::handle_search(&*self.service, &self.limits, req.into_inner())).await.map(Response::new)
    }

    async fn restore(&self, req: Request<pb::RestoreRequest>) -> Result<Response<pb::ObjectInfo>, Status> {
        self.authorize(&req, Need::Write(&req.get_ref().bucket))?;
        self.timed("restore", async {
            let req = req.into_inner();
            let bucket = validate::bucket(&req.bucket)?;
            validate::key(&req.key, self.limits.max_key_length)?;
            if req.version.is_empty() {
                return Err(error::invalid("version: give the version to restore (see `strata versions KEY`)"));
            }
            let rec = self.service.restore(&bucket, &req.key, &req.version).await?;
            Ok(object_info(&rec))
        })
        .await
        .map(Response::new)
    }

    async fn cluster_init(&self, req: Request<pb::ClusterInitRequest>) -> Result<Response<pb::ClusterView>, Status> {
        self.authorize(&req, Need::Admin)?;
        let c = &self.cluster()?.cluster;
        self.timed("cluster_init", cluster::handle_init(c)).await.map(Response::new)
    }

    async fn cluster_status(&self, req: Request<pb::ClusterStatusRequest>) -> Result<Response<pb::ClusterView>, Status> {
        self.authorize(&req, Need::Any)?;
        let c = &self.cluster()?.cluster;
        self.timed("cluster_status", async {
            let mut v = cluster::handle_status(c).await?;
            let q = self.objects.meta().queue_stats().await?;
            v.replication_pending = q.pending;
            v.replication_retrying = q.retrying;
            v.replication_lag_ms = q.oldest_ms;
            v.placement = Some(cluster::report_pb(self.cluster()?.totals.report()));
            Ok(v)
        })
        .await
        .map(Response::new)
    }

    async fn cluster_join(&self, req: Request<pb::ClusterJoinRequest>) -> Result<Response<pb::ClusterView>, Status> {
        self.authorize(&req, Need::Admin)?;
        let c = &self.cluster()?.cluster;
        let address = req.into_inner().address;
        if address.is_empty() {
            return Err(Status::invalid_argument("address: give host:port of a node of the cluster"));
        }
        self.timed("cluster_join", async {
            c.join(&address).await?;
            cluster::handle_status(c).await
        })
        .await
        .map(Response::new)
    }

    async fn cluster_leave(&self, req: Request<pb::ClusterLeaveRequest>) -> Result<Response<pb::ClusterView>, Status> {
        self.authorize(&req, Need::Admin)?;
        let c = &self.cluster()?.cluster;
        self.timed("cluster_leave", async {
            c.leave().await?;
            cluster::handle_status(c).await
        })
        .await
        .map(Response::new)
    }

    async fn cluster_remove(&self, req: Request<pb::ClusterRemoveRequest>) -> Result<Response<pb::ClusterView>, Status> {
        self.authorize(&req, Need::Admin)?;
        let c = &self.cluster()?.cluster;
        let id = req.into_inner().node_id;
        if id == 0 {
            return Err(Status::invalid_argument("node_id: give the id of the node to remove (see `strata cluster status`)"));
        }
        self.timed("cluster_remove", async {
            c.remove(id).await?;
            cluster::handle_status(c).await
        })
        .await
        .map(Response::new)
    }

    async fn cluster_repair(&self, req: Request<pb::ClusterRepairRequest>) -> Result<Response<pb::ClusterRepairReport>, Status> {
        self.authorize(&req, Need::Admin)?;
        let r = self.cluster()?;
        self.timed("cluster_repair", async { Ok(cluster::report_pb(r.placement_pass(req.into_inner().dry_run).await?)) })
            .await
            .map(Response::new)
    }

    async fn set_replication(&self, req: Request<pb::SetReplicationRequest>) -> Result<Response<pb::ReplicationPolicy>, Status> {
        self.authorize(&req, Need::Admin)?;
        let r = self.cluster()?;
        self.timed("set_replication", cluster::handle_set_replication(r, req.into_inner())).await.map(Response::new)
    }

    async fn get_replication(&self, req: Request<pb::GetReplicationRequest>) -> Result<Response<pb::ReplicationPolicy>, Status> {
        self.authorize(&req, Need::Read(&req.get_ref().bucket))?;
        let c = &self.cluster()?.cluster;
        self.timed("get_replication", cluster::handle_get_replication(c, req.into_inner())).await.map(Response::new)
    }

    async fn lock_acquire(&self, req: Request<pb::LockAcquireRequest>) -> Result<Response<pb::LockGrant>, Status> {
        self.authorize(&req, Need::Locks)?;
        let c = &self.cluster()?.cluster;
        self.timed("lock_acquire", cluster::handle_acquire(c, req.into_inner())).await.map(Response::new)
    }

    async fn lock_renew(&self, req: Request<pb::LockRenewRequest>) -> Result<Response<pb::LockGrant>, Status> {
        self.authorize(&req, Need::Locks)?;
        let c = &self.cluster()?.cluster;
        self.timed("lock_renew", cluster::handle_renew(c, req.into_inner())).await.map(Response::new)
    }

    async fn lock_release(&self, req: Request<pb::LockReleaseRequest>) -> Result<Response<pb::LockReleaseResponse>, Status> {
        self.authorize(&req, Need::Locks)?;
        let c = &self.cluster()?.cluster;
        self.timed("lock_release", cluster::handle_release(c, req.into_inner())).await.map(Response::new)
    }

    async fn list_locks(&self, req: Request<pb::ListLocksRequest>) -> Result<Response<pb::ListLocksResponse>, Status> {
        self.authorize(&req, Need::Locks)?;
        let c = &self.cluster()?.cluster;
        self.timed("list_locks", cluster::handle_list_locks(c)).await.map(Response::new)
    }

    async fn create_index(&self, req: Request<pb::CreateIndexRequest>) -> Result<Response<pb::IndexInfo>, Status> {
        self.authorize(&req, Need::Admin)?;
        self.timed("create_index", index::handle_create(&*self.service, req.into_inner())).await.map(Response::new)
    }

    async fn list_indexes(&self, req: Request<pb::ListIndexesRequest>) -> Result<Response<pb::ListIndexesResponse>, Status> {
        let need = if req.get_ref().bucket.is_empty() { Need::Admin } else { Need::Read(&req.get_ref().bucket) };
        self.authorize(&req, need)?;
        self.timed("list_indexes", index::handle_list(&*self.service, req.into_inner())).await.map(Response::new)
    }

    async fn drop_index(&self, req: Request<pb::DropIndexRequest>) -> Result<Response<pb::DropIndexResponse>, Status> {
        self.authorize(&req, Need::Admin)?;
        self.timed("drop_index", index::handle_drop(&*self.service, req.into_inner())).await.map(Response::new)
    }

    async fn stats(&self, req: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        self.authorize(&req, Need::Admin)?;
        stats::handle_stats(&self.objects).await.map(Response::new).map_err(Status::from)
    }
}
