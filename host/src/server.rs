//! Starting and stopping a server: open the stores, start the workers,
//! serve gRPC until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::{self, Api, Limits, pb};
use crate::cluster::node::Cluster;
use crate::config::{Compression, Config, IndexingMode, MetaBackend};
use crate::connections::Accepted;
use crate::meta::{MetaOptions, MetaStore};
use crate::metrics::Metrics;
use crate::objects::{Objects, Upkeep, UploadLimits};
use crate::plugin::Plugins;
use crate::replication::Replicator;
use crate::search::index::PluginTerms;
use crate::service;
use crate::store::{Codec, Key, LocalStore};

/// Opens one node's blob store and metadata, taking the store's lock (so a
/// second process on the same data fails here). `check`: run SQLite's
/// quick_check before anything reads the database.
pub async fn open_objects(config: &Config, check: bool) -> anyhow::Result<Arc<Objects>> {
    let codec = Codec {
        zstd_level: (config.storage.compression == Compression::Zstd).then_some(config.storage.compression_level),
        key: load_key(config)?,
    };
    let base = config.storage.base_path.clone();
    let (max, sync) = (config.storage.max_size.0, config.storage.sync_writes);
    let reserve = config.storage.min_free_space.0;
    // The metadata disk is kept from filling too, when metadata is on disk.
    let meta_dir = (config.metadata.backend == MetaBackend::Sqlite).then(|| config.meta_dir());
    let store = tokio::task::spawn_blocking(move || {
        if let Some(d) = &meta_dir {
            std::fs::create_dir_all(d).map_err(crate::store::StoreError::io(d))?;
        }
        LocalStore::open(&base, codec, max, sync).map(|s| s.with_reserve(reserve, meta_dir.as_slice()))
    })
    .await??;
    let meta = MetaStore::open(MetaOptions {
        dir: match config.metadata.backend {
            MetaBackend::Sqlite => Some(config.meta_dir()),
            MetaBackend::Memory => None,
        },
        sync_writes: config.storage.sync_writes,
        cache_size: config.metadata.cache_size,
        versioning: config.metadata.enable_versioning,
        max_versions: config.metadata.max_versions,
        max_version_age: config.metadata.max_version_age,
        indexing: config.metadata.indexing_mode,
        check,
    })
    .await
    .context("opening the metadata store")?;
    let s = meta.stats().await?;
    // Blobs on tiers take no local disk.
    store.quota.add_existing(s.stored_bytes.saturating_sub(s.tier_bytes));
    let objects = Objects::new(
        Arc::new(store),
        meta,
        Arc::new(Metrics::default()),
        config.storage.max_cache_size.0,
        UploadLimits { buffer: config.server.upload_buffer.0, idle_timeout: config.server.stream_idle_timeout },
    );
    if !config.tiers.is_empty() {
        let mut tiers: Vec<Arc<dyn crate::objects::Tier>> = Vec::new();
        for t in &config.tiers {
            let target = crate::remote::Target::open(&t.target).with_context(|| format!("tier {:?}", t.name))?;
            if target.overlaps(&[&config.storage.base_path, &config.meta_dir()]) {
                bail!("tier {:?}: {} overlaps this server's data directory", t.name, t.target.url);
            }
            let tier = crate::remote::tier::ObjectTier::new(&t.name, target, tokio::runtime::Handle::current());
            tier.claim(objects.meta().node_id()).await.with_context(|| format!("tier {:?}", t.name))?;
            tiers.push(Arc::new(tier));
        }
        objects.set_tiers(crate::objects::Tiers::new(tiers, config.tiering.cache_size.0));
    }
    // Blobs on a tier no longer configured cannot be read here.
    for (tier, blobs) in objects.meta().remote_tiers().await? {
        if !config.tiers.iter().any(|c| c.name == tier) {
            warn!(
                tier = %tier,
                blobs,
                "blobs are on a tier that is not in [[tiers]]: they cannot be read until it is configured again"
            );
        }
    }
    Ok(objects)
}

