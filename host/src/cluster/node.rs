//! This node's cluster membership: its persisted Raft id, its Raft
//! instance over `<base_path>/cluster/raft.db`, and the peer service other
//! nodes call.

use std::path::Path;
use std::sync::Arc;

use openraft::Config as RaftConfig;
use sqlx::Row;

use super::log_store::{LogStore, open, to_io};
use super::network::{Network, PeerService, Raft, pb};
use super::secret::Secret;
use super::state::StateMachine;
use super::types::NodeMeta;
use crate::config::ClusterConfig;

pub struct Cluster {
    pub id: u64,
    pub me: NodeMeta,
    pub raft: Raft,
    pub state: Arc<StateMachine>,
    secret: Secret,
}

impl Cluster {
    /// Opens (or creates) this node's Raft state under `dir` and starts Raft.
    pub async fn open(c: &ClusterConfig, dir: &Path, advertise: String, capacity: u64) -> anyhow::Result<Cluster> {
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
            ..Default::default()
        }
        .validate()?;
        let state = StateMachine::open(pool.clone()).await?;
        let raft = Raft::new(id, Arc::new(config), Network::new(secret.clone()), LogStore::new(pool), state.clone()).await?;
        Ok(Cluster { id, me, raft, state, secret })
    }

    /// The node-to-node service, for the server's listener.
    pub fn service(&self) -> pb::peer_server::PeerServer<PeerService> {
        pb::peer_server::PeerServer::new(PeerService { raft: self.raft.clone(), secret: self.secret.clone() })
    }
}

impl Cluster {
    /// Asks the node at `addr` (or the leader it names) to add this node.
    pub async fn join(&self, addr: &str) -> Result<(), tonic::Status> {
        let mut target = addr.to_string();
        for _ in 0..4 {
            let ep = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
                .map_err(|e| tonic::Status::invalid_argument(format!("{target}: not an address: {e}")))?
                .connect_timeout(std::time::Duration::from_secs(3));
            let ch = ep.connect().await.map_err(|e| tonic::Status::unavailable(format!("cannot reach {target}: {e}")))?;
            let mut client = pb::peer_client::PeerClient::new(ch);
            let data = serde_json::to_vec(&(self.id, &self.me)).map_err(|e| tonic::Status::internal(e.to_string()))?;
            let mut req = tonic::Request::new(pb::RaftBytes { data });
            req.set_timeout(std::time::Duration::from_secs(30));
            self.secret.attach(&mut req);
            match client.join(req).await {
                Ok(_) => return Ok(()),
                Err(s) if s.code() == tonic::Code::Unavailable => match s.metadata().get(super::network::LEADER_HEADER) {
                    Some(l) => target = l.to_str().unwrap_or_default().to_string(),
                    None => return Err(tonic::Status::unavailable(format!("{target} knows no leader yet; try again"))),
                },
                Err(s) if s.code() == tonic::Code::Unauthenticated => {
                    return Err(tonic::Status::permission_denied(format!(
                        "{target} refused this node's cluster secret: both must use the same one"
                    )));
                }
                Err(s) => return Err(s),
            }
        }
        Err(tonic::Status::unavailable("no leader after following four redirects"))
    }
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
        (Some(k), Some(c)) if k as u64 != c => anyhow::bail!(
            "cluster.node_id is {c} but this data directory belongs to node {k}; a node id never changes"
        ),
        (Some(k), _) => Ok(k as u64),
        (None, c) => {
            // Ids are never reused, so a random one: 1..=i64::MAX.
            let id = c.unwrap_or_else(|| rand::random_range(1..=i64::MAX as u64));
            sqlx::query("INSERT INTO raft_meta (k, v) VALUES ('node_id', ?)")
                .bind(serde_json::to_vec(&(id as i64))?)
                .execute(pool)
                .await?;
            Ok(id)
        }
    }
}
