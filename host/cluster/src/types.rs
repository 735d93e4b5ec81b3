//! The Raft type configuration and the commands the cluster state applies.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What the cluster knows of a node, carried in Raft membership.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Where peers reach its node-to-node service.
    pub addr: String,
    pub region: String,
    pub zone: String,
    pub capacity: u64,
    pub labels: BTreeMap<String, String>,
}

/// A change to the cluster state.
///
/// Lock commands carry `now_ms`, the leader's clock when it proposed the
/// entry: leases are judged by the time in the log, never by a replica's
/// own clock, so every replica decides alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cmd {
    /// Names the cluster; proposed once, right after `init`.
    SetClusterId {
        id: String,
    },
    /// Sets (or replaces) a bucket's replication policy.
    SetBucketPolicy {
        bucket: String,
        policy: BucketPolicy,
    },
    RemoveBucketPolicy {
        bucket: String,
    },
    /// Moves the cluster epoch on by one.
    BumpEpoch,
    /// Grants `name` to `holder` for `ttl_ms` unless someone else holds it.
    /// `request` is unique per acquisition, so a retried proposal whose
    /// first try committed is recognised.
    Lock {
        name: String,
        holder: String,
        request: u64,
        ttl_ms: u64,
        now_ms: u64,
    },
    /// Extends the lease of the grant `token`.
    Renew {
        name: String,
        token: u64,
        ttl_ms: u64,
        now_ms: u64,
    },
    /// Ends the grant `token`.
    Unlock {
        name: String,
        token: u64,
    },
    /// Remembers that a removed node's id may never come back.
    Retire {
        id: u64,
    },
    /// Defines a search index; every node builds its own copy. Refused if
    /// the bucket has an index of that name.
    CreateIndex {
        index: IndexSpec,
    },
    /// Removes an index definition (refused if there is none).
    DropIndex {
        bucket: String,
        name: String,
    },
    /// Sets (or, with `None`, removes) a bucket's tier policy.
    SetTierPolicy {
        bucket: String,
        policy: Option<TierRule>,
    },
    /// Names a new cluster after a backed-up one and takes over its state
    /// (`init` of a restored node); refused once the cluster is named.
    Adopt {
        state: crate::state::Adopted,
    },
}

/// When every node moves its copies of a bucket's versions to a tier of
/// its own: every limit that is set must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRule {
    /// The tier's name; each node has its own `[[tiers]]` of that name.
    pub tier: String,
    /// The version is at least this old.
    pub after_ms: Option<u64>,
    /// Its blob was not read for this long.
    pub idle_ms: Option<u64>,
    /// Its blob holds at least this many bytes.
    pub min_size: u64,
}

/// A search index as the cluster defines it; each node builds it over the
/// versions it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSpec {
    pub bucket: String,
    pub name: String,
    /// In their canonical spelling.
    pub fields: Vec<String>,
    /// The index-type plugin.
    pub kind: String,
}

impl IndexSpec {
    /// Where the cluster state keeps an index: `bucket/name` (neither name
    /// has a slash).
    pub fn key_of(bucket: &str, name: &str) -> String {
        format!("{bucket}/{name}")
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cmd::SetClusterId { id } => write!(f, "cluster id {id}"),
            Cmd::SetBucketPolicy { bucket, .. } => write!(f, "set policy of {bucket}"),
            Cmd::RemoveBucketPolicy { bucket } => write!(f, "remove policy of {bucket}"),
            Cmd::BumpEpoch => f.write_str("bump epoch"),
            Cmd::Lock { name, holder, .. } => write!(f, "lock {name} for {holder}"),
            Cmd::Renew { name, token, .. } => write!(f, "renew {name} #{token}"),
            Cmd::Unlock { name, token } => write!(f, "unlock {name} #{token}"),
            Cmd::Retire { id } => write!(f, "retire node {id}"),
            Cmd::CreateIndex { index } => write!(f, "create index {}/{}", index.bucket, index.name),
            Cmd::DropIndex { bucket, name } => write!(f, "drop index {bucket}/{name}"),
            Cmd::SetTierPolicy { bucket, .. } => write!(f, "set tier policy of {bucket}"),
            Cmd::Adopt { state } => write!(f, "adopt the state of cluster {}", state.cluster_id),
        }
    }
}

impl Cmd {
    /// Stamps lock commands with the proposing leader's clock.
    pub fn stamped(mut self, now: u64) -> Cmd {
        if let Cmd::Lock { now_ms, .. } | Cmd::Renew { now_ms, .. } = &mut self {
            *now_ms = now;
        }
        self
    }
}

/// A lock as the cluster state holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockGrant {
    pub name: String,
    pub holder: String,
    /// The log index of the grant: unique, and larger for every later grant.
    pub token: u64,
    /// Log time at which the lease runs out.
    pub expires_ms: u64,
    /// The acquisition that made the grant.
    #[serde(default)]
    pub request: u64,
}

/// How a bucket's objects are replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPolicy {
    pub strategy: String,
    pub selector: String,
    pub replicas: u32,
    pub min_replicas: u32,
    pub params: BTreeMap<String, String>,
    /// `None`: `[replication] consistency_level`.
    #[serde(default)]
    pub consistency: Option<Consistency>,
}

/// Whether a read must see the newest acknowledged version. Stored in the
/// cluster state (as `"strong"` or `"eventual"`), so it is the cluster's
/// type; `[replication] consistency_level` is its config spelling.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Reads ask every reachable node and serve the newest version.
    #[default]
    Strong,
    /// Reads take the nearest copy.
    Eventual,
}

impl From<strata_config::ConsistencyLevel> for Consistency {
    fn from(c: strata_config::ConsistencyLevel) -> Self {
        match c {
            strata_config::ConsistencyLevel::Strong => Consistency::Strong,
            strata_config::ConsistencyLevel::Eventual => Consistency::Eventual,
        }
    }
}

/// What applying a command answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CmdResult {
    /// The cluster epoch after the command.
    pub epoch: u64,
    /// Lock commands: the grant as it stands after the command (for a
    /// refused lock, the other holder's grant).
    pub lock: Option<LockGrant>,
    /// Why the command changed nothing, if it did not.
    pub refused: Option<String>,
    /// The log time of the entry.
    pub now_ms: u64,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Cmd,
        R = CmdResult,
        NodeId = u64,
        Node = NodeMeta,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type SnapshotData = Vec<u8>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