/// HTTP/2 flow-control window per stream; it bounds what one transfer buffers.
pub const WINDOW: u32 = 4 << 20;
/// Largest HTTP/2 frame this end accepts.
pub const MAX_FRAME: u32 = (1 << 20) + 1024;
/// How often the server pings each connection, and how long it waits for
/// the answer before closing it.
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long calls answered UNAVAILABLE at the end of the grace have to
/// reach their clients before the connections close.
const CUT_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// How long one client connection lives before it is asked to reconnect.
pub const MAX_CONNECTION_AGE: std::time::Duration = std::time::Duration::from_secs(300);

/// A server whose stores are open and whose listener is bound.
pub struct Server {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    listener: TcpListener,
    objects: Arc<Objects>,
    plugins: Arc<Plugins>,
    cluster: Option<Arc<Cluster>>,
    /// The OCI registry's listener, when `[registry] listen` is set.
    registry: Option<TcpListener>,
    /// The S3 gateway's listener, when `[s3] listen` is set.
    s3: Option<TcpListener>,
    /// `/metrics`, `/healthz`, `/readyz`, when `[metrics] listen` is set.
    metrics: Option<TcpListener>,
    /// `[auth]`: the token checker, when tokens are on.
    tokens: Option<Arc<crate::api::auth::Tokens>>,
    /// `[tls]`: the certificates every listener serves.
    tls: Option<Arc<crate::tls::Tls>>,
    config: Config,
}

