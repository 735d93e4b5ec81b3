//! Which versions of a key supersede which, so that a cluster can tell
//! concurrent writes (siblings) from successive ones.
//!
//! Every version minted on a cluster names its *parents*: what its
//! coordinator saw of the key, the newest version and every head (none
//! when it saw nothing), or, for a resolution, every head it resolved. A version is a *head* while no
//! recorded version names it as a parent; a key with two heads has siblings,
//! which the replication layer hands to the bucket's strategy plugin. The
//! flag is kept as versions are recorded, in whatever order they arrive: a
//! version recorded after a child of it is no head. Versions without
//! parents (a single node's, rows from before) are never heads.

use std::collections::BTreeSet;
use std::sync::Mutex;

use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Row, query};

use super::bind::{Bind, Script};
use super::sql::record;
use super::{MetaError, ObjectRecord};

/// A head of a key: a version no recorded version supersedes.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub record: ObjectRecord,
    /// The writer's node id (breaks ties between equal stamps).
    pub node: String,
    /// The nodes meant to hold it.
    pub replicas: Vec<u64>,
}

/// Keys found with siblings as versions were recorded, for the
/// replication layer to resolve (`MetaStore::take_conflicts`). A key put
/// here by a transaction that then failed costs a look, nothing more.
#[derive(Default)]
pub struct Conflicts {
    keys: Mutex<BTreeSet<(String, String)>>,
    wake: tokio::sync::Notify,
}

impl Conflicts {
    /// Notes keys found with siblings; call once their transaction has
    /// committed, so that the resolver reads what was found.
    pub(super) fn add(&self, found: Vec<(String, String)>) {
        if found.is_empty() {
            return;
        }
        self.keys.lock().expect("conflicts").extend(found);
        self.wake.notify_one();
    }

    /// Waits until keys were found, then takes them.
    pub async fn next(&self) -> Vec<(String, String)> {
        loop {
            let taken = std::mem::take(&mut *self.keys.lock().expect("conflicts"));
            if !taken.is_empty() {
                return taken.into_iter().collect();
            }
            self.wake.notified().await;
        }
    }
}

/// Keeps the head flags of versions just inserted, as statements of `s`:
/// `rows` are (bucket, key, version, parents) of those minted with
/// parents. Returns the statement whose rows [`siblings`] reads: the keys
/// left with two heads or more (for [`Conflicts::add`] after the commit).
pub(super) fn push_record_parents(s: &mut Script, rows: &[(&str, &str, &str, &[String])]) -> Result<Option<usize>, MetaError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let json = serde_json::to_string(rows).map_err(|e| MetaError::Db(Box::new(e)))?;
    // A new version is a head unless a version recorded before it names it
    // (a lookup of the edges the insert trigger keeps, migration 0012).
    s.push(
        "UPDATE versions SET head = 1 WHERE (bucket, key, version) IN \
           (SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2 FROM json_each(?) j) \
         AND NOT EXISTS (SELECT 1 FROM version_parents e \
           WHERE e.bucket = versions.bucket AND e.key = versions.key AND e.parent = versions.version)",
        [Bind::Text(json.clone())],
    );
    // Their parents are heads no more.
    s.push(
        "UPDATE versions SET head = 0 WHERE head = 1 AND (bucket, key, version) IN \
           (SELECT j.value ->> 0, j.value ->> 1, p.value FROM json_each(?) j, json_each(j.value -> 3) p)",
        [Bind::Text(json.clone())],
    );
    Ok(Some(s.push(
        "SELECT DISTINCT j.value ->> 0 AS bucket, j.value ->> 1 AS key FROM json_each(?) j \
         WHERE (SELECT COUNT(*) FROM (SELECT 1 FROM versions v \
           WHERE v.bucket = j.value ->> 0 AND v.key = j.value ->> 1 AND v.head = 1 LIMIT 2)) = 2",
        [Bind::Text(json)],
    )))
}

/// The keys left with siblings, from the rows of the statement
/// [`push_record_parents`] returned.
pub(super) fn siblings(rows: &[SqliteRow]) -> Result<Vec<(String, String)>, MetaError> {
    rows.iter().map(|r| Ok((r.try_get("bucket")?, r.try_get("key")?))).collect()
}

