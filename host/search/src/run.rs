//! Running a search: plan with the bucket's ready indexes, read the
//! candidates (or every live object) in the sort order, and keep those the
//! filter matches. The filter is always rechecked, so an index only decides
//! how much is read, never what is found.

use std::time::{Duration, Instant};

use super::eval::matches;
use super::index::{Planner, with_doc};
use super::query::{Expr, Field};
use strata_config::IndexingMode;
use strata_meta::{CandidateIds, Candidates, MetaError, MetaStore, ObjectRecord, Position, SortField, SortValue, View};
use strata_plugin::Plugins;

/// Objects read from the store per round trip.
const BATCH: u32 = 512;

/// Most candidates an index may give before a scan is the cheaper way:
/// candidates are read and sorted as a whole, a scan stops at the page.
pub const MAX_CANDIDATES: u32 = 20_000;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Search {
    pub bucket: String,
    pub filter: Option<Expr>,
    pub sort: Field,
    pub descending: bool,
    pub limit: u32,
    /// Resume after this position (from a previous page's cursor).
    pub after: Option<Position>,
    /// The page ends early, with a cursor, once its records would take more
    /// than this many bytes in the reply.
    pub max_bytes: usize,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Found {
    pub records: Vec<ObjectRecord>,
    /// Each record's place in the sort order (to merge pages of nodes).
    pub positions: Vec<Position>,
    /// Where the next page starts; none when this page is the last.
    pub next: Option<Position>,
    /// Objects read to answer.
    pub scanned: u64,
    pub took: Duration,
    /// How the answer was found, for `--explain`.
    pub plan: String,
    /// Whether an index served the search.
    pub indexed: bool,
}

fn sort_field(f: &Field) -> SortField {
    match f {
        Field::Key => SortField::Key,
        Field::Size => SortField::Size,
        Field::ContentType => SortField::ContentType,
        Field::Created => SortField::Created,
        Field::Modified => SortField::Modified,
        Field::Digest => SortField::Digest,
        Field::Attribute(p) => SortField::Attribute(p.clone()),
    }
}

/// Whether `r` matches `filter` (no filter matches everything).
pub fn keep(filter: Option<&Expr>, r: &ObjectRecord) -> bool {
    let Some(filter) = filter else { return true };
    with_doc(r, |d| matches(filter, d))
}

/// Where a search reads its objects from.
enum Source {
    /// Every live object of the bucket, in the sort order.
    Scan,
    /// Only these candidate versions, sorted by the store.
    Ids(CandidateIds),
    /// Candidates in key order, from their term rows: a page reads only its
    /// own objects. `keyed` is the chunk in hand, `at` how much of it was
    /// read, `more` whether candidates remain after it, `take` the size of
    /// the next chunk.
    Keyed { c: Candidates, keyed: Vec<(i64, String)>, at: usize, more: bool, take: u32 },
}

/// Answers `s`; `plugins` is none when indexes must not be used.
pub async fn run(meta: &MetaStore, plugins: Option<&Plugins>, s: &Search) -> Result<Found, MetaError> {
    let started = Instant::now();
    let order = format!("{} {}", s.sort, if s.descending { "descending" } else { "ascending" });
    let mut notes = Vec::new();
    let mut source = Source::Scan;
    // One snapshot for the whole page: candidates and the objects read
    // after them must agree, or an object overwritten between the two
    // reads would be lost.
    let mut view = meta.view().await?;
    if let (Some(filter), Some(plugins)) = (&s.filter, plugins)
        && meta.indexing() != IndexingMode::Disabled
    {
        let indexes: Vec<_> = view.list_indexes().await?.into_iter().filter(|i| i.bucket == s.bucket && i.ready).collect();
        if !indexes.is_empty() {
            let mut planner = Planner { plugins, indexes, head: view.head().await?, notes: Vec::new() };
            let candidates = planner.plan(filter);
            if candidates.is_some() {
                notes = planner.notes;
            }
            if let Some(c) = candidates.filter(|c| {
                let fits = c.selects() < strata_meta::MAX_COMPOUND;
                if !fits {
                    notes.push(format!(
                        "the filter needs more than {} index reads in one query: scanning instead",
                        strata_meta::MAX_COMPOUND
                    ));
                }
                fits
            }) {
                source = candidates_source(&mut view, s, &c, &order, &mut notes).await?;
            }
        }
    }
    let indexed = !matches!(source, Source::Scan);
    let sort = sort_field(&s.sort);
    let mut after = s.after.clone();
    let mut records = Vec::new();
    let mut positions = Vec::new();
    let mut scanned = 0u64;
    let mut next = None;
    let mut bytes = 0usize;
    let mut last_kept: Option<Position> = None;
    'pages: loop {
        // Candidates mostly match: ask for what the page still needs, not a
        // full batch.
        let want = (s.limit - records.len() as u32).clamp(1, BATCH);
        let (batch, done) = match &mut source {
            Source::Ids(ids) => {
                let batch = view.scan_ids(&s.bucket, &sort, s.descending, after.as_ref(), want, ids).await?;
                let done = (batch.len() as u32) < want;
                (batch, done)
            }
            Source::Keyed { c, keyed, at, more, take } => {
                if *at == keyed.len() && *more {
                    // The chunk is used up (candidates no longer live, or the
                    // filter's recheck): the next chunk after its last key.
                    let last = keyed.last().map(|(id, k)| (k.clone(), *id));
                    let after = last.as_ref().map(|(k, id)| (k.as_str(), Some(*id)));
                    // Each chunk reads every candidate's term again: double
                    // them, so a filter the recheck mostly rejects costs a
                    // few reads of the terms, not one per page's worth.
                    *take = take.saturating_mul(2).min(MAX_CHUNK);
                    let found = view.candidate_keys(c, after, s.descending, MAX_CANDIDATES + 1, *take).await?;
                    if found.count > MAX_CANDIDATES as u64 {
                        // Writes since the page began made too many to sort:
                        // the rest of the page scans on from the last object read.
                        notes.push(format!("more than {MAX_CANDIDATES} candidates midway: scanning on"));
                        source = Source::Scan;
                        continue;
                    }
                    *more = found.count > found.keyed.len() as u64;
                    (*keyed, *at) = (found.keyed, 0);
                }
                let chunk: Vec<i64> = keyed[*at..].iter().take(want as usize).map(|(id, _)| *id).collect();
                *at += chunk.len();
                let batch = view.live_in_order(&s.bucket, &chunk).await?.into_iter().map(|r| {
                    let key = r.key.clone();
                    (r, Position::Valued { value: SortValue::Text(key.clone()), key })
                });
                (batch.collect(), *at == keyed.len() && !*more)
            }
            Source::Scan => {
                // A scan resumes by key, so it loses nothing to writes
                // between batches: each batch gets a fresh snapshot, and a
                // long scan never holds one (which would stop checkpoints).
                view.renew().await?;
                let batch = view.scan(&s.bucket, &sort, s.descending, after.as_ref(), BATCH).await?;
                let done = (batch.len() as u32) < BATCH;
                (batch, done)
            }
        };
        for (record, position) in batch {
            scanned += 1;
            if keep(s.filter.as_ref(), &record) {
                bytes += record.reply_bytes();
                if bytes > s.max_bytes && !records.is_empty() {
                    next = last_kept;
                    break 'pages;
                }
                records.push(record);
                positions.push(position.clone());
                if records.len() as u32 == s.limit {
                    next = Some(position);
                    break 'pages;
                }
                last_kept = Some(position.clone());
            }
            // The next batch resumes after the last object read.
            after = Some(position);
        }
        if done {
            break;
        }
    }
    if !indexed {
        let why = match (&s.filter, plugins.is_some() && meta.indexing() != IndexingMode::Disabled) {
            (None, _) => "no filter",
            (Some(_), false) => "indexes are disabled",
            (Some(_), true) if notes.is_empty() => "no ready index serves the filter",
            (Some(_), true) => "filter each object",
        };
        notes.push(format!("scan bucket {:?} in {order} order ({why})", s.bucket));
    }
    Ok(Found { records, positions, next, scanned, took: started.elapsed(), plan: notes.join("; "), indexed })
}

