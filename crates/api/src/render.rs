//! Turning stored documents into response bodies: `url`, `odata.metadata`,
//! `$select`, `$expand`, and list pages with an absolute `odata.nextLink`.

use crate::http::{encode_query_value, Ctx};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use wire::odata::{parse_filter, parse_list, Filter};
use wire::{Error, ErrorCode};

/// The most items a page may hold, and the default.
pub const MAX_RESULTS: usize = 1000;

/// Parsed list options of a request.
#[derive(Debug, Default)]
pub struct ListOptions {
    pub filter: Option<(String, Filter)>,
    pub select: Option<(String, Vec<String>)>,
    pub expand: Option<(String, Vec<String>)>,
    pub max_results: Option<usize>,
    pub after: Option<String>,
}

fn bad_query(name: &str, reason: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidQueryParameterValue).with("QueryParameterName", name).with("Reason", reason)
}

/// A `$select` or `$expand` option: its text, and the names it lists.
pub type Selection = Option<(String, Vec<String>)>;

/// `$select` and `$expand` (only `stats` can be expanded).
pub fn select_expand(ctx: &Ctx) -> Result<(Selection, Selection), Error> {
    let select = match ctx.q("$select") {
        Some(s) => Some((s.to_string(), parse_list(s).map_err(|e| bad_query("$select", e.to_string()))?)),
        None => None,
    };
    let expand = match ctx.q("$expand") {
        Some(s) => {
            let items = parse_list(s).map_err(|e| bad_query("$expand", e.to_string()))?;
            if let Some(bad) = items.iter().find(|i| !i.eq_ignore_ascii_case("stats")) {
                return Err(bad_query("$expand", format!("'{bad}' cannot be expanded; only 'stats' can")));
            }
            Some((s.to_string(), items))
        }
        None => None,
    };
    Ok((select, expand))
}

pub fn list_options(ctx: &Ctx) -> Result<ListOptions, Error> {
    let (select, expand) = select_expand(ctx)?;
    let filter = match ctx.q("$filter") {
        Some(f) if !f.trim().is_empty() => Some((f.to_string(), parse_filter(f).map_err(|e| bad_query("$filter", e.to_string()))?)),
        _ => None,
    };
    let max_results = match ctx.q("maxresults") {
        Some(v) => {
            let n: i64 = v.trim().parse().map_err(|_| bad_query("maxresults", "The value must be an integer."))?;
            if !(1..=MAX_RESULTS as i64).contains(&n) {
                return Err(Error::new(ErrorCode::OutOfRangeQueryParameterValue)
                    .with("QueryParameterName", "maxresults")
                    .with("Reason", format!("The value must be between 1 and {MAX_RESULTS}.")));
            }
            Some(n as usize)
        }
        None => None,
    };
    let after = match ctx.q("$skiptoken") {
        Some(t) if !t.is_empty() => {
            let raw = URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')).map_err(|_| bad_query("$skiptoken", "The token is not valid."))?;
            Some(String::from_utf8(raw).map_err(|_| bad_query("$skiptoken", "The token is not valid."))?)
        }
        _ => None,
    };
    Ok(ListOptions { filter, select, expand, max_results, after })
}

impl ListOptions {
    pub fn limit(&self) -> usize {
        self.max_results.unwrap_or(MAX_RESULTS)
    }
    pub fn expands_stats(&self) -> bool {
        self.expand.is_some()
    }
    pub fn store_query(&self) -> store::ListQuery {
        store::ListQuery { filter: self.filter.as_ref().map(|(_, f)| f.clone()), after: self.after.clone(), limit: self.limit() }
    }

    /// An absolute link to the next page that carries every list option, so
    /// that clients which GET it verbatim (14.x, JS) and clients that rebuild
    /// the query from it (15.x) both get the same page.
    pub fn next_link(&self, ctx: &Ctx, after_key: &str) -> String {
        let mut q = format!("api-version={}", encode_query_value(&ctx.api_version));
        if let Some(n) = self.max_results {
            q.push_str(&format!("&maxresults={n}"));
        }
        for (name, v) in [
            ("$filter", &self.filter.as_ref().map(|f| &f.0)),
            ("$select", &self.select.as_ref().map(|s| &s.0)),
            ("$expand", &self.expand.as_ref().map(|s| &s.0)),
        ] {
            if let Some(v) = v {
                q.push_str(&format!("&{name}={}", encode_query_value(v)));
            }
        }
        q.push_str(&format!("&$skiptoken={}", URL_SAFE_NO_PAD.encode(after_key.as_bytes())));
        format!("{}{}?{}", ctx.base_url, ctx.path, q)
    }
}

/// Parses a stored document, adds its `url`, drops internal fields (names
/// starting with `_`), and `stats` unless expanded.
pub fn resource(doc: &str, url: String, keep_stats: bool) -> Result<Map<String, Value>, Error> {
    let mut m: Map<String, Value> =
        serde_json::from_str(doc).map_err(|e| Error::internal(format!("stored document is unreadable: {e}")))?;
    m.retain(|k, _| !k.starts_with('_') && (keep_stats || k != "stats"));
    // Put `url` after `id`, as the service does.
    let mut out = Map::with_capacity(m.len() + 1);
    let mut placed = false;
    for (k, v) in m {
        let is_id = k == "id";
        out.insert(k, v);
        if is_id {
            out.insert("url".into(), Value::String(url.clone()));
            placed = true;
        }
    }
    if !placed {
        out.insert("url".into(), Value::String(url));
    }
    Ok(out)
}

