//! This node's cluster membership: its persisted Raft id, its Raft
//! instance over `<base_path>/cluster/raft.db`, the peer service other
//! nodes call, and the background work of a member (heartbeats, joining
//! through seeds).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::{Config as RaftConfig, SnapshotPolicy};
use sqlx::Row;
use tracing::{info, warn};

use super::detector::{Beat, Detector};
use super::error::ClusterError;
use super::log_store::{LogStore, open, to_io};
use super::network::{Call, Network, PeerService, Raft, pb};
use super::secret::Secret;
use super::state::{Adopted, StateMachine};
use super::types::NodeMeta;
use strata_config::ClusterConfig;

/// What the rest of the server tells the cluster node, and learns from it.
pub trait Local: Send + Sync {
    /// Client operations done so far, and bytes stored.
    fn usage(&self) -> (u64, u64);
    /// The clock this node stamps versions with, sent in heartbeats.
    fn clock(&self) -> u64 {
        0
    }
    /// A peer's version clock, from its heartbeat: this node's next write
    /// orders after everything the peer had written.
    fn observe(&self, _clock: u64) {}
}

impl<F: Fn() -> (u64, u64) + Send + Sync> Local for F {
    fn usage(&self) -> (u64, u64) {
        self()
    }
}

pub type Probe = Box<dyn Local>;

pub struct Cluster {
    pub id: u64,
    pub me: NodeMeta,
    pub raft: Raft,
    pub state: Arc<StateMachine>,
    pub network: Network,
    pub detector: Detector,
    pub(super) heartbeat: Duration,
    seeds: Vec<String>,
    probe: Probe,
    /// Why this node is not a member: seeds not answering, or it left.
    pub(super) problem: Mutex<Option<String>>,
    /// Set once this node has left: it stops heartbeats and Raft.
    pub(super) left: std::sync::atomic::AtomicBool,
    /// One queue per lock name, so one waiter per node proposes at a time.
    pub(super) lock_queues: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The Raft database, for what this node keeps beside the log.
    pub(super) pool: sqlx::SqlitePool,
}

/// A join request: who asks, and which cluster it already belongs to.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct JoinRequest {
    pub id: u64,
    pub node: NodeMeta,
    pub cluster_id: String,
    /// The node has a membership of its own: it ran `cluster init` or was
    /// a member of a cluster. Two restored nodes that both ran init share
    /// the cluster id, so the id alone does not tell.
    #[serde(default)]
    pub initialized: bool,
}

