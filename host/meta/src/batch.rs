//! Recording a batch of puts with a fixed handful of set-based statements,
//! whatever the batch size.
//!
//! Each statement sent to SQLite's worker thread costs a round trip, far
//! dearer than the work SQLite does for a row; so the batch reads what it
//! needs with one script, works the batch out in memory (conditions,
//! versions, reference counts, what a later put to the same key
//! supersedes) and writes it with another: one statement per kind of
//! change, its rows passed as a JSON array.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Connection as _, Row};

use super::bind::{Bind, Script};
use super::clock::now_ms;
use super::index::{self, TermMaker};
use super::sql::{Deltas, Policy, enforce_retention, record};
use super::{Condition, MetaError, NewVersion, ObjectRecord};
use strata_store::Digest;

/// The live version of a key, as the batch sees it.
#[derive(Clone)]
enum Live {
    /// Already in the database.
    Stored { id: i64, version: String, digest: Option<Digest>, size: u64, created_ms: i64 },
    /// Written earlier in this batch: an index into `pending`.
    Pending(usize),
}

struct Pending {
    rec: ObjectRecord,
    attributes: String,
    node: String,
    /// JSON list of the nodes meant to hold the version.
    replicas: String,
    /// The versions it supersedes, when its coordinator said.
    parents: Option<Vec<String>>,
}

type Results = Vec<Result<ObjectRecord, MetaError>>;

/// What a batch did: each item's result, and the digests whose blob rows
/// it wrote or refreshed (their staged bytes are now the stored ones).
pub struct Committed {
    pub results: Results,
    pub written: HashSet<Digest>,
}

/// Rows per multi-row insert of inline data (two bound values a row, well
/// under SQLite's limit on bound values).
const INLINE_ROWS_PER_STATEMENT: usize = 512;

/// Commits the batch; with `eager`, indexes catch up in the same
/// transaction.
pub async fn commit_puts(
    pool: &SqlitePool,
    policy: &Policy<'_>,
    items: &[NewVersion],
    eager: Option<&dyn TermMaker>,
) -> Result<Committed, MetaError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let started = std::time::Instant::now();
    let mut siblings = Vec::new();
    let out = commit_in(&mut tx, policy, items, &mut siblings).await?;
    if let Some(maker) = eager
        && out.results.iter().any(Result::is_ok)
    {
        index::eager(&mut tx, maker).await?;
    }
    let written = started.elapsed();
    fail::fail_point!("meta.commit", |a: Option<String>| Err(match a.as_deref() {
        Some("full") => MetaError::Full { path: std::path::PathBuf::new() },
        _ => MetaError::Db("injected failure (meta.commit)".into()),
    }));
    tx.commit().await?;
    policy.conflicts.add(siblings);
    tracing::debug!(items = items.len(), ?written, took = ?started.elapsed(), "metadata batch");
    Ok(out)
}

