//! Search indexes as the store keeps them: definitions, the terms plugins
//! computed, catching an index up with new versions, and the candidate
//! sets searches draw from them.
//!
//! An index covers every version up to its watermark. Versions above it
//! (the tail) are added to every candidate set, so an index that lags
//! (lazy mode, a backfill, a failing plugin) still gives exact answers: it
//! only costs more.

use serde_json::json;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Row};

use super::bind::{Bind, Script, query};
use super::sql::record;
use super::{MetaError, ObjectRecord};

/// An index as defined, with how far it has got.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IndexDef {
    pub id: i64,
    pub bucket: String,
    pub name: String,
    /// Field names, as searches spell them.
    pub fields: Vec<String>,
    /// The index-type plugin.
    pub kind: String,
    /// Versions up to this id are indexed.
    pub watermark: i64,
    /// The newest version when the index was made; the backfill ends here.
    pub target: i64,
    /// The backfill is done: searches may use the index.
    pub ready: bool,
    /// Why the last catch-up failed.
    pub error: Option<String>,
    pub created_ms: i64,
}

impl IndexDef {
    /// How much of the backfill is done, 0.0 to 1.0.
    pub fn progress(&self) -> f64 {
        if self.ready || self.target <= 0 { 1.0 } else { (self.watermark as f64 / self.target as f64).clamp(0.0, 1.0) }
    }

    /// Versions up to `head` (the newest id) this index has yet to take in.
    pub fn lag(&self, head: i64) -> i64 {
        (head - self.watermark).max(0)
    }
}

/// Computes terms: the host's bridge to index-type plugins.
pub trait TermMaker: Send + Sync {
    /// The terms of each record for `index`, one list per record.
    fn terms(&self, index: &IndexDef, records: &[ObjectRecord]) -> Result<Vec<Vec<Vec<u8>>>, String>;
}

/// Which stored terms a lookup wants.
#[derive(Debug, Clone, PartialEq)]
pub enum TermMatch {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    /// Bounds with whether each is inclusive.
    Range {
        lower: Option<(Vec<u8>, bool)>,
        upper: Option<(Vec<u8>, bool)>,
    },
}

/// A set of version ids that holds every live object matching some
/// condition (and maybe more).
#[derive(Debug, Clone, PartialEq)]
pub enum Candidates {
    /// Versions with terms matching all matches of any group, plus the tail
    /// above the index's watermark.
    Index {
        index: IndexDef,
        groups: Vec<Vec<TermMatch>>,
    },
    And(Vec<Candidates>),
    Or(Vec<Candidates>),
    /// These version ids (a JSON array), worked out by the store.
    Ids(String),
}

/// SQLite's limit on the SELECTs one compound SELECT may join.
pub const MAX_COMPOUND: usize = 500;

impl Candidates {
    /// An upper bound on the SELECTs its compound SELECT joins: above
    /// [`MAX_COMPOUND`] SQLite refuses the query, so the search scans.
    pub fn selects(&self) -> usize {
        match self {
            Candidates::Index { groups, .. } => 1 + groups.iter().map(Vec::len).sum::<usize>(),
            Candidates::And(all) | Candidates::Or(all) => all.iter().map(Candidates::selects).sum(),
            Candidates::Ids(_) => 1,
        }
    }

    /// A compound SELECT of two columns: `id`, and `key` (the version's
    /// key, none only for a term whose version is gone). With `all`, the
    /// unions keep duplicates (a version matching several terms): cheaper,
    /// for a caller that drops them itself. `head` is the newest version id
    /// of the snapshot the query runs in.
    fn sql(&self, binds: &mut Vec<Bind>, all: bool, head: i64) -> String {
        let union = if all { " UNION ALL " } else { " UNION " };
        match self {
            Candidates::Index { index, groups } => {
                let mut parts = Vec::new();
                for group in groups {
                    parts.push(group_sql(index.id, group, binds));
                }
                // The versions the index has yet to take in, when there are
                // any: an empty tail still costs every term row a pass
                // through the compound (twice the time of a range read).
                if index.watermark < head {
                    binds.push(Bind::Int(index.watermark));
                    binds.push(Bind::Text(index.bucket.clone()));
                    // `+bucket`: walk the rowid range above the watermark, never the
                    // bucket's whole (bucket, key) index.
                    parts.push("SELECT id, key FROM versions WHERE id > ? AND +bucket = ? AND +digest IS NOT NULL".into());
                }
                if parts.is_empty() {
                    return "SELECT NULL AS id, NULL AS key WHERE 0".into();
                }
                parts.join(union)
            }
            Candidates::And(all_of) => {
                let each: Vec<String> = all_of.iter().map(|c| format!("SELECT id, key FROM ({})", c.sql(binds, all, head))).collect();
                each.join(" INTERSECT ")
            }
            Candidates::Ids(json) => {
                binds.push(Bind::Text(json.clone()));
                "SELECT v.id AS id, v.key AS key FROM json_each(?) c CROSS JOIN versions v ON v.id = c.value".into()
            }
            Candidates::Or(any) => {
                let each: Vec<String> = any.iter().map(|c| format!("SELECT id, key FROM ({})", c.sql(binds, all, head))).collect();
                each.join(union)
            }
        }
    }
}

