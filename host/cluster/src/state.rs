//! The replicated cluster state and its state machine, persisted in the
//! Raft database: every applied batch rewrites the state row in one
//! statement, so a restart resumes from what was applied.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::Mutex;

use super::locks::Locks;
use super::log_store::{decode, encode, to_io};
use super::types::{
    BucketPolicy, Cmd, CmdResult, IndexSpec, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TierRule, TypeConfig,
};

/// Everything the cluster agrees on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterState {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    /// Set once, right after init; a node of another cluster cannot join.
    pub cluster_id: String,
    /// The log's clock: the largest leader time seen in an entry, so it
    /// never runs backwards across a leader change.
    pub clock_ms: u64,
    pub epoch: u64,
    pub buckets: BTreeMap<String, BucketPolicy>,
    pub locks: Locks,
    /// Ids of removed nodes, never to be used again.
    pub retired: BTreeSet<u64>,
    /// Search indexes by [`IndexSpec::key_of`].
    pub indexes: BTreeMap<String, IndexSpec>,
    /// Tier policies by bucket.
    pub tier_policies: BTreeMap<String, TierRule>,
}

/// What a cluster restored from a backup takes over: everything but the
/// membership (the restored nodes form it anew, wherever they now are)
/// and the locks (leases end with the cluster that granted them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Adopted {
    pub cluster_id: String,
    pub epoch: u64,
    pub buckets: BTreeMap<String, BucketPolicy>,
    pub retired: BTreeSet<u64>,
    pub indexes: BTreeMap<String, IndexSpec>,
    pub tier_policies: BTreeMap<String, TierRule>,
}

impl ClusterState {
    /// The part of the state a backup keeps.
    pub fn adoptable(&self) -> Adopted {
        Adopted {
            cluster_id: self.cluster_id.clone(),
            epoch: self.epoch,
            buckets: self.buckets.clone(),
            retired: self.retired.clone(),
            indexes: self.indexes.clone(),
            tier_policies: self.tier_policies.clone(),
        }
    }

    fn apply(&mut self, cmd: Cmd, index: u64) -> CmdResult {
        let mut lock = (None, None);
        let mut refused = None;
        match cmd {
            Cmd::SetClusterId { id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = id;
                }
            }
            Cmd::SetBucketPolicy { bucket, policy } => {
                self.buckets.insert(bucket, policy);
            }
            Cmd::RemoveBucketPolicy { bucket } => {
                self.buckets.remove(&bucket);
            }
            Cmd::BumpEpoch => self.epoch += 1,
            Cmd::Lock { name, holder, request, ttl_ms, now_ms } => {
                self.clock_ms = self.clock_ms.max(now_ms);
                lock = self.locks.lock(&name, &holder, request, ttl_ms, index, self.clock_ms);
            }
            Cmd::Renew { name, token, ttl_ms, now_ms } => {
                self.clock_ms = self.clock_ms.max(now_ms);
                lock = self.locks.renew(&name, token, ttl_ms, self.clock_ms);
            }
            Cmd::Unlock { name, token } => lock = self.locks.unlock(&name, token),
            Cmd::Retire { id } => {
                self.retired.insert(id);
            }
            Cmd::CreateIndex { index } => {
                let at = IndexSpec::key_of(&index.bucket, &index.name);
                match self.indexes.entry(at) {
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(index);
                    }
                    std::collections::btree_map::Entry::Occupied(_) => {
                        refused = Some(format!("bucket {:?} already has an index named {:?}", index.bucket, index.name));
                    }
                }
            }
            Cmd::DropIndex { bucket, name } => {
                if self.indexes.remove(&IndexSpec::key_of(&bucket, &name)).is_none() {
                    refused = Some(format!("bucket {bucket:?} has no index named {name:?}"));
                }
            }
            Cmd::SetTierPolicy { bucket, policy } => match policy {
                Some(p) => {
                    self.tier_policies.insert(bucket, p);
                }
                None => {
                    if self.tier_policies.remove(&bucket).is_none() {
                        refused = Some(format!("bucket {bucket:?} has no tier policy"));
                    }
                }
            },
            Cmd::Adopt { state } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = state.cluster_id;
                    self.epoch = self.epoch.max(state.epoch);
                    self.buckets = state.buckets;
                    self.retired = state.retired;
                    self.indexes = state.indexes;
                    self.tier_policies = state.tier_policies;
                } else {
                    refused = Some(format!("this cluster is {} already", self.cluster_id));
                }
            }
        }
        CmdResult { epoch: self.epoch, lock: lock.0, refused: lock.1.or(refused), now_ms: self.clock_ms }
    }

    fn result(&self) -> CmdResult {
        CmdResult { epoch: self.epoch, now_ms: self.clock_ms, ..Default::default() }
    }
}

