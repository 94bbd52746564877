//! `GET /metrics`: the server's measurements for Prometheus.
//!
//! Where each is recorded: HTTP requests by operation and status in
//! [`crate::handle`] ([`Metrics::record`]); group commits in the store's
//! writer (`store::metrics::COMMIT_SECONDS`); completions where a task's row
//! is written (`store::metrics::COMPLETED_*`); dispatch latency where a task
//! turns `running` (`control::metrics::DISPATCH_SECONDS`). Task counts come
//! from the store's per-job counters, node counts and node CPU and memory
//! (what each agent measures of its machine with its heartbeat) from the
//! control plane's registry at each scrape. No label carries a job or task id: the
//! operation (one of the router's), the status code, the task state and
//! result, and the pool id (bounded by the pools that exist).
//!
//! Served on the API's port without the account key (as Prometheus scrapes),
//! optionally behind a bearer token, on its own address, or not at all
//! ([`MetricsConfig`]).

use axum::body::Body;
use axum::http::{HeaderMap, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The path scraped, on the API's port or the metrics address.
pub const PATH: &str = "/metrics";

/// Where and how `/metrics` is served.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Not served at all.
    pub off: bool,
    /// Served on its own listener (started by the binary with `crate::serve_metrics`)
    /// rather than on the API's port.
    pub separate: bool,
    /// A scrape must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

type OpCode = [(&'static str, OpOrCode); 2];
/// One label with a fixed set of values (operation, state, result).
type One = [(&'static str, &'static str); 1];

/// A label value that is either an operation's name or a status code.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum OpOrCode {
    Op(&'static str),
    Code(u16),
}

impl prometheus_client::encoding::EncodeLabelValue for OpOrCode {
    fn encode(&self, e: &mut prometheus_client::encoding::LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            OpOrCode::Op(s) => s.encode(e),
            OpOrCode::Code(c) => c.encode(e),
        }
    }
}

fn http_histogram() -> Histogram {
    // 0.25 ms to 8 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// The API's own measurements (the rest are the store's and the control
/// plane's statics).
pub struct Metrics {
    requests: Family<OpCode, Counter>,
    durations: Family<One, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { requests: Family::default(), durations: Family::new_with_constructor(http_histogram) }
    }
}

impl Metrics {
    /// One API request answered: its operation's name (`unrouted` when it
    /// failed before routing, e.g. authentication), status and duration.
    pub fn record(&self, operation: &'static str, status: u16, elapsed: Duration) {
        self.requests.get_or_create(&[("operation", OpOrCode::Op(operation)), ("code", OpOrCode::Code(status))]).inc();
        self.durations.get_or_create(&[("operation", operation)]).observe(elapsed.as_secs_f64());
    }
}

/// The exposition, in the OpenMetrics text format (`openmetrics`) or the
/// Prometheus text format 0.0.4 (`# EOF` left out and counters typed under
/// their `_total` name).
pub async fn render(store: &store::Store, cluster: &control::Cluster, http: &Metrics, openmetrics: bool) -> Result<String, wire::Error> {
    let totals = store.task_totals().await?;
    let mut reg = Registry::default();

    let tasks = Family::<One, Gauge>::default();
    for (state, n) in
        [("active", totals.active), ("preparing", totals.preparing), ("running", totals.running), ("completed", totals.completed)]
    {
        tasks.get_or_create(&[("state", state)]).set(n);
    }
    reg.register("openbatch_tasks", "Tasks stored, by state", tasks);

    let completed = Family::<One, Counter>::default();
    completed.get_or_create(&[("result", "success")]).inc_by(store::metrics::COMPLETED_SUCCESS.get());
    completed.get_or_create(&[("result", "failure")]).inc_by(store::metrics::COMPLETED_FAILURE.get());
    reg.register("openbatch_tasks_completed", "Tasks that completed since the server started, by result", completed);

    let nodes = Family::<[(&'static str, String); 2], Gauge>::default();
    for (pool, state, n) in cluster.node_counts() {
        nodes.get_or_create(&[("pool", pool), ("state", state.as_str().to_string())]).set(n as i64);
    }
    reg.register("openbatch_nodes", "Compute nodes connected, by pool and state", nodes);

    // What the agents measure of their machines, per pool (node ids are
    // not labels: pools that scale would make them unbounded).
    let mut by_pool: std::collections::BTreeMap<String, (f64, u32, i64, bool)> = Default::default();
    for (pool, _, load) in cluster.node_loads() {
        let e = by_pool.entry(pool).or_default();
        if let Some(c) = load.cpu_percent {
            e.0 += c / 100.0;
            e.1 += 1;
        }
        if let Some(m) = load.memory_bytes {
            e.2 += m as i64;
            e.3 = true;
        }
    }
    let cpu = Family::<[(&'static str, String); 1], Gauge<f64, AtomicU64>>::default();
    let memory = Family::<[(&'static str, String); 1], Gauge>::default();
    for (pool, (cpu_sum, measured, mem, has_mem)) in by_pool {
        if measured > 0 {
            cpu.get_or_create(&[("pool", pool.clone())]).set(cpu_sum / f64::from(measured));
        }
        if has_mem {
            memory.get_or_create(&[("pool", pool)]).set(mem);
        }
    }
    reg.register(
        "openbatch_node_cpu_utilization_ratio",
        "Average CPU busy share of a pool's nodes between their agents' last two measurements (0 to 1)",
        cpu,
    );
    reg.register("openbatch_node_memory_used_bytes", "Memory in use on a pool's nodes, summed, as their agents last measured", memory);

    reg.register(
        "openbatch_task_dispatch_latency_seconds",
        "Time from a task becoming ready (added, retried or reactivated) to its process starting on a node; tasks with dependencies are not counted",
        control::metrics::DISPATCH_SECONDS.clone(),
    );
    reg.register("openbatch_http_requests", "API requests answered, by operation and status code", http.requests.clone());
    reg.register("openbatch_http_request_duration_seconds", "API request duration, by operation", http.durations.clone());
    reg.register(
        "openbatch_store_commit_duration_seconds",
        "Duration of the store writer's group commits (the group's writes and the commit)",
        store::metrics::COMMIT_SECONDS.clone(),
    );

    let mut out = String::with_capacity(16 * 1024);
    encode(&mut out, &reg).map_err(wire::Error::internal)?;
    if openmetrics {
        return Ok(out);
    }
    // The 0.0.4 text format: no `# EOF`; a counter's HELP/TYPE lines name
    // its samples (`x_total`), not the OpenMetrics family (`x`).
    let counters: Vec<String> =
        out.lines().filter_map(|l| l.strip_prefix("# TYPE ").and_then(|r| r.strip_suffix(" counter")).map(str::to_string)).collect();
    let mut plain = String::with_capacity(out.len());
    for line in out.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.iter().any(|c| c == name).then(|| format!("{p}{name}_total {tail}"))
        });
        plain.push_str(renamed.as_deref().unwrap_or(line));
        plain.push('\n');
    }
    Ok(plain)
}

/// A plain answer of the metrics endpoint.
pub fn answer(status: u16, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// Answers a request for [`PATH`]: the token checked when one is set, GET
/// (or HEAD) only.
pub async fn scrape(
    (store, cluster, http): (&store::Store, &control::Cluster, &Metrics),
    config: &MetricsConfig,
    method: &axum::http::Method,
    headers: &HeaderMap,
) -> Response<Body> {
    if let Some(token) = &config.token {
        use subtle::ConstantTimeEq;
        let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            let mut r = answer(401, "text/plain; charset=utf-8", "a bearer token is required\n".into());
            r.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer realm=\"metrics\""));
            return r;
        }
    }
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        let mut r = answer(405, "text/plain; charset=utf-8", "GET only\n".into());
        r.headers_mut().insert("allow", axum::http::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let openmetrics = headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"));
    match render(store, cluster, http, openmetrics).await {
        Ok(text) if openmetrics => answer(200, "application/openmetrics-text; version=1.0.0; charset=utf-8", text),
        Ok(text) => answer(200, "text/plain; version=0.0.4; charset=utf-8", text),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the metrics");
            answer(500, "text/plain; charset=utf-8", "cannot read the metrics\n".into())
        }
    }
}