/// The key of term row `t`: terms written before keys were kept have
/// none, and take their version's.
fn term_key(t: &str) -> String {
    format!("coalesce({t}.key, (SELECT v.key FROM versions v WHERE v.id = {t}.version_id))")
}

/// Versions with a term matching every match of `group`. It is driven by
/// one match (an exact one if there is one); the other exact terms are
/// point probes of the primary key per driving row, which costs far less
/// than intersecting whole term lists when one word is common.
fn group_sql(index: i64, group: &[TermMatch], binds: &mut Vec<Bind>) -> String {
    let mut order: Vec<&TermMatch> = group.iter().collect();
    if let Some(p) = order.iter().position(|m| matches!(m, TermMatch::Exact(_))) {
        order.swap(0, p);
    }
    let (driver, rest) = order.split_first().expect("groups are not empty");
    binds.push(Bind::Int(index));
    let mut sql = format!(
        "SELECT t.version_id AS id, {} AS key FROM index_terms t WHERE t.index_id = ? AND {}",
        term_key("t"),
        term_condition(driver, "t.term", binds)
    );
    let mut others = Vec::new();
    for m in rest {
        match m {
            TermMatch::Exact(term) => {
                binds.push(Bind::Int(index));
                binds.push(Bind::Blob(term.clone()));
                sql.push_str(
                    " AND EXISTS (SELECT 1 FROM index_terms e \
                     WHERE e.index_id = ? AND e.term = ? AND e.version_id = t.version_id)",
                );
            }
            _ => others.push(*m),
        }
    }
    let mut parts = vec![sql];
    for m in others {
        binds.push(Bind::Int(index));
        parts.push(format!(
            "SELECT u.version_id AS id, {} AS key FROM index_terms u WHERE u.index_id = ? AND {}",
            term_key("u"),
            term_condition(m, "u.term", binds)
        ));
    }
    let each: Vec<String> = parts.iter().map(|p| format!("SELECT id, key FROM ({p})")).collect();
    each.join(" INTERSECT ")
}

/// The WHERE fragment of one term match on column `col`.
fn term_condition(m: &TermMatch, col: &str, binds: &mut Vec<Bind>) -> String {
    match m {
        TermMatch::Exact(t) => {
            binds.push(Bind::Blob(t.clone()));
            format!("{col} = ?")
        }
        TermMatch::Prefix(p) => {
            binds.push(Bind::Blob(p.clone()));
            match prefix_successor(p) {
                Some(s) => {
                    binds.push(Bind::Blob(s));
                    format!("{col} >= ? AND {col} < ?")
                }
                None => format!("{col} >= ?"),
            }
        }
        TermMatch::Range { lower, upper } => {
            let mut parts = vec!["1".to_string()];
            if let Some((t, inclusive)) = lower {
                binds.push(Bind::Blob(t.clone()));
                parts.push(format!("{col} {} ?", if *inclusive { ">=" } else { ">" }));
            }
            if let Some((t, inclusive)) = upper {
                binds.push(Bind::Blob(t.clone()));
                parts.push(format!("{col} {} ?", if *inclusive { "<=" } else { "<" }));
            }
            parts.join(" AND ")
        }
    }
}

/// The least byte string greater than every string starting with `p`;
/// none when `p` is all 0xFF.
fn prefix_successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut s = p.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Up to some number of a candidate set's version ids.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateIds {
    pub count: u64,
    /// The ids as a JSON array: they go back to SQLite as they came, never
    /// decoded row by row.
    pub json: String,
}

