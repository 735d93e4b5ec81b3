//! A full-text index: text (and lists of text) split into words at every
//! character that is not alphanumeric, lower-cased; each distinct word is a
//! term (the words of all the index's fields together). `match` wants every word of its operand; `contains` and `eq` use
//! the same words as a filter the host rechecks.

use std::collections::BTreeSet;

use strata_sdk::index::{Condition, IndexType, Lookup, Op, Term, TermMatch};
use strata_sdk::{Config, PluginError, Scalar, Value};

struct FullText {
    /// Words shorter than this (in characters) are not indexed.
    min_length: usize,
}

impl FullText {
    fn words(&self, text: &str, out: &mut BTreeSet<String>) {
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if !word.is_empty() && word.chars().count() >= self.min_length {
                out.insert(word.to_lowercase());
            }
        }
    }

    fn value_words(&self, v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Text(t) => self.words(t, out),
            Value::List(items) => {
                for item in items {
                    if let Scalar::Text(t) = item {
                        self.words(t, out);
                    }
                }
            }
            _ => {}
        }
    }
}

impl IndexType for FullText {
    const NAME: &'static str = "fulltext";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "full text: lower-cased words; match, and a filter for contains";

    fn new(config: &Config) -> Result<Self, String> {
        config.only(&["min_length"])?;
        let min_length = config.parse_or("min_length", 1usize)?.max(1);
        Ok(Self { min_length })
    }

    fn terms(&self, values: &[Value]) -> Result<Vec<Term>, PluginError> {
        let mut words = BTreeSet::new();
        for v in values {
            self.value_words(v, &mut words);
        }
        Ok(words.into_iter().map(String::into_bytes).collect())
    }

    fn lookup(&self, c: &Condition) -> Result<Option<Lookup>, PluginError> {
        let exact = match c.op {
            // Words of other fields share the terms: only one field is exact.
            Op::Match => c.fields == 1,
            Op::Contains | Op::Eq => false,
            _ => return Ok(None),
        };
        let mut words = BTreeSet::new();
        let Value::Text(t) = c.operand()? else {
            return Ok(None);
        };
        self.words(t, &mut words);
        // Words too short to index are not looked up: the answer may then
        // hold objects without them.
        let distinct: BTreeSet<String> =
            t.split(|ch: char| !ch.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
        let exact = exact && words.len() == distinct.len();
        if words.is_empty() {
            // Nothing to look up: a word filter cannot narrow the search.
            return Ok(None);
        }
        let matches = words.into_iter().map(|w| TermMatch::Exact(w.into_bytes()));
        Ok(Some(Lookup { exact, ..Lookup::all(matches) }))
    }
}

strata_sdk::export_index_type!(FullText);
