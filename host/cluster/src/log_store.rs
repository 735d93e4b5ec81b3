//! The Raft log and vote in SQLite (`raft.db`). One connection serialises
//! every write, as openraft wants its IO in submission order, and
//! `synchronous = FULL` makes each commit durable before it returns, so the
//! append callback fires only for entries on disk.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::time::Duration;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use super::types::{Entry, LogId, TypeConfig, Vote};

/// Opens (creating) the Raft database; `None` is a private in-memory one.
pub async fn open(path: Option<&Path>) -> Result<SqlitePool, sqlx::Error> {
    let options = match path {
        Some(p) => SqliteConnectOptions::new()
            .filename(p)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30)),
        None => SqliteConnectOptions::new().in_memory(true),
    };
    let pool = strata_meta::single_connection(options).await?;
    for ddl in [
        "CREATE TABLE IF NOT EXISTS raft_log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS raft_meta (k TEXT PRIMARY KEY, v BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS raft_state (k TEXT PRIMARY KEY, v BLOB NOT NULL)",
    ] {
        sqlx::query(ddl).execute(&pool).await?;
    }
    Ok(pool)
}

pub(super) fn to_io(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

pub(super) fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(to_io)
}

pub(super) fn decode<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    serde_json::from_slice(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The log; it is also its own reader (reads share the one connection, so
/// an appended entry is visible to every reader at once).
#[derive(Clone, Debug)]
pub struct LogStore {
    pool: SqlitePool,
}

impl LogStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    async fn get_meta<T: DeserializeOwned>(&self, k: &str) -> io::Result<Option<T>> {
        let row = sqlx::query("SELECT v FROM raft_meta WHERE k = ?").bind(k).fetch_optional(&self.pool).await.map_err(to_io)?;
        row.map(|r| decode(&r.get::<Vec<u8>, _>(0))).transpose()
    }

    async fn put_meta<T: Serialize>(&self, k: &str, v: &T) -> io::Result<()> {
        sqlx::query("INSERT INTO raft_meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v")
            .bind(k)
            .bind(encode(v)?)
            .execute(&self.pool)
            .await
            .map_err(to_io)?;
        Ok(())
    }
}

/// A range of log indexes as SQL's half-open [start, end).
fn sql_range(range: &impl RangeBounds<u64>) -> (i64, i64) {
    let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
    let start = match range.start_bound() {
        Bound::Included(s) => clamp(*s),
        Bound::Excluded(s) => clamp(s.saturating_add(1)),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => clamp(e.saturating_add(1)),
        Bound::Excluded(e) => clamp(*e),
        Bound::Unbounded => i64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = sql_range(&range);
        let rows = sqlx::query("SELECT entry FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx")
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await
            .map_err(to_io)?;
        rows.iter().map(|r| decode(&r.get::<Vec<u8>, _>(0))).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta("vote").await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta("last_purged").await?;
        let row = sqlx::query("SELECT entry FROM raft_log ORDER BY idx DESC LIMIT 1").fetch_optional(&self.pool).await.map_err(to_io)?;
        let last_log_id = match row {
            Some(r) => Some(decode::<Entry>(&r.get::<Vec<u8>, _>(0))?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.put_meta("vote", vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.put_meta("committed", &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>("committed").await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows: Vec<serde_json::Value> =
            entries.into_iter().map(|e| Ok(serde_json::json!([e.log_id.index, hex::encode(encode(&e)?)]))).collect::<io::Result<_>>()?;
        let done =
            sqlx::query("INSERT OR REPLACE INTO raft_log (idx, entry) SELECT j.value ->> 0, unhex(j.value ->> 1) FROM json_each(?) j")
                .bind(serde_json::Value::Array(rows).to_string())
                .execute(&self.pool)
                .await
                .map_err(to_io);
        // The statement is its own transaction: committed, it is on disk.
        match done {
            Ok(_) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index as i64 + 1);
        sqlx::query("DELETE FROM raft_log WHERE idx >= ?").bind(from).execute(&self.pool).await.map_err(to_io)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut tx = self.pool.begin().await.map_err(to_io)?;
        sqlx::query("INSERT INTO raft_meta (k, v) VALUES ('last_purged', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v")
            .bind(encode(&log_id)?)
            .execute(&mut *tx)
            .await
            .map_err(to_io)?;
        sqlx::query("DELETE FROM raft_log WHERE idx <= ?").bind(log_id.index as i64).execute(&mut *tx).await.map_err(to_io)?;
        tx.commit().await.map_err(to_io)
    }
}
