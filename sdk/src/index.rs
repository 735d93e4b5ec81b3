//! Index types: the terms an object's field values index under, and which
//! terms answer a query condition. The host stores the terms (as SQLite
//! BLOBs, compared bytewise) and runs the lookups; the plugin only computes.

use crate::{Config, PluginError, Value};

/// An index term: bytes the host stores and compares bytewise.
pub type Term = Vec<u8>;

/// A query operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Equal to one of the operands.
    In,
    /// Text starting with the operand.
    Prefix,
    /// A list holding the operand.
    Contains,
    /// The field is present.
    Exists,
    /// Full-text match: every word of the operand.
    Match,
}

/// A condition on one of the index's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Position of the field among the index's fields.
    pub field: u32,
    /// How many fields the index has.
    pub fields: u32,
    /// The operator.
    pub op: Op,
    /// One operand for most operators, several for `In`, none for `Exists`.
    pub operands: Vec<Value>,
}

impl Condition {
    /// The single operand, or an error for a condition without exactly one.
    pub fn operand(&self) -> Result<&Value, PluginError> {
        match self.operands.as_slice() {
            [v] => Ok(v),
            other => Err(PluginError::InvalidInput(format!("{:?} takes one operand, got {}", self.op, other.len()))),
        }
    }
}

/// One end of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The bounding term.
    pub term: Term,
    /// Whether the term itself is in the range.
    pub inclusive: bool,
}

/// Which stored terms a lookup wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermMatch {
    /// This term.
    Exact(Term),
    /// Terms starting with these bytes.
    Prefix(Term),
    /// Terms between two bounds (either may be open).
    Range {
        /// Lower bound; none for unbounded.
        lower: Option<Bound>,
        /// Upper bound; none for unbounded.
        upper: Option<Bound>,
    },
}

/// How a condition is answered: objects matching every `TermMatch` of some
/// group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// An OR of ANDs.
    pub groups: Vec<Vec<TermMatch>>,
    /// False when the answer may hold extra objects the host must recheck.
    pub exact: bool,
}

impl Lookup {
    /// Any of these matches, exactly.
    pub fn any(matches: impl IntoIterator<Item = TermMatch>) -> Self {
        Self { groups: matches.into_iter().map(|m| vec![m]).collect(), exact: true }
    }

    /// All of these matches, exactly.
    pub fn all(matches: impl IntoIterator<Item = TermMatch>) -> Self {
        Self { groups: vec![matches.into_iter().collect()], exact: true }
    }
}

/// An index type.
pub trait IndexType: Sized + 'static {
    /// The plugin's name for itself.
    const NAME: &'static str;
    /// Semantic version.
    const VERSION: &'static str;
    /// One line on what it does.
    const DESCRIPTION: &'static str;

    /// Build from the plugin's config table; an error stops the server.
    fn new(config: &Config) -> Result<Self, String>;

    /// The terms one object indexes under; `values` are its values of the
    /// index's fields, in order (`Value::Null` when absent).
    fn terms(&self, values: &[Value]) -> Result<Vec<Term>, PluginError>;

    /// How to answer `condition`, or `None` when this index cannot.
    fn lookup(&self, condition: &Condition) -> Result<Option<Lookup>, PluginError>;
}

/// Export `$ty` (an [`IndexType`]) as the component's `index-type` world.
/// Needs the `index-type` feature.
#[cfg(feature = "index-type")]
#[macro_export]
#[rustfmt::skip] // rustfmt does not settle on one layout for the macro body
macro_rules! export_index_type {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::exports::strata::plugin::indexer as __i;
            use $crate::bindings::strata::plugin::types as __t;

            $crate::__plugin_state!($ty);

            struct Export;

            $crate::__plugin_lifecycle!($ty, $crate::index::IndexType);

            impl __i::Guest for Export {
                fn terms(
                    docs: ::std::vec::Vec<::std::vec::Vec<__t::Value>>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<::std::vec::Vec<::std::vec::Vec<u8>>>,
                    __t::PluginError,
                > {
                    with(|p| {
                        docs.into_iter()
                            .map(|doc| {
                                let values: ::std::vec::Vec<$crate::Value> =
                                    doc.into_iter().map($crate::__glue::value).collect();
                                <$ty as $crate::index::IndexType>::terms(p, &values)
                            })
                            .collect()
                    })
                }
                fn lookup(
                    condition: __i::Condition,
                ) -> ::std::result::Result<::std::option::Option<__i::LookupPlan>, __t::PluginError> {
                    let condition = $crate::__glue::condition(condition);
                    with(|p| <$ty as $crate::index::IndexType>::lookup(p, &condition))
                        .map(|l| l.map($crate::__glue::lookup))
                }
            }

            $crate::bindings::export!(Export with_types_in $crate::bindings);
        };
    };
}

