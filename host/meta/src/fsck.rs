//! The metadata side of `strata fsck`: a full integrity check, every blob
//! row, reference counts and running totals recomputed from the rows.

use sqlx::Row;

use super::sql::digest_of;
use super::{MetaError, MetaStore, clock, damaged_or};
use strata_store::Digest;

/// A blob row as fsck sees it.
#[derive(Clone, Debug)]
pub struct BlobRow {
    pub digest: Digest,
    pub size: u64,
    /// On record as corrupt already (quarantined by a read or scrub).
    pub corrupt: bool,
}

/// A reference count that differs from the versions pointing at the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefMismatch {
    pub digest: Digest,
    pub recorded: i64,
    pub actual: i64,
}

/// A version whose blob has no row: its bytes are gone from this node.
#[derive(Clone, Debug)]
pub struct Dangling {
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub digest: Digest,
}

/// A running total that differs from what the rows add up to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterMismatch {
    pub name: String,
    pub recorded: i64,
    pub actual: i64,
}

/// What each counter is, recomputed from the rows.
const COUNTERS: &str = "SELECT 'objects', COUNT(*) FROM objects \
    UNION ALL SELECT 'live_bytes', COALESCE(SUM(v.size), 0) FROM objects o JOIN versions v ON v.id = o.version_id \
    UNION ALL SELECT 'versions', COUNT(*) FROM versions \
    UNION ALL SELECT 'version_bytes', COALESCE(SUM(size), 0) FROM versions WHERE digest IS NOT NULL \
    UNION ALL SELECT 'blobs', COUNT(*) FROM blobs \
    UNION ALL SELECT 'blob_bytes', COALESCE(SUM(size), 0) FROM blobs \
    UNION ALL SELECT 'stored_bytes', COALESCE(SUM(stored_size), 0) FROM blobs \
    UNION ALL SELECT 'tier_bytes', COALESCE(SUM(stored_size), 0) FROM blobs WHERE tier != 'local'";

/// A blob's references: the versions naming it and the composites it is a
/// part of.
const REFCOUNTS: &str = "SELECT b.digest, b.refcount, \
    (SELECT COUNT(*) FROM versions v WHERE v.digest = b.digest) \
    + (SELECT COUNT(*) FROM blob_parts p WHERE p.part = b.digest) AS actual FROM blobs b WHERE b.refcount != actual";

impl MetaStore {
    /// `PRAGMA integrity_check` and `foreign_key_check`: every page, every
    /// index against its table, every reference. Empty when sound.
    pub async fn integrity_problems(&self) -> Result<Vec<String>, MetaError> {
        let dir = self.dir.clone().unwrap_or_default();
        let rows: Vec<String> =
            sqlx::query_scalar("PRAGMA integrity_check(100)").fetch_all(&self.write).await.map_err(|e| damaged_or(e, &dir))?;
        let mut problems: Vec<String> = rows.into_iter().filter(|r| r != "ok").collect();
        let fks = sqlx::query("PRAGMA foreign_key_check").fetch_all(&self.write).await?;
        for r in fks.iter().take(100) {
            let table: String = r.try_get(0)?;
            let rowid: Option<i64> = r.try_get(1)?;
            let parent: String = r.try_get(2)?;
            problems.push(format!("{table} row {} refers to a missing {parent} row", rowid.unwrap_or(-1)));
        }
        Ok(problems)
    }

    /// Every blob row with bytes of its own (not a composite), sound or
    /// not, in digest order after `after`.
    pub async fn blob_rows_after(&self, after: Option<&Digest>, limit: u32) -> Result<Vec<BlobRow>, MetaError> {
        let rows = sqlx::query("SELECT digest, size, state FROM blobs WHERE parts = 0 AND digest > ? ORDER BY digest LIMIT ?")
            .bind(after.map_or(&[][..], |d| &d.0[..]))
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BlobRow {
                    digest: digest_of(r.try_get("digest")?)?,
                    size: r.try_get::<i64, _>("size")? as u64,
                    corrupt: r.try_get::<String, _>("state")? == "corrupt",
                })
            })
            .collect()
    }

    /// Blobs whose reference count is not the number of versions using them.
    pub async fn refcount_mismatches(&self) -> Result<Vec<RefMismatch>, MetaError> {
        let rows = sqlx::query(REFCOUNTS).fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok(RefMismatch { digest: digest_of(r.try_get(0)?)?, recorded: r.try_get(1)?, actual: r.try_get(2)? })).collect()
    }

    /// Sets every reference count to the versions that use the blob; a
    /// blob left with none becomes collectable from now on.
    pub async fn fix_refcounts(&self) -> Result<u64, MetaError> {
        let done = sqlx::query(
            "UPDATE blobs SET refcount = a.actual, \
             unreferenced_ms = CASE WHEN a.actual = 0 THEN COALESCE(unreferenced_ms, ?) ELSE NULL END \
             FROM (SELECT b.digest AS digest, (SELECT COUNT(*) FROM versions v WHERE v.digest = b.digest) \
                   + (SELECT COUNT(*) FROM blob_parts p WHERE p.part = b.digest) AS actual \
                   FROM blobs b) AS a \
             WHERE blobs.digest = a.digest AND blobs.refcount != a.actual",
        )
        .bind(clock::now_ms())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// Versions pointing at a blob that has no row (at most `limit`).
    pub async fn dangling_versions(&self, limit: u32) -> Result<Vec<Dangling>, MetaError> {
        let rows = sqlx::query(
            "SELECT v.bucket, v.key, v.version, v.digest FROM versions v \
             WHERE v.digest IS NOT NULL AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = v.digest) \
             ORDER BY v.id LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok(Dangling { bucket: r.try_get(0)?, key: r.try_get(1)?, version: r.try_get(2)?, digest: digest_of(r.try_get(3)?)? }))
            .collect()
    }

    /// Running totals that differ from the rows.
    pub async fn counter_mismatches(&self) -> Result<Vec<CounterMismatch>, MetaError> {
        let recorded: std::collections::HashMap<String, i64> =
            sqlx::query_as("SELECT name, value FROM counters").fetch_all(&self.read).await?.into_iter().collect();
        let actual = sqlx::query(COUNTERS).fetch_all(&self.read).await?;
        let mut out = Vec::new();
        for r in actual {
            let name: String = r.try_get(0)?;
            let actual: i64 = r.try_get(1)?;
            let recorded = recorded.get(&name).copied().unwrap_or(0);
            if recorded != actual {
                out.push(CounterMismatch { name, recorded, actual });
            }
        }
        Ok(out)
    }

    /// Sets every running total to what the rows add up to.
    pub async fn fix_counters(&self) -> Result<(), MetaError> {
        // Both parts are constants of this file.
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT OR REPLACE INTO counters (name, value) {COUNTERS}"))).execute(&self.write).await?;
        Ok(())
    }
}
