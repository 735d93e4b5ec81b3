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

/// Statements sent to SQLite's worker thread together. A statement sent
/// alone costs a round trip to that thread (two thread wake-ups, 100 to
/// 200 µs on a busy 2-core machine), far more than SQLite's work for one
/// statement of a batch; so a batch sends its reads as one script and its
/// writes as another. The statements run in order, each binding the next
/// of the script's values: use plain `?` only (a numbered `?N` would count
/// from the start of the script).
#[derive(Default)]
pub(super) struct Script {
    sql: String,
    binds: Vec<Bind>,
    statements: usize,
}

impl Script {
    /// Adds a statement, with the values of its `?`s in order; returns its
    /// place among the script's statements (for [`Script::fetch`]).
    pub(super) fn push(&mut self, sql: &str, binds: impl IntoIterator<Item = Bind>) -> usize {
        // A statement given the wrong number of values would shift every
        // later statement's (and a shortfall at the end binds NULL): the
        // SQL is fixed text, so this is a bug to catch in every build.
        let before = self.binds.len();
        self.binds.extend(binds);
        let marks = sql.matches('?').count();
        assert!(!sql.contains(';'), "one statement per push: {sql}");
        assert!(sql.bytes().all(|b| !matches!(b, b':' | b'@' | b'$')), "plain `?` parameters only: {sql}");
        assert!(!sql.as_bytes().windows(2).any(|w| w[0] == b'?' && w[1].is_ascii_digit()), "plain `?` parameters only: {sql}");
        assert_eq!(marks, self.binds.len() - before, "one value per `?`: {sql}");
        self.sql.push_str(sql);
        self.sql.push_str(";\n");
        self.statements += 1;
        self.statements - 1
    }

    pub(super) fn is_empty(&self) -> bool {
        self.statements == 0
    }

    /// Runs the script; returns the rows of each statement, in order.
    pub(super) async fn fetch(self, conn: &mut sqlx::SqliteConnection) -> Result<Vec<Vec<sqlx::sqlite::SqliteRow>>, sqlx::Error> {
        use futures::TryStreamExt as _;
        use sqlx::Executor as _;
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let expected = self.statements;
        // One `Left` (the statement's count of changes) ends each statement.
        let mut out = vec![Vec::new()];
        let mut steps = conn.fetch_many(query(self.sql, self.binds));
        while let Some(step) = steps.try_next().await? {
            match step {
                sqlx::Either::Left(_) => out.push(Vec::new()),
                sqlx::Either::Right(row) => out.last_mut().expect("never empty").push(row),
            }
        }
        out.pop();
        if out.len() != expected {
            return Err(sqlx::Error::Protocol(format!("a script of {expected} statements ran {}", out.len())));
        }
        Ok(out)
    }

    /// Runs the script for its effects.
    pub(super) async fn execute(self, conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
        self.fetch(conn).await.map(drop)
    }
}
