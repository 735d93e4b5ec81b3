//! Running a search. Today every search scans the bucket's live objects in
//! the sort order and keeps those the filter matches; the metadata issue
//! adds indexes and a planner that uses them.

use std::time::{Duration, Instant};

use super::eval::{Doc, matches};
use super::query::{Expr, Field};
use crate::meta::{MetaError, MetaStore, ObjectRecord, Position, SortField};

/// Objects read from the store per round trip.
const BATCH: u32 = 512;

#[derive(Debug, Clone)]
pub struct Search {
    pub bucket: String,
    pub filter: Option<Expr>,
    pub sort: Field,
    pub descending: bool,
    pub limit: u32,
    /// Resume after this position (from a previous page's cursor).
    pub after: Option<Position>,
}

#[derive(Debug)]
pub struct Found {
    pub records: Vec<ObjectRecord>,
    /// Where the next page starts; none when this page is the last.
    pub next: Option<Position>,
    /// Objects read to answer.
    pub scanned: u64,
    pub took: Duration,
    /// How the answer was found, for `--explain`.
    pub plan: String,
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
    let digest = r.digest.map(|d| d.to_string());
    let d = Doc {
        key: &r.key,
        size: r.size,
        content_type: &r.content_type,
        created_ms: r.created_ms,
        modified_ms: r.modified_ms,
        digest: digest.as_deref(),
        attributes: &r.attributes,
    };
    matches(filter, &d)
}

pub async fn run(meta: &MetaStore, s: &Search) -> Result<Found, MetaError> {
    let started = Instant::now();
    let sort = sort_field(&s.sort);
    let mut after = s.after.clone();
    let mut records = Vec::new();
    let mut scanned = 0u64;
    let mut next = None;
    'pages: loop {
        let batch = meta.scan(&s.bucket, &sort, s.descending, after.as_ref(), BATCH).await?;
        let done = (batch.len() as u32) < BATCH;
        for (record, position) in batch {
            scanned += 1;
            if keep(s.filter.as_ref(), &record) {
                records.push(record);
                if records.len() as u32 == s.limit {
                    next = Some(position);
                    break 'pages;
                }
            }
            // The next batch resumes after the last object read.
            after = Some(position);
        }
        if done {
            break;
        }
    }
    let plan = format!(
        "scan bucket {:?} in {} {} order, filter each object ({})",
        s.bucket,
        s.sort,
        if s.descending { "descending" } else { "ascending" },
        if s.filter.is_some() { "no index serves it yet" } else { "no filter" },
    );
    Ok(Found { records, next, scanned, took: started.elapsed(), plan })
}