#[derive(Debug)]
pub struct StateMachine {
    pool: SqlitePool,
    state: Mutex<ClusterState>,
    /// Woken after every applied batch (lock waiters listen).
    pub applied: tokio::sync::Notify,
}

impl StateMachine {
    /// Loads the applied state from the Raft database.
    pub async fn open(pool: SqlitePool) -> io::Result<Arc<Self>> {
        let row = sqlx::query("SELECT v FROM raft_state WHERE k = 'state'").fetch_optional(&pool).await.map_err(to_io)?;
        let state = match row {
            Some(r) => decode(&r.get::<Vec<u8>, _>(0))?,
            None => ClusterState::default(),
        };
        Ok(Arc::new(Self { pool, state: Mutex::new(state), applied: Default::default() }))
    }

    /// The token of `name`'s grant here (live or not), and the index applied.
    pub async fn lock_token(&self, name: &str) -> (Option<u64>, u64) {
        let s = self.state.lock().await;
        (s.locks.get(name).map(|g| g.token), s.last_applied.map_or(0, |l| l.index))
    }

    /// A copy of the state as applied on this node.
    pub async fn state(&self) -> ClusterState {
        self.state.lock().await.clone()
    }

    /// A bucket's replication policy as applied on this node.
    pub async fn bucket_policy(&self, bucket: &str) -> Option<super::types::BucketPolicy> {
        self.state.lock().await.buckets.get(bucket).cloned()
    }

    async fn put(&self, k: &str, v: Vec<u8>) -> io::Result<()> {
        sqlx::query("INSERT INTO raft_state (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v")
            .bind(k)
            .bind(v)
            .execute(&self.pool)
            .await
            .map_err(to_io)?;
        Ok(())
    }
}

/// A snapshot as stored: its meta and the state's bytes.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for Arc<StateMachine> {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // Held until the row is written, so a snapshot installed meanwhile
        // is never overwritten by this older one.
        let state = self.state.lock().await;
        let data = encode(&*state)?;
        let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.last_membership.clone() };
        self.put("snapshot", encode(&StoredSnapshot { meta: meta.clone(), data: data.clone() })?).await?;
        Ok(Snapshot { meta, snapshot: data })
    }
}

impl RaftStateMachine<TypeConfig> for Arc<StateMachine> {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let s = self.state.lock().await;
        Ok((s.last_applied, s.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut s = self.state.lock().await;
        let mut answers = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            s.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => s.result(),
                EntryPayload::Normal(cmd) => s.apply(cmd, entry.log_id.index),
                EntryPayload::Membership(m) => {
                    s.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    s.result()
                }
            };
            answers.push((responder, result));
        }
        // Durable before anyone hears the answer.
        self.put("state", encode(&*s)?).await?;
        drop(s);
        for (responder, result) in answers {
            if let Some(r) = responder {
                r.send(result);
            }
        }
        self.applied.notify_waiters();
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let new: ClusterState = decode(&snapshot)?;
        let mut s = self.state.lock().await;
        self.put("snapshot", encode(&StoredSnapshot { meta: meta.clone(), data: snapshot })?).await?;
        self.put("state", encode(&new)?).await?;
        *s = new;
        drop(s);
        self.applied.notify_waiters();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let row = sqlx::query("SELECT v FROM raft_state WHERE k = 'snapshot'").fetch_optional(&self.pool).await.map_err(to_io)?;
        row.map(|r| {
            let s: StoredSnapshot = decode(&r.get::<Vec<u8>, _>(0))?;
            Ok(Snapshot { meta: s.meta, snapshot: s.data })
        })
        .transpose()
    }
}
