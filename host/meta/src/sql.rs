//! Every SQL statement of the metadata store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Connection as _, Row};

use super::clock::{Clock, now_ms};
use super::{Attributes, Bucket, Deleted, Identity, MetaError, MetaStats, ObjectRecord};
use strata_store::Digest;

pub struct Policy<'a> {
    /// The server's default: `[metadata] enable_versioning`.
    pub versioning: bool,
    /// Buckets set to keep versions, or not, whatever the default.
    pub per_bucket: Arc<HashMap<String, BucketVersioning>>,
    pub max_versions: u32,
    pub node: &'a str,
    pub clock: &'a Clock,
    pub conflicts: &'a super::lineage::Conflicts,
}

/// A bucket's own versioning setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketVersioning {
    Enabled,
    /// Suspended at this stamp: versions written before it are kept.
    SuspendedSince(u64),
}

impl Policy<'_> {
    /// Whether `bucket` keeps old versions.
    pub fn versions(&self, bucket: &str) -> bool {
        match self.per_bucket.get(bucket) {
            Some(BucketVersioning::Enabled) => true,
            Some(BucketVersioning::SuspendedSince(_)) => false,
            None => self.versioning,
        }
    }

    /// Whether a write may remove `live` (the key's live version) instead
    /// of keeping it: never while versioning; in a bucket whose versioning
    /// was suspended, only a version written since (as S3 replaces only
    /// its `null` version).
    pub fn replaces(&self, bucket: &str, live: &str) -> bool {
        match self.per_bucket.get(bucket) {
            Some(BucketVersioning::Enabled) => false,
            Some(BucketVersioning::SuspendedSince(since)) => stamp_of(live).is_none_or(|s| s >= *since),
            None => !self.versioning,
        }
    }
}

/// The stamp a version id starts with (`{stamp:016x}-{node}`).
fn stamp_of(version: &str) -> Option<u64> {
    version.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok())
}

/// The live version of one key.
const LATEST: &str = "SELECT v.id, v.bucket, v.key, v.version, v.stamp, v.digest, v.size, \
     v.content_type, v.attributes, v.created_ms, v.modified_ms \
     FROM objects o JOIN versions v ON v.id = o.version_id \
     WHERE o.bucket = ? AND o.key = ?";

/// A page of live records as one JSON array built by SQLite, for `inner`: a
/// SELECT of the record columns under their own names. One value crosses
/// from SQLite's thread instead of eleven per row, each of which sqlx
/// copies (with an allocation) before it is decoded: at a page of 1,000
/// those copies were a third of the server's time.
pub(super) fn records_sql(inner: &str) -> String {
    format!(
        "SELECT json_group_array(json_array(id, bucket, key, version, stamp, hex(digest), size, \
         content_type, json(attributes), created_ms, modified_ms)) AS records FROM ({inner})"
    )
}

/// The records of a [`records_sql`] row (each its key's live version), in
/// the order SQLite aggregated them, which is not promised: callers order
/// them.
pub(super) fn live_records(row: &SqliteRow) -> Result<Vec<(i64, ObjectRecord)>, MetaError> {
    type Columns = (i64, String, String, String, i64, Option<String>, i64, String, Attributes, i64, i64);
    let json: String = row.try_get("records")?;
    let rows: Vec<Columns> = serde_json::from_str(&json).map_err(|e| MetaError::Db(Box::new(e)))?;
    rows.into_iter()
        .map(|(id, bucket, key, version, stamp, digest, size, content_type, attributes, created_ms, modified_ms)| {
            let digest = digest.map(|h| hex::decode(h).map_err(|e| MetaError::Db(Box::new(e))).and_then(digest_of)).transpose()?;
            let record = ObjectRecord {
                bucket,
                key,
                version,
                stamp: stamp as u64,
                digest,
                size: size as u64,
                content_type,
                attributes,
                created_ms,
                modified_ms,
                latest: true,
            };
            Ok((id, record))
        })
        .collect()
}

pub(super) fn record(row: &SqliteRow, newest_id: Option<i64>) -> Result<ObjectRecord, MetaError> {
    let digest: Option<Vec<u8>> = row.try_get("digest")?;
    let digest = digest.map(digest_of).transpose()?;
    let attributes: String = row.try_get("attributes")?;
    let id: i64 = row.try_get("id")?;
    Ok(ObjectRecord {
        bucket: row.try_get("bucket")?,
        key: row.try_get("key")?,
        version: row.try_get("version")?,
        stamp: row.try_get::<i64, _>("stamp")? as u64,
        digest,
        size: row.try_get::<i64, _>("size")? as u64,
        content_type: row.try_get("content_type")?,
        attributes: serde_json::from_str(&attributes).map_err(|e| MetaError::Db(Box::new(e)))?,
        created_ms: row.try_get("created_ms")?,
        modified_ms: row.try_get("modified_ms")?,
        latest: newest_id == Some(id),
    })
}