/// The largest chunk of candidates taken at once.
const MAX_CHUNK: u32 = 8192;

/// Candidates taken in key order at first for a page of `limit`: enough
/// that a page rarely needs a second chunk when some are no longer live or
/// fail the recheck. The unit tests take 3, so that pages cross many
/// chunks, and chunks end between versions of a key.
fn key_chunk(limit: u32) -> u32 {
    if cfg!(test) { 3 } else { limit.saturating_mul(2).saturating_add(16).min(4096) }
}

/// Reads the candidate set `c`, or tells (in `notes`) why a scan is the
/// cheaper way. Sorted by key, the candidates come with their keys, so the
/// page is chosen before any object is read.
async fn candidates_source(view: &mut View, s: &Search, c: &Candidates, order: &str, notes: &mut Vec<String>) -> Result<Source, MetaError> {
    let too_many = || format!("more than {MAX_CANDIDATES} candidates: scanning instead");
    if s.sort == Field::Key {
        let after = match &s.after {
            None => None,
            // The page ended at a live version: no other of its key is.
            Some(Position::Valued { key, .. }) => Some((key.as_str(), None)),
            // Every object has a key: nothing sorts after the keyless.
            Some(Position::Unvalued { .. }) => return Ok(Source::Keyed { c: c.clone(), keyed: Vec::new(), at: 0, more: false, take: 0 }),
        };
        let take = key_chunk(s.limit);
        let found = view.candidate_keys(c, after, s.descending, MAX_CANDIDATES + 1, take).await?;
        if found.count > MAX_CANDIDATES as u64 {
            notes.push(too_many());
            return Ok(Source::Scan);
        }
        notes.push(format!("{} candidates, the first by key from the index's terms, filter rechecked", found.count));
        let more = found.count > found.keyed.len() as u64;
        return Ok(Source::Keyed { c: c.clone(), keyed: found.keyed, at: 0, more, take });
    }
    let found = view.candidate_ids(c, MAX_CANDIDATES + 1).await?;
    if found.count > MAX_CANDIDATES as u64 {
        notes.push(too_many());
        return Ok(Source::Scan);
    }
    notes.push(format!("{} candidates, read in {order} order, filter rechecked", found.count));
    Ok(Source::Ids(found))
}

