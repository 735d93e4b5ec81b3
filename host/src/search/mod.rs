//! Search over object metadata: the query language, what a condition
//! means ([`eval`], the reference every plan must agree with), and running a
//! search. Today a search scans; indexes and a planner come next.

pub mod eval;
pub mod parse;
pub mod query;
pub mod run;

pub use parse::{ParseError, parse};
pub use query::{Condition, Expr, Field, Literal, Op};