type Resolved<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Candidates, MetaError>> + Send + 'a>>;

/// Works out groups of several exact terms (the words of a full-text
/// match) before the candidate query: each word's posting list is one range
/// read of the primary key, in version id order, and SQLite merges them (a
/// compound INTERSECT with ORDER BY is a merge of its sides, no temporary
/// table), where probing one term per row of another costs a B-tree descent
/// each. Only the common ids cross to this side.
fn resolve(conn: &mut SqliteConnection, c: Candidates) -> Resolved<'_> {
    Box::pin(async move {
        Ok(match c {
            Candidates::Index { index, groups } => {
                let (merge, keep): (Vec<_>, Vec<_>) =
                    groups.into_iter().partition(|g| g.len() > 1 && g.iter().all(|m| matches!(m, TermMatch::Exact(_))));
                if merge.is_empty() {
                    return Ok(Candidates::Index { index, groups: keep });
                }
                let mut any = Vec::new();
                for group in merge {
                    let mut binds = Vec::new();
                    let mut lists = Vec::new();
                    for m in &group {
                        let TermMatch::Exact(term) = m else { unreachable!("partitioned on exact terms") };
                        binds.push(Bind::Int(index.id));
                        binds.push(Bind::Blob(term.clone()));
                        lists.push("SELECT version_id FROM index_terms WHERE index_id = ? AND term = ?");
                    }
                    let sql = format!("SELECT json_group_array(version_id) AS ids FROM ({} ORDER BY 1)", lists.join(" INTERSECT "));
                    let row = query(sql, binds).fetch_one(&mut *conn).await?;
                    any.push(Candidates::Ids(row.try_get("ids")?));
                }
                // The rest of the groups, and the tail above the watermark.
                any.push(Candidates::Index { index, groups: keep });
                Candidates::Or(any)
            }
            Candidates::And(all) => {
                let mut out = Vec::new();
                for c in all {
                    out.push(resolve(&mut *conn, c).await?);
                }
                Candidates::And(out)
            }
            Candidates::Or(any) => {
                let mut out = Vec::new();
                for c in any {
                    out.push(resolve(&mut *conn, c).await?);
                }
                Candidates::Or(out)
            }
            ids @ Candidates::Ids(_) => ids,
        })
    })
}

/// Up to `limit` ids of the candidate set, in one row. Like
/// [`candidate_keys`], it runs in a read transaction: the newest id it
/// reads first must be of the snapshot the candidates come from.
pub async fn candidate_ids(conn: &mut SqliteConnection, c: &Candidates, limit: u32) -> Result<CandidateIds, MetaError> {
    let c = &resolve(&mut *conn, c.clone()).await?;
    let head = head(&mut *conn).await?;
    let mut binds = Vec::new();
    let sql =
        format!("SELECT count(*) AS n, json_group_array(id) AS ids FROM (SELECT id FROM ({}) LIMIT ?)", c.sql(&mut binds, false, head));
    binds.push(Bind::Int(limit as i64));
    let row = query(sql, binds).fetch_one(conn).await?;
    Ok(CandidateIds { count: row.try_get::<i64, _>("n")? as u64, json: row.try_get("ids")? })
}

/// The first candidates of a set in key order, with their keys.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CandidateKeys {
    /// Candidates after the cursor, counted up to the `max` asked (a
    /// version matching several terms counts each time).
    pub count: u64,
    /// The first `take` of them, (version id, key), in the order asked: by
    /// key, then id.
    pub keyed: Vec<(i64, String)>,
}

