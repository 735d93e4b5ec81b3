//! Search over object metadata: the query language and what a condition
//! means. Nothing calls it yet: the metadata issue builds the search API,
//! indexes and the planner on it, with [`eval`] as the meaning both the scan
//! and the indexed plans must agree with.

pub mod eval;
pub mod parse;
pub mod query;

pub use parse::{ParseError, parse};
pub use query::{Condition, Expr, Field, Literal, Op};
