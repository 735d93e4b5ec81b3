//! Search: a structured filter, sort and page, answered by [`crate::search`].

use super::error::{ApiError, invalid};
use super::{Limits, object_info, pb, validate};
use crate::meta::Position;
use crate::search::{Condition, Expr, Field, Literal, Op, run};
use crate::service::{Merged, ObjectService};

/// Deepest nesting of all/any, and most conditions, one filter may have.
const MAX_DEPTH: usize = 16;
const MAX_CONDITIONS: usize = 256;
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;

fn literal(v: pb::Value, at: &str) -> Result<Literal, ApiError> {
    match v.kind {
        Some(pb::value::Kind::String(s)) => Ok(Literal::Text(s)),
        Some(pb::value::Kind::Number(n)) => Ok(Literal::Number(n)),
        Some(pb::value::Kind::Boolean(b)) => Ok(Literal::Bool(b)),
        _ => Err(invalid(format!("{at}: values are strings, numbers or booleans"))),
    }
}

fn filter(f: pb::Filter, depth: usize, count: &mut usize, at: &str) -> Result<Expr, ApiError> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!("{at}: filters nest at most {MAX_DEPTH} deep")));
    }
    let list = |l: pb::FilterList, count: &mut usize| -> Result<Vec<Expr>, ApiError> {
        if l.filters.is_empty() {
            return Err(invalid(format!("{at}: an empty all/any")));
        }
        l.filters.into_iter().enumerate().map(|(i, f)| filter(f, depth + 1, count, &format!("{at}[{i}]"))).collect()
    };
    match f.kind {
        Some(pb::filter::Kind::All(l)) => Ok(Expr::And(list(l, count)?)),
        Some(pb::filter::Kind::Any(l)) => Ok(Expr::Or(list(l, count)?)),
        Some(pb::filter::Kind::Condition(c)) => {
            *count += 1;
            if *count > MAX_CONDITIONS {
                return Err(invalid(format!("a filter has at most {MAX_CONDITIONS} conditions")));
            }
            if c.field.is_empty() || c.field.split('.').any(str::is_empty) {
                return Err(invalid(format!("{at}.field: give a field name such as size or model.family")));
            }
            let op = Op::parse(&c.op).ok_or_else(|| {
                invalid(format!("{at}.op: {:?} is not one of eq, ne, gt, gte, lt, lte, in, prefix, contains, exists, match", c.op))
            })?;
            let operands = c.values.into_iter().map(|v| literal(v, at)).collect::<Result<_, _>>()?;
            let cond = Condition { field: Field::parse(&c.field), op, operands };
            cond.check().map_err(|m| invalid(format!("{at}: {m}")))?;
            Ok(Expr::Cond(cond))
        }
        None => Err(invalid(format!("{at}: set condition, all or any"))),
    }
}

/// What a cursor holds: where the next page starts, and the search it
/// belongs to (a position means nothing in another order or bucket).
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    at: Position,
    bucket: String,
    sort: String,
    descending: bool,
}

fn cursor(raw: &str, s: &run::Search) -> Result<Option<Position>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bytes = hex::decode(raw).map_err(|_| invalid("cursor: not one this server gave out"))?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid("cursor: not one this server gave out"))?;
    let sort = s.sort.to_string();
    if c.bucket != s.bucket || c.sort != sort || c.descending != s.descending {
        let dir = |d: bool| if d { "descending" } else { "ascending" };
        return Err(invalid(format!(
            "cursor: it continues a search of bucket {:?} by {} {}, not of {:?} by {sort} {}; repeat that search's bucket and sort",
            c.bucket,
            c.sort,
            dir(c.descending),
            s.bucket,
            dir(s.descending)
        )));
    }
    // Sorted by key, the value is the key: the index and the scan resume
    // from different halves of a forged position, so refuse one.
    if s.sort == Field::Key {
        let sound = match &c.at {
            Position::Valued { value: crate::meta::SortValue::Text(v), key } => v == key,
            _ => false,
        };
        if !sound {
            return Err(invalid("cursor: not one this server gave out"));
        }
    }
    Ok(Some(c.at))
}

pub async fn handle_search(service: &dyn ObjectService, limits: &Limits, req: pb::SearchRequest) -> Result<pb::SearchResponse, ApiError> {
    let bucket = validate::bucket(&req.bucket)?;
    let req_no_index = req.no_index;
    let filter = match req.filter {
        Some(f) => Some(filter(f, 0, &mut 0, "filter")?),
        None => None,
    };
    let sort = if req.sort.is_empty() { Field::Key } else { Field::parse(&req.sort) };
    let limit = match req.limit {
        0 => DEFAULT_LIMIT,
        n if n > MAX_LIMIT => return Err(invalid(format!("limit: at most {MAX_LIMIT}"))),
        n => n,
    };
    let mut search =
        run::Search { bucket, filter, sort, descending: req.descending, limit, after: None, max_bytes: limits.max_reply_bytes };
    search.after = cursor(&req.cursor, &search)?;
    let Merged { value: found, missing } = service.search(&search, !req_no_index).await?;
    let next_cursor = match found.next {
        Some(at) => {
            let c = Cursor { at, bucket: search.bucket.clone(), sort: search.sort.to_string(), descending: search.descending };
            hex::encode(serde_json::to_vec(&c).expect("a cursor serializes"))
        }
        None => String::new(),
    };
    Ok(pb::SearchResponse {
        objects: found.records.iter().map(object_info).collect(),
        next_cursor,
        took_ms: found.took.as_secs_f64() * 1e3,
        plan: found.plan,
        scanned: found.scanned,
        indexed: found.indexed,
        missing,
    })
}