impl Server {
    /// Opens everything; fails with a message that says what to fix.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let objects = open_objects(&config, config.metadata.check_at_start).await?;
        // Before the plugins, which can take a while: a bad file is told at once.
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::Tls::load(t)?),
            None => None,
        };
        let plugin_config = config.clone();
        let plugins = tokio::task::spawn_blocking(move || Plugins::load(&plugin_config)).await?.context("loading plugins")?;
        let report = plugins.load_report();
        info!(
            plugins = plugins.list().len(),
            compiled = report.compiled,
            cached = report.cached,
            ms = report.total.as_millis() as u64,
            "plugins loaded"
        );
        let plugins = Arc::new(plugins);
        objects.meta().set_term_maker(Arc::new(PluginTerms(plugins.clone())));
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {} (server.listen)", config.server.listen))?;
        let cluster = match &config.cluster {
            None => None,
            Some(c) => {
                let local = listener.local_addr()?;
                let advertise = match &c.advertise {
                    Some(a) => a.clone(),
                    None if local.ip().is_unspecified() => anyhow::bail!(
                        "cluster.advertise: server.listen is {local}, which peers cannot dial; set advertise to this node's reachable host:port"
                    ),
                    None => local.to_string(),
                };
                let dir = config.storage.base_path.join("cluster");
                // Capacity: the quota, else the data disk's size.
                let capacity = match config.storage.max_size.0 {
                    0 => crate::store::local::disk_size(&config.storage.base_path).unwrap_or(0),
                    n => n,
                };
                let probe = Box::new(Usage(objects.clone()));
                if let Some(t) = &tls {
                    t.expect_peer_name(&advertise)?;
                }
                let peer_tls = tls.as_ref().and_then(|t| t.peer_client());
                let cluster = Cluster::open(c, &dir, advertise, capacity, probe, peer_tls).await.context("starting the cluster node")?;
                info!(node = cluster.id, addr = %cluster.me.addr, "cluster node started");
                Some(cluster)
            }
        };
        let s3 = match config.s3.listen {
            Some(a) => Some(TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a} (s3.listen)"))?),
            None => None,
        };
        let registry = match config.registry.listen {
            Some(a) => Some(TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a} (registry.listen)"))?),
            None => None,
        };
        let tokens = match &config.auth {
            Some(a) => Some(Arc::new(crate::api::auth::Tokens::load(a).map_err(|e| anyhow::anyhow!(e))?)),
            None => None,
        };
        let metrics = match config.metrics.listen {
            Some(a) => Some(TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a} (metrics.listen)"))?),
            None => None,
        };
        Ok(Self {
            addr: listener.local_addr()?,
            data_dir: config.storage.base_path.clone(),
            listener,
            objects,
            plugins,
            cluster,
            registry,
            s3,
            metrics,
            tokens,
            tls,
            config,
        })
    }

    /// Where the OCI registry listens, if it is on.
    pub fn registry_addr(&self) -> Option<SocketAddr> {
        self.registry.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where the S3 gateway listens, if it is on.
    pub fn s3_addr(&self) -> Option<SocketAddr> {
        self.s3.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where `/metrics` and the health endpoints listen, if they are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn plugins(&self) -> &Arc<Plugins> {
        &self.plugins
    }

    pub fn objects(&self) -> &Arc<Objects> {
        &self.objects
    }

    /// Serves until `shutdown` resolves, then drains for at most `shutdown_grace`.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        crate::failpoints::spawn_from_env();
        let (stop_tx, stop_rx) = watch::channel(false);
        let upkeep = Arc::new(Upkeep::new(self.objects.clone(), self.config.storage.cleanup_age));
        {
            let u = upkeep.clone();
            Upkeep::spawn_every(self.config.storage.gc_interval, stop_rx.clone(), move || {
                let u = u.clone();
                async move {
                    match u.gc().await {
                        Ok(r) => {
                            metrics::counter!("strata_gc_runs_total").increment(1);
                            metrics::counter!("strata_gc_blobs_removed_total").increment(r.blobs_removed);
                            metrics::counter!("strata_gc_bytes_freed_total").increment(r.bytes_freed);
                        }
                        Err(e) => warn!(error = %e, "gc pass failed"),
                    }
                }
            });
            let u = upkeep.clone();
            Upkeep::spawn_every(self.config.storage.scrub_interval, stop_rx.clone(), move || {
                let u = u.clone();
                async move {
                    match u.scrub().await {
                        Ok(r) => {
                            metrics::counter!("strata_scrub_runs_total").increment(1);
                            metrics::counter!("strata_scrub_blobs_verified_total").increment(r.blobs_verified);
                            metrics::counter!("strata_scrub_corrupt_blobs_total").increment(r.corrupt.len() as u64);
                        }
                        Err(e) => warn!(error = %e, "scrub pass failed"),
                    }
                }
            });
            let meta = self.objects.meta().clone();
            Upkeep::spawn_every(self.config.metadata.compact_interval, stop_rx.clone(), move || {
                let meta = meta.clone();
                async move {
                    if let Err(e) = meta.compact().await {
                        warn!(error = %e, "compaction failed");
                    }
                }
            });
        }

        let configured_policies: Vec<crate::objects::TierPolicy> = self
            .config
            .tier_policies
            .iter()
            .map(|p| crate::objects::TierPolicy {
                bucket: p.bucket.clone(),
                tier: p.tier.clone(),
                after: p.after,
                idle: p.idle,
                min_size: p.min_size.0,
            })
            .collect();
        // A single node moves by its [[tier_policies]]; a cluster node by
        // the cluster's, as applied here at each pass.
        if !configured_policies.is_empty() || (self.cluster.is_some() && !self.config.tiers.is_empty()) {
            let (objects, rate, cluster) = (self.objects.clone(), self.config.tiering.rate.0, self.cluster.clone());
            let configured = configured_policies.clone();
            Upkeep::spawn_every(self.config.tiering.interval, stop_rx.clone(), move || {
                let (objects, cluster, configured) = (objects.clone(), cluster.clone(), configured.clone());
                async move {
                    let policies = match &cluster {
                        Some(c) => crate::api::tier::from_state(&c.state.state().await.tier_policies),
                        None => configured,
                    };
                    let (ours, missing): (Vec<_>, Vec<_>) =
                        policies.into_iter().partition(|p| objects.tiers().is_some_and(|t| t.get(&p.tier).is_ok()));
                    for p in missing {
                        warn!(bucket = %p.bucket, tier = %p.tier, "the bucket's tier policy names a tier this node does not have: nothing moves");
                    }
                    if let Err(e) = objects.tier_pass(&ours, rate).await {
                        warn!(error = %e, "tier pass failed");
                    }
                }
            });
        }

        if let (Some(every), Some(spec)) = (self.config.backup.every, &self.config.backup.target) {
            let target = crate::api::backup::target_of("", false, Some(spec), &self.objects)
                .map_err(|e| anyhow::anyhow!("backup.target: {}", tonic::Status::from(e).message()))?;
            let c = &self.config.backup;
            let keep = crate::remote::prune::Keep { last: c.keep_last, daily: c.keep_daily, weekly: c.keep_weekly };
            let (objects, cluster) = (self.objects.clone(), self.cluster.clone());
            Upkeep::spawn_every(every, stop_rx.clone(), move || scheduled_backup(objects.clone(), cluster.clone(), target.clone(), keep));
        }

        if self.config.metadata.indexing_mode != IndexingMode::Disabled {
            tokio::spawn(index_worker(self.objects.meta().clone(), self.config.metadata.sync_interval, stop_rx.clone()));
        }

        if let Some(c) = &self.cluster {
            c.spawn_background(stop_rx.clone());
        }

        let max_msg = self.config.server.max_message_size.0 as usize;
        let limits = Limits {
            max_key_length: self.config.server.max_key_length,
            max_batch_items: self.config.server.max_batch_items,
            // Leave room for the message envelope.
            max_chunk: (max_msg - 1024).min(1 << 20),
            search: self.config.metadata.enable_search,
            max_reply_bytes: max_msg - (32 << 10),
            max_attribute_bytes: self.config.server.max_attribute_bytes.0 as usize,
        };
        let replicator =
            self.cluster.clone().map(|c| Replicator::new(self.objects.clone(), c, self.plugins.clone(), self.config.replication.clone()));
        if let Some(r) = &replicator {
            r.spawn_queue(stop_rx.clone());
            r.spawn_placement(stop_rx.clone());
            r.spawn_siblings(stop_rx.clone());
            r.spawn_anti_entropy(stop_rx.clone());
            r.spawn_indexes(stop_rx.clone());
        }
        let local = service::Local { objects: self.objects.clone(), plugins: self.plugins.clone(), search: limits.search };
        let objects = service::for_node(local, replicator.clone());
        let uploads = self.config.storage.base_path.join("registry-uploads");
        let registry = crate::registry::Registry::open(objects.clone(), &self.config.registry, uploads, self.tls.is_some())
            .map_err(|e| anyhow::anyhow!("starting the registry: {e}"))?;
        let http_tls = self.tls.clone().map(|t| (t, crate::tls::Protocol::Http));
        if let Some(listener) = self.s3 {
            let s3 = crate::s3::service(&self.config, objects.clone()).map_err(|e| anyhow::anyhow!("starting the S3 gateway: {e}"))?;
            let listener = Accepted::spawn(listener, self.config.server.max_connections, http_tls.clone())?;
            let mut stop = stop_rx.clone();
            tokio::spawn(crate::s3::serve(listener, s3, async move {
                let _ = stop.wait_for(|s| *s).await;
            }));
        }
        if let Some(listener) = self.registry {
            let registry = registry.clone();
            // As many as the gRPC API takes: each upload or pull is one.
            let listener = Accepted::spawn(listener, self.config.server.max_connections, http_tls.clone())?;
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = crate::registry::serve(listener, registry, shutdown).await {
                    warn!(error = %e, "the registry stopped");
                }
            });
        }
        let tokens = self.tokens.clone();
        let reloader = Arc::new(crate::reload::Reloader {
            tls: self.tls.clone(),
            cluster: self.cluster.clone(),
            tokens: tokens.clone(),
            plugins: self.plugins.clone(),
            busy: Default::default(),
        });
        reloader.clone().on_sighup(stop_rx.clone());
        let prometheus = if self.metrics.is_some() { crate::monitor::metrics::install() } else { None };
        if prometheus.is_some()
            && let Some(c) = &self.cluster
        {
            crate::monitor::metrics::watch_leader(c.clone());
        }
        let monitor = Arc::new(crate::monitor::Monitor {
            objects: self.objects.clone(),
            plugins: self.plugins.clone(),
            cluster: self.cluster.clone(),
            health: crate::monitor::health::Health::new(self.config.storage.base_path.join("tmp"), self.config.metrics.max_replication_lag),
            prometheus,
        });
        let svc = pb::strata_server::StrataServer::new(Api {
            service: objects,
            objects: self.objects.clone(),
            plugins: self.plugins.clone(),
            cluster: replicator.clone(),
            limits,
            backup_target: self.config.backup.target.clone(),
            tier_policies: configured_policies,
            registry,
            monitor: monitor.clone(),
            tokens,
            reloader: reloader.clone(),
        })
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(max_msg);
        let (health, health_svc) = tonic_health::server::health_reporter();
        watch_space(self.objects.clone(), health.clone(), stop_rx.clone()).await;
        crate::monitor::health::start(monitor.clone(), self.config.metrics.check_interval, health.clone(), stop_rx.clone()).await;
        if let Some(listener) = self.metrics {
            let listener = Accepted::spawn(listener, crate::monitor::MAX_CONNECTIONS, http_tls)?;
            let (m, mut stop) = (monitor.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = crate::monitor::serve(listener, m, shutdown).await {
                    warn!(error = %e, "the metrics listener stopped");
                }
            });
        }
        // Reflection in both versions: grpcurl speaks v1, Python's
        // grpcio-reflection and other older tools only v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(api::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);

        let grace = self.config.server.shutdown_grace;
        let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<()>();
        let (cut_tx, cut_rx) = watch::channel(false);
        let grpc_tls = self.tls.clone().map(|t| (t, crate::tls::Protocol::Grpc));
        let incoming = Accepted::spawn(self.listener, self.config.server.max_connections, grpc_tls)?;
        let serve = tonic::transport::Server::builder()
            // Windows large enough that a 1 MiB chunk never waits on a window update.
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(2 * WINDOW)
            // One HTTP/2 frame per 1 MiB chunk instead of 64.
            .max_frame_size(MAX_FRAME)
            // A connection whose client stops answering pings is closed, so
            // dead or silent sockets do not hold `server.max_connections`.
            .http2_keepalive_interval(Some(KEEPALIVE))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            // A connection that keeps answering pings but never ends (or
            // never uses) is told to go after this long (GOAWAY: streams in
            // flight finish, clients reconnect), so idle connections cannot
            // hold `server.max_connections` for ever.
            .max_connection_age(MAX_CONNECTION_AGE)
            .layer(crate::cut::CutLayer { cut: cut_rx })
            .add_service(health_svc)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(svc)
            .add_optional_service(self.cluster.as_ref().map(|c| c.service()))
            .add_optional_service(self.cluster.as_ref().map(|c| {
                crate::cluster::network::pb::backup_server::BackupServer::new(crate::cluster_backup::BackupPeer {
                    cluster: c.clone(),
                    objects: self.objects.clone(),
                    target: self.config.backup.target.clone(),
                    busy: Default::default(),
                })
                .max_encoding_message_size(crate::cluster::network::MAX_MESSAGE)
            }))
            .add_optional_service(replicator.map(|r| {
                crate::cluster::network::pb::replica_server::ReplicaServer::new(crate::replication::service::ReplicaService {
                    replicator: r,
                })
                .max_decoding_message_size(crate::cluster::network::MAX_MESSAGE)
                .max_encoding_message_size(crate::cluster::network::MAX_MESSAGE)
            }))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = signal_rx.await;
            });
        tokio::pin!(serve);
        tokio::select! {
            r = &mut serve => r?,
            () = shutdown => {
                info!("shutting down");
                monitor.health.stopping();
                health.set_not_serving::<pb::strata_server::StrataServer<Api>>().await;
                let _ = signal_tx.send(());
                if tokio::time::timeout(grace, &mut serve).await.is_err() {
                    warn!(?grace, "calls still running after the grace period: answering them UNAVAILABLE");
                    let _ = cut_tx.send(true);
                    // Long enough for the answers to go out, no longer.
                    let _ = tokio::time::timeout(CUT_FLUSH, &mut serve).await;
                }
            }
        }
        let _ = stop_tx.send(true);
        // Calls cut off by the grace period may still hold a connection;
        // closing waits for them only briefly.
        if tokio::time::timeout(std::time::Duration::from_millis(500), self.objects.meta().close()).await.is_err() {
            warn!("metadata store still busy at exit; its WAL is replayed at the next start");
        }
        Ok(())
    }
}