/// Counts up to `max` candidates after `after` (before it when
/// `descending`) in (key, version id) order, and gives the first `take` of
/// them. Keys come from the term rows, so a page sorted by key reads only
/// its own objects, not every candidate's; SQLite keeps the first `take` as
/// it reads (a top-N sort), so only those cross to this side. `after` is a
/// key and id; a key alone (a page's cursor) is `(key, None)`: past every
/// version of it. `conn` is in a read transaction (a [`crate::View`]).
pub async fn candidate_keys(
    conn: &mut SqliteConnection,
    c: &Candidates,
    after: Option<(&str, Option<i64>)>,
    descending: bool,
    max: u32,
    take: u32,
) -> Result<CandidateKeys, MetaError> {
    let c = &resolve(&mut *conn, c.clone()).await?;
    let head = head(&mut *conn).await?;
    // The candidates are read twice, to count them and to keep the first:
    // two streaming reads of the terms cost less than one set of them
    // built in a temporary table.
    let mut binds = Vec::new();
    let select = |binds: &mut Vec<Bind>| {
        let mut sql = format!("SELECT id, key FROM ({}) WHERE key IS NOT NULL", c.sql(binds, true, head));
        if let Some((key, id)) = after {
            sql.push_str(if descending { " AND (key, id) < (?, ?)" } else { " AND (key, id) > (?, ?)" });
            binds.push(Bind::Text(key.into()));
            binds.push(Bind::Int(id.unwrap_or(if descending { i64::MIN } else { i64::MAX })));
        }
        sql
    };
    let counted = select(&mut binds);
    binds.push(Bind::Int(max as i64));
    let first = select(&mut binds);
    binds.push(Bind::Int(take as i64));
    let dir = if descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT (SELECT count(*) FROM ({counted} LIMIT ?)) AS n, \
         (SELECT json_group_array(json_array(id, key)) FROM ({first} ORDER BY key {dir}, id {dir} LIMIT ?)) AS ids"
    );
    let row = query(sql, binds).fetch_one(conn).await?;
    let json: String = row.try_get("ids")?;
    let mut keyed: Vec<(i64, String)> = serde_json::from_str(&json).map_err(|e| MetaError::Db(Box::new(e)))?;
    // An aggregate's input order is not promised: sort again (SQLite
    // compares text bytewise, as `str` does), and drop a version read twice.
    keyed.sort_unstable_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    keyed.dedup_by_key(|k| k.0);
    if descending {
        keyed.reverse();
    }
    Ok(CandidateKeys { count: row.try_get::<i64, _>("n")? as u64, keyed })
}

// ---- definitions ----

const DEF_COLUMNS: &str = "id, bucket, name, fields, type, watermark, target, ready, error, created_ms";

fn def(row: &SqliteRow) -> Result<IndexDef, MetaError> {
    let fields: String = row.try_get("fields")?;
    Ok(IndexDef {
        id: row.try_get("id")?,
        bucket: row.try_get("bucket")?,
        name: row.try_get("name")?,
        fields: serde_json::from_str(&fields).map_err(|e| MetaError::Db(Box::new(e)))?,
        kind: row.try_get("type")?,
        watermark: row.try_get("watermark")?,
        target: row.try_get("target")?,
        ready: row.try_get("ready")?,
        error: row.try_get("error")?,
        created_ms: row.try_get("created_ms")?,
    })
}

pub async fn create(
    pool: &SqlitePool,
    bucket: &str,
    name: &str,
    fields: &[String],
    kind: &str,
    now_ms: i64,
) -> Result<IndexDef, MetaError> {
    let mut conn = pool.acquire().await?;
    let exists = sqlx::query("SELECT 1 FROM buckets WHERE name = ?").bind(bucket).fetch_optional(&mut *conn).await?;
    if exists.is_none() {
        return Err(MetaError::NoSuchBucket { bucket: bucket.into() });
    }
    let taken = sqlx::query("SELECT 1 FROM search_indexes WHERE bucket = ? AND name = ?")
        .bind(bucket)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    if taken.is_some() {
        return Err(MetaError::IndexExists { bucket: bucket.into(), name: name.into() });
    }
    // With nothing to backfill the index is ready at once.
    let row = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO search_indexes (bucket, name, fields, type, target, watermark, ready, created_ms) \
         SELECT ?, ?, ?, ?, t.top, 0, t.top = 0, ? FROM (SELECT coalesce(max(id), 0) AS top FROM versions) t \
         RETURNING {DEF_COLUMNS}"
    )))
    .bind(bucket)
    .bind(name)
    .bind(json!(fields).to_string())
    .bind(kind)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    def(&row)
}

pub async fn list<'e>(db: impl sqlx::SqliteExecutor<'e>) -> Result<Vec<IndexDef>, MetaError> {
    let rows = sqlx::query(AssertSqlSafe(format!("SELECT {DEF_COLUMNS} FROM search_indexes ORDER BY bucket, name"))).fetch_all(db).await?;
    rows.iter().map(def).collect()
}

/// Forgets the definition; [`sweep`] removes its terms in the background.
pub async fn drop(pool: &SqlitePool, bucket: &str, name: &str) -> Result<(), MetaError> {
    let done = sqlx::query("DELETE FROM search_indexes WHERE bucket = ? AND name = ?").bind(bucket).bind(name).execute(pool).await?;
    if done.rows_affected() == 0 {
        return Err(MetaError::NoSuchIndex { bucket: bucket.into(), name: name.into() });
    }
    Ok(())
}

