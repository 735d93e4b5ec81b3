//! Live objects in the order of one field, a page at a time, for search.
//!
//! Keyset paging: a page starts after a position (the sort value and the
//! key of the last object seen), so pages stay correct while objects come
//! and go. Objects without a value for the sort field come last, in key
//! order, whichever the direction.

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::bind::{Bind, query};
use super::sql::record;
use super::{MetaError, ObjectRecord};

/// What a scan orders by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortField {
    Key,
    Size,
    ContentType,
    Created,
    Modified,
    Digest,
    /// A user attribute by path components.
    Attribute(Vec<String>),
}

/// A sort value as SQLite holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SortValue {
    Int(i64),
    Real(f64),
    Text(String),
}

/// Where a scan resumes: after this object.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Position {
    /// Among objects with a sort value.
    Valued { value: SortValue, key: String },
    /// Among objects without one (after all those with one).
    Unvalued { key: String },
}

/// The `json_extract` path of an attribute. Attributes are flat, so a
/// dotted name is one quoted key.
fn json_path(parts: &[String]) -> String {
    let name = parts.join(".");
    format!("$.\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

const COLUMNS: &str = "v.id, v.bucket, v.key, v.version, v.stamp, v.digest, v.size, \
     v.content_type, v.attributes, v.created_ms, v.modified_ms";

/// Up to `limit` live objects of `bucket` after `after`, in `sort` order,
/// each with its position; with `only` (a JSON array of version ids), just
/// those. Fewer than `limit` means the scan is done.
pub async fn scan(
    conn: &mut SqliteConnection,
    bucket: &str,
    sort: &SortField,
    descending: bool,
    after: Option<&Position>,
    limit: u32,
    only: Option<&str>,
) -> Result<Vec<(ObjectRecord, Position)>, MetaError> {
    // Restricted to a candidate list, the list drives the join (CROSS JOIN
    // fixes the order): each id is a rowid lookup, never a pass over the
    // bucket.
    let ids = only.map(str::to_string);
    let from = if ids.is_some() {
        "FROM json_each(?) c CROSS JOIN versions v ON v.id = c.value CROSS JOIN objects o ON o.version_id = v.id"
    } else {
        "FROM objects o JOIN versions v ON v.id = o.version_id"
    };
    let (expr, path) = match sort {
        SortField::Key => ("o.key", None),
        SortField::Size => ("v.size", None),
        SortField::ContentType => ("v.content_type", None),
        SortField::Created => ("v.created_ms", None),
        SortField::Modified => ("v.modified_ms", None),
        SortField::Digest => ("lower(hex(v.digest))", None),
        SortField::Attribute(parts) => ("json_extract(v.attributes, ?)", Some(json_path(parts))),
    };
    let (dir, cmp) = if descending { ("DESC", "<") } else { ("ASC", ">") };
    let mut out = Vec::new();
    // Valued objects first (unless the page starts among the unvalued).
    if !matches!(after, Some(Position::Unvalued { .. })) {
        let mut binds = Vec::new();
        // With candidates, the page is chosen first from narrow rows (for a
        // key sort, from the objects index alone), and only its rows are
        // then read whole: the sort never carries every candidate's
        // attributes.
        let mut sql = match &ids {
            None => format!("SELECT {COLUMNS}, {expr} AS sv, typeof({expr}) AS st {from} WHERE o.bucket = ? AND {expr} IS NOT NULL"),
            Some(_) => {
                let inner_from = if matches!(sort, SortField::Key) {
                    "FROM json_each(?) c CROSS JOIN objects o ON o.version_id = c.value"
                } else {
                    from
                };
                format!(
                    "SELECT {COLUMNS}, {expr} AS sv, typeof({expr}) AS st FROM (\
                     SELECT o.version_id AS pid {inner_from} WHERE o.bucket = ? AND {expr} IS NOT NULL"
                )
            }
        };
        binds.extend(path.iter().map(|p| Bind::Text(p.clone())));
        binds.extend(path.iter().map(|p| Bind::Text(p.clone())));
        binds.extend(ids.iter().map(|j| Bind::Text(j.clone())));
        binds.push(Bind::Text(bucket.into()));
        binds.extend(path.iter().map(|p| Bind::Text(p.clone())));
        if let Some(Position::Valued { value, key }) = after {
            sql.push_str(&format!(" AND ({expr}, o.key) {cmp} (?, ?)"));
            binds.extend(path.iter().map(|p| Bind::Text(p.clone())));
            binds.push(match value {
                SortValue::Int(i) => Bind::Int(*i),
                SortValue::Real(r) => Bind::Real(*r),
                SortValue::Text(t) => Bind::Text(t.clone()),
            });
            binds.push(Bind::Text(key.clone()));
        }
        if ids.is_some() {
            sql.push_str(&format!(
                " ORDER BY {expr} {dir}, o.key {dir} LIMIT ?) p \
                 CROSS JOIN versions v ON v.id = p.pid CROSS JOIN objects o ON o.version_id = v.id \
                 ORDER BY sv {dir}, o.key {dir}"
            ));
            binds.extend(path.iter().map(|p| Bind::Text(p.clone())));
            binds.push(Bind::Int(limit as i64));
        } else {
            sql.push_str(&format!(" ORDER BY sv {dir}, o.key {dir} LIMIT ?"));
            binds.push(Bind::Int(limit as i64));
        }
        for row in fetch(&mut *conn, sql, binds).await? {
            let value = match row.try_get::<String, _>("st")?.as_str() {
                "integer" => SortValue::Int(row.try_get("sv")?),
                "real" => SortValue::Real(row.try_get("sv")?),
                _ => SortValue::Text(row.try_get("sv")?),
            };
            let rec = record(&row, Some(row.try_get("id")?))?;
            let key = rec.key.clone();
            out.push((rec, Position::Valued { value, key }));
        }
        if out.len() as u32 == limit {
            return Ok(out);
        }
    }
    if matches!(sort, SortField::Attribute(_) | SortField::Digest) {
        let mut binds = Vec::new();
        let mut sql = format!("SELECT {COLUMNS} {from} WHERE o.bucket = ? AND {expr} IS NULL");
        binds.extend(ids.iter().map(|j| Bind::Text(j.clone())));
        binds.push(Bind::Text(bucket.into()));
        binds.extend(path.iter().map(|p| Bind::Text(p.clone())));
        if let Some(Position::Unvalued { key }) = after {
            sql.push_str(&format!(" AND o.key {cmp} ?"));
            binds.push(Bind::Text(key.clone()));
        }
        sql.push_str(&format!(" ORDER BY o.key {dir} LIMIT ?"));
        binds.push(Bind::Int((limit as usize - out.len()) as i64));
        for row in fetch(&mut *conn, sql, binds).await? {
            let rec = record(&row, Some(row.try_get("id")?))?;
            let key = rec.key.clone();
            out.push((rec, Position::Unvalued { key }));
        }
    }
    Ok(out)
}

async fn fetch(conn: &mut SqliteConnection, sql: String, binds: Vec<Bind>) -> Result<Vec<sqlx::sqlite::SqliteRow>, MetaError> {
    Ok(query(sql, binds).fetch_all(conn).await?)
}

/// The live objects of `bucket` among versions `ids`, in the order of
/// `ids`; versions no longer live are left out.
pub async fn live_in_order(conn: &mut SqliteConnection, bucket: &str, ids: &[i64]) -> Result<Vec<ObjectRecord>, MetaError> {
    let sql = super::sql::records_sql(&format!(
        "SELECT {COLUMNS} FROM json_each(?) c CROSS JOIN objects o ON o.version_id = c.value \
         CROSS JOIN versions v ON v.id = o.version_id WHERE o.bucket = ?"
    ));
    let json = serde_json::to_string(ids).map_err(|e| MetaError::Db(Box::new(e)))?;
    let row = query(sql, vec![Bind::Text(json), Bind::Text(bucket.into())]).fetch_one(conn).await?;
    let mut found: std::collections::HashMap<i64, ObjectRecord> = super::sql::live_records(&row)?.into_iter().collect();
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}
