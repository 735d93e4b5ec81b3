//! Search over object metadata: the query language, what a condition
//! means ([`eval`], the reference every plan must agree with), and running a
//! search: with index plugins' candidates ([`index`]) or by a scan.

pub mod eval;
pub mod index;
pub mod parse;
pub mod query;
pub mod run;

pub use parse::{ParseError, parse};
pub use query::{Condition, Expr, Field, Literal, Op};

#[cfg(test)]
mod tests;
