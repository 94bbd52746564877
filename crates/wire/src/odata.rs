//! The OData `$filter` subset Azure Batch supports, and `$select`/`$expand`
//! lists.
//!
//! Grammar (keywords case-insensitive; `and` binds tighter than `or`):
//!
//! ```text
//! or    := and ("or" and)*
//! and   := unary ("and" unary)*
//! unary := "not" unary | primary
//! primary := "(" or ")"
//!          | "startswith(" path "," string ")" [("eq"|"ne") bool]
//!          | operand [cmpop operand]            -- one side a property path
//! operand := path | literal
//! literal := 'string' ('' escapes a quote) | integer | decimal | true | false | null
//!          | datetime'2024-01-01T00:00:00Z' | 2024-01-01T00:00:00.1234567Z
//! ```

use chrono::{DateTime, Utc};

/// A literal value in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    DateTime(DateTime<Utc>),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    /// The operator with its operands swapped (`5 lt x` is `x gt 5`).
    fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            o => o,
        }
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `path op value`, with the property always on the left.
    Compare {
        path: Vec<String>,
        op: CmpOp,
        value: Literal,
    },
    StartsWith {
        path: Vec<String>,
        prefix: String,
    },
    /// A bare boolean property, e.g. `usesTaskDependencies`.
    Truthy {
        path: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at character {position})")]
pub struct FilterError {
    pub message: String,
    pub position: usize,
}

/// Longest filter accepted.
pub const MAX_FILTER_LEN: usize = 8192;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    DateTime(DateTime<Utc>),
    LParen,
    RParen,
    Comma,
}

fn err<T>(message: impl Into<String>, position: usize) -> Result<T, FilterError> {
    Err(FilterError { message: message.into(), position })
}

fn tokenize(input: &str) -> Result<Vec<(Tok, usize)>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((Tok::LParen, start));
                i += 1
            }
            ')' => {
                out.push((Tok::RParen, start));
                i += 1
            }
            ',' => {
                out.push((Tok::Comma, start));
                i += 1
            }
            '\'' => {
                let (s, next) = read_string(&chars, i)?;
                out.push((Tok::Str(s), start));
                i = next;
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || matches!(chars[j], '.' | ':' | '-' | '+')) {
                    j += 1;
                }
                let text: String = chars[i..j].iter().collect();
                if text.contains('T') && text.contains(':') {
                    match crate::time::parse_datetime(&text) {
                        Some(t) => out.push((Tok::DateTime(t), start)),
                        None => return err(format!("'{text}' is not a valid date-time"), start),
                    }
                } else {
                    out.push((Tok::Num(text), start));
                }
                i = j;
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '/' | '$')) {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                if word.eq_ignore_ascii_case("datetime") && chars.get(j) == Some(&'\'') {
                    let (s, next) = read_string(&chars, j)?;
                    match crate::time::parse_datetime(&s) {
                        Some(t) => out.push((Tok::DateTime(t), start)),
                        None => return err(format!("'{s}' is not a valid date-time"), start),
                    }
                    i = next;
                } else {
                    out.push((Tok::Ident(word), start));
                    i = j;
                }
            }
            other => return err(format!("unexpected character '{other}'"), start),
        }
    }
    Ok(out)
}

fn read_string(chars: &[char], open: usize) -> Result<(String, usize), FilterError> {
    let mut s = String::new();
    let mut j = open + 1;
    loop {
        match chars.get(j) {
            None => return err("unterminated string literal", open),
            Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                s.push('\'');
                j += 2;
            }
            Some('\'') => return Ok((s, j + 1)),
            Some(c) => {
                s.push(*c);
                j += 1;
            }
        }
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    depth: usize,
}

