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
    /// Referenced blobs kept in files (small ones are inside the copy),
    /// with their plaintext sizes; `true` for those marked corrupt.
    pub blobs: Vec<(Digest, u64, bool)>,
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
        let rows = sqlx::query("SELECT digest, size, state FROM blobs WHERE refcount > 0 AND size > ? ORDER BY digest")
            .bind(INLINE_MAX as i64)
            .fetch_all(&mut conn)
            .await?;
        for r in rows {
            let state: String = r.get(2);
            snap.blobs.push((sql::digest_of(r.get(0))?, r.get::<i64, _>(1) as u64, state == "corrupt"));
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
}