pub async fn replicas(pool: &SqlitePool, bucket: &str, key: &str, version: &str) -> Result<Vec<u64>, MetaError> {
    let row = sqlx::query("SELECT replicas FROM versions WHERE bucket = ? AND key = ? AND version = ?")
        .bind(bucket)
        .bind(key)
        .bind(version)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(Vec::new()) };
    let text: String = row.try_get("replicas")?;
    serde_json::from_str(&text).map_err(|e| MetaError::Db(Box::new(e)))
}

pub async fn placed_after(pool: &SqlitePool, after: i64, limit: u32, markers: bool) -> Result<Vec<super::Placed>, MetaError> {
    let rows = sqlx::query(
        "SELECT id, bucket, key, version, size, replicas FROM versions \
         WHERE id > ? AND (digest IS NOT NULL OR ?) ORDER BY id LIMIT ?",
    )
    .bind(after)
    .bind(markers)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(placed).collect()
}

/// A row of id, bucket, key, version, size and replicas.
pub(super) fn placed(r: &SqliteRow) -> Result<super::Placed, MetaError> {
    let replicas: String = r.try_get("replicas")?;
    Ok(super::Placed {
        id: r.try_get("id")?,
        bucket: r.try_get("bucket")?,
        key: r.try_get("key")?,
        version: r.try_get("version")?,
        size: r.try_get::<i64, _>("size")? as u64,
        replicas: serde_json::from_str(&replicas).map_err(|e| MetaError::Db(Box::new(e)))?,
    })
}

/// Versions whose blob is on record as corrupt here, with placements.
pub async fn damaged(pool: &SqlitePool, limit: u32) -> Result<Vec<super::Placed>, MetaError> {
    let rows = sqlx::query(
        "SELECT v.id, v.bucket, v.key, v.version, v.size, v.replicas FROM blobs b \
         JOIN versions v ON v.digest = b.digest WHERE b.state = 'corrupt' LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(placed).collect()
}

pub async fn set_replicas_many(pool: &SqlitePool, rows: &[(String, String, String, Vec<u64>)]) -> Result<(), MetaError> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> =
        rows.iter().map(|(b, k, v, r)| serde_json::json!([b, k, v, serde_json::json!(r).to_string()])).collect();
    sqlx::query(
        "UPDATE versions SET replicas = j.value ->> 3 FROM json_each(?) j \
         WHERE versions.bucket = j.value ->> 0 AND versions.key = j.value ->> 1 AND versions.version = j.value ->> 2",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_replicas(pool: &SqlitePool, bucket: &str, key: &str, version: &str, replicas: &[u64]) -> Result<(), MetaError> {
    sqlx::query("UPDATE versions SET replicas = ? WHERE bucket = ? AND key = ? AND version = ?")
        .bind(serde_json::json!(replicas).to_string())
        .bind(bucket)
        .bind(key)
        .bind(version)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn node_id(pool: &SqlitePool) -> Result<String, MetaError> {
    let mut conn = pool.acquire().await?;
    if let Some(row) = sqlx::query("SELECT node_id FROM node WHERE id = 1").fetch_optional(&mut *conn).await? {
        return Ok(row.try_get("node_id")?);
    }
    let id = format!("{:08x}", rand::random::<u32>());
    sqlx::query("INSERT INTO node (id, node_id, created_ms) VALUES (1, ?, ?)").bind(&id).bind(now_ms()).execute(&mut *conn).await?;
    Ok(id)
}

pub async fn last_stamp(pool: &SqlitePool) -> Result<u64, MetaError> {
    // Stamps this node mints grow with row ids; copies from other nodes may
    // arrive out of order, so look over the recent rows, not just the last
    // (an index range, not a scan of the table).
    let row = sqlx::query("SELECT COALESCE((SELECT MAX(stamp) FROM (SELECT stamp FROM versions ORDER BY id DESC LIMIT 100000)), 0) AS s")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<i64, _>("s")? as u64)
}

// ---- buckets ----

/// Buckets whose versioning is set, whatever the server's default.
pub async fn bucket_versioning(pool: &SqlitePool) -> Result<HashMap<String, BucketVersioning>, MetaError> {
    let rows = sqlx::query("SELECT name, versioning FROM buckets WHERE versioning IS NOT NULL").fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            let v: i64 = r.try_get("versioning")?;
            let setting = if v < 0 { BucketVersioning::Enabled } else { BucketVersioning::SuspendedSince(v as u64) };
            Ok((r.try_get("name")?, setting))
        })
        .collect()
}

pub async fn create_bucket(pool: &SqlitePool, name: &str) -> Result<Bucket, MetaError> {
    let now = now_ms();
    let done = sqlx::query("INSERT INTO buckets (name, created_ms) VALUES (?, ?) ON CONFLICT DO NOTHING")
        .bind(name)
        .bind(now)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(MetaError::BucketExists { bucket: name.into() });
    }
    Ok(Bucket { name: name.into(), created_ms: now, object_count: 0 })
}