/// One scheduled backup, then the prune its retention asks for. On a
/// cluster every node keeps the schedule and the leader of the moment
/// backs up the whole cluster.
async fn scheduled_backup(
    objects: Arc<Objects>,
    cluster: Option<Arc<Cluster>>,
    target: crate::remote::Target,
    keep: crate::remote::prune::Keep,
) {
    let (progress, _) = watch::channel(Default::default());
    let made = match &cluster {
        Some(c) if !c.leads() => return,
        Some(c) => crate::cluster_backup::create(c, &objects, &target, &progress).await,
        None => crate::remote::backup::create(&objects, &target, &progress).await,
    };
    match made {
        Ok(m) => info!(target = %target, id = %m.id, "scheduled backup done"),
        Err(e) => {
            warn!(target = %target, error = %e, "scheduled backup failed");
            return;
        }
    }
    if !keep.is_empty() {
        match crate::remote::prune::prune(&target, keep, false).await {
            Ok(r) => info!(target = %target, removed = r.removed.len(), blobs = r.blobs_removed, "backups pruned"),
            Err(e) => warn!(target = %target, error = %e, "pruning backups failed"),
        }
    }
}

pub fn load_key(config: &Config) -> anyhow::Result<Option<Key>> {
    let Some(enc) = &config.storage.encryption else { return Ok(None) };
    let text = if let Some(path) = &enc.key_file {
        std::fs::read_to_string(path).with_context(|| format!("storage.encryption.key_file: cannot read {}", path.display()))?
    } else if let Some(var) = &enc.key_env {
        match std::env::var(var) {
            Ok(v) => v,
            Err(_) => bail!("storage.encryption.key_env: environment variable {var} is not set"),
        }
    } else {
        bail!("storage.encryption: set key_file or key_env");
    };
    let key = Key::from_hex(&text).map_err(|e| anyhow::anyhow!("storage.encryption: {e}"))?;
    info!(fingerprint = %key.fingerprint_hex(), "encryption at rest is on");
    Ok(Some(key))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Versions indexed per transaction by the worker: small enough that writes
/// waiting for the connection are not held up long.
const INDEX_BATCH: u32 = 2048;

/// Catches indexes up (backfills, lazy mode, retries after a plugin
/// failure) every `every`, or at once when an index is made or dropped; a
/// drop also sweeps the dropped index's terms.
async fn index_worker(meta: Arc<MetaStore>, every: std::time::Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = meta.index_work() => {}
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = meta.catch_up_indexes(INDEX_BATCH).await {
            warn!(error = %e, "index catch-up failed");
        }
        if meta.take_dropped()
            && let Err(e) = meta.sweep_index_terms().await
        {
            warn!(error = %e, "index sweep failed");
        }
    }
}

