//! An equality index: each value's canonical encoding hashed (XXH3-64) to
//! eight bytes, small whatever the value's size. Covers one field and serves eq
//! and in; hashes can collide, so the host rechecks the hits.

use strata_sdk::index::encode;
use strata_sdk::index::{Condition, IndexType, Lookup, Op, Term, TermMatch};
use strata_sdk::{Config, PluginError, Value};

struct Hash;

fn hashed(values: &[Value]) -> Option<Term> {
    let mut buf = Vec::new();
    for v in values {
        if !encode::value(&mut buf, v) {
            return None;
        }
    }
    Some(xxhash_rust::xxh3::xxh3_64(&buf).to_be_bytes().to_vec())
}

impl IndexType for Hash {
    const NAME: &'static str = "hash";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "equality: eq and in, with fixed-size terms";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&[])?;
        Ok(Hash)
    }

    fn terms(&self, values: &[Value]) -> Result<Vec<Term>, PluginError> {
        if values.len() != 1 {
            return Err(PluginError::InvalidInput(format!(
                "a hash index covers one field, not {}",
                values.len()
            )));
        }
        Ok(hashed(values).into_iter().collect())
    }

    fn lookup(&self, c: &Condition) -> Result<Option<Lookup>, PluginError> {
        if c.fields != 1 {
            return Ok(None);
        }
        let operands: &[Value] = match c.op {
            Op::Eq => std::slice::from_ref(c.operand()?),
            Op::In => &c.operands,
            _ => return Ok(None),
        };
        let mut terms = Vec::new();
        for v in operands {
            match hashed(std::slice::from_ref(v)) {
                Some(t) => terms.push(TermMatch::Exact(t)),
                None => return Err(PluginError::InvalidInput(format!("{v:?} cannot be hashed for equality"))),
            }
        }
        Ok(Some(Lookup { exact: false, ..Lookup::any(terms) }))
    }
}

strata_sdk::export_index_type!(Hash);