pub async fn list_buckets(pool: &SqlitePool) -> Result<Vec<Bucket>, MetaError> {
    let rows = sqlx::query(
        "SELECT b.name, b.created_ms, \
         (SELECT COUNT(*) FROM objects o WHERE o.bucket = b.name) AS n \
         FROM buckets b ORDER BY b.name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Bucket { name: r.try_get("name")?, created_ms: r.try_get("created_ms")?, object_count: r.try_get::<i64, _>("n")? as u64 })
        })
        .collect()
}

pub async fn bucket_exists(pool: &SqlitePool, name: &str) -> Result<bool, MetaError> {
    Ok(sqlx::query("SELECT 1 FROM buckets WHERE name = ?").bind(name).fetch_optional(pool).await?.is_some())
}

/// Fails with `NoSuchBucket` unless the bucket exists.
pub(super) async fn require_bucket(conn: &mut SqliteConnection, name: &str) -> Result<(), MetaError> {
    match sqlx::query("SELECT 1 FROM buckets WHERE name = ?").bind(name).fetch_optional(conn).await? {
        Some(_) => Ok(()),
        None => Err(MetaError::NoSuchBucket { bucket: name.into() }),
    }
}

pub async fn delete_bucket(pool: &SqlitePool, name: &str) -> Result<(), MetaError> {
    let mut tx = pool.begin().await?;
    let mut d = Deltas::default();
    require_bucket(&mut tx, name).await?;
    if sqlx::query("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1").bind(name).fetch_optional(&mut *tx).await?.is_some() {
        return Err(MetaError::BucketNotEmpty { bucket: name.into() });
    }
    // What remains is history: old versions and markers. It goes with the bucket.
    let rows = sqlx::query("SELECT id, digest, size FROM versions WHERE bucket = ?").bind(name).fetch_all(&mut *tx).await?;
    for r in rows {
        let digest: Option<Vec<u8>> = r.try_get("digest")?;
        remove_version_row(&mut tx, &mut d, r.try_get("id")?, digest.as_deref(), r.try_get("size")?).await?;
    }
    sqlx::query("DELETE FROM requests WHERE bucket = ?").bind(name).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM buckets WHERE name = ?").bind(name).execute(&mut *tx).await?;
    d.apply(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

// ---- reads ----

/// The newest version of a key, delete markers included: what "latest"
/// means. Newest by version (stamp, then node), not by row: a replica may
/// receive an older version after a newer one.
async fn newest_id(conn: &mut SqliteConnection, bucket: &str, key: &str) -> Result<Option<i64>, MetaError> {
    Ok(sqlx::query("SELECT id FROM versions WHERE bucket = ? AND key = ? ORDER BY version DESC LIMIT 1")
        .bind(bucket)
        .bind(key)
        .fetch_optional(conn)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?)
}

async fn latest_on(conn: &mut SqliteConnection, bucket: &str, key: &str) -> Result<Option<ObjectRecord>, MetaError> {
    let row = sqlx::query(LATEST).bind(bucket).bind(key).fetch_optional(&mut *conn).await?;
    row.map(|r| {
        let id = r.try_get("id")?;
        record(&r, Some(id))
    })
    .transpose()
}

pub async fn get_latest(pool: &SqlitePool, bucket: &str, key: &str) -> Result<Option<ObjectRecord>, MetaError> {
    let mut conn = pool.acquire().await?;
    latest_on(&mut conn, bucket, key).await
}

/// The key's newest version by (stamp, node), a delete marker included.
pub async fn get_newest(pool: &SqlitePool, bucket: &str, key: &str) -> Result<Option<ObjectRecord>, MetaError> {
    let mut conn = pool.acquire().await?;
    let row = sqlx::query(
        "SELECT v.id, v.bucket, v.key, v.version, v.stamp, v.digest, v.size, \
         v.content_type, v.attributes, v.created_ms, v.modified_ms \
         FROM versions v WHERE v.bucket = ? AND v.key = ? ORDER BY v.version DESC LIMIT 1",
    )
    .bind(bucket)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let newest = newest_id(&mut conn, bucket, key).await?;
    record(&row, newest).map(Some)
}

pub async fn get_version(pool: &SqlitePool, bucket: &str, key: &str, version: &str) -> Result<Option<ObjectRecord>, MetaError> {
    let mut conn = pool.acquire().await?;
    let row = sqlx::query(
        "SELECT v.id, v.bucket, v.key, v.version, v.stamp, v.digest, v.size, \
         v.content_type, v.attributes, v.created_ms, v.modified_ms \
         FROM versions v WHERE v.bucket = ? AND v.key = ? AND v.version = ?",
    )
    .bind(bucket)
    .bind(key)
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let newest = newest_id(&mut conn, bucket, key).await?;
    record(&row, newest).map(Some)
}

/// The index range of the keys under `prefix` from `after` on. Keys never
/// contain U+10FFFF (the API refuses it), so every key that starts with
/// `prefix` sorts below `prefix + U+10FFFF`.
fn key_range<'a>(prefix: &'a str, after: Option<&'a str>) -> (&'a str, String) {
    let lower = match after {
        Some(a) if a >= prefix => a,
        _ => prefix,
    };
    (lower, format!("{prefix}\u{10FFFF}"))
}

pub async fn list(pool: &SqlitePool, bucket: &str, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<ObjectRecord>, MetaError> {
    let (lower, upper) = key_range(prefix, after);
    let sql = records_sql(
        "SELECT v.id, v.bucket, v.key, v.version, v.stamp, v.digest, v.size, \
         v.content_type, v.attributes, v.created_ms, v.modified_ms \
         FROM objects o JOIN versions v ON v.id = o.version_id \
         WHERE o.bucket = ? AND o.key >= ? AND o.key < ? AND (? IS NULL OR o.key > ?) \
         ORDER BY o.key LIMIT ?",
    );
    // Fixed text: the values are bound.
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(bucket)
        .bind(lower)
        .bind(&upper)
        .bind(after)
        .bind(after)
        .bind(limit as i64)
        .fetch_one(pool)
        .await?;
    let mut records: Vec<ObjectRecord> = live_records(&row)?.into_iter().map(|(_, r)| r).collect();
    // SQLite compares keys bytewise, as `str` does.
    records.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(records)
}

/// Rows that are each their key's newest version.
fn latest_records(rows: &[SqliteRow]) -> Result<Vec<ObjectRecord>, MetaError> {
    rows.iter()
        .map(|r| {
            let id = r.try_get("id")?;
            record(r, Some(id))
        })
        .collect()
}

/// Each key's newest version (a delete marker included) under `prefix`,
/// after `after`, in key order: what one node contributes to a
/// cluster-wide listing, where another node's marker may hide this node's
/// live version or the other way round.
pub async fn newest_after(
    pool: &SqlitePool,
    bucket: &str,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<ObjectRecord>, MetaError> {
    let (lower, upper) = key_range(prefix, after);
    let rows = sqlx::query(
        "SELECT v.id, v.bucket, v.key, v.version, v.stamp, v.digest, v.size, \
         v.content_type, v.attributes, v.created_ms, v.modified_ms \
         FROM (SELECT key, MAX(version) AS newest FROM versions \
               WHERE bucket = ?1 AND key >= ?2 AND key < ?3 AND (?4 IS NULL OR key > ?4) \
               GROUP BY key ORDER BY key LIMIT ?5) n \
         JOIN versions v ON v.bucket = ?1 AND v.key = n.key AND v.version = n.newest \
         ORDER BY v.key",
    )
    .bind(bucket)
    .bind(lower)
    .bind(&upper)
    .bind(after)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    latest_records(&rows)
}

pub async fn list_versions(pool: &SqlitePool, bucket: &str, key: &str) -> Result<Vec<ObjectRecord>, MetaError> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(
        "SELECT v.id, v.bucket, v.key, v.version, v.stamp, v.digest, v.size, \
         v.content_type, v.attributes, v.created_ms, v.modified_ms \
         FROM versions v WHERE v.bucket = ? AND v.key = ? ORDER BY v.version DESC",
    )
    .bind(bucket)
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    let newest = rows.first().map(|r| r.try_get("id")).transpose()?;
    rows.iter().map(|r| record(r, newest)).collect()
}

// ---- writes ----

/// Changes to the running totals, applied once per transaction.
#[derive(Default)]
pub(super) struct Deltas(Vec<(&'static str, i64)>);

impl Deltas {
    pub(super) fn add(&mut self, name: &'static str, by: i64) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v += by,
            None => self.0.push((name, by)),
        }
    }

    /// Adds the one statement that applies every change to `s`.
    pub(super) fn push_to(self, s: &mut super::bind::Script) {
        let rows: Vec<serde_json::Value> = self.0.iter().filter(|(_, by)| *by != 0).map(|(n, by)| serde_json::json!([n, by])).collect();
        if !rows.is_empty() {
            s.push(
                "UPDATE counters SET value = counters.value + (j.value ->> 1) FROM json_each(?) j WHERE counters.name = j.value ->> 0",
                [super::bind::Bind::Text(serde_json::Value::Array(rows).to_string())],
            );
        }
    }

    pub(super) async fn apply(self, conn: &mut SqliteConnection) -> Result<(), MetaError> {
        let mut s = super::bind::Script::default();
        self.push_to(&mut s);
        s.execute(conn).await?;
        Ok(())
    }
}

/// Drops one reference to a blob.
async fn unref_blob(conn: &mut SqliteConnection, digest: &[u8]) -> Result<(), MetaError> {
    sqlx::query(
        "UPDATE blobs SET refcount = refcount - 1, \
         unreferenced_ms = CASE WHEN refcount = 1 THEN ? ELSE unreferenced_ms END \
         WHERE digest = ?",
    )
    .bind(now_ms())
    .bind(digest)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a version row and its blob reference.
async fn remove_version_row(
    conn: &mut SqliteConnection,
    d: &mut Deltas,
    id: i64,
    digest: Option<&[u8]>,
    size: i64,
) -> Result<(), MetaError> {
    sqlx::query("DELETE FROM versions WHERE id = ?").bind(id).execute(&mut *conn).await?;
    d.add("versions", -1);
    if let Some(digest) = digest {
        unref_blob(conn, digest).await?;
        d.add("version_bytes", -size);
    }
    Ok(())
}

async fn version_row_id(conn: &mut SqliteConnection, bucket: &str, key: &str, version: &str) -> Result<i64, MetaError> {
    Ok(sqlx::query("SELECT id FROM versions WHERE bucket = ? AND key = ? AND version = ?")
        .bind(bucket)
        .bind(key)
        .bind(version)
        .fetch_one(conn)
        .await?
        .try_get("id")?)
}

/// Keeps the newest `max` versions of a key.
pub(super) async fn enforce_retention(
    conn: &mut SqliteConnection,
    d: &mut Deltas,
    bucket: &str,
    key: &str,
    max: u32,
) -> Result<(), MetaError> {
    // Newest by version; the live row always stays.
    let old = sqlx::query(
        "SELECT id, digest, size FROM versions WHERE bucket = ?1 AND key = ?2 \
         AND id NOT IN (SELECT version_id FROM objects WHERE bucket = ?1 AND key = ?2) \
         ORDER BY version DESC LIMIT -1 OFFSET ?3 - (SELECT COUNT(*) FROM objects WHERE bucket = ?1 AND key = ?2)",
    )
    .bind(bucket)
    .bind(key)
    .bind(max as i64)
    .fetch_all(&mut *conn)
    .await?;
    for r in old {
        let digest: Option<Vec<u8>> = r.try_get("digest")?;
        remove_version_row(conn, d, r.try_get("id")?, digest.as_deref(), r.try_get("size")?).await?;
    }
    Ok(())
}

/// Version rows examined per expiry transaction.
const EXPIRE_CHUNK: i64 = 5000;

/// Removes versions written before `cutoff_ms` that are not live. A key's
/// newest version stays (a delete marker keeps its key deleted) unless it
/// is a delete marker with nothing older left. Works through the table a
/// chunk per transaction; returns the versions removed.
pub async fn expire_versions(pool: &SqlitePool, cutoff_ms: i64) -> Result<u64, MetaError> {
    let mut removed = 0;
    let mut after = 0i64;
    loop {
        let mut conn = pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let top: Option<i64> = sqlx::query("SELECT max(id) AS top FROM (SELECT id FROM versions WHERE id > ? ORDER BY id LIMIT ?)")
            .bind(after)
            .bind(EXPIRE_CHUNK)
            .fetch_one(&mut *tx)
            .await?
            .try_get("top")?;
        let Some(top) = top else { return Ok(removed) };
        let rows = sqlx::query(
            "SELECT v.id, v.digest, v.size FROM versions v \
             WHERE v.id > ? AND v.id <= ? AND v.modified_ms < ? \
             AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.version_id = v.id) \
             AND (EXISTS (SELECT 1 FROM versions n WHERE n.bucket = v.bucket AND n.key = v.key AND n.version > v.version) \
                  OR (v.digest IS NULL AND NOT EXISTS \
                      (SELECT 1 FROM versions p WHERE p.bucket = v.bucket AND p.key = v.key AND p.version < v.version))) \
             ORDER BY v.id",
        )
        .bind(after)
        .bind(top)
        .bind(cutoff_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut d = Deltas::default();
        for r in &rows {
            let digest: Option<Vec<u8>> = r.try_get("digest")?;
            remove_version_row(&mut tx, &mut d, r.try_get("id")?, digest.as_deref(), r.try_get("size")?).await?;
        }
        d.apply(&mut tx).await?;
        tx.commit().await?;
        removed += rows.len() as u64;
        after = top;
    }
}

/// Records a delete marker minted elsewhere (a replicated delete). It ends
/// the live version only if it is the key's newest; recording it twice is
/// harmless.
pub async fn record_marker(pool: &SqlitePool, policy: &Policy<'_>, bucket: &str, key: &str, id: &Identity) -> Result<(), MetaError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut d = Deltas::default();
    let mut siblings = Vec::new();
    require_bucket(&mut tx, bucket).await?;
    policy.clock.observe(id.stamp);
    let row = sqlx::query("SELECT MAX(version) AS newest, MAX(version = ?3) AS recorded FROM versions WHERE bucket = ?1 AND key = ?2")
        .bind(bucket)
        .bind(key)
        .bind(&id.version)
        .fetch_one(&mut *tx)
        .await?;
    if row.try_get::<Option<i64>, _>("recorded")? == Some(1) {
        return Ok(());
    }
    let newest: Option<String> = row.try_get("newest")?;
    let newer = newest.is_none_or(|n| id.version > n);
    if newer && let Some(cur) = latest_on(&mut tx, bucket, key).await? {
        sqlx::query("DELETE FROM objects WHERE bucket = ? AND key = ?").bind(bucket).bind(key).execute(&mut *tx).await?;
        d.add("objects", -1);
        d.add("live_bytes", -(cur.size as i64));
        if policy.replaces(bucket, &cur.version) {
            let row_id = version_row_id(&mut tx, bucket, key, &cur.version).await?;
            remove_version_row(&mut tx, &mut d, row_id, cur.digest.as_ref().map(|d| &d.0[..]), cur.size as i64).await?;
        }
    }
    if policy.versions(bucket) {
        sqlx::query(
            "INSERT INTO versions (bucket, key, version, stamp, node, digest, size, \
             content_type, attributes, created_ms, modified_ms, replicas, parents, part, mark) \
             VALUES (?, ?, ?, ?, ?, NULL, 0, '', '{}', ?, ?, ?, ?, ?, ?)",
        )
        .bind(bucket)
        .bind(key)
        .bind(&id.version)
        .bind(id.stamp as i64)
        .bind(&id.node)
        .bind(id.created_ms)
        .bind(id.modified_ms)
        .bind(serde_json::json!(id.replicas).to_string())
        .bind(id.parents.as_ref().map(|p| serde_json::json!(p).to_string()))
        .bind(super::entropy::partition(bucket, key) as i64)
        .bind(super::entropy::mark(bucket, key, &id.version))
        .execute(&mut *tx)
        .await?;
        if let Some(parents) = &id.parents {
            siblings = super::lineage::record_parents(&mut tx, &[(bucket, key, &id.version, parents)]).await?;
        }
        d.add("versions", 1);
        if policy.max_versions > 0 {
            enforce_retention(&mut tx, &mut d, bucket, key, policy.max_versions).await?;
        }
    }
    d.apply(&mut tx).await?;
    tx.commit().await?;
    policy.conflicts.add(siblings);
    Ok(())
}

pub async fn delete(pool: &SqlitePool, policy: &Policy<'_>, bucket: &str, key: &str, version: Option<&str>) -> Result<Deleted, MetaError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut d = Deltas::default();
    require_bucket(&mut tx, bucket).await?;
    let current = latest_on(&mut tx, bucket, key).await?;
    let outcome = match version {
        None => {
            let Some(cur) = current else {
                return Err(MetaError::NotFound { bucket: bucket.into(), key: key.into() });
            };
            sqlx::query("DELETE FROM objects WHERE bucket = ? AND key = ?").bind(bucket).bind(key).execute(&mut *tx).await?;
            d.add("objects", -1);
            d.add("live_bytes", -(cur.size as i64));
            // Versioning suspended: a version kept from before stays, under a marker.
            if policy.versions(bucket) || !policy.replaces(bucket, &cur.version) {
                let now = now_ms();
                let stamp = policy.clock.now();
                let marker = format!("{stamp:016x}-{}", policy.node);
                sqlx::query(
                    "INSERT INTO versions (bucket, key, version, stamp, node, digest, size, \
                     content_type, attributes, created_ms, modified_ms, part, mark) \
                     VALUES (?, ?, ?, ?, ?, NULL, 0, '', '{}', ?, ?, ?, ?)",
                )
                .bind(bucket)
                .bind(key)
                .bind(&marker)
                .bind(stamp as i64)
                .bind(policy.node)
                .bind(now)
                .bind(now)
                .bind(super::entropy::partition(bucket, key) as i64)
                .bind(super::entropy::mark(bucket, key, &marker))
                .execute(&mut *tx)
                .await?;
                d.add("versions", 1);
                if policy.max_versions > 0 {
                    enforce_retention(&mut tx, &mut d, bucket, key, policy.max_versions).await?;
                }
                Deleted::Marker(marker)
            } else {
                let id = version_row_id(&mut tx, bucket, key, &cur.version).await?;
                remove_version_row(&mut tx, &mut d, id, cur.digest.as_ref().map(|d| &d.0[..]), cur.size as i64).await?;
                Deleted::Removed
            }
        }
        Some(v) => {
            let row = sqlx::query("SELECT id, digest, size FROM versions WHERE bucket = ? AND key = ? AND version = ?")
                .bind(bucket)
                .bind(key)
                .bind(v)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| MetaError::NoSuchVersion { bucket: bucket.into(), key: key.into(), version: v.into() })?;
            let id: i64 = row.try_get("id")?;
            let digest: Option<Vec<u8>> = row.try_get("digest")?;
            let size: i64 = row.try_get("size")?;
            // The newest remaining version decides what is live now. The live
            // pointer moves first: `objects` must never name a deleted row.
            let newest = sqlx::query(
                "SELECT id, digest, size FROM versions WHERE bucket = ? AND key = ? AND id != ? \
                 ORDER BY version DESC LIMIT 1",
            )
            .bind(bucket)
            .bind(key)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let was_live = current.as_ref().is_some_and(|c| c.version == v);
            let now_live = match &newest {
                Some(n) if n.try_get::<Option<Vec<u8>>, _>("digest")?.is_some() => {
                    Some((n.try_get::<i64, _>("id")?, n.try_get::<i64, _>("size")?))
                }
                _ => None,
            };
            let cur_live = current.as_ref().map(|c| c.size as i64);
            match (cur_live, now_live) {
                (Some(old_size), Some((nid, nsize))) if was_live => {
                    sqlx::query("UPDATE objects SET version_id = ? WHERE bucket = ? AND key = ?")
                        .bind(nid)
                        .bind(bucket)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    d.add("live_bytes", nsize - old_size);
                }
                (Some(old_size), None) if was_live => {
                    sqlx::query("DELETE FROM objects WHERE bucket = ? AND key = ?").bind(bucket).bind(key).execute(&mut *tx).await?;
                    d.add("objects", -1);
                    d.add("live_bytes", -old_size);
                }
                (None, Some((nid, nsize))) => {
                    // Removing the newest delete marker brings the object back.
                    sqlx::query("INSERT INTO objects (bucket, key, version_id) VALUES (?, ?, ?)")
                        .bind(bucket)
                        .bind(key)
                        .bind(nid)
                        .execute(&mut *tx)
                        .await?;
                    d.add("objects", 1);
                    d.add("live_bytes", nsize);
                }
                _ => {}
            }
            remove_version_row(&mut tx, &mut d, id, digest.as_deref(), size).await?;
            Deleted::Removed
        }
    };
    d.apply(&mut tx).await?;
    tx.commit().await?;
    Ok(outcome)
}

// ---- blobs ----

pub async fn known_blobs(pool: &SqlitePool, digests: &[Digest]) -> Result<HashSet<Digest>, MetaError> {
    let hexes: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
    let rows = sqlx::query("SELECT digest FROM blobs WHERE state = 'ok' AND digest IN (SELECT unhex(value) FROM json_each(?))")
        .bind(serde_json::to_string(&hexes).map_err(|e| MetaError::Db(Box::new(e)))?)
        .fetch_all(pool)
        .await?;
    Ok(digests_of(rows)?.into_iter().collect())
}

pub async fn blob_rows(pool: &SqlitePool, digests: &[Digest]) -> Result<HashSet<Digest>, MetaError> {
    let hexes: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
    let rows = sqlx::query("SELECT digest FROM blobs WHERE digest IN (SELECT unhex(value) FROM json_each(?))")
        .bind(serde_json::to_string(&hexes).map_err(|e| MetaError::Db(Box::new(e)))?)
        .fetch_all(pool)
        .await?;
    Ok(digests_of(rows)?.into_iter().collect())
}

fn digests_of(rows: Vec<SqliteRow>) -> Result<Vec<Digest>, MetaError> {
    rows.iter().map(|r| digest_of(r.try_get("digest")?)).collect()
}

/// A digest column's bytes as a digest.
pub(super) fn digest_of(bytes: Vec<u8>) -> Result<Digest, MetaError> {
    bytes.try_into().map(Digest).map_err(|_| MetaError::Db("a digest in the database is not 32 bytes".into()))
}

pub async fn unreferenced_blobs(pool: &SqlitePool, before_ms: i64, limit: u32) -> Result<Vec<Digest>, MetaError> {
    let rows = sqlx::query("SELECT digest FROM blobs WHERE refcount = 0 AND unreferenced_ms < ? ORDER BY unreferenced_ms LIMIT ?")
        .bind(before_ms)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
    digests_of(rows)
}

/// Forgets those of `digests` that are still unreferenced, in one
/// transaction; returns each forgotten blob with the bytes its file took.
pub async fn drop_blobs(pool: &SqlitePool, digests: &[Digest]) -> Result<Vec<(Digest, u64, String)>, MetaError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut d = Deltas::default();
    let hexes: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
    let rows = sqlx::query(
        "DELETE FROM blobs WHERE refcount = 0 AND digest IN (SELECT unhex(value) FROM json_each(?)) \
         RETURNING digest, size, stored_size, tier",
    )
    .bind(serde_json::to_string(&hexes).map_err(|e| MetaError::Db(Box::new(e)))?)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let size: i64 = r.try_get("size")?;
        let stored: i64 = r.try_get("stored_size")?;
        d.add("blobs", -1);
        d.add("blob_bytes", -size);
        d.add("stored_bytes", -stored);
        let tier: String = r.try_get("tier")?;
        if tier != super::tiers::LOCAL {
            d.add("tier_bytes", -stored);
        }
        out.push((stored as u64, tier));
    }
    let gone = digests_of(rows)?;
    let gone_hex: Vec<String> = gone.iter().map(|d| d.to_string()).collect();
    let gone_json = serde_json::to_string(&gone_hex).map_err(|e| MetaError::Db(Box::new(e)))?;
    sqlx::query("DELETE FROM blob_data WHERE digest IN (SELECT unhex(value) FROM json_each(?))").bind(&gone_json).execute(&mut *tx).await?;
    super::composite::drop_parts(&mut tx, &gone_json).await?;
    d.apply(&mut tx).await?;
    tx.commit().await?;
    Ok(gone.into_iter().zip(out).map(|(d, (s, t))| (d, s, t)).collect())
}

pub async fn set_blob_state(pool: &SqlitePool, digest: &Digest, state: &'static str) -> Result<(), MetaError> {
    sqlx::query("UPDATE blobs SET state = ? WHERE digest = ?").bind(state).bind(&digest.0[..]).execute(pool).await?;
    Ok(())
}

pub async fn blob_is_corrupt(pool: &SqlitePool, digest: &Digest) -> Result<bool, MetaError> {
    Ok(sqlx::query("SELECT 1 FROM blobs WHERE digest = ? AND state = 'corrupt'").bind(&digest.0[..]).fetch_optional(pool).await?.is_some())
}

pub async fn mark_verified(pool: &SqlitePool, digest: &Digest) -> Result<(), MetaError> {
    sqlx::query("UPDATE blobs SET verified_ms = ? WHERE digest = ?").bind(now_ms()).bind(&digest.0[..]).execute(pool).await?;
    Ok(())
}

pub async fn blobs_after(pool: &SqlitePool, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>, MetaError> {
    let rows = sqlx::query(
        "SELECT digest, size FROM blobs WHERE state = 'ok' AND tier = 'local' AND parts = 0 AND digest > ? ORDER BY digest LIMIT ?",
    )
    .bind(after.map_or(&[][..], |d| &d.0[..]))
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let sizes: Vec<u64> = rows.iter().map(|r| r.try_get::<i64, _>("size").map(|s| s as u64)).collect::<Result<_, _>>()?;
    Ok(digests_of(rows)?.into_iter().zip(sizes).collect())
}

pub async fn inline_blob(pool: &SqlitePool, digest: &Digest) -> Result<Option<Vec<u8>>, MetaError> {
    Ok(sqlx::query("SELECT data FROM blob_data WHERE digest = ?")
        .bind(&digest.0[..])
        .fetch_optional(pool)
        .await?
        .map(|r| r.try_get("data"))
        .transpose()?)
}

pub async fn stats(pool: &SqlitePool) -> Result<MetaStats, MetaError> {
    let rows = sqlx::query("SELECT name, value FROM counters").fetch_all(pool).await?;
    let mut s = MetaStats::default();
    for r in rows {
        let name: String = r.try_get("name")?;
        let v = r.try_get::<i64, _>("value")?.max(0) as u64;
        match name.as_str() {
            "objects" => s.objects = v,
            "live_bytes" => s.live_bytes = v,
            "versions" => s.versions = v,
            "version_bytes" => s.version_bytes = v,
            "blobs" => s.blobs = v,
            "blob_bytes" => s.blob_bytes = v,
            "stored_bytes" => s.stored_bytes = v,
            "tier_bytes" => s.tier_bytes = v,
            _ => {}
        }
    }
    s.corrupt_blobs =
        sqlx::query("SELECT COUNT(*) AS n FROM blobs WHERE state = 'corrupt'").fetch_one(pool).await?.try_get::<i64, _>("n")? as u64;
    Ok(s)
}

pub async fn request(pool: &SqlitePool, bucket: &str, request_id: &str) -> Result<Option<(String, String)>, MetaError> {
    let row = sqlx::query("SELECT key, version FROM requests WHERE bucket = ? AND request_id = ?")
        .bind(bucket)
        .bind(request_id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| Ok((r.try_get("key")?, r.try_get("version")?))).transpose()
}

/// Forgets request ids recorded before `cutoff_ms`.
pub async fn expire_requests(pool: &SqlitePool, cutoff_ms: i64) -> Result<u64, MetaError> {
    Ok(sqlx::query("DELETE FROM requests WHERE created_ms < ?").bind(cutoff_ms).execute(pool).await?.rows_affected())
}

pub async fn compact(pool: &SqlitePool) -> Result<(), MetaError> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
    sqlx::query("PRAGMA optimize").execute(pool).await?;
    Ok(())
}
