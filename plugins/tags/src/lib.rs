//! A membership index for list attributes (tags): one term per distinct
//! element, so `contains` finds every object whose list holds a value.
//! Scalars are not lists and get no terms.

use std::collections::BTreeSet;

use strata_sdk::index::encode;
use strata_sdk::index::{Condition, IndexType, Lookup, Op, Term, TermMatch};
use strata_sdk::{Config, PluginError, Scalar, Value};

struct Tags;

fn scalar_of(v: &Value) -> Option<Scalar> {
    match v {
        Value::Null | Value::List(_) => None,
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) => Some(Scalar::Number(*n)),
        Value::Text(t) => Some(Scalar::Text(t.clone())),
    }
}

fn term(s: &Scalar) -> Option<Term> {
    let mut out = Vec::new();
    encode::scalar(&mut out, s).then_some(out)
}

impl IndexType for Tags {
    const NAME: &'static str = "tags";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "list membership: contains";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&[])?;
        Ok(Tags)
    }

    fn terms(&self, values: &[Value]) -> Result<Vec<Term>, PluginError> {
        if values.len() != 1 {
            return Err(PluginError::InvalidInput(format!(
                "a tags index covers one field, not {}",
                values.len()
            )));
        }
        let mut terms = BTreeSet::new();
        for v in values {
            if let Value::List(items) = v {
                terms.extend(items.iter().filter_map(term));
            }
        }
        Ok(terms.into_iter().collect())
    }

    fn lookup(&self, c: &Condition) -> Result<Option<Lookup>, PluginError> {
        if c.fields != 1 {
            return Ok(None);
        }
        if c.op != Op::Contains {
            return Ok(None);
        }
        let Some(t) = scalar_of(c.operand()?).as_ref().and_then(term) else {
            return Ok(None);
        };
        Ok(Some(Lookup::any([TermMatch::Exact(t)])))
    }
}

strata_sdk::export_index_type!(Tags);
