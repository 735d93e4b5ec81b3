//! SQL whose text is assembled from fixed fragments (filters, sorts, index
//! lookups), with every value bound.

use sqlx::AssertSqlSafe;
use sqlx::sqlite::{Sqlite, SqliteArguments};

/// A value bound to the next `?`.
pub(super) enum Bind {
    Text(String),
    Int(i64),
    Real(f64),
    Blob(Vec<u8>),
}

/// The query with its values bound in order.
pub(super) fn query<'q>(sql: String, binds: Vec<Bind>) -> sqlx::query::Query<'q, Sqlite, SqliteArguments> {
    // Callers build the text only from fixed fragments; values never enter it.
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(i) => q.bind(i),
            Bind::Real(r) => q.bind(r),
            Bind::Blob(b) => q.bind(b),
        };
    }
    q
}
