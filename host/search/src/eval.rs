//! What a condition means, evaluated on one object: the reference that scans
//! use and that indexed answers must equal.
//!
//! Comparisons hold only between values of one type (numbers, text,
//! booleans); `ne` holds for a present scalar of any other value; `exists`
//! for any present, non-null value; `contains` looks inside lists; `match`
//! wants every word of the operand among the text's words (split at
//! non-alphanumerics, case-folded), as the `fulltext` index splits them.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::Value as Json;

use super::query::{Condition, Expr, Field, Literal, Op};

/// The fields of one object that queries see.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    pub key: &'a str,
    pub size: u64,
    pub content_type: &'a str,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// Hex SHA-256; none for a delete marker.
    pub digest: Option<&'a str>,
    pub attributes: &'a serde_json::Map<String, Json>,
}

/// A field's value, borrowed where it can be.
#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Absent,
    Bool(bool),
    Num(f64),
    Text(&'a str),
    List(&'a [Json]),
    /// A JSON object: present, comparable to nothing.
    Object,
}

fn json(v: Option<&Json>) -> Val<'_> {
    match v {
        None | Some(Json::Null) => Val::Absent,
        Some(Json::Bool(b)) => Val::Bool(*b),
        Some(Json::Number(n)) => n.as_f64().map_or(Val::Absent, Val::Num),
        Some(Json::String(s)) => Val::Text(s),
        Some(Json::Array(items)) => Val::List(items),
        Some(Json::Object(_)) => Val::Object,
    }
}

fn field<'a>(doc: &Doc<'a>, f: &Field) -> Val<'a> {
    match f {
        Field::Key => Val::Text(doc.key),
        Field::Size => Val::Num(doc.size as f64),
        Field::ContentType => Val::Text(doc.content_type),
        Field::Created => Val::Num(doc.created_ms as f64),
        Field::Modified => Val::Num(doc.modified_ms as f64),
        Field::Digest => doc.digest.map_or(Val::Absent, Val::Text),
        Field::Attribute(path) => {
            // Attributes are flat: `model.family` names one attribute. A
            // nested object (never stored through the API) is followed too.
            let flat = doc.attributes.get(&path.join("."));
            let nested = || {
                let mut at = doc.attributes.get(&path[0]);
                for part in &path[1..] {
                    at = at.and_then(|v| v.get(part));
                }
                at
            };
            json(flat.or_else(nested))
        }
    }
}

/// A field's value as index plugins receive it: absent and JSON objects
/// are null; list items that are not scalars are null.
pub fn plugin_value(doc: &Doc<'_>, f: &Field) -> strata_plugin::Value {
    use strata_plugin::{Scalar, Value};
    match field(doc, f) {
        Val::Absent | Val::Object => Value::Null,
        Val::Bool(b) => Value::Boolean(b),
        Val::Num(n) => Value::Number(n),
        Val::Text(t) => Value::Text(t.to_string()),
        Val::List(items) => Value::List(
            items
                .iter()
                .map(|item| match json(Some(item)) {
                    Val::Bool(b) => Scalar::Boolean(b),
                    Val::Num(n) => Scalar::Number(n),
                    Val::Text(t) => Scalar::Text(t.to_string()),
                    _ => Scalar::Null,
                })
                .collect(),
        ),
    }
}