/// How two positions compare in a scan's order, as SQLite orders them:
/// numbers (integer or real) by value before text, text bytewise, ties by
/// key; objects without a value come last, in key order, either way.
pub fn order(a: &Position, b: &Position, descending: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let dir = |o: Ordering| if descending { o.reverse() } else { o };
    match (a, b) {
        (Position::Valued { value: va, key: ka }, Position::Valued { value: vb, key: kb }) => {
            dir(compare_values(va, vb).then_with(|| ka.cmp(kb)))
        }
        (Position::Valued { .. }, Position::Unvalued { .. }) => Ordering::Less,
        (Position::Unvalued { .. }, Position::Valued { .. }) => Ordering::Greater,
        (Position::Unvalued { key: ka }, Position::Unvalued { key: kb }) => dir(ka.cmp(kb)),
    }
}

fn compare_values(a: &SortValue, b: &SortValue) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let number = |v: &SortValue| match v {
        SortValue::Int(i) => Some(*i as f64),
        SortValue::Real(r) => Some(*r),
        SortValue::Text(_) => None,
    };
    match (a, b) {
        (SortValue::Int(x), SortValue::Int(y)) => x.cmp(y),
        (SortValue::Text(x), SortValue::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (SortValue::Text(_), _) => Ordering::Greater,
        (_, SortValue::Text(_)) => Ordering::Less,
        _ => number(a).unwrap_or(0.0).total_cmp(&number(b).unwrap_or(0.0)),
    }
}
