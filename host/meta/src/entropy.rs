//! What anti-entropy compares: each version's partition of the key space
//! and its mark, computed here and stored on the version row, and the
//! per-(peer, partition) digests that triggers keep from them (migration
//! 0010). A pass reads the digests (a few thousand rows at most per peer)
//! and version rows only in partitions that differ.

use sha2::{Digest as _, Sha256};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::{MetaError, Placed};

/// Partitions of the key space: at 10 million versions, about 2,400 each.
pub const PARTITIONS: u16 = 4096;

fn hash(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The partition of a key (all its versions share it).
pub fn partition(bucket: &str, key: &str) -> u16 {
    let h = hash(&[bucket, key]);
    u16::from_be_bytes([h[0], h[1]]) >> 4
}

/// A version's mark: 64 bits of a hash of its name.
pub fn mark(bucket: &str, key: &str, version: &str) -> i64 {
    i64::from_le_bytes(hash(&[bucket, key, version])[..8].try_into().expect("8 bytes"))
}

/// One partition's digest for one peer: XOR and count of marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartDigest {
    pub part: u16,
    pub digest: i64,
    pub n: i64,
}

/// The digests of the versions held here that are placed on `peer`
/// (partitions holding none are left out).
pub async fn digests(pool: &SqlitePool, peer: u64) -> Result<Vec<PartDigest>, MetaError> {
    let rows = sqlx::query("SELECT part, digest, n FROM entropy_digests WHERE peer = ? AND (n != 0 OR digest != 0) ORDER BY part")
        .bind(peer as i64)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| Ok(PartDigest { part: r.try_get::<i64, _>("part")? as u16, digest: r.try_get("digest")?, n: r.try_get("n")? }))
        .collect()
}

/// Up to `limit` versions of partition `part` after row `after`, delete
/// markers included, in row order.
pub async fn placed_in(pool: &SqlitePool, part: u16, after: i64, limit: u32) -> Result<Vec<Placed>, MetaError> {
    let rows = sqlx::query(
        "SELECT id, bucket, key, version, size, replicas FROM versions \
         WHERE part = ? AND id > ? ORDER BY id LIMIT ?",
    )
    .bind(part as i64)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(super::sql::placed).collect()
}

/// Gives up to `limit` rows written before migration 0010 their partition
/// and mark (the update trigger folds them into the digests); returns how
/// many it did, 0 once none is left.
pub async fn backfill(pool: &SqlitePool, limit: u32) -> Result<u64, MetaError> {
    let rows = sqlx::query("SELECT id, bucket, key, version FROM versions WHERE mark IS NULL ORDER BY id LIMIT ?")
        .bind(limit)
        .fetch_all(pool)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut marks = Vec::with_capacity(rows.len());
    for r in &rows {
        let (bucket, key, version): (String, String, String) = (r.try_get("bucket")?, r.try_get("key")?, r.try_get("version")?);
        marks.push(serde_json::json!([r.try_get::<i64, _>("id")?, partition(&bucket, &key), mark(&bucket, &key, &version)]));
    }
    sqlx::query(
        "UPDATE versions SET part = j.value ->> 1, mark = j.value ->> 2 \
         FROM json_each(?) AS j WHERE versions.id = j.value ->> 0 AND versions.mark IS NULL",
    )
    .bind(serde_json::Value::Array(marks).to_string())
    .execute(pool)
    .await?;
    Ok(rows.len() as u64)
}

/// Whether every version row has its mark (the digests are whole).
pub async fn ready(pool: &SqlitePool) -> Result<bool, MetaError> {
    let row = sqlx::query("SELECT NOT EXISTS (SELECT 1 FROM versions WHERE mark IS NULL) AS ready").fetch_one(pool).await?;
    Ok(row.try_get("ready")?)
}
