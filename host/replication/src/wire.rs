//! The messages of the `strata.peer.v1.Replica` service and its client
//! calls. Headers and answers are JSON; data frames carry raw bytes.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::error::ReplicationError;
use strata_cluster::network::{Network, pb};
use strata_meta::{Attributes, Identity, ObjectRecord};
use strata_objects::Kind;
use strata_store::Digest;

/// What a version is, as every replica records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VersionHeader {
    pub bucket: String,
    pub key: String,
    pub identity: Identity,
    pub content_type: String,
    pub attributes: Attributes,
    /// Known when the sender has the whole blob already (a queued copy);
    /// a write in flight learns it only at the end (the trailer).
    pub digest: Option<Digest>,
    pub size: Option<u64>,
    /// No data follows: the receiver holds the blob already.
    #[serde(default)]
    pub no_data: bool,
    /// The version is a delete marker (no data follows).
    #[serde(default)]
    pub marker: bool,
    /// Remove this version for good (no data follows).
    #[serde(default)]
    pub forget: bool,
    /// Only record `identity.replicas` as the version's placement (no data
    /// follows): sent after a rebalance dropped surplus copies.
    #[serde(default)]
    pub relist: bool,
    /// The client's request id, recorded with the version so a retry
    /// through any node finds it.
    #[serde(default)]
    pub request_id: Option<String>,
    /// A conditional write's fencing token: the receiver records the
    /// version only if it has seen no higher token for the key.
    #[serde(default)]
    pub fence: Option<u64>,
}

impl VersionHeader {
    /// The header of a client's new version, before its bytes.
    pub fn of(spec: &strata_objects::PutSpec, identity: &Identity) -> Self {
        VersionHeader {
            bucket: spec.bucket.clone(),
            key: spec.key.clone(),
            identity: identity.clone(),
            content_type: spec.content_type.clone(),
            attributes: spec.attributes.clone(),
            digest: None,
            size: spec.size,
            no_data: false,
            marker: false,
            forget: false,
            relist: false,
            request_id: spec.request_id.clone(),
            fence: match spec.condition {
                strata_meta::Condition::Fenced(t) => Some(t),
                _ => None,
            },
        }
    }

    /// A header no data follows: a marker, a removal or a new placement
    /// (set the flag on the result).
    pub fn control(bucket: &str, key: &str, identity: Identity) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            identity,
            content_type: String::new(),
            attributes: Default::default(),
            digest: None,
            size: None,
            no_data: false,
            marker: false,
            forget: false,
            relist: false,
            request_id: None,
            fence: None,
        }
    }

    /// Removes `version` of the key for good on the receiver.
    pub fn forget(bucket: &str, key: &str, version: &str) -> Self {
        let identity = Identity { version: version.into(), ..Default::default() };
        Self { forget: true, ..Self::control(bucket, key, identity) }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trailer {
    pub digest: Digest,
    pub size: u64,
    /// Copies of the version the receiver queues as it records it.
    #[serde(default)]
    pub owed: Vec<u64>,
    /// Attributes the client's body left at its end (`PutSpec::late`).
    #[serde(default, skip_serializing_if = "strata_meta::Attributes::is_empty")]
    pub late: strata_meta::Attributes,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PushAck {
    /// The receiver had the blob and took no bytes.
    pub deduplicated: bool,
    /// The receiver's clock: the sender moves its own past it.
    #[serde(default)]
    pub clock: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lookup {
    pub bucket: String,
    pub key: String,
    /// `None`: the live version.
    pub version: Option<String>,
    /// Also say whether this blob is held (sound).
    pub digest: Option<Digest>,
    /// Look for the version this put request made instead of `version`.
    #[serde(default)]
    pub request_id: Option<String>,
    /// A conditional writer's fencing token, shown before it reads (see
    /// `MetaStore::fence`); a higher one shown already refuses the lookup.
    #[serde(default)]
    pub fence: Option<u64>,
    /// Also answer the key's heads (`strata_meta::lineage`): a writer
    /// supersedes every head it saw, not only the newest.
    #[serde(default)]
    pub heads: bool,
}

impl Lookup {
    pub fn new(bucket: &str, key: &str, version: Option<&str>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            version: version.map(String::from),
            digest: None,
            request_id: None,
            fence: None,
            heads: false,
        }
    }
}

/// What a node holds of a key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Holding {
    pub found: Option<Found>,
    /// The asked-for digest is held, sound.
    pub has_digest: bool,
    /// The answering node's clock.
    #[serde(default)]
    pub clock: u64,
    /// The key the asked-for request id was used for, if it is on record.
    #[serde(default)]
    pub request_key: Option<String>,
    /// The key's heads here, when asked.
    #[serde(default)]
    pub heads: Vec<String>,
}

/// A version as one node holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Found {
    pub version: String,
    pub stamp: u64,
    pub digest: Option<Digest>,
    pub size: u64,
    pub content_type: String,
    pub attributes: Attributes,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub replicas: Vec<u64>,
    /// Its blob is not on record as corrupt.
    pub sound: bool,
}