enum Operand {
    Path(Vec<String>, usize),
    Lit(Literal),
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|t| t.1).unwrap_or(self.end)
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), FilterError> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            err(format!("expected {what}"), self.at())
        }
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("the filter is nested too deeply", self.at());
        }
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.keyword("not") {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return err("the filter is nested too deeply", self.at());
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Filter, FilterError> {
        match self.peek() {
            None => err("expected an expression", self.end),
            Some(Tok::LParen) => {
                self.pos += 1;
                let f = self.or()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(f)
            }
            Some(Tok::Ident(w))
                if w.eq_ignore_ascii_case("startswith") && self.toks.get(self.pos + 1).map(|t| &t.0) == Some(&Tok::LParen) =>
            {
                self.pos += 2;
                let path = match self.operand()? {
                    Operand::Path(p, _) => p,
                    Operand::Lit(_) => return err("startswith needs a property as its first argument", self.at()),
                };
                self.expect(Tok::Comma, "','")?;
                let prefix = match self.peek().cloned() {
                    Some(Tok::Str(s)) => {
                        self.pos += 1;
                        s
                    }
                    _ => return err("startswith needs a string as its second argument", self.at()),
                };
                self.expect(Tok::RParen, "')'")?;
                let f = Filter::StartsWith { path, prefix };
                // `startswith(...) eq true|false`
                if let Some(op) = self.cmp_op() {
                    let at = self.at();
                    self.pos += 1;
                    let b = match self.operand()? {
                        Operand::Lit(Literal::Bool(b)) => b,
                        _ => return err("startswith(...) can only be compared with true or false", at),
                    };
                    return match op {
                        CmpOp::Eq if b => Ok(f),
                        CmpOp::Ne if !b => Ok(f),
                        CmpOp::Eq | CmpOp::Ne => Ok(Filter::Not(Box::new(f))),
                        _ => err("startswith(...) can only be compared with eq or ne", at),
                    };
                }
                Ok(f)
            }
            Some(Tok::Ident(w)) if self.toks.get(self.pos + 1).map(|t| &t.0) == Some(&Tok::LParen) => {
                err(format!("unknown function '{w}'"), self.at())
            }
            _ => {
                let start = self.at();
                let left = self.operand()?;
                let Some(op) = self.cmp_op() else {
                    return match left {
                        Operand::Path(path, _) => Ok(Filter::Truthy { path }),
                        Operand::Lit(_) => err("expected a comparison operator", self.at()),
                    };
                };
                self.pos += 1;
                if self.peek().is_none() {
                    return err("missing the right-hand side of the comparison", self.end);
                }
                let right = self.operand()?;
                match (left, right) {
                    (Operand::Path(path, _), Operand::Lit(value)) => Ok(Filter::Compare { path, op, value }),
                    (Operand::Lit(value), Operand::Path(path, _)) => Ok(Filter::Compare { path, op: op.flipped(), value }),
                    (Operand::Path(..), Operand::Path(_, at)) => err("comparing two properties is not supported", at),
                    (Operand::Lit(_), Operand::Lit(_)) => err("a comparison needs a property", start),
                }
            }
        }
    }

    fn cmp_op(&self) -> Option<CmpOp> {
        match self.peek() {
            Some(Tok::Ident(w)) => match w.to_ascii_lowercase().as_str() {
                "eq" => Some(CmpOp::Eq),
                "ne" => Some(CmpOp::Ne),
                "gt" => Some(CmpOp::Gt),
                "ge" => Some(CmpOp::Ge),
                "lt" => Some(CmpOp::Lt),
                "le" => Some(CmpOp::Le),
                _ => None,
            },
            _ => None,
        }
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        let at = self.at();
        let tok = match self.peek().cloned() {
            Some(t) => t,
            None => return err("expected a property or a value", at),
        };
        self.pos += 1;
        Ok(match tok {
            Tok::Str(s) => Operand::Lit(Literal::String(s)),
            Tok::DateTime(t) => Operand::Lit(Literal::DateTime(t)),
            Tok::Num(n) => {
                if let Ok(i) = n.parse::<i64>() {
                    Operand::Lit(Literal::Int(i))
                } else if let Ok(f) = n.trim_end_matches(['d', 'D', 'm', 'M', 'f', 'F']).parse::<f64>() {
                    Operand::Lit(Literal::Float(f))
                } else {
                    return err(format!("'{n}' is not a number"), at);
                }
            }
            Tok::Ident(w) => match w.to_ascii_lowercase().as_str() {
                "true" => Operand::Lit(Literal::Bool(true)),
                "false" => Operand::Lit(Literal::Bool(false)),
                "null" => Operand::Lit(Literal::Null),
                "and" | "or" | "not" | "eq" | "ne" | "gt" | "ge" | "lt" | "le" => {
                    return err(format!("expected a property or a value, found '{w}'"), at)
                }
                _ => {
                    let path: Vec<String> = w.split('/').map(str::to_string).collect();
                    if path.iter().any(|p| p.is_empty()) {
                        return err(format!("'{w}' is not a valid property path"), at);
                    }
                    Operand::Path(path, at)
                }
            },
            Tok::LParen | Tok::RParen | Tok::Comma => return err("expected a property or a value", at),
        })
    }
}

/// Parses a `$filter` expression.
pub fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    if input.len() > MAX_FILTER_LEN {
        return err(format!("the filter is longer than {MAX_FILTER_LEN} characters"), MAX_FILTER_LEN);
    }
    let toks = tokenize(input)?;
    let end = input.chars().count();
    let mut p = Parser { toks, pos: 0, end, depth: 0 };
    let f = p.or()?;
    if p.pos < p.toks.len() {
        return err("unexpected text after the expression", p.at());
    }
    Ok(f)
}

