//! Raft over the node-to-node gRPC service: the client side (one cached,
//! lazily connected channel per peer) and the server side (each call handed
//! to the local Raft).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{OptionalSend, RaftNetworkV2};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::secret::Secret;
use super::state::StateMachine;
use openraft::async_runtime::WatchReceiver;

use super::types::{NodeMeta, Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};

pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("strata.peer.v1");
}

pub type Raft = openraft::Raft<TypeConfig, Arc<StateMachine>>;

/// Opens clients to peers; channels are cached per address and connect on
/// first use, so making a client never blocks Raft.
#[derive(Clone)]
pub struct Network {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    secret: Secret,
}

impl Network {
    pub fn new(secret: Secret) -> Self {
        Self { channels: Default::default(), secret }
    }
}

pub struct Conn {
    client: Option<pb::peer_client::PeerClient<Channel>>,
    secret: Secret,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, _target: u64, node: &NodeMeta) -> Conn {
        let mut map = self.channels.lock().expect("channel map");
        let ch = match map.get(&node.addr) {
            Some(ch) => Some(ch.clone()),
            None => Endpoint::from_shared(format!("http://{}", node.addr)).ok().map(|ep| {
                let ch = ep
                    .connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .connect_lazy();
                map.insert(node.addr.clone(), ch.clone());
                ch
            }),
        };
        Conn { client: ch.map(pb::peer_client::PeerClient::new), secret: self.secret.clone() }
    }
}

fn net_err(e: impl std::error::Error + 'static) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&e))
}

fn status_err(s: Status) -> RPCError<TypeConfig> {
    match s.code() {
        // A peer that refuses our secret is as good as unreachable.
        tonic::Code::Unauthenticated => RPCError::Unreachable(Unreachable::new(&s)),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => RPCError::Unreachable(Unreachable::new(&s)),
        _ => RPCError::Network(NetworkError::new(&s)),
    }
}

impl Conn {
    async fn call<Q: Serialize, A: DeserializeOwned>(
        &mut self,
        which: u8,
        msg: &Q,
        timeout: Duration,
    ) -> Result<A, RPCError<TypeConfig>> {
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| RPCError::Unreachable(Unreachable::from_string("the peer's address is not a valid URI")))?;
        let mut req = Request::new(pb::RaftBytes { data: serde_json::to_vec(msg).map_err(net_err)? });
        req.set_timeout(timeout);
        self.secret.attach(&mut req);
        let r = match which {
            0 => client.append_entries(req).await,
            1 => client.vote(req).await,
            _ => client.install_snapshot(req).await,
        }
        .map_err(status_err)?;
        serde_json::from_slice(&r.into_inner().data).map_err(net_err)
    }
}

impl RaftNetworkV2<TypeConfig> for Conn {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(0, &rpc, option.soft_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<TypeConfig>, option: RPCOption) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(1, &rpc, option.soft_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let msg = (vote, snapshot.meta, snapshot.snapshot);
        tokio::select! {
            r = self.call(2, &msg, option.soft_ttl()) => r.map_err(StreamingError::from),
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

/// The server side: hands each message to the local Raft.
pub struct PeerService {
    pub raft: Raft,
    pub secret: Secret,
}

fn decode<T: DeserializeOwned>(r: Request<pb::RaftBytes>) -> Result<T, Status> {
    serde_json::from_slice(&r.into_inner().data).map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<pb::RaftBytes>, Status> {
    let data = serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(pb::RaftBytes { data }))
}

/// The header naming the leader's address when a node cannot serve a join.
pub const LEADER_HEADER: &str = "x-strata-leader";

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    async fn join(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.secret.check(&req)?;
        let (id, node): (u64, NodeMeta) = decode(req)?;
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership().clone();
        if membership.voter_ids().any(|v| v == id) {
            return encode(&());
        }
        if let Some((_, known)) = membership.nodes().find(|(nid, n)| **nid != id && n.addr == node.addr) {
            return Err(Status::already_exists(format!("another node already has address {}", known.addr)));
        }
        let not_leader = |f: Option<NodeMeta>| {
            let mut s = Status::unavailable("not the leader");
            if let Some(Ok(v)) = f.map(|n| n.addr.parse()) {
                s.metadata_mut().insert(LEADER_HEADER, v);
            }
            s
        };
        match self.raft.add_learner(id, node, true).await {
            Ok(_) => {}
            Err(e) => {
                return Err(match e.forward_to_leader() {
                    Some(f) => not_leader(f.leader_node.clone()),
                    None => Status::failed_precondition(format!("cannot add node {id}: {e}")),
                });
            }
        }
        self.raft
            .change_membership(openraft::ChangeMembers::AddVoterIds(std::collections::BTreeSet::from([id])), false)
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(f) => not_leader(f.leader_node.clone()),
                None => Status::failed_precondition(format!("cannot make node {id} a voter: {e}")),
            })?;
        encode(&())
    }

    async fn append_entries(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.secret.check(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req)?;
        encode(&self.raft.append_entries(rpc).await.map_err(|e| Status::internal(e.to_string()))?)
    }

    async fn vote(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.secret.check(&req)?;
        let rpc: VoteRequest<TypeConfig> = decode(req)?;
        encode(&self.raft.vote(rpc).await.map_err(|e| Status::internal(e.to_string()))?)
    }

    async fn install_snapshot(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.secret.check(&req)?;
        let (vote, meta, data): (Vote, SnapshotMeta, SnapshotData) = decode(req)?;
        let r = self
            .raft
            .install_full_snapshot(vote, Snapshot { meta, snapshot: data })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode(&r)
    }
}