/// Records the heads `rows` make on its own; returns the keys left with
/// siblings.
pub(super) async fn record_parents(
    conn: &mut SqliteConnection,
    rows: &[(&str, &str, &str, &[String])],
) -> Result<Vec<(String, String)>, MetaError> {
    let mut s = Script::default();
    let Some(q) = push_record_parents(&mut s, rows)? else { return Ok(Vec::new()) };
    siblings(&s.fetch(conn).await?[q])
}

/// The heads of a key, newest first (at most `limit`).
pub async fn heads(pool: &SqlitePool, bucket: &str, key: &str, limit: u32) -> Result<Vec<Head>, MetaError> {
    let rows = query(
        "SELECT id, bucket, key, version, stamp, node, digest, size, content_type, attributes, created_ms, modified_ms, replicas \
         FROM versions WHERE bucket = ? AND key = ? AND head = 1 ORDER BY version DESC LIMIT ?",
    )
    .bind(bucket)
    .bind(key)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let replicas: String = r.try_get("replicas")?;
            Ok(Head {
                record: record(r, None)?,
                node: r.try_get("node")?,
                replicas: serde_json::from_str(&replicas).map_err(|e| MetaError::Db(Box::new(e)))?,
            })
        })
        .collect()
}

/// Marks versions of a key as heads no more: siblings a resolution kept
/// the newest of, so they take no part in the key's next one.
pub async fn settle(pool: &SqlitePool, bucket: &str, key: &str, versions: &[String]) -> Result<(), MetaError> {
    query("UPDATE versions SET head = 0 WHERE bucket = ? AND key = ? AND head = 1 AND version IN (SELECT value FROM json_each(?))")
        .bind(bucket)
        .bind(key)
        .bind(serde_json::to_string(versions).map_err(|e| MetaError::Db(Box::new(e)))?)
        .execute(pool)
        .await?;
    Ok(())
}

/// The parents a version was recorded with.
pub async fn parents(pool: &SqlitePool, bucket: &str, key: &str, version: &str) -> Result<Option<Vec<String>>, MetaError> {
    let text: Option<Option<String>> = sqlx::query_scalar("SELECT parents FROM versions WHERE bucket = ? AND key = ? AND version = ?")
        .bind(bucket)
        .bind(key)
        .bind(version)
        .fetch_optional(pool)
        .await?;
    text.flatten().map(|t| serde_json::from_str(&t).map_err(|e| MetaError::Db(Box::new(e)))).transpose()
}

/// Keys with two heads or more (at most `limit`).
pub async fn conflicted(pool: &SqlitePool, limit: u32) -> Result<Vec<(String, String)>, MetaError> {
    let rows = query("SELECT bucket, key FROM versions WHERE head = 1 GROUP BY bucket, key HAVING COUNT(*) > 1 LIMIT ?")
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(|r| Ok((r.try_get("bucket")?, r.try_get("key")?))).collect()
}

/// For each of `keys`: what a write of it now supersedes here, its newest
/// version (a marker included) and its heads, sorted.
pub async fn seen(pool: &SqlitePool, bucket: &str, keys: &[String]) -> Result<Vec<Vec<String>>, MetaError> {
    let rows = query(
        "SELECT j.key AS i, (SELECT MAX(v.version) FROM versions v WHERE v.bucket = ?1 AND v.key = j.value) AS version \
         FROM json_each(?2) j \
         UNION ALL SELECT j.key, v.version FROM json_each(?2) j CROSS JOIN versions v \
           ON v.bucket = ?1 AND v.key = j.value AND v.head = 1",
    )
    .bind(bucket)
    .bind(serde_json::to_string(keys).map_err(|e| MetaError::Db(Box::new(e)))?)
    .fetch_all(pool)
    .await?;
    let mut out = vec![Vec::new(); keys.len()];
    for r in &rows {
        let i: i64 = r.try_get("i")?;
        if let (Some(slot), Some(v)) = (out.get_mut(i as usize), r.try_get::<Option<String>, _>("version")?) {
            slot.push(v);
        }
    }
    for slot in &mut out {
        slot.sort_unstable();
        slot.dedup();
    }
    Ok(out)
}
