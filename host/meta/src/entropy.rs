//! What anti-entropy compares: each version's partition of the key space
//! and its mark, computed here and stored on the version row, and the
//! per-(peer, partition) digests that triggers keep from them (migration
//! 0010). A pass reads the digests (a few thousand rows at most per peer)
//! and version rows only in partitions that differ.

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

use serde_json::json;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{AssertSqlSafe, Row};

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
/// Rows naming a partition that cannot exist (see [`heal`]) are left out.
pub async fn digests(pool: &SqlitePool, peer: u64) -> Result<Vec<PartDigest>, MetaError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT part, digest, n FROM entropy_digests WHERE peer = ? AND {VALID} AND (n != 0 OR digest != 0) ORDER BY part"
    )))
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

/// A valid partition number, as SQL over a table's `part` column.
const VALID: &str = "typeof(part) = 'integer' AND part >= 0 AND part < 4096";
const _: () = assert!(PARTITIONS == 4096, "VALID spells out PARTITIONS");

/// Gives version rows whose partition is not a partition number (a hand
/// edit, a bug) their partition and mark again from their names, and drops
/// the digest rows such values made. Found through the digest table (a few
/// thousand rows), never by reading every version. Returns the rows fixed.
pub async fn heal(pool: &SqlitePool) -> Result<u64, MetaError> {
    let mut tx = pool.begin().await?;
    let bad = format!("SELECT part FROM entropy_digests WHERE NOT ({VALID})");
    let rows = sqlx::query(AssertSqlSafe(format!("SELECT id, bucket, key, version FROM versions WHERE part IN ({bad})")))
        .fetch_all(&mut *tx)
        .await?;
    let mut fixes = Vec::with_capacity(rows.len());
    for r in &rows {
        let (bucket, key, version): (String, String, String) = (r.try_get("bucket")?, r.try_get("key")?, r.try_get("version")?);
        fixes.push(json!([r.try_get::<i64, _>("id")?, partition(&bucket, &key), mark(&bucket, &key, &version)]));
    }
    remark(&mut tx, fixes).await?;
    let dropped = sqlx::query(AssertSqlSafe(format!("DELETE FROM entropy_digests WHERE NOT ({VALID})"))).execute(&mut *tx).await?;
    tx.commit().await?;
    if dropped.rows_affected() > 0 || !rows.is_empty() {
        tracing::warn!(
            versions = rows.len(),
            digest_rows = dropped.rows_affected(),
            "anti-entropy: version rows held partition numbers that cannot be; recomputed them from their names"
        );
    }
    Ok(rows.len() as u64)
}

/// Sets `[id, part, mark]` on each version row (the triggers move its
/// share of the digests).
async fn remark(conn: &mut SqliteConnection, fixes: Vec<serde_json::Value>) -> Result<(), MetaError> {
    if fixes.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE versions SET part = j.value ->> 1, mark = j.value ->> 2 \
         FROM json_each(?) AS j WHERE versions.id = j.value ->> 0",
    )
    .bind(serde_json::Value::Array(fixes).to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// What [`rebuild`] found wrong in one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Version rows whose partition or mark did not match their name.
    pub versions: u64,
    /// Whether the partition's digest rows differed from its version rows.
    pub digests: bool,
}

/// Checks partition `part` against its version rows and puts right what a
/// hand edit or a bug left wrong, in one transaction: each row's partition
/// and mark are recomputed from its name, then the partition's digests for
/// every peer from the rows. Costs one read of the partition's rows.
pub async fn rebuild(pool: &SqlitePool, part: u16) -> Result<Rebuilt, MetaError> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query("SELECT id, bucket, key, version, mark, replicas FROM versions WHERE part = ?")
        .bind(part as i64)
        .fetch_all(&mut *tx)
        .await?;
    let mut fixes = Vec::new();
    let mut want: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for r in &rows {
        let (bucket, key, version): (String, String, String) = (r.try_get("bucket")?, r.try_get("key")?, r.try_get("version")?);
        let (p, m) = (partition(&bucket, &key), mark(&bucket, &key, &version));
        let stored: Option<i64> = r.try_get("mark").ok().flatten();
        if p != part || stored != Some(m) {
            fixes.push(json!([r.try_get::<i64, _>("id")?, p, m]));
        }
        if p != part {
            continue;
        }
        // The triggers read placements with json_each: the same values.
        let replicas: String = r.try_get("replicas")?;
        let peers: Vec<serde_json::Value> = serde_json::from_str(&replicas).unwrap_or_default();
        for peer in peers.iter().filter_map(serde_json::Value::as_i64) {
            let e = want.entry(peer).or_default();
            e.0 ^= m;
            e.1 += 1;
        }
    }
    let versions = fixes.len() as u64;
    remark(&mut tx, fixes).await?;
    let have_rows = sqlx::query("SELECT peer, digest, n FROM entropy_digests WHERE part = ?").bind(part as i64).fetch_all(&mut *tx).await?;
    let mut have = BTreeMap::new();
    let mut readable = true;
    for r in &have_rows {
        match (r.try_get::<i64, _>("peer"), r.try_get::<i64, _>("digest"), r.try_get::<i64, _>("n")) {
            (Ok(peer), Ok(d), Ok(n)) if d != 0 || n != 0 => drop(have.insert(peer, (d, n))),
            (Ok(_), Ok(_), Ok(_)) => {}
            _ => readable = false,
        }
    }
    let digests = !readable || have != want;
    if digests {
        sqlx::query("DELETE FROM entropy_digests WHERE part = ?").bind(part as i64).execute(&mut *tx).await?;
        let rows: Vec<serde_json::Value> = want.iter().map(|(peer, (d, n))| json!([peer, d, n])).collect();
        sqlx::query(
            "INSERT INTO entropy_digests (peer, part, digest, n) \
             SELECT j.value ->> 0, ?, j.value ->> 1, j.value ->> 2 FROM json_each(?) j",
        )
        .bind(part as i64)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Rebuilt { versions, digests })
}

/// Whether every version row has its mark (the digests are whole).
pub async fn ready(pool: &SqlitePool) -> Result<bool, MetaError> {
    let row = sqlx::query("SELECT NOT EXISTS (SELECT 1 FROM versions WHERE mark IS NULL) AS ready").fetch_one(pool).await?;
    Ok(row.try_get("ready")?)
}
