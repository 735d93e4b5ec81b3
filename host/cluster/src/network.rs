//! Raft over the node-to-node gRPC service: the client side (one cached,
//! lazily connected channel per peer) and the server side (each call handed
//! to the local Raft).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{OptionalSend, RaftNetworkV2};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

use super::error::ClusterError;
use super::node::Cluster;
use super::secret::Secret;
use super::state::StateMachine;

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
    /// Source address of outgoing peer connections, if configured.
    source: Option<IpAddr>,
    /// `[tls]`: peers are dialed over TLS with this node's certificate, and
    /// peer calls must come with a client certificate from the cluster CA.
    tls: Arc<Mutex<Option<ClientTlsConfig>>>,
}

/// What the server's listener knows of a connection (its
/// `Connected::ConnectInfo`, in each request's extensions).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<std::net::SocketAddr>,
    /// The connection showed a client certificate that the TLS handshake
    /// verified against the cluster CA.
    pub client_cert: bool,
}

/// The node-to-node calls beyond Raft's own.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    Join,
    Write,
    ReadIndex,
    Remove,
    Heartbeat,
}

impl Network {
    pub fn new(secret: Secret, source: Option<IpAddr>, tls: Option<ClientTlsConfig>) -> Self {
        Self { channels: Default::default(), secret, source, tls: Arc::new(Mutex::new(tls)) }
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// New certificates (a reload): connections made from now on use them;
    /// calls on the old connections finish there.
    pub fn set_tls(&self, tls: ClientTlsConfig) {
        *self.tls.lock().expect("tls") = Some(tls);
        self.channels.lock().expect("channel map").clear();
    }

    /// Refuses a peer call that did not come over a connection with a
    /// client certificate from the cluster CA (when TLS is on), or whose
    /// proof of the cluster secret is wrong.
    pub fn check<T>(&self, req: &Request<T>, me: &str) -> Result<(), Status> {
        if self.tls.lock().expect("tls").is_some() && !req.extensions().get::<ConnInfo>().is_some_and(|c| c.client_cert) {
            return Err(Status::unauthenticated(
                "cluster authentication failed: peer calls need a client certificate from the cluster CA ([tls] ca_file)",
            ));
        }
        self.secret.check(req, me)
    }

    pub fn channel(&self, addr: &str) -> Option<Channel> {
        let mut map = self.channels.lock().expect("channel map");
        if let Some(ch) = map.get(addr) {
            return Some(ch.clone());
        }
        let tls = self.tls.lock().expect("tls").clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}")).ok()?;
        if let Some(tls) = tls {
            ep = ep.tls_config(tls).ok()?;
        }
        let ch = ep
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(4))
            .local_address(self.source)
            .connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Some(ch)
    }

    /// Sends `msg` to the peer at `addr` and decodes its answer.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        addr: &str,
        call: Call,
        msg: &Q,
        timeout: Duration,
    ) -> Result<A, ClusterError> {
        let ch = self.channel(addr).ok_or_else(|| ClusterError::Invalid(format!("{addr:?} is not a host:port address")))?;
        let mut client = pb::peer_client::PeerClient::new(ch).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
        let data = serde_json::to_vec(msg).map_err(|e| ClusterError::Internal(e.to_string()))?;
        let mut req = Request::new(pb::RaftBytes { data });
        req.set_timeout(timeout);
        self.secret.attach(&mut req, addr);
        let r = match call {
            Call::Join => client.join(req).await,
            Call::Write => client.write(req).await,
            Call::ReadIndex => client.read_index(req).await,
            Call::Remove => client.remove(req).await,
            Call::Heartbeat => client.heartbeat(req).await,
        }
        .map_err(|s| from_status(addr, s))?;
        serde_json::from_slice(&r.into_inner().data).map_err(|e| ClusterError::Internal(format!("bad answer from {addr}: {e}")))
    }
}

