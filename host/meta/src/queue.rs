//! The replication queue: copies of versions owed to other nodes, kept in
//! the metadata store so they survive restarts.

use serde_json::json;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::MetaError;
use super::clock::now_ms;

#[derive(Clone, Debug, PartialEq)]
pub struct QueueEntry {
    pub id: i64,
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub node: u64,
    pub attempts: u32,
}

/// How far behind the queue is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStats {
    pub pending: u64,
    /// Entries whose last attempt failed.
    pub retrying: u64,
    /// Age of the oldest entry, in milliseconds.
    pub oldest_ms: u64,
}

/// Owes a copy of the version to each node; an entry already queued stays
/// as it is.
pub async fn enqueue(pool: &SqlitePool, bucket: &str, key: &str, version: &str, nodes: &[u64]) -> Result<(), MetaError> {
    if nodes.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    sqlx::query(
        "INSERT OR IGNORE INTO replication_queue (bucket, key, version, node, due_ms, created_ms) \
         SELECT ?, ?, ?, value, ?, ? FROM json_each(?)",
    )
    .bind(bucket)
    .bind(key)
    .bind(version)
    .bind(now)
    .bind(now)
    .bind(json!(nodes).to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// Entries due now, the longest waiting first.
pub async fn due(pool: &SqlitePool, limit: u32) -> Result<Vec<QueueEntry>, MetaError> {
    let rows = sqlx::query(
        "SELECT id, bucket, key, version, node, attempts FROM replication_queue \
         WHERE due_ms <= ? ORDER BY due_ms LIMIT ?",
    )
    .bind(now_ms())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(QueueEntry {
                id: r.try_get("id")?,
                bucket: r.try_get("bucket")?,
                key: r.try_get("key")?,
                version: r.try_get("version")?,
                node: r.try_get::<i64, _>("node")? as u64,
                attempts: r.try_get::<i64, _>("attempts")? as u32,
            })
        })
        .collect()
}

/// Removes finished entries, all in one statement.
pub async fn done(pool: &SqlitePool, ids: &[i64]) -> Result<(), MetaError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM replication_queue WHERE id IN (SELECT value FROM json_each(?))")
        .bind(json!(ids).to_string())
        .execute(pool)
        .await?;
    Ok(())
}

/// Owes copies of many versions at once: (bucket, key, version, node).
pub async fn enqueue_many(pool: &SqlitePool, rows: &[(String, String, String, u64)]) -> Result<(), MetaError> {
    if rows.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let rows: Vec<serde_json::Value> = rows.iter().map(|(b, k, v, n)| json!([b, k, v, n])).collect();
    sqlx::query(
        "INSERT OR IGNORE INTO replication_queue (bucket, key, version, node, due_ms, created_ms) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?, ? FROM json_each(?)",
    )
    .bind(now)
    .bind(now)
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt; the entry is tried again after `delay_ms`.
pub async fn retry(pool: &SqlitePool, id: i64, delay_ms: i64, error: &str) -> Result<(), MetaError> {
    sqlx::query("UPDATE replication_queue SET attempts = attempts + 1, due_ms = ?, error = ? WHERE id = ?")
        .bind(now_ms() + delay_ms)
        .bind(error)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn stats(pool: &SqlitePool) -> Result<QueueStats, MetaError> {
    let r = sqlx::query("SELECT count(*) AS n, count(error) AS failing, min(created_ms) AS oldest FROM replication_queue")
        .fetch_one(pool)
        .await?;
    let oldest: Option<i64> = r.try_get("oldest")?;
    Ok(QueueStats {
        pending: r.try_get::<i64, _>("n")? as u64,
        retrying: r.try_get::<i64, _>("failing")? as u64,
        oldest_ms: oldest.map_or(0, |o| (now_ms() - o).max(0) as u64),
    })
}

/// When the next entry falls due, if any is queued.
pub async fn next_due(pool: &SqlitePool) -> Result<Option<i64>, MetaError> {
    Ok(sqlx::query("SELECT min(due_ms) AS d FROM replication_queue").fetch_one(pool).await?.try_get("d")?)
}

pub async fn queued(pool: &SqlitePool, bucket: &str, key: &str, version: &str) -> Result<bool, MetaError> {
    Ok(sqlx::query("SELECT 1 FROM replication_queue WHERE bucket = ? AND key = ? AND version = ? LIMIT 1")
        .bind(bucket)
        .bind(key)
        .bind(version)
        .fetch_optional(pool)
        .await?
        .is_some())
}
