//! Running a search: plan with the bucket's ready indexes, read the
//! candidates (or every live object) in the sort order, and keep those the
//! filter matches. The filter is always rechecked, so an index only decides
//! how much is read, never what is found.

use std::time::{Duration, Instant};

use super::eval::matches;
use super::index::{Planner, with_doc};
use super::query::{Expr, Field};
use strata_config::IndexingMode;
use strata_meta::{MetaError, MetaStore, ObjectRecord, Position, SortField, SortValue};
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

/// Answers `s`; `plugins` is none when indexes must not be used.
pub async fn run(meta: &MetaStore, plugins: Option<&Plugins>, s: &Search) -> Result<Found, MetaError> {
    let started = Instant::now();
    let order = format!("{} {}", s.sort, if s.descending { "descending" } else { "ascending" });
    let mut notes = Vec::new();
    let mut ids = None;
    if let (Some(filter), Some(plugins)) = (&s.filter, plugins)
        && meta.indexing() != IndexingMode::Disabled
    {
        let indexes: Vec<_> = meta.list_indexes().await?.into_iter().filter(|i| i.bucket == s.bucket && i.ready).collect();
        if !indexes.is_empty() {
            let mut planner = Planner { plugins, indexes, head: meta.head().await?, notes: Vec::new() };
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
                let found = meta.candidate_ids(&c, MAX_CANDIDATES + 1).await?;
                if found.count > MAX_CANDIDATES as u64 {
                    notes.push(format!("more than {MAX_CANDIDATES} candidates: scanning instead"));
                } else {
                    notes.push(format!("{} candidates, read in {order} order, filter rechecked", found.count));
                    ids = Some(found);
                }
            }
        }
    }
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
        let (want, batch) = match &ids {
            Some(ids) => {
                let want = (s.limit - records.len() as u32).clamp(1, BATCH);
                (want, meta.scan_ids(&s.bucket, &sort, s.descending, after.as_ref(), want, ids).await?)
            }
            None => (BATCH, meta.scan(&s.bucket, &sort, s.descending, after.as_ref(), BATCH).await?),
        };
        let done = (batch.len() as u32) < want;
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
    let indexed = ids.is_some();
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
