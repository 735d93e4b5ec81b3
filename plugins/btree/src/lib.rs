//! An ordered index: values encoded so that bytes sort as the values do,
//! which answers equality, ranges and prefixes. Over several
//! fields the term is the tuple of their encodings, which serves conditions
//! on the first field; a field without a comparable value (null, NaN, a
//! list) takes a placeholder that sorts outside every value's span, so the
//! object is still indexed. A single-field index skips such objects.

use strata_sdk::index::encode::{self, prefix_successor};
use strata_sdk::index::{Bound, Condition, IndexType, Lookup, Op, Term, TermMatch};
use strata_sdk::{Config, PluginError, Value};

struct BTree;

fn encoded(v: &Value) -> Result<Vec<u8>, PluginError> {
    let mut out = Vec::new();
    if encode::value(&mut out, v) {
        Ok(out)
    } else {
        Err(PluginError::InvalidInput(format!("{v:?} cannot be compared in an ordered index")))
    }
}

/// The encodings of the operand's own type span [tag, tag + 1).
fn type_span(term: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (vec![term[0]], vec![term[0] + 1])
}

/// Placeholder of a field with no comparable value, below every value.
const ABSENT: u8 = 0x00;
/// Every value's encoding lies in [VALUES_START, VALUES_END).
const VALUES_START: u8 = encode::BOOL;
const VALUES_END: u8 = encode::TEXT + 1;

fn range(lower: Option<(Vec<u8>, bool)>, upper: Option<(Vec<u8>, bool)>) -> TermMatch {
    let b = |(term, inclusive)| Bound { term, inclusive };
    TermMatch::Range { lower: lower.map(b), upper: upper.map(b) }
}

impl IndexType for BTree {
    const NAME: &'static str = "btree";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "ordered: eq, ne, ranges, in, prefix";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&[])?;
        Ok(BTree)
    }

    fn terms(&self, values: &[Value]) -> Result<Vec<Term>, PluginError> {
        let mut term = Vec::new();
        for v in values {
            if !encode::value(&mut term, v) {
                if values.len() == 1 {
                    return Ok(vec![]);
                }
                term.push(ABSENT);
            }
        }
        Ok(if term.is_empty() { vec![] } else { vec![term] })
    }

    fn lookup(&self, c: &Condition) -> Result<Option<Lookup>, PluginError> {
        if c.field != 0 {
            return Ok(None);
        }
        // A term is the tuple's encoding: `key` and every longer term that
        // starts with it belong to the value; `after` is the first term
        // beyond them.
        let at_least = |key: Vec<u8>| (key, true);
        // Every key starts with a type tag below 0xFF, so it has a successor.
        let after = |key: &[u8]| prefix_successor(key).map(|s| (s, true));
        let values_start = Some((vec![VALUES_START], true));
        let values_end = Some((vec![VALUES_END], false));
        let m = match c.op {
            Op::Eq => Lookup::any([TermMatch::Prefix(encoded(c.operand()?)?)]),
            Op::In => {
                let keys = c.operands.iter().map(encoded).collect::<Result<Vec<_>, _>>()?;
                Lookup::any(keys.into_iter().map(TermMatch::Prefix))
            }
            Op::Ne => {
                let key = encoded(c.operand()?)?;
                Lookup::any([range(values_start, Some((key.clone(), false))), range(after(&key), values_end)])
            }
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                let key = encoded(c.operand()?)?;
                let (lo, hi) = type_span(&key);
                let m = match c.op {
                    Op::Gt => range(after(&key), Some((hi, false))),
                    Op::Gte => range(Some(at_least(key)), Some((hi, false))),
                    Op::Lt => range(Some((lo, true)), Some((key, false))),
                    _ => range(Some((lo, true)), after(&key).map(|(s, _)| (s, false))),
                };
                Lookup::any([m])
            }
            Op::Prefix => match c.operand()? {
                Value::Text(p) => {
                    let mut key = vec![encode::TEXT];
                    encode::text_body(&mut key, p);
                    Lookup::any([TermMatch::Prefix(key)])
                }
                _ => return Ok(None),
            },
            // Exists holds for lists too, which this index does not store.
            Op::Exists => return Ok(None),
            Op::Contains | Op::Match => return Ok(None),
        };
        Ok(Some(m))
    }
}

strata_sdk::export_index_type!(BTree);
