//! Compiles a `$filter` to a parameterised SQLite `WHERE` fragment, so
//! filters run in the database (on indexes where the property is a column).
//! User text never reaches the SQL string: every literal and JSON path is a
//! bound parameter.

use rusqlite::types::Value;
use wire::odata::{CmpOp, Filter, Literal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    /// Enum values: stored lower-case; literals are compared lower-cased.
    Enum,
    Int,
    Bool,
    DateTime,
}

/// Where a filterable property lives.
#[derive(Debug, Clone)]
pub enum Field {
    /// A real (indexed) column.
    Column { sql: &'static str, ty: FieldType, lower_literal: bool },
    /// A path into the stored wire document (`json_extract(doc, '$."a"."b"')`).
    Json { ty: FieldType },
}

/// Says how to address each filterable property of a resource.
pub trait FieldResolver {
    fn resolve(&self, path: &[String]) -> Option<Field>;
}

#[derive(Debug, Clone)]
pub struct CompiledFilter {
    pub sql: String,
    pub params: Vec<Value>,
}

/// Compiles `filter`; the error text says what is wrong with it.
pub fn compile(filter: &Filter, resolver: &dyn FieldResolver) -> Result<CompiledFilter, String> {
    let mut c = CompiledFilter { sql: String::new(), params: Vec::new() };
    emit(filter, resolver, &mut c)?;
    Ok(c)
}

fn json_path(path: &[String]) -> String {
    let mut s = String::from("$");
    for p in path {
        s.push_str(".\"");
        s.push_str(&p.replace('"', "\\\""));
        s.push('"');
    }
    s
}

/// Pushes the SQL expression for a property and returns its type.
fn operand(path: &[String], resolver: &dyn FieldResolver, c: &mut CompiledFilter) -> Result<(FieldType, bool), String> {
    match resolver.resolve(path) {
        Some(Field::Column { sql, ty, lower_literal }) => {
            c.sql.push_str(sql);
            Ok((ty, lower_literal))
        }
        Some(Field::Json { ty }) => {
            c.sql.push_str("json_extract(doc, ?)");
            c.params.push(Value::Text(json_path(path)));
            Ok((ty, ty == FieldType::Enum))
        }
        None => Err(format!("the property '{}' is not supported in $filter", path.join("/"))),
    }
}

/// A literal as a value of the property's type (the PostgreSQL store uses
/// the same checks).
pub(crate) fn literal(value: &Literal, ty: FieldType, lower: bool, path: &[String]) -> Result<Value, String> {
    let name = path.join("/");
    Ok(match (ty, value) {
        (FieldType::Text | FieldType::Enum, Literal::String(s)) => Value::Text(if lower { s.to_ascii_lowercase() } else { s.clone() }),
        (FieldType::Int, Literal::Int(i)) => Value::Integer(*i),
        (FieldType::Int, Literal::Float(f)) => Value::Real(*f),
        (FieldType::Bool, Literal::Bool(b)) => Value::Integer(*b as i64),
        (FieldType::DateTime, Literal::DateTime(t)) => Value::Text(wire::time::format_datetime(t)),
        (FieldType::DateTime, Literal::String(s)) => match wire::time::parse_datetime(s) {
            Some(t) => Value::Text(wire::time::format_datetime(&t)),
            None => return Err(format!("'{s}' is not a date-time, as '{name}' needs")),
        },
        (ty, v) => return Err(format!("'{name}' is a {} and cannot be compared with {v:?}", type_name(ty))),
    })
}

pub(crate) fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Text => "string",
        FieldType::Enum => "enumeration",
        FieldType::Int => "number",
        FieldType::Bool => "boolean",
        FieldType::DateTime => "date-time",
    }
}