// ---- catching up ----

/// What one catch-up step did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Step {
    /// Versions read.
    pub read: u64,
    /// Terms written.
    pub terms: u64,
    /// The index reached the newest version.
    pub current: bool,
    /// The plugin failed; the index stays where it was.
    pub failed: bool,
}

/// The versions an index is built from, in id order: above `?`, at most `?`.
const VERSIONS_ABOVE: &str = "SELECT v.id, v.bucket, v.key, v.version, v.stamp, v.digest, v.size, \
     v.content_type, v.attributes, v.created_ms, v.modified_ms \
     FROM versions v WHERE v.id > ? ORDER BY v.id LIMIT ?";

/// Indexes up to `batch` versions above the watermark of index `id`, on a
/// connection inside a transaction. A plugin failure is recorded on the
/// index, not returned: the index stays behind and searches scan its tail.
pub async fn catch_up(conn: &mut SqliteConnection, maker: &dyn TermMaker, index: &IndexDef, batch: u32) -> Result<Step, MetaError> {
    let rows = query(VERSIONS_ABOVE.into(), vec![Bind::Int(index.watermark), Bind::Int(batch as i64)]).fetch_all(&mut *conn).await?;
    let mut w = Script::default();
    let step = push_terms(&mut w, maker, index, &rows, batch)?;
    w.execute(conn).await?;
    Ok(step)
}

/// Adds to `w` the writes that index `rows` (versions in id order, read
/// from at or below the index's watermark) for `index`, at most `batch`
/// of those above its watermark.
fn push_terms(w: &mut Script, maker: &dyn TermMaker, index: &IndexDef, rows: &[SqliteRow], batch: u32) -> Result<Step, MetaError> {
    let mut above = Vec::new();
    for row in rows {
        if row.try_get::<i64, _>("id")? > index.watermark {
            above.push(row);
        }
    }
    above.truncate(batch as usize);
    let step = Step { read: above.len() as u64, current: above.len() < batch as usize, ..Step::default() };
    let Some(last) = above.last() else { return Ok(step) };
    let top: i64 = last.try_get("id")?;
    let mut ids = Vec::new();
    let mut records = Vec::new();
    for row in above {
        if row.try_get::<String, _>("bucket")? != index.bucket || row.try_get::<Option<Vec<u8>>, _>("digest")?.is_none() {
            continue;
        }
        ids.push(row.try_get::<i64, _>("id")?);
        records.push(record(row, None)?);
    }
    let terms = if records.is_empty() { Ok(Vec::new()) } else { maker.terms(index, &records) };
    let terms = terms.and_then(|t| {
        if t.len() == records.len() { Ok(t) } else { Err(format!("the plugin gave {} term lists for {} objects", t.len(), records.len())) }
    });
    let terms = match terms {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(index = %index.name, error = %e, "indexing failed; the index stays behind");
            w.push("UPDATE search_indexes SET error = ? WHERE id = ?", [Bind::Text(e), Bind::Int(index.id)]);
            return Ok(Step { failed: true, current: false, ..step });
        }
    };
    let rows: Vec<serde_json::Value> =
        records.iter().zip(&ids).zip(&terms).flat_map(|((r, id), ts)| ts.iter().map(move |t| json!([hex::encode(t), id, r.key]))).collect();
    let step = Step { terms: rows.len() as u64, ..step };
    // Pushed even with no terms: a script of one shape per number of
    // indexes stays one prepared statement in the connection's cache.
    w.push(
        "INSERT OR IGNORE INTO index_terms (index_id, term, version_id, key) \
         SELECT ?, unhex(j.value ->> 0), j.value ->> 1, j.value ->> 2 FROM json_each(?) j",
        [Bind::Int(index.id), Bind::Text(serde_json::Value::Array(rows).to_string())],
    );
    w.push(
        "UPDATE search_indexes SET watermark = ?, ready = ready OR ? >= target, error = NULL WHERE id = ?",
        [Bind::Int(top), Bind::Int(top), Bind::Int(index.id)],
    );
    Ok(step)
}

/// Versions an eager write indexes in its own transaction; an index further
/// behind (a backfill) is left to the background worker.
pub const EAGER_MAX_LAG: u32 = 8192;

