//! `odata`: the `$filter` parser ([`wire::odata::parse_filter`]), the
//! `$select`/`$expand` list parser, and the compilation of a filter to SQL
//! ([`store::filter_sql::compile`]) run against the real schema.
//!
//! The input is the filter text (lossily UTF-8). Checked:
//! * parsing never panics; an error's position lies within the input;
//! * a parsed filter, printed back ([`print`]), parses to the same filter,
//!   and printing is stable;
//! * a filter the store compiles for jobs, tasks, pools or job schedules
//!   runs on SQLite with the store's schema without an SQL error (an SQL
//!   error would be a 500 for a client's filter);
//! * `$select` lists hold only trimmed, non-empty names;
//! * the other direction: a filter built from the bytes (via `arbitrary`),
//!   printed, parses back to itself.

use crate::harness::{invariant, Features};
use arbitrary::{Result as ArbResult, Unstructured};
use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};
use rusqlite::Connection;
use std::cell::RefCell;
use store::fields::{JobFields, PoolFields, ScheduleFields, TaskFields};
use store::filter_sql::{compile, FieldResolver};
use wire::odata::{parse_filter, parse_list, CmpOp, Filter, Literal, MAX_FILTER_LEN};

pub const ABOUT: &str = "wire::odata $filter/$select parsers and store::filter_sql on SQLite; print/parse round trip";

pub const DICTIONARY: &[&str] = &[
    " eq ",
    " ne ",
    " gt ",
    " ge ",
    " lt ",
    " le ",
    " and ",
    " or ",
    "not ",
    "(",
    ")",
    ",",
    "'",
    "''",
    "startswith(",
    "startswith(id,'",
    "') eq true",
    "') eq false",
    "true",
    "false",
    "null",
    "datetime'",
    "datetime'2024-01-01T00:00:00Z'",
    "2024-01-01T00:00:00.0000000Z",
    "2024-01-01T00:00:00+01:00",
    "id",
    "state",
    "'active'",
    "'completed'",
    "creationTime",
    "lastModified",
    "eTag",
    "displayName",
    "executionInfo/exitCode",
    "executionInfo/result",
    "executionInfo/retryCount",
    "executionInfo/failureInfo/category",
    "requiredSlots",
    "usesTaskDependencies",
    "priority",
    "poolInfo/poolId",
    "stateTransitionTime",
    "enableAutoScale",
    "jobSpecification/priority",
    "nodeInfo/nodeId",
    "-",
    "0",
    "-1",
    "1.5",
    "1e999",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "1d",
    "1.0M",
    "/",
    "$",
    "_",
    " ",
    "\t",
    "é",
];

pub fn run(data: &[u8], f: &mut Features) {
    let text = String::from_utf8_lossy(data);
    match parse_filter(&text) {
        Ok(filter) => {
            f.add("shape", shape(&filter));
            check_round_trip(&text, &filter);
            check_sql(&filter, f);
        }
        Err(e) => {
            // The message without the quoted text: the kind of error.
            f.add("error", e.message.split('\'').next().unwrap_or_default().to_string());
            let chars = text.chars().count();
            invariant!(e.position <= chars.max(MAX_FILTER_LEN), "error position {} past the end ({chars}) of {text:?}", e.position);
        }
    }
    match parse_list(&text) {
        Ok(names) => {
            f.add("list", names.len().min(4));
            for n in &names {
                invariant!(!n.is_empty() && n.trim() == n && !n.contains(','), "$select {text:?} gave the name {n:?}");
            }
            invariant!(names.len() == text.split(',').count(), "$select {text:?} gave {names:?}");
        }
        Err(e) => f.add("list-error", e.message.split('\'').next().unwrap_or_default().to_string()),
    }
    if let Ok(filter) = arbitrary_filter(&mut Unstructured::new(data), 0) {
        let printed = print(&filter);
        if printed.len() <= MAX_FILTER_LEN {
            match parse_filter(&printed) {
                Ok(back) => invariant!(back == filter, "{filter:?} printed as {printed:?} parses to {back:?}"),
                Err(e) => panic!("invariant broken: {filter:?} printed as {printed:?} does not parse: {e}"),
            }
        }
    }
}