impl Found {
    pub fn record(&self, bucket: &str, key: &str) -> ObjectRecord {
        ObjectRecord {
            bucket: bucket.into(),
            key: key.into(),
            version: self.version.clone(),
            stamp: self.stamp,
            digest: self.digest,
            size: self.size,
            content_type: self.content_type.clone(),
            attributes: self.attributes.clone(),
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            latest: true,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fetch {
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub offset: u64,
    pub len: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enqueue {
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub nodes: Vec<u64>,
}

/// A question whose cluster-wide answer is merged from every node's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Query {
    /// Each key's newest version here, delete markers included, in key
    /// order: answers `Vec<ObjectRecord>`.
    List { bucket: String, prefix: String, after: Option<String>, limit: u32 },
    /// Every version of a key held here, newest first: `Vec<ObjectRecord>`.
    Versions { bucket: String, key: String },
    /// This node's copies of the indexes (of one bucket, or all) and how
    /// far each is built: `NodeIndexes`.
    Indexes { bucket: Option<String> },
    /// A search over this node's versions, with its indexes unless
    /// `indexes` is false: `strata_search::run::Found`.
    Search { search: strata_search::run::Search, indexes: bool },
    /// Each key's newest version here (a delete marker included), if any:
    /// `Vec<Option<String>>`.
    Newest { bucket: String, keys: Vec<String> },
    /// What a write of each key made now supersedes here (its newest
    /// version and its heads): `Seen`.
    Seen { bucket: String, keys: Vec<String> },
}

/// One node's answer to `Query::Seen`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Seen {
    /// Per key, in the order asked.
    pub versions: Vec<Vec<String>>,
    /// The node's clock: a version minted after it orders after these.
    pub clock: u64,
}

/// One node's copies of the cluster's indexes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeIndexes {
    pub defs: Vec<strata_meta::IndexDef>,
    /// The node's metadata log head: how far behind each copy is.
    pub head: i64,
}

/// Data frames buffered per replica of a write in flight: with 1 MiB
/// chunks, a few MiB per replica whatever the object's size.
pub const PUSH_DEPTH: usize = 4;

fn client(net: &Network, addr: &str) -> Result<pb::replica_client::ReplicaClient<Channel>, ReplicationError> {
    let ch = net.channel(addr).ok_or_else(|| ReplicationError::Invalid(format!("{addr:?} is not a host:port address")))?;
    Ok(pb::replica_client::ReplicaClient::new(ch)
        .max_decoding_message_size(strata_cluster::network::MAX_MESSAGE)
        .max_encoding_message_size(strata_cluster::network::MAX_MESSAGE))
}

/// A peer's answer (or the failure to get one) as an error here.
pub fn from_status(addr: &str, s: Status) -> ReplicationError {
    use tonic::Code as C;
    let kind = match s.code() {
        // The peer's own handlers never answer these: the connection failed.
        C::Unknown | C::Cancelled => {
            return ReplicationError::Unreachable { addr: addr.into(), why: strata_cluster::network::describe(&s) };
        }
        C::NotFound => Kind::NotFound,
        C::AlreadyExists => Kind::Exists,
        C::FailedPrecondition => Kind::Refused,
        C::InvalidArgument => Kind::Invalid,
        C::OutOfRange => Kind::OutOfRange,
        C::ResourceExhausted => Kind::Exhausted,
        C::Unavailable => Kind::Unavailable,
        C::DeadlineExceeded => Kind::TimedOut,
        C::Aborted => Kind::Aborted,
        C::DataLoss => Kind::DataLoss,
        C::PermissionDenied | C::Unauthenticated => Kind::Denied,
        _ => Kind::Internal,
    };
    ReplicationError::Peer { kind, message: strata_cluster::network::describe(&s) }
}

/// An error as the replica service answers it: the kind survives the hop.
pub fn to_status(e: impl Into<ReplicationError>) -> Status {
    use tonic::Code as C;
    let e = e.into();
    let code = match e.kind() {
        Kind::NotFound => C::NotFound,
        Kind::Exists => C::AlreadyExists,
        Kind::Refused => C::FailedPrecondition,
        Kind::Invalid => C::InvalidArgument,
        Kind::OutOfRange => C::OutOfRange,
        Kind::Exhausted => C::ResourceExhausted,
        Kind::Unavailable => C::Unavailable,
        Kind::TimedOut => C::DeadlineExceeded,
        Kind::Aborted => C::Aborted,
        Kind::Cancelled => C::Cancelled,
        Kind::DataLoss => C::DataLoss,
        Kind::Denied => C::PermissionDenied,
        Kind::Internal => {
            tracing::error!(error = %e, "internal error answering a peer");
            return Status::internal("internal error; the server log has the details");
        }
    };
    Status::new(code, e.to_string())
}

fn json<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("serializable"))
}

