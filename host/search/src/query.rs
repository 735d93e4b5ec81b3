//! A search query: conditions on built-in fields and attributes, combined
//! with and/or, a sort and a page.

use std::fmt;

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Field {
    Key,
    Size,
    ContentType,
    /// Creation time, milliseconds since the Unix epoch.
    Created,
    /// Last modification time, milliseconds since the Unix epoch.
    Modified,
    /// Hex SHA-256 of the content.
    Digest,
    /// A user attribute by dotted path (`model.family`).
    Attribute(Vec<String>),
}

impl Field {
    /// Built-in names win; anything else is an attribute path. An attribute
    /// named like a built-in is reached as `attributes.<name>`.
    pub fn parse(name: &str) -> Field {
        match name {
            "key" => Field::Key,
            "size" => Field::Size,
            "content_type" => Field::ContentType,
            "created" => Field::Created,
            "modified" => Field::Modified,
            "digest" => Field::Digest,
            _ => {
                let path = name.strip_prefix("attributes.").unwrap_or(name);
                Field::Attribute(path.split('.').map(str::to_string).collect())
            }
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Key => f.write_str("key"),
            Field::Size => f.write_str("size"),
            Field::ContentType => f.write_str("content_type"),
            Field::Created => f.write_str("created"),
            Field::Modified => f.write_str("modified"),
            Field::Digest => f.write_str("digest"),
            Field::Attribute(path) => {
                let joined = path.join(".");
                match Field::parse(&joined) {
                    Field::Attribute(_) => f.write_str(&joined),
                    _ => write!(f, "attributes.{joined}"),
                }
            }
        }
    }
}

/// Operators, as the index plugins know them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    /// Equal to one of the operands.
    In,
    /// Text starting with the operand.
    Prefix,
    /// A list holding the operand.
    Contains,
    /// Present and not null.
    Exists,
    /// Text holding every word of the operand (case-folded).
    Match,
}

/// A literal operand.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Condition {
    pub field: Field,
    pub op: Op,
    pub operands: Vec<Literal>,
}

impl Op {
    pub fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "in" => Op::In,
            "prefix" => Op::Prefix,
            "contains" => Op::Contains,
            "exists" => Op::Exists,
            "match" => Op::Match,
            _ => return None,
        })
    }
}

impl Condition {
    /// Whether the operands suit the field and the operator; the error says
    /// what to fix.
    pub fn check(&self) -> Result<(), String> {
        let n = self.operands.len();
        match self.op {
            Op::Exists if n != 0 => return Err("exists takes no value".into()),
            Op::In if n == 0 => return Err("in takes at least one value".into()),
            Op::Exists | Op::In => {}
            _ if n != 1 => return Err(format!("{:?} takes one value, not {n}", self.op).to_lowercase()),
            _ => {}
        }
        if self.op == Op::Contains && !matches!(self.field, Field::Attribute(_)) {
            return Err(format!("contains looks inside list attributes, and {} is not one; try prefix or match", self.field));
        }
        for lit in &self.operands {
            check_operand(&self.field, self.op, lit)?;
        }
        Ok(())
    }
}

/// One operand against the field's type and the operator.
pub fn check_operand(field: &Field, op: Op, lit: &Literal) -> Result<(), String> {
    if matches!(op, Op::Prefix | Op::Match) && !matches!(lit, Literal::Text(_)) {
        return Err(format!("{op:?} takes a quoted string").to_lowercase());
    }
    if let Literal::Number(n) = lit
        && !n.is_finite()
    {
        return Err("numbers must be finite".into());
    }
    match (field, lit) {
        (Field::Size | Field::Created | Field::Modified, Literal::Number(_)) => Ok(()),
        (Field::Size | Field::Created | Field::Modified, _) => Err(format!("{field} is a number")),
        (Field::Key | Field::ContentType | Field::Digest, Literal::Text(_)) => Ok(()),
        (Field::Key | Field::ContentType | Field::Digest, _) => Err(format!("{field} is text: quote the value")),
        (Field::Attribute(_), _) => Ok(()),
    }
}

/// A filter: conditions under and/or.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Expr {
    Cond(Condition),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}