fn emit(f: &Filter, r: &dyn FieldResolver, c: &mut CompiledFilter) -> Result<(), String> {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            c.sql.push('(');
            emit(a, r, c)?;
            c.sql.push_str(if matches!(f, Filter::And(..)) { " AND " } else { " OR " });
            emit(b, r, c)?;
            c.sql.push(')');
        }
        Filter::Not(inner) => {
            // NULL (an absent property) must not make NOT(...) unknown.
            c.sql.push_str("NOT COALESCE(");
            emit(inner, r, c)?;
            c.sql.push_str(", 0)");
        }
        Filter::Compare { path, op, value: Literal::Null } => {
            c.sql.push('(');
            operand(path, r, c)?;
            match op {
                CmpOp::Eq => c.sql.push_str(" IS NULL)"),
                CmpOp::Ne => c.sql.push_str(" IS NOT NULL)"),
                _ => return Err("null can only be compared with eq or ne".into()),
            }
        }
        Filter::Compare { path, op, value } => {
            c.sql.push('(');
            let (ty, lower) = operand(path, r, c)?;
            let v = literal(value, ty, lower, path)?;
            c.sql.push_str(match op {
                CmpOp::Eq => " = ?",
                CmpOp::Ne => " IS NOT ?",
                CmpOp::Gt => " > ?",
                CmpOp::Ge => " >= ?",
                CmpOp::Lt => " < ?",
                CmpOp::Le => " <= ?",
            });
            c.sql.push(')');
            c.params.push(v);
        }
        Filter::StartsWith { path, prefix } => {
            c.sql.push('(');
            let (ty, _) = operand(path, r, c)?;
            if !matches!(ty, FieldType::Text | FieldType::Enum) {
                return Err(format!("startswith needs a string property; '{}' is a {}", path.join("/"), type_name(ty)));
            }
            // substr() compares bytes exactly (case-sensitively), unlike LIKE.
            c.sql.push_str(" IS NOT NULL AND substr(");
            operand(path, r, c)?;
            c.sql.push_str(", 1, length(?)) = ?)");
            c.params.push(Value::Text(prefix.clone()));
            c.params.push(Value::Text(prefix.clone()));
        }
        Filter::Truthy { path } => {
            c.sql.push('(');
            let (ty, _) = operand(path, r, c)?;
            if ty != FieldType::Bool {
                return Err(format!("'{}' is not a boolean property", path.join("/")));
            }
            c.sql.push_str(" = 1)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use wire::odata::parse_filter;

    struct Fields;
    impl FieldResolver for Fields {
        fn resolve(&self, path: &[String]) -> Option<Field> {
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            match p.as_slice() {
                ["id"] => Some(Field::Column { sql: "id", ty: FieldType::Text, lower_literal: false }),
                ["state"] => Some(Field::Column { sql: "state", ty: FieldType::Enum, lower_literal: true }),
                ["creationTime"] => Some(Field::Column { sql: "created", ty: FieldType::DateTime, lower_literal: false }),
                ["executionInfo", "exitCode"] => Some(Field::Json { ty: FieldType::Int }),
                ["flag"] => Some(Field::Json { ty: FieldType::Bool }),
                ["displayName"] => Some(Field::Json { ty: FieldType::Text }),
                _ => None,
            }
        }
    }

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (id TEXT, state TEXT, created TEXT, doc TEXT);
             INSERT INTO t VALUES ('a1', 'active',    '2024-01-01T00:00:00.0000000Z', '{\"flag\":true,\"displayName\":\"x\"}');
             INSERT INTO t VALUES ('a2', 'completed', '2024-01-02T00:00:00.0000000Z', '{\"executionInfo\":{\"exitCode\":0},\"flag\":false}');
             INSERT INTO t VALUES ('B3', 'completed', '2024-01-03T00:00:00.0000000Z', '{\"executionInfo\":{\"exitCode\":3}}');",
        )
        .unwrap();
        c
    }

    fn run(f: &str) -> Vec<String> {
        let c = db();
        let compiled = compile(&parse_filter(f).unwrap(), &Fields).unwrap();
        let mut s = c.prepare(&format!("SELECT id FROM t WHERE {} ORDER BY id", compiled.sql)).unwrap();
        s.query_map(rusqlite::params_from_iter(compiled.params.iter()), |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn selects_the_right_rows() {
        assert_eq!(run("state eq 'Completed'"), vec!["B3", "a2"]);
        assert_eq!(run("state ne 'completed'"), vec!["a1"]);
        assert_eq!(run("executionInfo/exitCode eq 0"), vec!["a2"]);
        assert_eq!(run("executionInfo/exitCode gt 0 or id eq 'a1'"), vec!["B3", "a1"]);
        assert_eq!(run("not executionInfo/exitCode eq 3"), vec!["a1", "a2"]);
        assert_eq!(run("executionInfo/exitCode eq null"), vec!["a1"]);
        assert_eq!(run("creationTime ge datetime'2024-01-02T00:00:00Z' and creationTime lt 2024-01-03T00:00:00Z"), vec!["a2"]);
        assert_eq!(run("startswith(id,'a')"), vec!["a1", "a2"]);
        assert_eq!(run("startswith(id,'b')"), Vec::<String>::new(), "case-sensitive");
        assert_eq!(run("flag"), vec!["a1"]);
        assert_eq!(run("flag eq false"), vec!["a2"]);
        assert_eq!(run("displayName eq 'x''; DROP TABLE t; --'"), Vec::<String>::new());
        assert_eq!(run("state eq 'active'").len(), 1, "table still there");
    }

    #[test]
    fn type_errors() {
        for bad in [
            "executionInfo/exitCode eq 'x'",
            "state eq 3",
            "nothing eq 1",
            "startswith(executionInfo/exitCode,'1')",
            "id",
            "creationTime gt 'soon'",
        ] {
            assert!(compile(&parse_filter(bad).unwrap(), &Fields).is_err(), "{bad}");
        }
    }
}
