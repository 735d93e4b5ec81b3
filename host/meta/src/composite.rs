//! Composite blobs: the bytes of several blobs in order, recorded without
//! copying them (an S3 multipart upload's completion). A composite's row
//! in `blobs` has `parts > 0`, no file and no inline data; `blob_parts`
//! lists its parts, each holding one reference on the part's blob until GC
//! removes the composite ([`drop_parts`]).

use sqlx::{Row, SqliteConnection};
use strata_store::Digest;

use super::clock::now_ms;
use super::sql::{Deltas, digest_of};
use super::{MetaError, MetaStore};

impl MetaStore {
    /// Records composite `id` made of `parts` (digest and size, in order),
    /// unreferenced until a version names it (GC takes it back otherwise).
    /// Fails if a part is not a sound blob of that size. Recording the same
    /// composite twice is one composite.
    pub async fn create_composite(&self, id: &Digest, parts: &[(Digest, u64)]) -> Result<(), MetaError> {
        let mut conn = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if sqlx::query("SELECT 1 FROM blobs WHERE digest = ?").bind(&id.0[..]).fetch_optional(&mut *tx).await?.is_some() {
            return Ok(());
        }
        // Three statements whatever the number of parts: completion costs
        // little more for 1,000 parts than for 10.
        let list: Vec<(String, u64)> = parts.iter().map(|(d, n)| (d.to_string(), *n)).collect();
        let list = serde_json::to_string(&list).map_err(|e| MetaError::Db(Box::new(e)))?;
        let rows = sqlx::query(
            "SELECT lower(hex(digest)) AS d, size, state, parts FROM blobs \
             WHERE digest IN (SELECT unhex(value ->> 0) FROM json_each(?))",
        )
        .bind(&list)
        .fetch_all(&mut *tx)
        .await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let d: String = r.try_get("d")?;
            found.insert(d, (r.try_get::<i64, _>("size")? as u64, r.try_get::<String, _>("state")?, r.try_get::<i64, _>("parts")?));
        }
        let mut total = 0u64;
        let mut refs: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for (i, (part, size)) in parts.iter().enumerate() {
            let hex = part.to_string();
            let Some((stored, state, nested)) = found.get(&hex) else { return Err(bad_part(i, part, "is not stored")) };
            if stored != size {
                return Err(bad_part(i, part, "has another size"));
            }
            if state != "ok" {
                return Err(bad_part(i, part, "is corrupt"));
            }
            if *nested != 0 {
                return Err(bad_part(i, part, "is itself composite"));
            }
            *refs.entry(hex).or_default() += 1;
            total += size;
        }
        sqlx::query("INSERT INTO blob_parts (digest, idx, part, size) SELECT ?, key, unhex(value ->> 0), value ->> 1 FROM json_each(?)")
            .bind(&id.0[..])
            .bind(&list)
            .execute(&mut *tx)
            .await?;
        let refs = serde_json::to_string(&refs).map_err(|e| MetaError::Db(Box::new(e)))?;
        sqlx::query(
            "UPDATE blobs SET refcount = refcount + j.value, unreferenced_ms = NULL \
             FROM json_each(?) AS j WHERE blobs.digest = unhex(j.key)",
        )
        .bind(&refs)
        .execute(&mut *tx)
        .await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO blobs (digest, size, stored_size, refcount, created_ms, unreferenced_ms, parts) VALUES (?, ?, 0, 0, ?, ?, ?)",
        )
        .bind(&id.0[..])
        .bind(total as i64)
        .bind(now)
        .bind(now)
        .bind(parts.len() as i64)
        .execute(&mut *tx)
        .await?;
        let mut d = Deltas::default();
        d.add("blobs", 1);
        d.add("blob_bytes", total as i64);
        d.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A composite's parts in order; `None` if `id` is not a composite.
    pub async fn composite_parts(&self, id: &Digest) -> Result<Option<Vec<(Digest, u64)>>, MetaError> {
        let rows =
            sqlx::query("SELECT part, size FROM blob_parts WHERE digest = ? ORDER BY idx").bind(&id.0[..]).fetch_all(&self.read).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let parts = rows
            .into_iter()
            .map(|r| Ok((digest_of(r.try_get("part")?)?, r.try_get::<i64, _>("size")? as u64)))
            .collect::<Result<Vec<_>, MetaError>>()?;
        Ok(Some(parts))
    }
}

fn bad_part(i: usize, part: &Digest, why: &str) -> MetaError {
    MetaError::Db(format!("part {} ({part}) of a composite {why}", i + 1).into())
}

/// For composites GC is removing: drops their references on their parts
/// (once per naming, so a part named twice loses two).
pub(super) async fn drop_parts(conn: &mut SqliteConnection, gone_hex_json: &str) -> Result<(), MetaError> {
    let parts: Vec<Vec<u8>> = sqlx::query_scalar("SELECT part FROM blob_parts WHERE digest IN (SELECT unhex(value) FROM json_each(?))")
        .bind(gone_hex_json)
        .fetch_all(&mut *conn)
        .await?;
    let now = now_ms();
    for part in parts {
        sqlx::query(
            "UPDATE blobs SET refcount = refcount - 1, \
             unreferenced_ms = CASE WHEN refcount = 1 THEN ? ELSE unreferenced_ms END WHERE digest = ?",
        )
        .bind(now)
        .bind(&part[..])
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM blob_parts WHERE digest IN (SELECT unhex(value) FROM json_each(?))")
        .bind(gone_hex_json)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