/// A filter's outline for feature tracking: node kinds, operators and literal kinds, to depth 3.
fn shape(f: &Filter) -> String {
    fn go(f: &Filter, depth: usize, out: &mut String) {
        if depth > 3 {
            out.push('…');
            return;
        }
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                out.push_str(if matches!(f, Filter::And(..)) { "&(" } else { "|(" });
                go(a, depth + 1, out);
                out.push(',');
                go(b, depth + 1, out);
                out.push(')');
            }
            Filter::Not(x) => {
                out.push('!');
                go(x, depth + 1, out);
            }
            Filter::Compare { path, op, value } => {
                let lit = match value {
                    Literal::String(_) => "s",
                    Literal::Int(_) => "i",
                    Literal::Float(_) => "f",
                    Literal::Bool(_) => "b",
                    Literal::DateTime(_) => "d",
                    Literal::Null => "n",
                };
                out.push_str(&format!("{}{op:?}{lit}", path.len()));
            }
            Filter::StartsWith { .. } => out.push_str("sw"),
            Filter::Truthy { .. } => out.push('t'),
        }
    }
    let mut s = String::new();
    go(f, 0, &mut s);
    s
}

fn check_round_trip(text: &str, filter: &Filter) {
    let printed = print(filter);
    // Printing spells date-times and floats in full, which may not fit.
    if printed.len() > MAX_FILTER_LEN {
        return;
    }
    match parse_filter(&printed) {
        Ok(back) => {
            invariant!(&back == filter, "{text:?} parses to {filter:?}, printed {printed:?}, which parses to {back:?}");
            invariant!(print(&back) == printed, "printing {text:?} is not stable");
        }
        Err(e) => panic!("invariant broken: {text:?} parses to {filter:?}, printed {printed:?}, which does not parse: {e}"),
    }
}

/// Writes a filter back as filter text, with only the parentheses its shape
/// needs (`and` binds tighter than `or`; both group to the left).
pub fn print(f: &Filter) -> String {
    let mut out = String::new();
    write(f, &mut out);
    out
}

fn level(f: &Filter) -> u8 {
    match f {
        Filter::Or(..) => 1,
        Filter::And(..) => 2,
        _ => 3,
    }
}

fn write_at(f: &Filter, min: u8, out: &mut String) {
    if level(f) < min {
        out.push('(');
        write(f, out);
        out.push(')');
    } else {
        write(f, out);
    }
}

fn write(f: &Filter, out: &mut String) {
    match f {
        Filter::Or(a, b) => {
            write_at(a, 1, out);
            out.push_str(" or ");
            write_at(b, 2, out);
        }
        Filter::And(a, b) => {
            write_at(a, 2, out);
            out.push_str(" and ");
            write_at(b, 3, out);
        }
        // The parser's own spelling of a negated startswith.
        Filter::Not(x) if matches!(**x, Filter::StartsWith { .. }) => {
            write(x, out);
            out.push_str(" eq false");
        }
        Filter::Not(x) => {
            out.push_str("not ");
            write_at(x, 3, out);
        }
        Filter::Compare { path, op, value } => {
            out.push_str(&path.join("/"));
            out.push_str(match op {
                CmpOp::Eq => " eq ",
                CmpOp::Ne => " ne ",
                CmpOp::Gt => " gt ",
                CmpOp::Ge => " ge ",
                CmpOp::Lt => " lt ",
                CmpOp::Le => " le ",
            });
            write_literal(value, out);
        }
        Filter::StartsWith { path, prefix } => {
            out.push_str("startswith(");
            out.push_str(&path.join("/"));
            out.push(',');
            write_literal(&Literal::String(prefix.clone()), out);
            out.push(')');
        }
        Filter::Truthy { path } => out.push_str(&path.join("/")),
    }
}