/// Keeps only the `$select`ed properties (case-insensitively).
pub fn apply_select(m: &mut Map<String, Value>, select: Option<&[String]>) {
    if let Some(sel) = select {
        m.retain(|k, _| sel.iter().any(|s| s.eq_ignore_ascii_case(k)));
    }
}

/// A single resource body, with `odata.metadata` first.
pub fn single(ctx: &Ctx, entity_set: &str, m: Map<String, Value>) -> String {
    let mut out = Map::with_capacity(m.len() + 1);
    out.insert("odata.metadata".into(), Value::String(format!("{}/$metadata#{}/@Element", ctx.base_url, entity_set)));
    out.extend(m);
    serde_json::to_string(&Value::Object(out)).unwrap_or_default()
}

/// A list page body.
pub fn list(ctx: &Ctx, entity_set: &str, items: Vec<Value>, next: Option<String>) -> String {
    let mut out = Map::new();
    out.insert("odata.metadata".into(), Value::String(format!("{}/$metadata#{}", ctx.base_url, entity_set)));
    out.insert("value".into(), Value::Array(items));
    if let Some(n) = next {
        out.insert("odata.nextLink".into(), Value::String(n));
    }
    serde_json::to_string(&Value::Object(out)).unwrap_or_default()
}

/// Evaluates a filter against a rendered document (for small in-memory
/// lists such as a pool's nodes).
pub fn matches(f: &Filter, doc: &Map<String, Value>) -> bool {
    use wire::odata::{CmpOp, Literal};
    let get = |path: &[String]| -> Option<&Value> {
        let mut cur = doc.get(path.first()?)?;
        for p in &path[1..] {
            cur = cur.get(p)?;
        }
        Some(cur)
    };
    match f {
        Filter::And(a, b) => matches(a, doc) && matches(b, doc),
        Filter::Or(a, b) => matches(a, doc) || matches(b, doc),
        Filter::Not(a) => !matches(a, doc),
        Filter::Truthy { path } => get(path).and_then(Value::as_bool).unwrap_or(false),
        Filter::StartsWith { path, prefix } => get(path).and_then(Value::as_str).is_some_and(|s| s.starts_with(prefix.as_str())),
        Filter::Compare { path, op, value } => {
            let v = get(path);
            let ord = match (v, value) {
                (None | Some(Value::Null), Literal::Null) => Some(std::cmp::Ordering::Equal),
                (None | Some(Value::Null), _) | (_, Literal::Null) => None,
                (Some(Value::String(s)), Literal::String(l)) => Some(s.to_ascii_lowercase().cmp(&l.to_ascii_lowercase())),
                (Some(Value::String(s)), Literal::DateTime(t)) => wire::time::parse_datetime(s).map(|d| d.cmp(t)),
                (Some(Value::Number(n)), Literal::Int(i)) => n.as_f64().and_then(|x| x.partial_cmp(&(*i as f64))),
                (Some(Value::Number(n)), Literal::Float(x)) => n.as_f64().and_then(|y| y.partial_cmp(x)),
                (Some(Value::Bool(b)), Literal::Bool(l)) => Some(b.cmp(l)),
                _ => None,
            };
            match (ord, op) {
                (Some(o), CmpOp::Eq) => o.is_eq(),
                (Some(o), CmpOp::Ne) => o.is_ne(),
                (None, CmpOp::Ne) => true,
                (Some(o), CmpOp::Gt) => o.is_gt(),
                (Some(o), CmpOp::Ge) => o.is_ge(),
                (Some(o), CmpOp::Lt) => o.is_lt(),
                (Some(o), CmpOp::Le) => o.is_le(),
                (None, _) => false,
            }
        }
    }
}

/// A node as the Batch API shows it (`ComputeNode` / `BatchNode`).
pub fn node(n: &control::Node, base_url: &str, vm_size: &str) -> Map<String, Value> {
    let url = format!("{base_url}/pools/{}/nodes/{}", wire::encode_segment(&n.pool_id), wire::encode_segment(&n.id));
    let v = serde_json::json!({
        "id": n.id,
        "url": url,
        "state": n.state,
        "schedulingState": if n.scheduling_enabled { "enabled" } else { "disabled" },
        "stateTransitionTime": n.state_transition_time,
        "lastBootTime": n.last_boot_time,
        "allocationTime": n.allocation_time,
        "ipAddress": n.ip,
        "affinityId": format!("TVM:{}", n.id),
        "vmSize": vm_size,
        "totalTasksRun": n.total_run,
        "runningTasksCount": n.running.len(),
        "runningTaskSlotsCount": n.used(),
        "totalTasksSucceeded": n.total_succeeded,
        "recentTasks": n.recent.iter().cloned().collect::<Vec<_>>(),
        "isDedicated": n.is_dedicated,
        "endpointConfiguration": {"inboundEndpoints": []},
        "nodeAgentInfo": {"version": n.agent_version, "lastUpdateTime": n.allocation_time},
    });
    let mut v = v;
    if let (Some(info), Value::Object(m)) = (&n.start_task_info, &mut v) {
        m.insert("startTaskInfo".into(), Value::Object(info.clone()));
    }
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
