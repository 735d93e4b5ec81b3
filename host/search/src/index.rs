//! Where search meets index plugins: the terms of stored objects, and the
//! lookups that turn a filter into a candidate set.

use std::sync::Arc;

use super::eval::{Doc, plugin_value};
use super::query::{Condition, Expr, Field, Literal, Op};
use strata_meta::{Candidates, IndexDef, ObjectRecord, TermMaker, TermMatch};
use strata_plugin::{self as plugin, Plugins, Value};

/// Runs a blocking plugin call without stalling other tasks on a
/// multi-threaded runtime.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The fields of a stored record as a search document.
pub fn with_doc<R>(r: &ObjectRecord, f: impl FnOnce(&Doc<'_>) -> R) -> R {
    let digest = r.digest.map(|d| d.to_string());
    f(&Doc {
        key: &r.key,
        size: r.size,
        content_type: &r.content_type,
        created_ms: r.created_ms,
        modified_ms: r.modified_ms,
        digest: digest.as_deref(),
        attributes: &r.attributes,
    })
}

/// Index terms computed by the index's plugin.
pub struct PluginTerms(pub Arc<Plugins>);

impl TermMaker for PluginTerms {
    fn terms(&self, index: &IndexDef, records: &[ObjectRecord]) -> Result<Vec<Vec<Vec<u8>>>, String> {
        let plugin = self.0.index(&index.kind).map_err(|e| e.to_string())?;
        let fields: Vec<Field> = index.fields.iter().map(|f| Field::parse(f)).collect();
        let docs: Vec<Vec<Value>> = records.iter().map(|r| with_doc(r, |d| fields.iter().map(|f| plugin_value(d, f)).collect())).collect();
        blocking(|| plugin.terms(&docs)).map_err(|e| e.to_string())
    }
}

/// Checks that an index type accepts these fields, by asking it for the
/// terms of an empty document.
pub fn check_fields(plugins: &Plugins, kind: &str, fields: usize) -> Result<(), plugin::PluginError> {
    let plugin = plugins.index(kind)?;
    blocking(|| plugin.terms(&[vec![Value::Null; fields]])).map(drop)
}

fn value(l: &Literal) -> Value {
    match l {
        Literal::Text(t) => Value::Text(t.clone()),
        Literal::Number(n) => Value::Number(*n),
        Literal::Bool(b) => Value::Boolean(*b),
    }
}

fn op(o: Op) -> plugin::Op {
    match o {
        Op::Eq => plugin::Op::Eq,
        Op::Ne => plugin::Op::Ne,
        Op::Gt => plugin::Op::Gt,
        Op::Gte => plugin::Op::Gte,
        Op::Lt => plugin::Op::Lt,
        Op::Lte => plugin::Op::Lte,
        Op::In => plugin::Op::In,
        Op::Prefix => plugin::Op::Prefix,
        Op::Contains => plugin::Op::Contains,
        Op::Exists => plugin::Op::Exists,
        Op::Match => plugin::Op::Match,
    }
}

fn term_match(m: plugin::TermMatch) -> TermMatch {
    match m {
        plugin::TermMatch::Exact(t) => TermMatch::Exact(t),
        plugin::TermMatch::Prefix(t) => TermMatch::Prefix(t),
        plugin::TermMatch::Range(r) => {
            TermMatch::Range { lower: r.lower.map(|b| (b.term, b.inclusive)), upper: r.upper.map(|b| (b.term, b.inclusive)) }
        }
    }
}

/// A readable form of a condition, for plans.
pub fn describe(c: &Condition) -> String {
    let lit = |l: &Literal| match l {
        Literal::Text(t) => format!("{t:?}"),
        Literal::Number(n) => n.to_string(),
        Literal::Bool(b) => b.to_string(),
    };
    let name = format!("{:?}", c.op).to_lowercase();
    match c.op {
        Op::Exists => format!("{} exists", c.field),
        Op::In => format!("{} in ({})", c.field, c.operands.iter().map(lit).collect::<Vec<_>>().join(", ")),
        _ => format!("{} {name} {}", c.field, c.operands.first().map(lit).unwrap_or_default()),
    }
}

/// Turns filters into candidate sets with the ready indexes of one bucket.
pub struct Planner<'a> {
    pub plugins: &'a Plugins,
    pub indexes: Vec<IndexDef>,
    /// The newest version id, to tell how far each index lags.
    pub head: i64,
    /// What the planner chose, for the plan text.
    pub notes: Vec<String>,
}

impl Planner<'_> {
    /// Candidates holding every match of `e`, or none when some part needs
    /// a scan.
    pub fn plan(&mut self, e: &Expr) -> Option<Candidates> {
        match e {
            Expr::Cond(c) => self.condition(c),
            Expr::And(parts) => {
                let mut served: Vec<Candidates> = parts.iter().filter_map(|p| self.plan(p)).collect();
                match served.len() {
                    0 => None,
                    1 => served.pop(),
                    _ => Some(Candidates::And(served)),
                }
            }
            Expr::Or(parts) => {
                let served: Option<Vec<Candidates>> = parts.iter().map(|p| self.plan(p)).collect();
                served.map(Candidates::Or)
            }
        }
    }

    fn condition(&mut self, c: &Condition) -> Option<Candidates> {
        let mut best: Option<(IndexDef, plugin::LookupPlan)> = None;
        for ix in &self.indexes {
            let fields: Vec<Field> = ix.fields.iter().map(|f| Field::parse(f)).collect();
            let Some(at) = fields.iter().position(|f| *f == c.field) else { continue };
            let Ok(plugin) = self.plugins.index(&ix.kind) else { continue };
            let cond = plugin::Condition {
                field: at as u32,
                fields: fields.len() as u32,
                op: op(c.op),
                operands: c.operands.iter().map(value).collect(),
            };
            match blocking(|| plugin.lookup(&cond)) {
                // An empty group would match everything: no narrowing.
                Ok(Some(plan)) if plan.groups.iter().any(Vec::is_empty) => {}
                Ok(Some(plan)) => {
                    let better = best.as_ref().is_none_or(|(_, b)| plan.exact && !b.exact);
                    if better {
                        best = Some((ix.clone(), plan));
                    }
                }
                Ok(None) => {}
                Err(e) => self.notes.push(format!("index {} could not serve {}: {e}", ix.name, describe(c))),
            }
        }
        let (index, plan) = best?;
        let lag = index.lag(self.head);
        self.notes.push(format!(
            "index {} ({}) serves {}{}{}",
            index.name,
            index.kind,
            describe(c),
            if plan.exact { "" } else { " (hits rechecked)" },
            if lag > 0 { format!("; {lag} newer versions not indexed yet are scanned") } else { String::new() },
        ));
        let groups = plan.groups.into_iter().map(|g| g.into_iter().map(term_match).collect()).collect();
        Some(Candidates::Index { index, groups })
    }
}