/// An order-preserving encoding of scalar values, for index types that
/// store values as terms.
///
/// Bytes compare in the same order as the values: booleans, then numbers,
/// then text, each type in its natural order; every encoding is
/// self-delimiting, so a concatenation orders like a tuple and an encoded
/// value is a prefix of every tuple that starts with it.
pub mod encode {
    use crate::{Scalar, Value};

    /// Leading byte of booleans.
    pub const BOOL: u8 = 0x10;
    /// Leading byte of numbers.
    pub const NUMBER: u8 = 0x20;
    /// Leading byte of text.
    pub const TEXT: u8 = 0x30;

    /// Append the encoding of `value`; false for values with none (null,
    /// NaN, lists).
    pub fn value(out: &mut Vec<u8>, value: &Value) -> bool {
        match value {
            Value::Null | Value::List(_) => false,
            Value::Bool(b) => scalar(out, &Scalar::Bool(*b)),
            Value::Number(n) => scalar(out, &Scalar::Number(*n)),
            Value::Text(t) => {
                text(out, t);
                true
            }
        }
    }

    /// Append the encoding of `scalar`; false for null and NaN.
    pub fn scalar(out: &mut Vec<u8>, scalar: &Scalar) -> bool {
        match scalar {
            Scalar::Null => false,
            Scalar::Bool(b) => {
                out.extend([BOOL, *b as u8]);
                true
            }
            Scalar::Number(n) if n.is_nan() => false,
            Scalar::Number(n) => {
                out.push(NUMBER);
                out.extend(number(*n));
                true
            }
            Scalar::Text(t) => {
                text(out, t);
                true
            }
        }
    }

    /// The 8 bytes of `n` that sort as the numbers do (-0.0 equals 0.0).
    pub fn number(n: f64) -> [u8; 8] {
        let n = if n == 0.0 { 0.0 } else { n };
        let bits = n.to_bits();
        let ordered = if bits >> 63 == 1 { !bits } else { bits | 1 << 63 };
        ordered.to_be_bytes()
    }

    /// Append `t`: its bytes with 0x00 escaped as 0x00 0xFF, then 0x00 0x01.
    pub fn text(out: &mut Vec<u8>, t: &str) {
        out.push(TEXT);
        text_body(out, t);
        out.extend([0x00, 0x01]);
    }

    /// Append `t` escaped without the terminator: the prefix shared by the
    /// encodings of all text starting with `t`.
    pub fn text_body(out: &mut Vec<u8>, t: &str) {
        for &b in t.as_bytes() {
            out.push(b);
            if b == 0 {
                out.push(0xFF);
            }
        }
    }

    /// The smallest byte string greater than every string starting with
    /// `prefix`, or none when there is none (all 0xFF).
    pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
        let mut s = prefix.to_vec();
        while let Some(last) = s.pop() {
            if last < 0xFF {
                s.push(last + 1);
                return Some(s);
            }
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn enc(v: Scalar) -> Vec<u8> {
            let mut out = Vec::new();
            assert!(scalar(&mut out, &v));
            out
        }

        #[test]
        fn numbers_sort_as_numbers() {
            let xs = [f64::NEG_INFINITY, -1e300, -2.5, -1.0, -0.0, 0.0, 1e-300, 1.0, 2.5, 1e300];
            for w in xs.windows(2) {
                assert!(number(w[0]) <= number(w[1]), "{} vs {}", w[0], w[1]);
            }
            assert_eq!(number(-0.0), number(0.0));
        }

        #[test]
        fn text_sorts_and_delimits() {
            let ts = ["", "a", "a\0", "a\0b", "ab", "b"];
            for w in ts.windows(2) {
                assert!(enc(Scalar::Text(w[0].into())) < enc(Scalar::Text(w[1].into())));
            }
            assert!(enc(Scalar::Bool(true)) < enc(Scalar::Number(-1e300)));
            assert!(enc(Scalar::Number(1e300)) < enc(Scalar::Text(String::new())));
        }

        #[test]
        fn successor_bounds_a_prefix() {
            assert_eq!(prefix_successor(&[1, 2]), Some(vec![1, 3]));
            assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
            assert_eq!(prefix_successor(&[0xFF]), None);
        }
    }
}
