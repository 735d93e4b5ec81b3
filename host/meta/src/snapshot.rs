//! A consistent copy of the whole database, for backups.
//!
//! `VACUUM INTO` on a reader connection: it reads one snapshot of the WAL
//! database while writes carry on, and writes a compact, self-contained
//! file (never a file copy of a live database). What the backup must carry
//! beside it is then read from the copy itself, so the two agree.

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Row};

use super::{MetaError, MetaStore, sql};
use strata_store::Digest;
use strata_store::format::INLINE_MAX;

/// What a snapshot holds.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub node_id: String,
    /// Referenced blobs kept in files (small ones are inside the copy):
    /// plaintext size, file size, and whether marked corrupt.
    pub blobs: Vec<(Digest, u64, u64, bool)>,
    pub objects: u64,
    pub versions: u64,
    pub live_bytes: u64,
}

impl MetaStore {
    /// Writes a consistent copy of the database to `path` (which must not
    /// exist) and reads what it refers to.
    pub async fn snapshot_into(&self, path: &Path) -> Result<Snapshot, MetaError> {
        let target = path.to_str().ok_or_else(|| MetaError::Db(format!("{} is not UTF-8", path.display()).into()))?;
        sqlx::query("VACUUM INTO ?").bind(target).execute(&self.read).await?;
        let mut conn = SqliteConnectOptions::new().filename(path).read_only(true).connect().await?;
        let mut snap = Snapshot {
            node_id: sqlx::query_scalar("SELECT node_id FROM node").fetch_optional(&mut conn).await?.unwrap_or_default(),
            ..Snapshot::default()
        };
        let rows =
            sqlx::query("SELECT digest, size, stored_size, state FROM blobs WHERE refcount > 0 AND size > ? AND parts = 0 ORDER BY digest")
                .bind(INLINE_MAX as i64)
                .fetch_all(&mut conn)
                .await?;
        for r in rows {
            let state: String = r.get(3);
            snap.blobs.push((sql::digest_of(r.get(0))?, r.get::<i64, _>(1) as u64, r.get::<i64, _>(2) as u64, state == "corrupt"));
        }
        for r in sqlx::query("SELECT name, value FROM counters").fetch_all(&mut conn).await? {
            let v = r.get::<i64, _>(1).max(0) as u64;
            match r.get::<String, _>(0).as_str() {
                "objects" => snap.objects = v,
                "versions" => snap.versions = v,
                "live_bytes" => snap.live_bytes = v,
                _ => {}
            }
        }
        Ok(snap)
    }

    /// Makes a snapshot say what its backup holds: rows of file-backed
    /// blobs nothing references (their files are not sent) go, blobs found
    /// damaged while sending are marked corrupt, and every blob is local
    /// (a restore places every file on the local disk). Totals follow.
    pub async fn finish_snapshot(path: &Path, lost: &[Digest]) -> Result<(), MetaError> {
        let mut conn = SqliteConnectOptions::new().filename(path).connect().await?;
        let mut tx = sqlx::Connection::begin(&mut conn).await?;
        let gone = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(stored_size), 0) FROM blobs WHERE refcount = 0 AND size > ? AND parts = 0",
        )
        .bind(INLINE_MAX as i64)
        .fetch_one(&mut *tx)
        .await?;
        let mut d = sql::Deltas::default();
        d.add("blobs", -gone.get::<i64, _>(0));
        d.add("blob_bytes", -gone.get::<i64, _>(1));
        d.add("stored_bytes", -gone.get::<i64, _>(2));
        sqlx::query("DELETE FROM blobs WHERE refcount = 0 AND size > ? AND parts = 0").bind(INLINE_MAX as i64).execute(&mut *tx).await?;
        let hexes: Vec<String> = lost.iter().map(|d| d.to_string()).collect();
        sqlx::query("UPDATE blobs SET state = 'corrupt' WHERE digest IN (SELECT unhex(value) FROM json_each(?))")
            .bind(serde_json::to_string(&hexes).map_err(|e| MetaError::Db(Box::new(e)))?)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE blobs SET tier = 'local' WHERE tier != 'local'").execute(&mut *tx).await?;
        sqlx::query("UPDATE counters SET value = 0 WHERE name = 'tier_bytes'").execute(&mut *tx).await?;
        d.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