/// Parses a `$select` / `$expand` list: comma-separated property names.
pub fn parse_list(input: &str) -> Result<Vec<String>, FilterError> {
    let mut out = Vec::new();
    let mut pos = 0;
    for item in input.split(',') {
        let name = item.trim();
        if name.is_empty() {
            return err("empty item in the list", pos);
        }
        if !name.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.')) {
            return err(format!("'{name}' is not a property name"), pos);
        }
        out.push(name.to_string());
        pos += item.len() + 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(path: &str, op: CmpOp, value: Literal) -> Filter {
        Filter::Compare { path: path.split('/').map(str::to_string).collect(), op, value }
    }

    #[test]
    fn comparisons_and_literals() {
        assert_eq!(parse_filter("state eq 'active'").unwrap(), cmp("state", CmpOp::Eq, Literal::String("active".into())));
        assert_eq!(parse_filter("executionInfo/exitCode GE -3").unwrap(), cmp("executionInfo/exitCode", CmpOp::Ge, Literal::Int(-3)));
        assert_eq!(parse_filter("5 lt priority").unwrap(), cmp("priority", CmpOp::Gt, Literal::Int(5)));
        assert_eq!(parse_filter("x eq 'it''s'").unwrap(), cmp("x", CmpOp::Eq, Literal::String("it's".into())));
        assert_eq!(parse_filter("x eq 1.5").unwrap(), cmp("x", CmpOp::Eq, Literal::Float(1.5)));
        assert_eq!(parse_filter("x ne null").unwrap(), cmp("x", CmpOp::Ne, Literal::Null));
        assert_eq!(parse_filter("usesTaskDependencies eq true").unwrap(), cmp("usesTaskDependencies", CmpOp::Eq, Literal::Bool(true)));
        let t = crate::time::parse_datetime("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(
            parse_filter("creationTime gt datetime'2024-01-01T00:00:00Z'").unwrap(),
            cmp("creationTime", CmpOp::Gt, Literal::DateTime(t))
        );
        assert_eq!(
            parse_filter("creationTime gt 2024-01-01T00:00:00.0000000Z").unwrap(),
            cmp("creationTime", CmpOp::Gt, Literal::DateTime(t))
        );
        assert_eq!(parse_filter("usesTaskDependencies").unwrap(), Filter::Truthy { path: vec!["usesTaskDependencies".into()] });
    }

    #[test]
    fn precedence_and_grouping() {
        let a = cmp("a", CmpOp::Eq, Literal::Int(1));
        let b = cmp("b", CmpOp::Eq, Literal::Int(2));
        let c = cmp("c", CmpOp::Eq, Literal::Int(3));
        assert_eq!(
            parse_filter("a eq 1 or b eq 2 and c eq 3").unwrap(),
            Filter::Or(Box::new(a.clone()), Box::new(Filter::And(Box::new(b.clone()), Box::new(c.clone()))))
        );
        assert_eq!(
            parse_filter("(a eq 1 or b eq 2) and not c eq 3").unwrap(),
            Filter::And(Box::new(Filter::Or(Box::new(a), Box::new(b))), Box::new(Filter::Not(Box::new(c))))
        );
    }

    #[test]
    fn startswith() {
        let s = Filter::StartsWith { path: vec!["id".into()], prefix: "ab".into() };
        assert_eq!(parse_filter("startswith(id,'ab')").unwrap(), s);
        assert_eq!(parse_filter("startswith(id, 'ab') eq true").unwrap(), s);
        assert_eq!(parse_filter("startswith(id,'ab') eq false").unwrap(), Filter::Not(Box::new(s)));
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "state eq",
            "state eq 'x",
            "(state eq 'x'",
            "state eq 'x')",
            "foo(x)",
            "state eq 'a' 'b'",
            "1 eq 2",
            "a eq b",
            "state ~ 'x'",
            "and",
            "x eq datetime'nope'",
            "startswith(id)",
            "startswith('a','b')",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?} should fail");
        }
        let deep = format!("{}a eq 1{}", "(".repeat(200), ")".repeat(200));
        assert!(parse_filter(&deep).unwrap_err().message.contains("deeply"));
        let nots = format!("{}a eq 1", "not ".repeat(200));
        assert!(parse_filter(&nots).is_err());
        assert!(parse_filter(&"a".repeat(MAX_FILTER_LEN + 1)).is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(parse_list("id, state").unwrap(), vec!["id", "state"]);
        assert!(parse_list("id,,state").is_err());
        assert!(parse_list("id;drop").is_err());
    }
}