impl Cluster {
    /// Opens (or creates) this node's Raft state under `dir` and starts Raft.
    /// `tls`: how peers are dialed when `[tls]` is on (this node's
    /// certificate, the cluster CA).
    pub async fn open(
        c: &ClusterConfig,
        dir: &Path,
        advertise: String,
        capacity: u64,
        probe: Probe,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let secret = Secret::load(c).map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(dir)?;
        let pool = open(Some(&dir.join("raft.db"))).await?;
        let id = node_id(&pool, c.node_id).await?;
        let me = NodeMeta {
            addr: advertise,
            region: c.region.clone(),
            zone: c.zone.clone(),
            capacity: c.capacity.map_or(capacity, |s| s.0),
            labels: c.labels.clone(),
        };
        let heartbeat = c.heartbeat_interval.as_millis() as u64;
        let config = RaftConfig {
            cluster_name: "strata".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: heartbeat * 3,
            election_timeout_max: heartbeat * 6,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every),
            max_in_snapshot_log_to_keep: (c.snapshot_every / 2).min(1000),
            purge_batch_size: (c.snapshot_every / 4).clamp(1, 64),
            ..Default::default()
        }
        .validate()?;
        let state = StateMachine::open(pool.clone()).await?;
        let network = Network::new(secret, c.source_address, tls);
        let raft = Raft::new(id, Arc::new(config), network.clone(), LogStore::new(pool.clone()), state.clone()).await?;
        Ok(Arc::new(Cluster {
            id,
            me,
            raft,
            state,
            network,
            detector: Detector::new(c.suspect_after, c.down_after),
            heartbeat: c.heartbeat_interval,
            seeds: c.seeds.clone(),
            probe,
            problem: Mutex::new(None),
            left: Default::default(),
            lock_queues: Default::default(),
            pool,
        }))
    }

    /// The node-to-node service, for the server's listener.
    pub fn service(self: &Arc<Self>) -> pb::peer_server::PeerServer<PeerService> {
        pb::peer_server::PeerServer::new(PeerService { cluster: self.clone() })
            .max_decoding_message_size(super::network::MAX_MESSAGE)
            .max_encoding_message_size(super::network::MAX_MESSAGE)
    }

    /// Members as this node's Raft sees them: (id, node, voter?).
    pub fn members(&self) -> Vec<(u64, NodeMeta, bool)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership().clone();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership.nodes().map(|(id, n)| (*id, n.clone(), voters.contains(id))).collect()
    }

    /// Takes in a peer's heartbeat.
    pub(super) fn heard(&self, beat: super::detector::Beat) {
        self.probe.observe(beat.clock);
        self.detector.record(beat, Instant::now());
    }

    /// Starts heartbeats, failure detection and (if not a member yet)
    /// joining through the seeds. Stops when `stop` turns true.
    pub fn spawn_background(self: &Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let c = self.clone();
        let mut beat_stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(c.heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = (Instant::now(), c.probe.usage().0);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = beat_stop.changed() => return,
                }
                last = c.beat(last).await;
            }
        });
        if !self.seeds.is_empty() {
            let c = self.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    if !c.members().is_empty() {
                        *c.problem.lock().expect("problem") = None;
                        return;
                    }
                    c.join_seeds().await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = stop.changed() => return,
                    }
                }
            });
        }
    }

    /// Sends one heartbeat to every other member and judges them all.
    async fn beat(&self, (then, ops_then): (Instant, u64)) -> (Instant, u64) {
        let now = Instant::now();
        if self.left.load(std::sync::atomic::Ordering::Relaxed) {
            return (now, ops_then);
        }
        let m = self.raft.metrics().borrow_watched().clone();
        let (ops, used) = self.probe.usage();
        let secs = now.duration_since(then).as_secs_f64().max(1e-3);
        let beat = Beat {
            from: self.id,
            load: machine_load(),
            ops: ops.saturating_sub(ops_then) as f64 / secs,
            used,
            capacity: self.me.capacity,
            term: m.current_term,
            applied: m.last_applied.map_or(0, |l| l.index),
            clock: self.probe.clock(),
        };
        self.detector.record(beat.clone(), now);
        let members = self.members();
        let sends = members
            .iter()
            .filter(|(id, ..)| *id != self.id)
            .map(|(_, n, _)| self.network.call::<_, ()>(&n.addr, Call::Heartbeat, &beat, self.heartbeat));
        futures::future::join_all(sends).await;
        let ids: Vec<u64> = members.iter().map(|(id, ..)| *id).collect();
        self.detector.evaluate(&ids, Instant::now());
        (now, ops)
    }

    async fn join_seeds(&self) {
        let mut errors = Vec::new();
        for seed in &self.seeds {
            match self.join(seed).await {
                Ok(()) => {
                    info!(seed = %seed, "joined the cluster through a seed");
                    *self.problem.lock().expect("problem") = None;
                    return;
                }
                Err(e) => errors.push(format!("{seed}: {}", e)),
            }
        }
        let msg = format!("cannot join through the seeds ({}); retrying every 2s", errors.join("; "));
        let mut last = self.problem.lock().expect("problem");
        if last.as_deref() != Some(&msg) {
            warn!("{msg}");
        }
        *last = Some(msg);
    }

    /// Asks the node at `addr` (or the leader it names) to add this node.
    pub async fn join(&self, addr: &str) -> Result<(), ClusterError> {
        let cluster_id = self.state.state().await.cluster_id;
        let initialized = self.raft.metrics().borrow_watched().membership_config.membership().voter_ids().next().is_some();
        let req = JoinRequest { id: self.id, node: self.me.clone(), cluster_id, initialized };
        let mut target = addr.to_string();
        for _ in 0..4 {
            // Longer than the leader may take to add and promote us.
            match self.network.call::<_, ()>(&target, Call::Join, &req, Duration::from_secs(60)).await {
                Ok(()) => return Ok(()),
                Err(ClusterError::NotLeader { leader: Some(l) }) => target = l,
                Err(e @ (ClusterError::NotLeader { .. } | ClusterError::Unavailable(_) | ClusterError::Unreachable { .. })) => {
                    return Err(ClusterError::Unavailable(format!("cannot join through {target}: {e}")));
                }
                Err(ClusterError::Unauthenticated(why)) => {
                    return Err(ClusterError::Unauthenticated(format!(
                        "{target} refused this node's proof of the cluster secret ({why}): both must use the same secret"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClusterError::Unavailable("no leader after following four redirects".into()))
    }

    /// Whether this node leads the cluster now.
    pub fn leads(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.id)
    }

    /// Why this node is not a member, if it is not.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().expect("problem").clone()
    }
}

/// The one-minute load average per CPU, capped at 1.0; 0.0 if unknown.
fn machine_load() -> f64 {
    let avg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .unwrap_or(0.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (avg / cpus).clamp(0.0, 1.0)
}

/// Prepares the Raft database of a node restored from a cluster backup
/// (under `dir`, which holds none yet): the node keeps its id `id`, and
/// `cluster init` on it adopts `state` (see [`Cluster::init`]).
pub async fn prepare_restore(dir: &Path, id: u64, state: &Adopted) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let db = dir.join("raft.db");
    anyhow::ensure!(!db.exists(), "{} exists: a restore needs a node that was never started", db.display());
    let pool = open(Some(&db)).await?;
    let r = async {
        node_id(&pool, Some(id)).await?;
        sqlx::query("INSERT INTO raft_meta (k, v) VALUES ('adopt', ?)").bind(serde_json::to_vec(state)?).execute(&pool).await?;
        anyhow::Ok(())
    }
    .await;
    pool.close().await;
    r
}

/// The state `init` adopts, if this node was restored from a backup.
pub(super) async fn pending_adoption(pool: &sqlx::SqlitePool) -> anyhow::Result<Option<Adopted>> {
    let row = sqlx::query("SELECT v FROM raft_meta WHERE k = 'adopt'").fetch_optional(pool).await?;
    Ok(row.map(|r| serde_json::from_slice(&r.get::<Vec<u8>, _>(0))).transpose()?)
}

/// The configured id, or the one kept from the first start, or a new one.
async fn node_id(pool: &sqlx::SqlitePool, configured: Option<u64>) -> anyhow::Result<u64> {
    let kept: Option<i64> = sqlx::query("SELECT v FROM raft_meta WHERE k = 'node_id'")
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get::<Vec<u8>, _>(0))
        .transpose()?
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(to_io)?;
    match (kept, configured) {
        (Some(k), Some(c)) if k as u64 != c => {
            anyhow::bail!("cluster.node_id is {c} but this data directory belongs to node {k}; a node id never changes")
        }
        (Some(k), _) => Ok(k as u64),
        (None, c) => {
            // Ids are never reused, so a random one: 1..=i64::MAX.
            let id = c.unwrap_or_else(|| rand::random_range(1..=i64::MAX as u64));
            sqlx::query("INSERT INTO raft_meta (k, v) VALUES ('node_id', ?)").bind(serde_json::to_vec(&(id as i64))?).execute(pool).await?;
            Ok(id)
        }
    }
}