fn write_literal(v: &Literal, out: &mut String) {
    match v {
        Literal::String(s) => {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        Literal::Int(i) => out.push_str(&i.to_string()),
        // Debug keeps a fraction or an exponent, so the number reads back as a float.
        Literal::Float(x) if x.is_finite() => out.push_str(&format!("{x:?}")),
        Literal::Float(x) => out.push_str(if *x > 0.0 { "1e999" } else { "-1e999" }),
        Literal::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Literal::Null => out.push_str("null"),
        Literal::DateTime(t) => {
            out.push_str("datetime'");
            if (0..=9999).contains(&t.year()) {
                out.push_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            } else {
                // RFC 3339 has four-digit years; the parser's last resort reads signed ones.
                out.push_str(&t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string());
            }
            out.push('\'');
        }
    }
}

// ---------------------------------------------------------------------------
// SQL: the store's compilation, run on its schema.

thread_local! {
    static DB: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

/// An in-memory database with the store's current schema (copied from a
/// database the store itself created) and one row per table, so that
/// `json_extract` and the comparisons really run.
fn database() -> Connection {
    let dir = std::env::temp_dir().join(format!("openbatch-fuzz-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let schema: Vec<String> = {
        let conn = store::db::open_writer(&dir.join("schema.sqlite")).expect("the store creates its schema");
        let mut stmt = conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid").expect("schema query");
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).expect("schema rows");
        rows.map(|r| r.expect("schema row")).collect()
    };
    let _ = std::fs::remove_dir_all(&dir);
    let conn = Connection::open_in_memory().expect("in-memory database");
    for sql in &schema {
        conn.execute_batch(sql).expect("schema statement");
    }
    let t = "2024-01-01T00:00:00.0000000Z";
    let job = r#"{"id":"job1","displayName":"j","priority":5,"usesTaskDependencies":true,"poolInfo":{"poolId":"p1"},"executionInfo":{"startTime":"2024-01-01T00:00:00.0000000Z"}}"#;
    let task = r#"{"id":"t1","commandLine":"/bin/true","executionInfo":{"exitCode":3,"result":"failure","failureInfo":{"category":"usererror"}},"nodeInfo":{"nodeId":"n1"}}"#;
    let pool = r#"{"id":"p1","vmSize":"standard_d2s_v3","enableAutoScale":false,"targetDedicatedNodes":2,"allocationState":"steady"}"#;
    let sched =
        r#"{"id":"s1","jobSpecification":{"priority":1,"poolInfo":{"poolId":"p1"}},"executionInfo":{"recentJob":{"id":"s1:job-1"}}}"#;
    conn.execute(
        "INSERT INTO jobs (key, id, state, creation_time, etag, last_modified, doc) VALUES ('job1','job1','active',?1,'0x1',?1,?2)",
        [t, job],
    )
    .expect("job row");
    conn.execute(
        "INSERT INTO tasks (job, key, id, state, result, slots, retries, creation_time, etag, last_modified, doc, exit_code) \
         VALUES ('job1','t1','t1','completed','failure',1,0,?1,'0x2',?1,?2,3)",
        [t, task],
    )
    .expect("task row");
    for table in ["pools", "job_schedules"] {
        let doc = if table == "pools" { pool } else { sched };
        conn.execute(
            &format!(
                "INSERT INTO {table} (key, id, state, creation_time, etag, last_modified, doc) VALUES ('x','x','active',?1,'0x3',?1,?2)"
            ),
            [t, doc],
        )
        .expect("row");
    }
    conn
}

fn check_sql(filter: &Filter, f: &mut Features) {
    let resolvers: [(&str, &str, &dyn FieldResolver); 4] = [
        ("jobs", "jobs", &JobFields),
        ("tasks", "tasks", &TaskFields),
        ("pools", "pools", &PoolFields),
        ("schedules", "job_schedules", &ScheduleFields),
    ];
    DB.with(|db| {
        let mut db = db.borrow_mut();
        let conn = db.get_or_insert_with(database);
        for (name, table, resolver) in resolvers {
            match compile(filter, resolver) {
                Ok(c) => {
                    f.add("compiled", name);
                    let sql = format!("SELECT count(*) FROM {table} WHERE key > ? AND ({}) ORDER BY key LIMIT ?", c.sql);
                    let mut params = vec![rusqlite::types::Value::Text(String::new())];
                    params.extend(c.params.iter().cloned());
                    params.push(rusqlite::types::Value::Integer(1001));
                    let run =
                        conn.prepare(&sql).and_then(|mut s| s.query_row(rusqlite::params_from_iter(params.iter()), |r| r.get::<_, i64>(0)));
                    match run {
                        Ok(n) => f.add("rows", (name, n)),
                        Err(e) => {
                            panic!("invariant broken: {filter:?} compiled for {name} to {sql:?} with {:?} fails in SQLite: {e}", c.params)
                        }
                    }
                }
                Err(e) => f.add("compile-error", (name, e.split('\'').next().unwrap_or_default().to_string())),
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Filters built from bytes.

const PATHS: &[&str] = &[
    "id",
    "state",
    "creationTime",
    "executionInfo/exitCode",
    "executionInfo/result",
    "displayName",
    "usesTaskDependencies",
    "startswith",
    "datetime",
    "nodeInfo/nodeId",
    "a/b/c",
    "$x",
    "_",
    "é",
    "x1/2",
];
const KEYWORDS: &[&str] = &["and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "true", "false", "null"];

fn path(u: &mut Unstructured) -> ArbResult<Vec<String>> {
    if u.ratio(2, 3)? {
        return Ok(u.choose(PATHS)?.split('/').map(str::to_string).collect());
    }
    // Segments as the tokenizer reads them: a letter, `_` or `$`, then letters, digits, `_`, `$`.
    let n = u.int_in_range(1..=3)?;
    let mut segs = Vec::new();
    for i in 0..n {
        let len = u.int_in_range(1..=8)?;
        let mut s = String::new();
        for j in 0..len {
            let c = *u.choose(b"abcxyzABZ_$019")?;
            let c = if i == 0 && j == 0 && c.is_ascii_digit() { b'k' } else { c };
            s.push(c as char);
        }
        segs.push(s);
    }
    if segs.len() == 1 && KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(&segs[0])) {
        segs[0].push('x');
    }
    Ok(segs)
}

fn literal(u: &mut Unstructured) -> ArbResult<Literal> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Literal::String(u.arbitrary()?),
        1 => Literal::Int(u.arbitrary()?),
        2 => {
            let x: f64 = u.arbitrary()?;
            Literal::Float(if x.is_nan() { 0.5 } else { x })
        }
        3 => Literal::Bool(u.arbitrary()?),
        4 => Literal::Null,
        _ => {
            // Years 1..=9999, in 100 ns steps as the service keeps them.
            let secs = u.int_in_range(-62_135_596_800i64..=253_402_300_799)?;
            let nanos = u.int_in_range(0u32..=9_999_999)? * 100;
            Literal::DateTime(Utc.timestamp_opt(secs, nanos).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH))
        }
    })
}

/// A filter as the parser builds them: the property on the left, paths
/// that are not keywords, `not` over anything.
pub fn arbitrary_filter(u: &mut Unstructured, depth: usize) -> ArbResult<Filter> {
    let leaf_only = depth >= 6;
    Ok(match u.int_in_range(0..=if leaf_only { 2 } else { 5 })? {
        0 => {
            let ops = [CmpOp::Eq, CmpOp::Ne, CmpOp::Gt, CmpOp::Ge, CmpOp::Lt, CmpOp::Le];
            Filter::Compare { path: path(u)?, op: *u.choose(&ops)?, value: literal(u)? }
        }
        1 => Filter::StartsWith { path: path(u)?, prefix: u.arbitrary()? },
        2 => Filter::Truthy { path: path(u)? },
        3 => Filter::Not(Box::new(arbitrary_filter(u, depth + 1)?)),
        4 => Filter::And(Box::new(arbitrary_filter(u, depth + 1)?), Box::new(arbitrary_filter(u, depth + 1)?)),
        _ => Filter::Or(Box::new(arbitrary_filter(u, depth + 1)?), Box::new(arbitrary_filter(u, depth + 1)?)),
    })
}
