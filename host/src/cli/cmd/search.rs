//! `strata search`: find objects by a metadata query.

use anyhow::bail;

use crate::api::pb;
use crate::cli::client::{Client, partial, status};
use crate::cli::output;

/// The fields of `strata search` (a struct: too many, and too alike, to pass one by one).
pub struct SearchArgs {
    pub query: Option<String>,
    pub bucket: Option<String>,
    pub sort: Option<String>,
    pub limit: u32,
    pub cursor: Option<String>,
    pub explain: bool,
    pub no_index: bool,
    pub json: bool,
}

pub async fn run(c: &mut Client, args: SearchArgs, allow_partial: bool) -> anyhow::Result<()> {
    let SearchArgs { query, bucket, sort, limit, cursor, explain, no_index, json } = args;
    let filter = match query.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        None => None,
        Some(q) => match crate::search::parse(q) {
            Ok(expr) => Some(filter_of(&expr)),
            Err(e) => {
                eprintln!("{}", e.pointer(q));
                bail!("bad query {e}");
            }
        },
    };
    let (sort, descending) = match sort.as_deref() {
        Some("-") => bail!("--sort - names no field: give one after the '-' (--sort -size)"),
        Some(s) => s.strip_prefix('-').map_or((s.to_string(), false), |f| (f.to_string(), true)),
        None => (String::new(), false),
    };
    let req = pb::SearchRequest {
        bucket: bucket.clone().unwrap_or_default(),
        filter,
        sort,
        descending,
        limit,
        cursor: cursor.clone().unwrap_or_default(),
        no_index,
    };
    let r = c.search(req).await.map_err(status)?.into_inner();
    output::search(&r, explain, json);
    partial(&r.missing, allow_partial)
}

/// The structured filter the API takes, from a parsed query.
pub(crate) fn filter_of(e: &crate::search::Expr) -> pb::Filter {
    use crate::search::{Expr, Literal};
    let kind = match e {
        Expr::And(parts) => pb::filter::Kind::All(pb::FilterList { filters: parts.iter().map(filter_of).collect() }),
        Expr::Or(parts) => pb::filter::Kind::Any(pb::FilterList { filters: parts.iter().map(filter_of).collect() }),
        Expr::Cond(c) => pb::filter::Kind::Condition(pb::Condition {
            field: c.field.to_string(),
            op: format!("{:?}", c.op).to_lowercase(),
            values: c
                .operands
                .iter()
                .map(|l| pb::Value {
                    kind: Some(match l {
                        Literal::Text(t) => pb::value::Kind::String(t.clone()),
                        Literal::Number(n) => pb::value::Kind::Number(*n),
                        Literal::Bool(b) => pb::value::Kind::Boolean(*b),
                    }),
                })
                .collect(),
        }),
    };
    pb::Filter { kind: Some(kind) }
}
