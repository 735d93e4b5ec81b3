//! A search query: conditions on built-in fields and attributes, combined
//! with and/or, a sort and a page.

use std::fmt;

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub op: Op,
    pub operands: Vec<Literal>,
}

/// A filter: conditions under and/or.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Cond(Condition),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}