pub struct Conn {
    client: Option<pb::peer_client::PeerClient<Channel>>,
    secret: Secret,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, _target: u64, node: &NodeMeta) -> Conn {
        Conn {
            client: self.channel(&node.addr).map(|ch| {
                pb::peer_client::PeerClient::new(ch).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE)
            }),
            secret: self.secret.clone(),
            addr: node.addr.clone(),
        }
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
    async fn call<Q: Serialize, A: DeserializeOwned>(&mut self, which: u8, msg: &Q, timeout: Duration) -> Result<A, RPCError<TypeConfig>> {
        let client =
            self.client.as_mut().ok_or_else(|| RPCError::Unreachable(Unreachable::from_string("the peer's address is not a valid URI")))?;
        let mut req = Request::new(pb::RaftBytes { data: serde_json::to_vec(msg).map_err(net_err)? });
        req.set_timeout(timeout);
        self.secret.attach(&mut req, &self.addr);
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

/// The server side: Raft messages go to the local Raft, the rest to the
/// cluster node.
pub struct PeerService {
    pub cluster: Arc<Cluster>,
}

fn decode<T: DeserializeOwned>(r: Request<pb::RaftBytes>) -> Result<T, Status> {
    serde_json::from_slice(&r.into_inner().data).map_err(|e| Status::invalid_argument(format!("bad peer message: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<pb::RaftBytes>, Status> {
    let data = serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(pb::RaftBytes { data }))
}

/// Largest peer message: snapshots travel whole.
pub const MAX_MESSAGE: usize = 256 << 20;

/// The header naming the leader's address when a node cannot serve a call
/// only the leader serves.
pub const LEADER_HEADER: &str = "x-strata-leader";

/// Not the leader, naming the leader if one is known.
pub fn not_leader(leader: Option<&NodeMeta>) -> ClusterError {
    ClusterError::NotLeader { leader: leader.map(|n| n.addr.clone()) }
}

/// A cluster error as the peer service answers it. Only the peer wire uses
/// this; clients get theirs from the API's mapping.
pub fn to_status(e: ClusterError) -> Status {
    let msg = e.to_string();
    match e {
        ClusterError::NotLeader { leader } => {
            let mut s = Status::unavailable(msg);
            if let Some(Ok(v)) = leader.map(|a| a.parse()) {
                s.metadata_mut().insert(LEADER_HEADER, v);
            }
            s
        }
        ClusterError::NoQuorum { .. } | ClusterError::Unreachable { .. } | ClusterError::Unavailable(_) => Status::unavailable(msg),
        ClusterError::Unauthenticated(_) => Status::unauthenticated(msg),
        ClusterError::Refused(_) => Status::failed_precondition(msg),
        ClusterError::Exists(_) => Status::already_exists(msg),
        ClusterError::NotFound(_) => Status::not_found(msg),
        ClusterError::TimedOut(_) => Status::deadline_exceeded(msg),
        ClusterError::Invalid(_) => Status::invalid_argument(msg),
        ClusterError::Internal(_) => Status::internal(msg),
    }
}

/// A status's message with the causes of a failed connection ("transport
/// error: ... invalid peer certificate: UnknownIssuer"), so a TLS or
/// network failure says what it was.
pub fn describe(s: &Status) -> String {
    with_causes(s.message().to_string(), std::error::Error::source(s))
}

/// `first`, then each cause not already said, joined by ": ".
pub fn with_causes(first: String, mut cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut out = first;
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        cause = c.source();
    }
    out
}

/// What a peer's answer (or the failure to get one) means here.
pub fn from_status(addr: &str, s: Status) -> ClusterError {
    let msg = describe(&s);
    match s.code() {
        // The peer's own handlers never answer these: the connection failed.
        tonic::Code::Unknown | tonic::Code::Cancelled => ClusterError::Unreachable { addr: addr.into(), why: msg },
        tonic::Code::Unavailable => match s.metadata().get(LEADER_HEADER) {
            Some(l) => ClusterError::NotLeader { leader: l.to_str().ok().map(str::to_string) },
            None => ClusterError::Unavailable(msg),
        },
        tonic::Code::Unauthenticated => ClusterError::Unauthenticated(msg),
        tonic::Code::FailedPrecondition => ClusterError::Refused(msg),
        tonic::Code::AlreadyExists => ClusterError::Exists(msg),
        tonic::Code::NotFound => ClusterError::NotFound(msg),
        tonic::Code::DeadlineExceeded => ClusterError::TimedOut(msg),
        tonic::Code::InvalidArgument => ClusterError::Invalid(msg),
        tonic::Code::PermissionDenied => ClusterError::Unauthenticated(msg),
        tonic::Code::Unimplemented => ClusterError::Refused(format!("{addr} does not serve the peer service: is it a cluster node?")),
        tonic::Code::Internal | tonic::Code::DataLoss => ClusterError::Internal(format!("{addr} answered: {msg}")),
        // Out of space, aborted, out of range: the peer could not do it now.
        _ => ClusterError::Unavailable(format!("{addr} answered: {msg}")),
    }
}

impl PeerService {
    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.cluster.network.check(req, &self.cluster.me.addr)
    }
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    async fn join(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        encode(&self.cluster.admit(decode(req)?).await.map_err(to_status)?)
    }

    async fn write(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        match self.cluster.propose(decode(req)?).await.map_err(to_status)? {
            Ok(r) => encode(&r),
            Err(leader) => Err(to_status(not_leader(leader.as_ref()))),
        }
    }

    async fn read_index(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        match self.cluster.read_index().await.map_err(to_status)? {
            Ok(i) => encode(&i),
            Err(leader) => Err(to_status(not_leader(leader.as_ref()))),
        }
    }

    async fn remove(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        match self.cluster.remove_here(decode(req)?).await.map_err(to_status)? {
            Ok(()) => encode(&()),
            Err(leader) => Err(to_status(not_leader(leader.as_ref()))),
        }
    }

    async fn heartbeat(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        self.cluster.heard(decode(req)?);
        encode(&())
    }

    async fn append_entries(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req)?;
        encode(&self.cluster.raft.append_entries(rpc).await.map_err(|e| Status::internal(e.to_string()))?)
    }

    async fn vote(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        let rpc: VoteRequest<TypeConfig> = decode(req)?;
        encode(&self.cluster.raft.vote(rpc).await.map_err(|e| Status::internal(e.to_string()))?)
    }

    async fn install_snapshot(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        self.check(&req)?;
        let (vote, meta, data): (Vote, SnapshotMeta, SnapshotData) = decode(req)?;
        let r = self
            .cluster
            .raft
            .install_full_snapshot(vote, Snapshot { meta, snapshot: data })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode(&r)
    }
}