/// The gRPC health service that says whether the disks have room.
pub const SPACE_HEALTH: &str = "strata.space";

/// Reports low free space before puts fail: `strata.space` turns
/// NOT_SERVING and a warning is logged when less than the low mark is left.
/// The first check runs before the server accepts calls, so the service
/// is registered from the start.
async fn watch_space(objects: Arc<Objects>, health: tonic_health::server::HealthReporter, mut stop: watch::Receiver<bool>) {
    let mut low = None;
    check_space(&objects, &health, &mut low).await;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = stop.changed() => return,
            }
            check_space(&objects, &health, &mut low).await;
        }
    });
}

/// One look at the free space; reports a change from `low`.
async fn check_space(objects: &Objects, health: &tonic_health::server::HealthReporter, low: &mut Option<bool>) {
    use tonic_health::ServingStatus;
    match objects.space().await {
        Ok(space) if *low != Some(space.is_low()) => {
            let was = low.replace(space.is_low());
            if space.is_low() {
                warn!(free = space.free, reserve = space.reserve, "low free space: puts are refused inside the reserve");
                health.set_service_status(SPACE_HEALTH, ServingStatus::NotServing).await;
            } else {
                if was.is_some() {
                    info!(free = space.free, "free space is back above the low mark");
                }
                health.set_service_status(SPACE_HEALTH, ServingStatus::Serving).await;
            }
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read free space"),
    }
}

/// What the cluster node reports of this server in its heartbeats, and
/// where it hands peers' clocks.
struct Usage(Arc<Objects>);

impl crate::cluster::node::Local for Usage {
    fn usage(&self) -> (u64, u64) {
        (self.0.metrics.total_ops(), self.0.store().quota.used())
    }

    fn clock(&self) -> u64 {
        self.0.meta().clock()
    }

    fn observe(&self, clock: u64) {
        self.0.meta().observe(clock)
    }
}