/// Brings every ready index up to date inside the write's transaction:
/// three round trips to SQLite whatever the number of indexes (their
/// definitions, the versions above the lowest watermark, the writes).
pub async fn eager(conn: &mut SqliteConnection, maker: &dyn TermMaker) -> Result<(), MetaError> {
    let mut s = Script::default();
    let q_defs = s.push(&format!("SELECT {DEF_COLUMNS} FROM search_indexes ORDER BY id"), []);
    let q_head = s.push(HEAD, []);
    let read = s.fetch(&mut *conn).await?;
    let defs = read[q_defs].iter().map(def).collect::<Result<Vec<_>, _>>()?;
    let head: i64 = read[q_head].first().map(|r| r.try_get("top")).transpose()?.unwrap_or(0);
    let due: Vec<&IndexDef> = defs.iter().filter(|d| d.ready && d.error.is_none() && head - d.watermark <= EAGER_MAX_LAG as i64).collect();
    let Some(from) = due.iter().map(|d| d.watermark).min() else { return Ok(()) };
    // Every due index is at most EAGER_MAX_LAG behind: one read serves all.
    let batch = EAGER_MAX_LAG + 1;
    let rows = query(VERSIONS_ABOVE.into(), vec![Bind::Int(from), Bind::Int(batch as i64)]).fetch_all(&mut *conn).await?;
    let mut w = Script::default();
    for d in due {
        push_terms(&mut w, maker, d, &rows, batch)?;
    }
    w.execute(conn).await?;
    Ok(())
}

/// The definition as it stands now, if it still exists.
pub async fn get_on(conn: &mut SqliteConnection, id: i64) -> Result<Option<IndexDef>, MetaError> {
    let row =
        sqlx::query(AssertSqlSafe(format!("SELECT {DEF_COLUMNS} FROM search_indexes WHERE id = ?"))).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(def).transpose()
}

/// The newest version id (0 when there is none), as `top`.
const HEAD: &str = "SELECT coalesce(max(id), 0) AS top FROM versions";

/// The newest version id (0 when there is none): how far indexes have to go.
pub async fn head<'e>(db: impl sqlx::SqliteExecutor<'e>) -> Result<i64, MetaError> {
    Ok(sqlx::query(HEAD).fetch_one(db).await?.try_get("top")?)
}

// ---- upkeep ----

/// Term rows examined per sweep transaction.
const SWEEP_CHUNK: i64 = 5000;

/// Removes terms whose version or index is gone, a chunk per transaction so
/// writes go on between them. Returns the rows removed.
pub async fn sweep(pool: &SqlitePool) -> Result<u64, MetaError> {
    let mut removed = 0;
    let mut after: (i64, Vec<u8>, i64) = (i64::MIN, Vec::new(), i64::MIN);
    loop {
        let last = sqlx::query(
            "SELECT index_id, term, version_id FROM index_terms \
             WHERE (index_id, term, version_id) > (?, ?, ?) \
             ORDER BY index_id, term, version_id LIMIT 1 OFFSET ?",
        )
        .bind(after.0)
        .bind(&after.1)
        .bind(after.2)
        .bind(SWEEP_CHUNK - 1)
        .fetch_optional(pool)
        .await?;
        let bound = match &last {
            Some(r) => Some((r.try_get::<i64, _>("index_id")?, r.try_get::<Vec<u8>, _>("term")?, r.try_get::<i64, _>("version_id")?)),
            None => None,
        };
        // The chunk: rows after `after`, up to and including `bound`.
        let mut sql = String::from("DELETE FROM index_terms WHERE (index_id, term, version_id) > (?, ?, ?)");
        if bound.is_some() {
            sql.push_str(" AND (index_id, term, version_id) <= (?, ?, ?)");
        }
        sql.push_str(
            " AND (NOT EXISTS (SELECT 1 FROM versions v WHERE v.id = version_id) \
               OR NOT EXISTS (SELECT 1 FROM search_indexes s WHERE s.id = index_id))",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(after.0).bind(after.1.clone()).bind(after.2);
        if let Some((i, t, v)) = &bound {
            q = q.bind(*i).bind(t.clone()).bind(*v);
        }
        removed += q.execute(pool).await?.rows_affected();
        match bound {
            Some(b) => after = b,
            None => return Ok(removed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_successor_carries_past_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(&[]), None);
    }
}
