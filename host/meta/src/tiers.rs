//! Where blobs live: the local disk or a named object-store tier.
//!
//! `blobs.tier` says where a file-backed blob's authoritative copy is.
//! Moving a blob changes it with a compare-and-set, so a move and a recall
//! (or a move on two workers) cannot both win; the `tier_bytes` counter
//! follows, so local usage is `stored_bytes - tier_bytes`.

use std::collections::HashMap;

use sqlx::Row;
use strata_store::Digest;
use strata_store::format::INLINE_MAX;

use super::sql::{self, Deltas};
use super::{MetaError, MetaStore};

/// The tier of blobs kept on the local disk.
pub const LOCAL: &str = "local";

/// Blobs and bytes per tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierTotals {
    pub tier: String,
    pub blobs: u64,
    pub bytes: u64,
    pub stored_bytes: u64,
}

/// Which blobs a policy moves: referenced by a version of `bucket`, and
/// every limit that is set holds.
#[derive(Clone, Debug, Default)]
pub struct TierRule {
    pub bucket: String,
    /// The version was created before this (ms since the epoch).
    pub created_before_ms: Option<i64>,
    /// The blob was last read (or, never read, written) before this.
    pub idle_since_ms: Option<i64>,
    pub min_size: u64,
}

impl MetaStore {
    /// The tier a blob lives on; `None` when there is no such blob.
    pub async fn blob_tier(&self, digest: &Digest) -> Result<Option<String>, MetaError> {
        Ok(sqlx::query_scalar("SELECT tier FROM blobs WHERE digest = ?").bind(&digest.0[..]).fetch_optional(&self.read).await?)
    }

    /// The tier of each of `digests` that has a row.
    pub async fn blob_tiers(&self, digests: &[Digest]) -> Result<HashMap<Digest, String>, MetaError> {
        let hexes: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        let rows = sqlx::query("SELECT digest, tier FROM blobs WHERE digest IN (SELECT unhex(value) FROM json_each(?))")
            .bind(serde_json::to_string(&hexes).map_err(|e| MetaError::Db(Box::new(e)))?)
            .fetch_all(&self.read)
            .await?;
        rows.into_iter().map(|r| Ok((sql::digest_of(r.try_get("digest")?)?, r.try_get("tier")?))).collect()
    }

    /// Moves a blob's record from tier `from` to `to`; false when it is
    /// not on `from` (moved meanwhile) or gone.
    pub async fn set_tier(&self, digest: &Digest, from: &str, to: &str) -> Result<bool, MetaError> {
        let mut conn = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let row = sqlx::query("UPDATE blobs SET tier = ? WHERE digest = ? AND tier = ? RETURNING stored_size")
            .bind(to)
            .bind(&digest.0[..])
            .bind(from)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let stored: i64 = row.try_get("stored_size")?;
        let mut d = Deltas::default();
        d.add(
            "tier_bytes",
            if from == LOCAL {
                stored
            } else if to == LOCAL {
                -stored
            } else {
                0
            },
        );
        d.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Local, sound, file-backed blobs `rule` moves, at most `limit`.
    pub async fn tier_candidates(&self, rule: &TierRule, limit: u32) -> Result<Vec<(Digest, u64)>, MetaError> {
        let rows = sqlx::query(
            "SELECT DISTINCT b.digest, b.size FROM versions v JOIN blobs b ON b.digest = v.digest \
             WHERE v.bucket = ? AND v.created_ms <= ? AND b.tier = 'local' AND b.state = 'ok' AND b.refcount > 0 AND b.parts = 0 \
             AND b.size > ? AND b.size >= ? AND COALESCE(b.read_ms, b.created_ms) <= ? LIMIT ?",
        )
        .bind(&rule.bucket)
        .bind(rule.created_before_ms.unwrap_or(i64::MAX))
        .bind(INLINE_MAX as i64)
        .bind(rule.min_size as i64)
        .bind(rule.idle_since_ms.unwrap_or(i64::MAX))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(|r| Ok((sql::digest_of(r.try_get("digest")?)?, r.try_get::<i64, _>("size")? as u64))).collect()
    }

    /// Notes when these blobs were read (for idle rules).
    pub async fn touch_reads(&self, digests: &[Digest], now_ms: i64) -> Result<(), MetaError> {
        let hexes: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        sqlx::query("UPDATE blobs SET read_ms = ? WHERE digest IN (SELECT unhex(value) FROM json_each(?))")
            .bind(now_ms)
            .bind(serde_json::to_string(&hexes).map_err(|e| MetaError::Db(Box::new(e)))?)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The tiers other than `local` that hold blobs, with how many: a read
    /// of the partial index of those blobs alone, where
    /// [`tier_totals`](Self::tier_totals) reads every blob row (seconds at
    /// ten million objects, too long for each start).
    pub async fn remote_tiers(&self) -> Result<Vec<(String, u64)>, MetaError> {
        let rows = sqlx::query("SELECT tier, COUNT(*) AS n FROM blobs WHERE tier != 'local' GROUP BY tier ORDER BY tier")
            .fetch_all(&self.read)
            .await?;
        rows.into_iter().map(|r| Ok((r.try_get("tier")?, r.try_get::<i64, _>("n")? as u64))).collect()
    }

    /// Blobs and bytes on each tier, `local` included.
    pub async fn tier_totals(&self) -> Result<Vec<TierTotals>, MetaError> {
        let rows = sqlx::query(
            "SELECT tier, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes, COALESCE(SUM(stored_size), 0) AS stored \
             FROM blobs WHERE size > ? GROUP BY tier ORDER BY tier",
        )
        .bind(INLINE_MAX as i64)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(TierTotals {
                    tier: r.try_get("tier")?,
                    blobs: r.try_get::<i64, _>("n")? as u64,
                    bytes: r.try_get::<i64, _>("bytes")? as u64,
                    stored_bytes: r.try_get::<i64, _>("stored")? as u64,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::{MetaOptions, MetaStore, NewVersion};
    use strata_store::Digest;

    #[tokio::test]
    async fn remote_tiers_counts_only_blobs_off_local() {
        let meta = MetaStore::open(MetaOptions::in_memory()).await.unwrap();
        let put = |key: &str, n: u8| NewVersion {
            bucket: "default".into(),
            key: key.into(),
            digest: Digest([n; 32]),
            size: 1 << 20,
            stored_size: 1 << 20,
            content_type: "x".into(),
            attributes: Default::default(),
            condition: Default::default(),
            fresh_blob: true,
            inline: None,
            identity: None,
            request_id: None,
        };
        for r in meta.commit_puts(&[put("a", 1), put("b", 2), put("c", 3)]).await.unwrap() {
            r.unwrap();
        }
        assert!(meta.remote_tiers().await.unwrap().is_empty());
        sqlx::query("UPDATE blobs SET tier = 'cold' WHERE digest != ?").bind(&[1u8; 32][..]).execute(&meta.write).await.unwrap();
        assert_eq!(meta.remote_tiers().await.unwrap(), [("cold".to_string(), 2)]);
    }
}