/// Same-type order, or none across types.
fn compare(v: &Val<'_>, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (Val::Num(a), Literal::Number(b)) => a.partial_cmp(b),
        (Val::Text(a), Literal::Text(b)) => Some((*a).cmp(b.as_str())),
        (Val::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn is_scalar(v: &Val<'_>) -> bool {
    matches!(v, Val::Bool(_) | Val::Num(_) | Val::Text(_))
}

/// Lower-cased words, split at every character that is not alphanumeric.
pub fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn holds(c: &Condition, doc: &Doc<'_>) -> bool {
    let v = field(doc, &c.field);
    let first = c.operands.first();
    let ord = |lit: &Literal| compare(&v, lit);
    match c.op {
        Op::Exists => v != Val::Absent,
        Op::Eq => first.is_some_and(|l| ord(l) == Some(Ordering::Equal)),
        Op::Ne => is_scalar(&v) && first.is_some_and(|l| ord(l) != Some(Ordering::Equal)),
        Op::Gt => first.is_some_and(|l| ord(l) == Some(Ordering::Greater)),
        Op::Gte => first.is_some_and(|l| matches!(ord(l), Some(Ordering::Greater | Ordering::Equal))),
        Op::Lt => first.is_some_and(|l| ord(l) == Some(Ordering::Less)),
        Op::Lte => first.is_some_and(|l| matches!(ord(l), Some(Ordering::Less | Ordering::Equal))),
        Op::In => c.operands.iter().any(|l| ord(l) == Some(Ordering::Equal)),
        Op::Prefix => matches!((&v, first), (Val::Text(t), Some(Literal::Text(p))) if t.starts_with(p.as_str())),
        Op::Contains => match (&v, first) {
            (Val::List(items), Some(l)) => items.iter().any(|item| compare(&json(Some(item)), l) == Some(Ordering::Equal)),
            _ => false,
        },
        Op::Match => {
            let Some(Literal::Text(q)) = first else { return false };
            let wanted = words(q);
            let have = match &v {
                Val::Text(t) => words(t),
                Val::List(items) => items.iter().filter_map(Json::as_str).flat_map(words).collect(),
                _ => return false,
            };
            !wanted.is_empty() && wanted.is_subset(&have)
        }
    }
}

/// Whether `doc` satisfies `expr`.
pub fn matches(expr: &Expr, doc: &Doc<'_>) -> bool {
    match expr {
        Expr::Cond(c) => holds(c, doc),
        Expr::And(parts) => parts.iter().all(|e| matches(e, doc)),
        Expr::Or(parts) => parts.iter().any(|e| matches(e, doc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn check(query: &str, attributes: serde_json::Value, want: bool) {
        let attributes = attributes.as_object().unwrap().clone();
        let doc = Doc {
            key: "models/llama-3-8b.gguf",
            size: 8 << 30,
            content_type: "application/octet-stream",
            created_ms: 1_700_000_000_000,
            modified_ms: 1_700_000_500_000,
            digest: Some("ab12"),
            attributes: &attributes,
        };
        assert_eq!(matches(&parse(query).unwrap(), &doc), want, "{query}");
    }

    #[test]
    fn every_operator_means_what_the_docs_say() {
        let a = serde_json::json!({
            "category": "research", "score": 7.5, "draft": false,
            "tags": ["gpu", "eu", 3], "title": "Quick-start: LLaMA quantisation",
            "model": {"family": "llama", "params": 8e9}, "nothing": null
        });
        for (q, want) in [
            (r#"category = "research""#, true),
            (r#"category = "Research""#, false),
            ("score > 7", true),
            ("score >= 7.5", true),
            ("score < 7.5", false),
            ("score <= 7.5", true),
            (r#"score = "7.5""#, false),
            (r#"score > "a""#, false),
            ("score != 3", true),
            (r#"score != "x""#, true),
            ("missing != 3", false),
            ("tags != 3", false),
            ("draft = false", true),
            (r#"category in ("x", "research")"#, true),
            ("score in (1, 2)", false),
            (r#"key prefix "models/""#, true),
            (r#"key prefix "Models/""#, false),
            (r#"tags contains "gpu""#, true),
            ("tags contains 3", true),
            (r#"tags contains "3""#, false),
            (r#"category contains "research""#, false),
            ("tags exists", true),
            ("nothing exists", false),
            ("missing exists", false),
            ("model exists", true),
            (r#"model.family = "llama""#, true),
            ("model.params > 7e9", true),
            (r#"title match "llama QUICK""#, true),
            (r#"title match "llama fast""#, false),
            (r#"tags match "GPU""#, true),
            ("size > 8GiB", false),
            ("size >= 8GiB", true),
            (r#"digest = "ab12""#, true),
            (r#"content_type prefix "application/""#, true),
            (r#"category = "x" or score > 7 and draft = false"#, true),
            (r#"(category = "x" or score > 7) and draft = true"#, false),
        ] {
            check(q, a.clone(), want);
        }
    }
}