/// Makes `token` the key's fencing token unless a higher one holds it.
pub(super) async fn raise_fence(conn: &mut SqliteConnection, bucket: &str, key: &str, token: u64) -> Result<(), MetaError> {
    let held: Option<i64> = sqlx::query_scalar("SELECT token FROM fences WHERE bucket = ? AND key = ?")
        .bind(bucket)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(h) = held
        && h as u64 > token
    {
        return Err(MetaError::ConditionFailed {
            key: key.into(),
            why: format!("a newer conditional write (token {h}) is deciding it; read it again and retry"),
        });
    }
    sqlx::query("INSERT INTO fences (bucket, key, token) VALUES (?, ?, ?) ON CONFLICT (bucket, key) DO UPDATE SET token = excluded.token")
        .bind(bucket)
        .bind(key)
        .bind(token as i64)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Works out and writes the batch; keys it leaves with siblings go to
/// `siblings`.
async fn commit_in(
    conn: &mut SqliteConnection,
    policy: &Policy<'_>,
    items: &[NewVersion],
    siblings: &mut Vec<(String, String)>,
) -> Result<Committed, MetaError> {
    let now = now_ms();
    let Context { buckets, mut live, mut known, unsound, mut newest, mut recorded, mut requests } = read_context(conn, items).await?;
    // Request ids this batch records: (bucket, id, key, version).
    let mut new_requests: Vec<Value> = Vec::new();

    let mut d = Deltas::default();
    let mut out: Results = Vec::with_capacity(items.len());
    let mut pending: Vec<Option<Pending>> = Vec::new();
    let mut refs: HashMap<Digest, i64> = HashMap::new();
    let mut new_blobs: Vec<&NewVersion> = Vec::new();
    let mut refreshed: Vec<&NewVersion> = Vec::new();
    // Digests whose row this batch wrote or refreshed (once each).
    let mut refreshed_digests: HashSet<Digest> = HashSet::new();
    let mut removed: Vec<i64> = Vec::new();

    for item in items {
        if !buckets.contains(&item.bucket) {
            out.push(Err(MetaError::NoSuchBucket { bucket: item.bucket.clone() }));
            continue;
        }
        // A put minted here whose request id is on record is a retry: it
        // answers with the first put's version. (A version minted elsewhere
        // was checked by its coordinator and is recorded as sent.)
        if let Some(rid) = &item.request_id
            && item.identity.is_none()
            && let Some((key, version)) = requests.get(&(item.bucket.clone(), rid.clone()))
        {
            out.push(Err(if *key == item.key {
                MetaError::Replayed { version: version.clone() }
            } else {
                MetaError::RequestReused { request_id: rid.clone(), key: key.clone() }
            }));
            continue;
        }
        let slot = (item.bucket.clone(), item.key.clone());
        let cur = live.get(&slot).cloned();
        let (cur_version, cur_size, cur_created) = match &cur {
            Some(Live::Stored { version, size, created_ms, .. }) => (Some(version.clone()), *size, *created_ms),
            Some(Live::Pending(j)) => {
                let p = &pending[*j].as_ref().expect("live pending version").rec;
                (Some(p.version.clone()), p.size, p.created_ms)
            }
            None => (None, 0, now),
        };
        if let Condition::Fenced(token) = item.condition
            && let Err(e) = raise_fence(conn, &item.bucket, &item.key, token).await
        {
            out.push(Err(e));
            continue;
        }
        if let Some(why) = item.condition.refusal(cur_version.as_deref()) {
            out.push(Err(MetaError::ConditionFailed { key: item.key.clone(), why }));
            continue;
        }

        // A version minted elsewhere keeps its identity. It becomes live only
        // if it is the key's newest, so a copy arriving late never hides a
        // newer write (or resurrects a deleted key); older ones join the
        // history.
        let (stamp, version, node, created, replicas, parents) = match &item.identity {
            Some(id) => {
                policy.clock.observe(id.stamp);
                (id.stamp, id.version.clone(), id.node.clone(), id.created_ms, json!(id.replicas).to_string(), id.parents.clone())
            }
            None => {
                let stamp = policy.clock.now();
                (stamp, format!("{stamp:016x}-{}", policy.node), policy.node.to_string(), cur_created, "[]".into(), None)
            }
        };
        let newer = item.identity.is_none() || newest.get(&slot).is_none_or(|n| version > *n);
        let mut rec = ObjectRecord {
            bucket: item.bucket.clone(),
            key: item.key.clone(),
            version: version.clone(),
            stamp,
            digest: Some(item.digest),
            size: item.size,
            content_type: item.content_type.clone(),
            attributes: item.attributes.clone(),
            created_ms: created,
            modified_ms: item.identity.as_ref().map_or(now, |id| id.modified_ms),
            latest: newer,
        };
        if let Some(rid) = &item.request_id {
            requests.insert((item.bucket.clone(), rid.clone()), (item.key.clone(), version.clone()));
            new_requests.push(json!([item.bucket, rid, item.key, version]));
        }
        if recorded.contains(&(item.bucket.clone(), item.key.clone(), version.clone())) {
            // Sent again (a retry): only a damaged blob is refreshed.
            if fresh(item, &unsound) && known.contains(&item.digest) && refreshed_digests.insert(item.digest) {
                refreshed.push(item);
            }
            rec.latest = newest.get(&slot) == Some(&version);
            out.push(Ok(rec));
            continue;
        }
        if !newer && !policy.versions(&item.bucket) {
            // Without history an older version has nowhere to go.
            out.push(Ok(rec));
            continue;
        }
        if newer {
            // An older copy must not lower the mark: a still older one later
            // in the batch would then count as newer and go live.
            newest.insert(slot.clone(), version.clone());
        }
        if item.identity.is_some() {
            recorded.insert((item.bucket.clone(), item.key.clone(), version.clone()));
        }

        // The blob: a new row, a refreshed one, or one more reference.
        if !known.contains(&item.digest) {
            known.insert(item.digest);
            refreshed_digests.insert(item.digest);
            new_blobs.push(item);
        } else if fresh(item, &unsound) && refreshed_digests.insert(item.digest) {
            refreshed.push(item);
        }
        *refs.entry(item.digest).or_default() += 1;

        d.add("versions", 1);
        d.add("version_bytes", item.size as i64);
        let attributes = serde_json::to_string(&item.attributes).map_err(|e| MetaError::Db(Box::new(e)))?;
        if !newer {
            out.push(Ok(rec.clone()));
            pending.push(Some(Pending { rec, attributes, node, replicas, parents }));
            continue;
        }
        d.add("live_bytes", item.size as i64 - cur_size as i64);
        if cur.is_none() {
            d.add("objects", 1);
        }
        if !policy.versions(&item.bucket) {
            // Without versioning the new version replaces the old one
            // (one kept from before versioning was suspended stays).
            match cur {
                Some(Live::Stored { id, version, digest, size, .. }) if policy.replaces(&item.bucket, &version) => {
                    removed.push(id);
                    forget(&mut d, &mut refs, digest, size);
                }
                Some(Live::Pending(j)) => {
                    let p = pending[j].take().expect("live pending version");
                    forget(&mut d, &mut refs, p.rec.digest, p.rec.size);
                }
                Some(Live::Stored { .. }) | None => {}
            }
        }
        out.push(Ok(rec.clone()));
        pending.push(Some(Pending { rec, attributes, node, replicas, parents }));
        live.insert(slot, Live::Pending(pending.len() - 1));
    }

    // Rare: a blob written anew over a damaged row.
    for item in refreshed {
        refresh_blob(conn, &mut d, item, now).await?;
    }
    // Every other write but the inline bytes goes as one script.
    let mut w = Script::default();
    if !new_requests.is_empty() {
        w.push(
            "INSERT OR IGNORE INTO requests (bucket, request_id, key, version, created_ms) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, ? FROM json_each(?)",
            [Bind::Int(now), Bind::Text(Value::Array(new_requests).to_string())],
        );
    }
    push_blobs(&mut w, &mut d, &new_blobs, now);
    push_versions(&mut w, &pending);
    let lineage: Vec<(&str, &str, &str, &[String])> = pending
        .iter()
        .flatten()
        .filter_map(|p| Some((p.rec.bucket.as_str(), p.rec.key.as_str(), p.rec.version.as_str(), p.parents.as_deref()?)))
        .collect();
    let q_siblings = super::lineage::push_record_parents(&mut w, &lineage)?;
    push_live(&mut w, &live, &pending);
    if !removed.is_empty() {
        w.push("DELETE FROM versions WHERE id IN (SELECT value FROM json_each(?))", [Bind::Text(json!(removed).to_string())]);
    }
    push_refs(&mut w, &refs, now);
    let retained: HashSet<(&str, &str)> = if policy.max_versions > 0 {
        items.iter().filter(|i| policy.versions(&i.bucket)).map(|i| (i.bucket.as_str(), i.key.as_str())).collect()
    } else {
        HashSet::new()
    };
    // Counters last: retention below changes them too.
    if retained.is_empty() {
        std::mem::take(&mut d).push_to(&mut w);
    }
    let rows = w.fetch(conn).await?;
    insert_inline(conn, &new_blobs).await?;
    if let Some(q) = q_siblings {
        *siblings = super::lineage::siblings(&rows[q])?;
    }
    for (bucket, key) in retained {
        enforce_retention(conn, &mut d, bucket, key, policy.max_versions).await?;
    }
    d.apply(conn).await?;
    Ok(Committed { results: out, written: refreshed_digests })
}

/// A version leaves the live set for good: one reference and its counts go.
fn forget(d: &mut Deltas, refs: &mut HashMap<Digest, i64>, digest: Option<Digest>, size: u64) {
    d.add("versions", -1);
    if let Some(digest) = digest {
        d.add("version_bytes", -(size as i64));
        *refs.entry(digest).or_default() -= 1;
    }
}

/// What a batch reads before it decides, read with one script.
#[derive(Default)]
struct Context {
    /// The batch's buckets that exist.
    buckets: HashSet<String>,
    live: HashMap<(String, String), Live>,
    /// Digests that already have a row, and those of them not sound.
    known: HashSet<Digest>,
    unsound: HashSet<Digest>,
    /// For the items minted elsewhere: each key's newest recorded version,
    /// and which of the items' versions are recorded already.
    newest: HashMap<(String, String), String>,
    recorded: HashSet<(String, String, String)>,
    /// The request ids of the batch's puts already on record:
    /// (bucket, id) → (key, version).
    requests: HashMap<(String, String), (String, String)>,
}

async fn read_context(conn: &mut SqliteConnection, items: &[NewVersion]) -> Result<Context, MetaError> {
    let mut s = Script::default();
    let names: HashSet<&str> = items.iter().map(|i| i.bucket.as_str()).collect();
    let q_buckets =
        s.push("SELECT name FROM buckets WHERE name IN (SELECT value FROM json_each(?))", [Bind::Text(json!(names).to_string())]);
    let keys: HashSet<(&str, &str)> = items.iter().map(|i| (i.bucket.as_str(), i.key.as_str())).collect();
    let keys: Vec<Value> = keys.into_iter().map(|(b, k)| json!([b, k])).collect();
    // CROSS JOIN fixes the join order: each key probes the primary key of
    // `objects`, instead of the planner scanning `objects` once per key.
    let q_live = s.push(
        "SELECT v.id, v.bucket, v.key, v.version, v.stamp, v.digest, v.size, \
         v.content_type, v.attributes, v.created_ms, v.modified_ms \
         FROM json_each(?) j \
         CROSS JOIN objects o ON o.bucket = j.value ->> 0 AND o.key = j.value ->> 1 \
         JOIN versions v ON v.id = o.version_id",
        [Bind::Text(Value::Array(keys).to_string())],
    );
    let digests: HashSet<String> = items.iter().map(|i| i.digest.to_string()).collect();
    let q_blobs = s.push(
        "SELECT hex(digest) AS d, state = 'ok' AS ok FROM blobs WHERE digest IN (SELECT unhex(value) FROM json_each(?))",
        [Bind::Text(json!(digests).to_string())],
    );
    let given: Vec<Value> = items.iter().filter_map(|i| i.identity.as_ref().map(|id| json!([i.bucket, i.key, id.version]))).collect();
    let q_replica = (!given.is_empty()).then(|| {
        s.push(
            "SELECT v.bucket, v.key, MAX(v.version) AS newest, MAX(v.version = j.value ->> 2) AS recorded, j.value ->> 2 AS given \
             FROM json_each(?) j \
             CROSS JOIN versions v ON v.bucket = j.value ->> 0 AND v.key = j.value ->> 1 \
             GROUP BY j.key",
            [Bind::Text(Value::Array(given).to_string())],
        )
    });
    let wanted: Vec<Value> = items.iter().filter_map(|i| i.request_id.as_ref().map(|r| json!([i.bucket, r]))).collect();
    let q_requests = (!wanted.is_empty()).then(|| {
        s.push(
            "SELECT r.bucket, r.request_id, r.key, r.version FROM json_each(?) j \
             JOIN requests r ON r.bucket = j.value ->> 0 AND r.request_id = j.value ->> 1",
            [Bind::Text(Value::Array(wanted).to_string())],
        )
    });
    let rows = s.fetch(conn).await?;
    let mut c = Context::default();
    for r in &rows[q_buckets] {
        c.buckets.insert(r.try_get("name")?);
    }
    for r in &rows[q_live] {
        let id: i64 = r.try_get("id")?;
        let rec = record(r, Some(id))?;
        c.live.insert(
            (rec.bucket, rec.key),
            Live::Stored { id, version: rec.version, digest: rec.digest, size: rec.size, created_ms: rec.created_ms },
        );
    }
    for r in &rows[q_blobs] {
        let hex: String = r.try_get("d")?;
        let d: Digest = hex.to_lowercase().parse().map_err(|e: String| MetaError::Db(e.into()))?;
        if !r.try_get::<bool, _>("ok")? {
            c.unsound.insert(d);
        }
        c.known.insert(d);
    }
    for r in q_replica.map_or(&[][..], |q| &rows[q]) {
        let (bucket, key): (String, String) = (r.try_get("bucket")?, r.try_get("key")?);
        if r.try_get::<i64, _>("recorded")? == 1 {
            c.recorded.insert((bucket.clone(), key.clone(), r.try_get("given")?));
        }
        c.newest.insert((bucket, key), r.try_get("newest")?);
    }
    for r in q_requests.map_or(&[][..], |q| &rows[q]) {
        c.requests.insert((r.try_get("bucket")?, r.try_get("request_id")?), (r.try_get("key")?, r.try_get("version")?));
    }
    Ok(c)
}

/// Whether the item's bytes replace its blob row's: bytes just written to
/// a file, or inline bytes over a row that is not sound. (Inline bytes
/// reach the batch unchecked against the store, so the batch decides.)
fn fresh(item: &NewVersion, unsound: &HashSet<Digest>) -> bool {
    item.fresh_blob || (item.inline.is_some() && unsound.contains(&item.digest))
}

/// New blob rows; their reference counts start at 0 (`push_refs` adds
/// the batch's).
fn push_blobs(w: &mut Script, d: &mut Deltas, blobs: &[&NewVersion], now: i64) {
    if blobs.is_empty() {
        return;
    }
    let rows: Vec<Value> = blobs.iter().map(|b| json!([b.digest.to_string(), b.size, b.stored_size])).collect();
    w.push(
        "INSERT INTO blobs (digest, size, stored_size, refcount, created_ms) \
         SELECT unhex(value ->> 0), value ->> 1, value ->> 2, 0, ? FROM json_each(?)",
        [Bind::Int(now), Bind::Text(Value::Array(rows).to_string())],
    );
    for b in blobs {
        d.add("blobs", 1);
        d.add("blob_bytes", b.size as i64);
        d.add("stored_bytes", b.stored_size as i64);
    }
}

/// The bytes of new inline blobs, bound as blobs, many rows a statement:
/// no text encoding of the bytes on either side. (Its own statement: the
/// text, which grows with the rows, would make every script a new one to
/// prepare.)
async fn insert_inline(conn: &mut SqliteConnection, blobs: &[&NewVersion]) -> Result<(), MetaError> {
    let inline: Vec<&NewVersion> = blobs.iter().copied().filter(|b| b.inline.is_some()).collect();
    for rows in inline.chunks(INLINE_ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO blob_data (digest, data) ");
        q.push_values(rows, |mut row, b| {
            row.push_bind(b.digest.0.to_vec()).push_bind(b.inline.as_ref().expect("inline").to_vec());
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A blob written anew over a row whose file was corrupt (or collected).
async fn refresh_blob(conn: &mut SqliteConnection, d: &mut Deltas, item: &NewVersion, now: i64) -> Result<(), MetaError> {
    let row = sqlx::query("SELECT stored_size, tier FROM blobs WHERE digest = ?").bind(&item.digest.0[..]).fetch_one(&mut *conn).await?;
    let old: i64 = row.try_get("stored_size")?;
    // The new file is local, whatever tier the old copy was on.
    if row.try_get::<String, _>("tier")? != super::tiers::LOCAL {
        d.add("tier_bytes", -old);
    }
    sqlx::query("UPDATE blobs SET state = 'ok', stored_size = ?, created_ms = ?, tier = 'local' WHERE digest = ?")
        .bind(item.stored_size as i64)
        .bind(now)
        .bind(&item.digest.0[..])
        .execute(&mut *conn)
        .await?;
    d.add("stored_bytes", item.stored_size as i64 - old);
    if let Some(data) = &item.inline {
        sqlx::query("INSERT OR REPLACE INTO blob_data (digest, data) VALUES (?, ?)")
            .bind(&item.digest.0[..])
            .bind(&data[..])
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Inserts the versions that survived the batch, in batch order (a key's
/// versions are ordered by row id).
fn push_versions(w: &mut Script, pending: &[Option<Pending>]) {
    let rows: Vec<Value> = pending
        .iter()
        .flatten()
        .map(|p| {
            let r = &p.rec;
            json!([
                r.bucket,
                r.key,
                r.version,
                r.stamp as i64,
                r.digest.map(|d| d.to_string()),
                r.size,
                r.content_type,
                p.attributes,
                r.created_ms,
                r.modified_ms,
                p.node,
                p.replicas,
                p.parents.as_ref().map(|ps| json!(ps).to_string()),
                super::entropy::partition(&r.bucket, &r.key),
                super::entropy::mark(&r.bucket, &r.key, &r.version)
            ])
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    w.push(
        "INSERT INTO versions (bucket, key, version, stamp, node, digest, size, content_type, \
         attributes, created_ms, modified_ms, replicas, parents, part, mark) \
         SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 10, unhex(j.value ->> 4), \
         j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, j.value ->> 11, j.value ->> 12, \
         j.value ->> 13, j.value ->> 14 \
         FROM json_each(?) AS j ORDER BY j.key",
        [Bind::Text(Value::Array(rows).to_string())],
    );
}

/// Points each key written by the batch at its newest version (found by
/// its name, which is unique per key: the script has no row ids to pass).
fn push_live(w: &mut Script, live: &HashMap<(String, String), Live>, pending: &[Option<Pending>]) {
    let rows: Vec<Value> = live
        .iter()
        .filter_map(|((bucket, key), l)| match l {
            Live::Pending(j) => Some(json!([bucket, key, pending[*j].as_ref().expect("live pending version").rec.version])),
            Live::Stored { .. } => None,
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    w.push(
        "INSERT INTO objects (bucket, key, version_id) \
         SELECT j.value ->> 0, j.value ->> 1, v.id FROM json_each(?) j \
         CROSS JOIN versions v ON v.bucket = j.value ->> 0 AND v.key = j.value ->> 1 AND v.version = j.value ->> 2 \
         WHERE true ON CONFLICT (bucket, key) DO UPDATE SET version_id = excluded.version_id",
        [Bind::Text(Value::Array(rows).to_string())],
    );
}

/// Applies the net change in references per blob; a blob left with none
/// starts its time towards GC. One statement per distinct change (nearly
/// always just +1), each an index lookup per digest.
fn push_refs(w: &mut Script, refs: &HashMap<Digest, i64>, now: i64) {
    let mut by_delta: HashMap<i64, Vec<String>> = HashMap::new();
    for (d, n) in refs {
        by_delta.entry(*n).or_default().push(d.to_string());
    }
    for (n, digests) in by_delta {
        w.push(
            "UPDATE blobs SET refcount = refcount + ?, \
             unreferenced_ms = CASE WHEN refcount + ? = 0 THEN ? ELSE NULL END \
             WHERE digest IN (SELECT unhex(value) FROM json_each(?))",
            [Bind::Int(n), Bind::Int(n), Bind::Int(now), Bind::Text(json!(digests).to_string())],
        );
    }
}
