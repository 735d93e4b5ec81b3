//! The replicated cluster state and its state machine, persisted in the
//! Raft database: every applied batch rewrites the state row in one
//! statement, so a restart resumes from what was applied.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::Mutex;

use super::log_store::{decode, encode, to_io};
use super::types::{BucketPolicy, Cmd, CmdResult, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};

/// Everything the cluster agrees on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub epoch: u64,
    pub buckets: BTreeMap<String, BucketPolicy>,
}

impl ClusterState {
    fn apply(&mut self, cmd: Cmd) -> CmdResult {
        match cmd {
            Cmd::SetBucketPolicy { bucket, policy } => {
                self.buckets.insert(bucket, policy);
            }
            Cmd::RemoveBucketPolicy { bucket } => {
                self.buckets.remove(&bucket);
            }
            Cmd::BumpEpoch => self.epoch += 1,
        }
        CmdResult { epoch: self.epoch }
    }
}

#[derive(Debug)]
pub struct StateMachine {
    pool: SqlitePool,
    state: Mutex<ClusterState>,
}

impl StateMachine {
    /// Loads the applied state from the Raft database.
    pub async fn open(pool: SqlitePool) -> io::Result<Arc<Self>> {
        let row = sqlx::query("SELECT v FROM raft_state WHERE k = 'state'")
            .fetch_optional(&pool)
            .await
            .map_err(to_io)?;
        let state = match row {
            Some(r) => decode(&r.get::<Vec<u8>, _>(0))?,
            None => ClusterState::default(),
        };
        Ok(Arc::new(Self { pool, state: Mutex::new(state) }))
    }

    /// A copy of the state as applied on this node.
    pub async fn state(&self) -> ClusterState {
        self.state.lock().await.clone()
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
        let state = self.state.lock().await.clone();
        let data = encode(&state)?;
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
                EntryPayload::Blank => CmdResult { epoch: s.epoch },
                EntryPayload::Normal(cmd) => s.apply(cmd),
                EntryPayload::Membership(m) => {
                    s.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    CmdResult { epoch: s.epoch }
                }
            };
            answers.push((responder, result));
        }
        // Durable before anyone hears the answer.
        self.put("state", encode(&*s)?).await?;
        for (responder, result) in answers {
            if let Some(r) = responder {
                r.send(result);
            }
        }
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
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let row = sqlx::query("SELECT v FROM raft_state WHERE k = 'snapshot'")
            .fetch_optional(&self.pool)
            .await
            .map_err(to_io)?;
        row.map(|r| {
            let s: StoredSnapshot = decode(&r.get::<Vec<u8>, _>(0))?;
            Ok(Snapshot { meta: s.meta, snapshot: s.data })
        })
        .transpose()
    }
}
