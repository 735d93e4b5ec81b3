//! The readable query language (`query.pest`) parsed into [`Expr`], with
//! errors that point at the position and say what was expected.

use pest::Parser as _;
use pest::error::{Error as PestError, ErrorVariant, InputLocation};
use pest::iterators::Pair;

use super::query::{Condition, Expr, Field, Literal, Op, check_operand};

#[derive(pest_derive::Parser)]
#[grammar = "query.pest"]
struct Grammar;

/// A query that does not parse: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {}: {message}", offset + 1)]
pub struct ParseError {
    /// Byte offset into the query.
    pub offset: usize,
    /// What was expected there, or what is wrong.
    pub message: String,
}

impl ParseError {
    /// The query with a caret under the position, on two lines.
    pub fn pointer(&self, query: &str) -> String {
        let column = query.get(..self.offset).map_or(self.offset, |s| s.chars().count());
        format!("  {query}\n  {}^", " ".repeat(column))
    }
}

fn friendly(rule: &Rule) -> String {
    match rule {
        Rule::field => "a field (key, size, content_type, created, modified, digest, or an attribute)",
        Rule::compare => "an operator (=, !=, >, >=, <, <=)",
        Rule::in_kw => "in",
        Rule::exists_kw => "exists",
        Rule::word_op => "prefix, contains or match",
        Rule::and_kw => "and",
        Rule::or_kw => "or",
        Rule::list => "a list such as (\"a\", \"b\")",
        Rule::string => "a quoted string",
        Rule::number => "a number (12, 2.5, 1e6, 500MiB)",
        Rule::boolean => "true or false",
        Rule::condition => "a condition such as size > 100",
        Rule::EOI => "the end of the query",
        other => return format!("{other:?}"),
    }
    .to_string()
}

fn error(e: PestError<Rule>) -> ParseError {
    let offset = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((p, _)) => p,
    };
    ParseError { offset, message: e.renamed_rules(friendly).variant.message().into_owned() }
}

fn at(pair: &Pair<'_, Rule>, message: String) -> ParseError {
    error(PestError::new_from_span(ErrorVariant::CustomError { message }, pair.as_span()))
}

/// Parse a query such as `category = "research" and size > 500`.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let query = Grammar::parse(Rule::query, input).map_err(error)?.next();
    let or = query.and_then(|q| q.into_inner().next()).filter(|p| p.as_rule() == Rule::or_expr);
    match or {
        Some(or) => or_expr(or),
        None => Err(ParseError { offset: 0, message: "empty query".into() }),
    }
}

fn or_expr(pair: Pair<'_, Rule>) -> Result<Expr, ParseError> {
    let mut parts: Vec<Expr> = pair.into_inner().filter(|p| p.as_rule() == Rule::and_expr).map(and_expr).collect::<Result<_, _>>()?;
    Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::Or(parts) })
}

fn and_expr(pair: Pair<'_, Rule>) -> Result<Expr, ParseError> {
    let mut parts = Vec::new();
    for p in pair.into_inner() {
        match p.as_rule() {
            Rule::condition => parts.push(condition(p)?),
            Rule::or_expr => parts.push(or_expr(p)?),
            _ => {}
        }
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::And(parts) })
}

fn condition(pair: Pair<'_, Rule>) -> Result<Expr, ParseError> {
    let whole = pair.clone();
    let mut inner = pair.into_inner();
    let (Some(field_pair), Some(op_pair)) = (inner.next(), inner.next()) else {
        return Err(at(&whole, "incomplete condition".into()));
    };
    let field = Field::parse(field_pair.as_str());
    let op = match (op_pair.as_rule(), op_pair.as_str().to_ascii_lowercase().as_str()) {
        (Rule::exists_kw, _) => Op::Exists,
        (Rule::in_kw, _) => Op::In,
        (_, "prefix") => Op::Prefix,
        (_, "contains") => Op::Contains,
        (_, "match") => Op::Match,
        (_, "=" | "==") => Op::Eq,
        (_, "!=") => Op::Ne,
        (_, ">") => Op::Gt,
        (_, ">=") => Op::Gte,
        (_, "<") => Op::Lt,
        (_, "<=") => Op::Lte,
        _ => return Err(at(&op_pair, format!("unknown operator {:?}", op_pair.as_str()))),
    };
    let mut operands = Vec::new();
    for p in inner {
        if p.as_rule() == Rule::list {
            for v in p.into_inner() {
                operands.push((literal(&v)?, v));
            }
        } else {
            operands.push((literal(&p)?, p));
        }
    }
    for (lit, p) in &operands {
        check_operand(&field, op, lit).map_err(|m| at(p, m))?;
    }
    let c = Condition { field, op, operands: operands.into_iter().map(|(l, _)| l).collect() };
    c.check().map_err(|m| at(&field_pair, m))?;
    Ok(Expr::Cond(c))
}

