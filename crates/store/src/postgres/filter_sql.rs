//! Compiles a `$filter` to a parameterised PostgreSQL `WHERE` fragment with
//! the SQLite store's semantics: the same properties (`sqlite::fields`), the
//! same literal checks, the same answers. Columns are compared as columns
//! (byte order: they are `COLLATE "C"`); document properties are read with
//! the schema's `ob_json_*` functions, which type them as SQLite's
//! `json_extract` does (absent or JSON null is NULL). User text never
//! reaches the SQL string: literals and paths are bound parameters.

use crate::sqlite::filter_sql::{literal, type_name, Field, FieldResolver, FieldType};
use postgres::types::ToSql;
use rusqlite::types::Value;
use wire::odata::{CmpOp, Filter};

/// A bound parameter.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// A compiled filter: SQL whose placeholders start at the number it was
/// compiled for, and their values.
pub struct PgFilter {
    pub sql: String,
    pub params: Vec<Param>,
}

/// Compiles `filter` with placeholders numbered from `first` (`$first`, ...).
pub fn compile(filter: &Filter, resolver: &dyn FieldResolver, first: usize) -> Result<PgFilter, String> {
    let mut c = Compiler { sql: String::new(), params: Vec::new(), first };
    c.emit(filter, resolver)?;
    Ok(PgFilter { sql: c.sql, params: c.params })
}

struct Compiler {
    sql: String,
    params: Vec<Param>,
    first: usize,
}

impl Compiler {
    /// Binds a value and writes its placeholder with the cast that types it.
    fn bind(&mut self, p: Param, cast: &str) {
        let n = self.first + self.params.len();
        self.params.push(p);
        self.sql.push_str(&format!("${n}::{cast}"));
    }

    /// Writes the SQL expression for a property; its type and whether
    /// literals compared with it are lower-cased.
    fn operand(&mut self, path: &[String], r: &dyn FieldResolver) -> Result<(FieldType, bool), String> {
        match r.resolve(path) {
            Some(Field::Column { sql, ty, lower_literal }) => {
                self.sql.push_str(sql);
                Ok((ty, lower_literal))
            }
            Some(Field::Json { ty }) => {
                self.sql.push_str(match ty {
                    FieldType::Int => "ob_json_num(doc, ",
                    FieldType::Bool => "ob_json_bool(doc, ",
                    FieldType::Text | FieldType::Enum | FieldType::DateTime => "ob_json_text(doc, ",
                });
                self.bind(Box::new(path.to_vec()), "text[]");
                self.sql.push(')');
                Ok((ty, ty == FieldType::Enum))
            }
            None => Err(format!("the property '{}' is not supported in $filter", path.join("/"))),
        }
    }

    fn value(&mut self, v: Value, ty: FieldType) {
        match (v, ty) {
            (Value::Integer(i), FieldType::Bool) => self.bind(Box::new(i != 0), "bool"),
            (Value::Integer(i), _) => self.bind(Box::new(i), "int8"),
            (Value::Real(f), _) => self.bind(Box::new(f), "float8"),
            (Value::Text(s), _) => self.bind(Box::new(s), "text"),
            (Value::Null | Value::Blob(_), _) => self.sql.push_str("NULL"),
        }
    }

    fn emit(&mut self, f: &Filter, r: &dyn FieldResolver) -> Result<(), String> {
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                self.sql.push('(');
                self.emit(a, r)?;
                self.sql.push_str(if matches!(f, Filter::And(..)) { " AND " } else { " OR " });
                self.emit(b, r)?;
                self.sql.push(')');
            }
            Filter::Not(inner) => {
                // NULL (an absent property) must not make NOT(...) unknown.
                self.sql.push_str("NOT COALESCE(");
                self.emit(inner, r)?;
                self.sql.push_str(", false)");
            }
            Filter::Compare { path, op, value: wire::odata::Literal::Null } => {
                self.sql.push('(');
                self.operand(path, r)?;
                match op {
                    CmpOp::Eq => self.sql.push_str(" IS NULL)"),
                    CmpOp::Ne => self.sql.push_str(" IS NOT NULL)"),
                    _ => return Err("null can only be compared with eq or ne".into()),
                }
            }
            Filter::Compare { path, op, value } => {
                self.sql.push('(');
                let (ty, lower) = self.operand(path, r)?;
                let v = literal(value, ty, lower, path)?;
                self.sql.push_str(match op {
                    CmpOp::Eq => " = ",
                    CmpOp::Ne => " IS DISTINCT FROM ",
                    CmpOp::Gt => " > ",
                    CmpOp::Ge => " >= ",
                    CmpOp::Lt => " < ",
                    CmpOp::Le => " <= ",
                });
                self.value(v, ty);
                self.sql.push(')');
            }
            Filter::StartsWith { path, prefix } => {
                self.sql.push('(');
                let start = self.sql.len();
                let (ty, _) = self.operand(path, r)?;
                if !matches!(ty, FieldType::Text | FieldType::Enum) {
                    return Err(format!("startswith needs a string property; '{}' is a {}", path.join("/"), type_name(ty)));
                }
                let operand = self.sql[start..].to_string();
                // Exact (case-sensitive) prefix of characters, as SQLite's substr().
                self.sql.push_str(" IS NOT NULL AND starts_with(");
                self.sql.push_str(&operand);
                self.sql.push_str(", ");
                self.bind(Box::new(prefix.clone()), "text");
                self.sql.push_str("))");
            }
            Filter::Truthy { path } => {
                self.sql.push('(');
                let (ty, _) = self.operand(path, r)?;
                if ty != FieldType::Bool {
                    return Err(format!("'{}' is not a boolean property", path.join("/")));
                }
                self.sql.push_str(" = true)");
            }
        }
        Ok(())
    }
}