pub fn header_frame(h: &VersionHeader) -> pb::ReplicaFrame {
    pb::ReplicaFrame { header: json(h), ..Default::default() }
}

pub fn data_frame(data: Bytes) -> pb::ReplicaFrame {
    pb::ReplicaFrame { data, ..Default::default() }
}

pub fn trailer_frame(t: &Trailer) -> pb::ReplicaFrame {
    pb::ReplicaFrame { trailer: json(t), ..Default::default() }
}

/// Opens a push to `addr`: frames sent on the returned channel stream to the
/// peer; the task answers once the peer has recorded the version (or not).
/// Dropping the sender before a trailer aborts the push.
pub fn open_push(
    net: &Network,
    addr: &str,
) -> (mpsc::Sender<pb::ReplicaFrame>, tokio::task::JoinHandle<Result<PushAck, ReplicationError>>) {
    let (tx, rx) = mpsc::channel(PUSH_DEPTH);
    let (net, addr) = (net.clone(), addr.to_string());
    let task = tokio::spawn(async move {
        let mut c = client(&net, &addr)?;
        let mut req = Request::new(ReceiverStream::new(rx));
        net.secret().attach(&mut req, &addr);
        let r = c.push(req).await.map_err(|s| from_status(&addr, s))?;
        decode(&r.into_inner().data)
    });
    (tx, task)
}

pub fn decode<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, ReplicationError> {
    serde_json::from_slice(data).map_err(|e| ReplicationError::Internal(format!("bad replica message: {e}")))
}

pub async fn lookup(net: &Network, addr: &str, q: &Lookup, timeout: Duration) -> Result<Holding, ReplicationError> {
    let mut c = client(net, addr)?;
    let mut req = Request::new(pb::RaftBytes { data: serde_json::to_vec(q).expect("serializable") });
    req.set_timeout(timeout);
    net.secret().attach(&mut req, addr);
    let r = c.lookup(req).await.map_err(|s| from_status(addr, s))?;
    decode(&r.into_inner().data)
}

/// Asks a peer its part of a cluster-wide answer.
pub async fn query<A: serde::de::DeserializeOwned>(net: &Network, addr: &str, q: &Query, timeout: Duration) -> Result<A, ReplicationError> {
    let mut c = client(net, addr)?;
    let mut req = Request::new(pb::RaftBytes { data: serde_json::to_vec(q).expect("serializable") });
    req.set_timeout(timeout);
    net.secret().attach(&mut req, addr);
    let r = c.query(req).await.map_err(|s| from_status(addr, s))?;
    decode(&r.into_inner().data)
}

pub async fn enqueue(net: &Network, addr: &str, q: &Enqueue, timeout: Duration) -> Result<(), ReplicationError> {
    let mut c = client(net, addr)?;
    let mut req = Request::new(pb::RaftBytes { data: serde_json::to_vec(q).expect("serializable") });
    req.set_timeout(timeout);
    net.secret().attach(&mut req, addr);
    c.enqueue(req).await.map_err(|s| from_status(addr, s))?;
    Ok(())
}

/// Streams a version's bytes from the peer.
pub async fn fetch(
    net: &Network,
    addr: &str,
    q: &Fetch,
) -> Result<impl Stream<Item = Result<Bytes, ReplicationError>> + Send + Unpin + 'static, ReplicationError> {
    let mut c = client(net, addr)?;
    let mut req = Request::new(pb::RaftBytes { data: serde_json::to_vec(q).expect("serializable") });
    net.secret().attach(&mut req, addr);
    let addr2 = addr.to_string();
    let s = c.fetch(req).await.map_err(|s| from_status(addr, s))?.into_inner();
    Ok(s.map(move |f| f.map(|f| f.data).map_err(|s| from_status(&addr2, s))))
}

/// Anti-entropy's questions: a peer's partition digests, or the versions
/// of one partition.
pub async fn entropy<Q: Serialize, A: serde::de::DeserializeOwned>(
    net: &Network,
    addr: &str,
    digests: bool,
    q: &Q,
    timeout: Duration,
) -> Result<A, ReplicationError> {
    let mut c = client(net, addr)?;
    let mut req = Request::new(pb::RaftBytes { data: serde_json::to_vec(q).expect("serializable") });
    req.set_timeout(timeout);
    net.secret().attach(&mut req, addr);
    let r = if digests { c.digests(req).await } else { c.partition(req).await }.map_err(|s| from_status(addr, s))?;
    decode(&r.into_inner().data)
}