fn literal(pair: &Pair<'_, Rule>) -> Result<Literal, ParseError> {
    match pair.as_rule() {
        Rule::string => {
            let raw = pair.clone().into_inner().next().map(|t| t.as_str()).unwrap_or_default();
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => {}
                }
            }
            Ok(Literal::Text(out))
        }
        Rule::boolean => Ok(Literal::Bool(pair.as_str() == "true")),
        Rule::number => {
            let s = pair.as_str();
            let split = s.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(s.len());
            let (digits, unit) = s.split_at(split);
            let n: f64 = digits.parse().map_err(|_| at(pair, format!("{s:?} is not a number")))?;
            let scale: f64 = match unit.to_ascii_lowercase().as_str() {
                "" => 1.0,
                "kb" => 1e3,
                "mb" => 1e6,
                "gb" => 1e9,
                "tb" => 1e12,
                "kib" => 1024.0,
                "mib" => 1024.0 * 1024.0,
                "gib" => 1024.0 * 1024.0 * 1024.0,
                "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
                other => return Err(at(pair, format!("unknown unit {other:?}"))),
            };
            Ok(Literal::Number(n * scale))
        }
        other => Err(at(pair, format!("expected a value, found {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(field: Field, op: Op, operands: Vec<Literal>) -> Expr {
        Expr::Cond(Condition { field, op, operands })
    }

    fn attr(name: &str) -> Field {
        Field::parse(name)
    }

    #[test]
    fn conditions_combine_with_and_binding_tighter_than_or() {
        let q = parse(r#"category = "research" and size > 500 or tags contains "gpu""#).unwrap();
        assert_eq!(
            q,
            Expr::Or(vec![
                Expr::And(vec![
                    cond(attr("category"), Op::Eq, vec![Literal::Text("research".into())]),
                    cond(Field::Size, Op::Gt, vec![Literal::Number(500.0)]),
                ]),
                cond(attr("tags"), Op::Contains, vec![Literal::Text("gpu".into())]),
            ])
        );
        let q = parse(r#"(a.b exists OR x IN ("p", 2, true)) AND title match "Quick \"fox\"""#).unwrap();
        assert_eq!(
            q,
            Expr::And(vec![
                Expr::Or(vec![
                    cond(Field::Attribute(vec!["a".into(), "b".into()]), Op::Exists, vec![]),
                    cond(attr("x"), Op::In, vec![Literal::Text("p".into()), Literal::Number(2.0), Literal::Bool(true)]),
                ]),
                cond(attr("title"), Op::Match, vec![Literal::Text("Quick \"fox\"".into())]),
            ])
        );
        assert_eq!(parse("size >= 2MiB").unwrap(), cond(Field::Size, Op::Gte, vec![Literal::Number(2097152.0)]));
        assert_eq!(parse("attributes.size != -1.5e3").unwrap(), cond(attr("attributes.size"), Op::Ne, vec![Literal::Number(-1500.0)]));
        assert_eq!(attr("attributes.size").to_string(), "attributes.size");
        assert_eq!(parse("android = 1").unwrap(), cond(attr("android"), Op::Eq, vec![Literal::Number(1.0)]), "a keyword prefix is a name");
    }

    #[test]
    fn errors_point_at_the_position_and_say_what_was_expected() {
        let e = parse("size > and").unwrap_err();
        assert_eq!(e.offset, 7);
        assert!(e.message.contains("expected") && e.message.contains("a number"), "{}", e.message);
        assert_eq!(e.pointer("size > and"), "  size > and\n         ^");
        assert!(e.to_string().starts_with("at column 8: expected"), "{e}");

        let e = parse(r#"category = "research" size > 5"#).unwrap_err();
        assert_eq!(e.offset, 22);
        assert!(e.message.contains("and") && e.message.contains("or"), "{}", e.message);

        let e = parse(r#"size > "big""#).unwrap_err();
        assert_eq!(e.offset, 7);
        assert!(e.message.contains("size is a number"), "{}", e.message);

        let e = parse(r#"key contains "x""#).unwrap_err();
        assert!(e.message.contains("contains looks inside list attributes"), "{}", e.message);

        let e = parse("title match 3").unwrap_err();
        assert!(e.message.contains("takes a quoted string"), "{}", e.message);

        for bad in ["", "size >", "(a = 1", "a = 1)", "a ~ 1", r#"a = "open"#, "a in ()"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
