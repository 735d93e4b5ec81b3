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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cmd {
    /// Sets (or replaces) a bucket's replication policy.
    SetBucketPolicy { bucket: String, policy: BucketPolicy },
    RemoveBucketPolicy { bucket: String },
    /// Moves the cluster epoch on by one.
    BumpEpoch,
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cmd::SetBucketPolicy { bucket, .. } => write!(f, "set policy of {bucket}"),
            Cmd::RemoveBucketPolicy { bucket } => write!(f, "remove policy of {bucket}"),
            Cmd::BumpEpoch => f.write_str("bump epoch"),
        }
    }
}

/// How a bucket's objects are replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPolicy {
    pub strategy: String,
    pub selector: String,
    pub replicas: u32,
    pub min_replicas: u32,
    pub params: BTreeMap<String, String>,
}

/// What applying a command answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CmdResult {
    /// The cluster epoch after the command.
    pub epoch: u64,
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
