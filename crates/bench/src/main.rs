//! `openbatch-bench`: a small load generator that signs requests as the SDKs
//! do, fast enough not to be the bottleneck, with its own baseline (the same
//! generator against an in-process HTTP sink that does no work).
//!
//! Subcommands print one JSON object on stdout with their figures.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod autoscale_eval;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Target {
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    account: String,
    #[arg(long)]
    key: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Adds tasks through addtaskcollection from concurrent clients.
    Ingest {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        job: String,
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Create the job first.
        #[arg(long)]
        create_job: bool,
    },
    /// The ingest generator against an in-process sink: the generator's own ceiling.
    Baseline {
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        batch: usize,
    },
    /// GET task latency over random ids of a job filled by `ingest`.
    Latency {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        job: String,
        #[arg(long)]
        tasks: usize,
        #[arg(long, default_value_t = 5000)]
        samples: usize,
    },
    /// Runs trivial tasks end to end on one local node: pool, job (disabled
    /// while the tasks are added), enable, wait for all to complete.
    RunTasks {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 20_000)]
        tasks: usize,
        #[arg(long, default_value_t = 2)]
        slots: u32,
        #[arg(long, default_value = "/bin/true")]
        command: String,
    },
    /// Dependency release latency: a chain of `tasks` trivial tasks, each
    /// depending on the one before; reports the time from each task's end to
    /// its dependent's start.
    DepLatency {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 200)]
        tasks: usize,
    },
    /// One job of trivial tasks on a pool of one local node with `slots`
    /// slots, shaped as `shape`: `dag` (a root, `tasks - 2` tasks that depend
    /// on it, and a sink that depends on all of them through one id range) or
    /// `independent`. Prints the time from enable to all completed.
    Dag {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        #[arg(long, default_value_t = 2)]
        slots: u32,
        #[arg(long, default_value = "dag")]
        shape: String,
        /// Pool and job id (distinct per run on one server).
        #[arg(long, default_value = "dag")]
        name: String,
    },
    /// Latency from add to start on an idle node (creationTime → startTime of each task).
    StartLatency {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
    /// What the Batch task directory layout costs the file system that
    /// holds `dir`: for each of `count` tasks, a task directory in one job
    /// directory, its `wd/`, and empty `stdout.txt` and `stderr.txt` (what
    /// the agent creates per task and the raw spawn rate does not), from
    /// `threads` threads, then removed.
    LayoutCost {
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// The machine's raw spawn rate: `command` run `count` times with
    /// std::process::Command and process_group(0), from `threads` threads.
    RawSpawn {
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value = "/bin/true")]
        command: String,
    },
    /// A pool of one local node, a job and a task whose command writes
    /// `mib` MiB of random bytes to `wd/big.bin`; waits until it completed.
    FileTask {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// Downloads one file through the API with a signed GET (`path` is the
    /// request path, e.g. `/jobs/j/tasks/t/files/wd/big.bin`), counting and
    /// discarding the bytes as they arrive.
    Download {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        path: String,
    },
    /// Autoscale formula evaluation: the documentation's longest example
    /// over 24 hours of 30-second samples of every sampled variable (2,880
    /// each), median of `runs` evaluations, next to a formula that only
    /// assigns a constant; and the bytes those samples take per pool.
    AutoscaleEval {
        #[arg(long, default_value_t = 2000)]
        runs: usize,
    },
    /// Latency of one page of a filtered list.
    Filter {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        job: String,
        #[arg(long)]
        filter: String,
        #[arg(long, default_value_t = 50)]
        samples: usize,
    },
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build(connector)
}

/// Sends one signed request; returns status and body.
async fn send(c: &HttpClient, t: &Target, key: &[u8], method: Method, target: &str, body: Bytes) -> Result<(u16, Bytes), String> {
    let mut req = Request::builder().method(method.clone()).uri(format!("{}{}", t.endpoint, target));
    let headers = req.headers_mut().ok_or("bad request")?;
    headers.insert("ocp-date", httpdate::fmt_http_date(std::time::SystemTime::now()).parse().map_err(|_| "date")?);
    if !body.is_empty() || method == Method::POST {
        headers.insert("content-length", body.len().to_string().parse().map_err(|_| "len")?);
    }
    if !body.is_empty() {
        headers.insert("content-type", "application/json; odata=minimalmetadata".parse().map_err(|_| "ct")?);
    }
    let auth = api::sharedkey::sign(&t.account, key, &method, target, headers);
    headers.insert("authorization", auth.parse().map_err(|_| "auth")?);
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = c.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, bytes))
}

/// Creates a pool with one local node and a disabled job on it that uses
/// task dependencies, adds `bodies` (100 a request, 4 clients), enables the
/// job and waits until every task completed. Returns the seconds from enable
/// to all completed.
async fn run_job(c: &HttpClient, t: &Target, pool: &str, job: &str, slots: u32, bodies: Vec<Value>) -> Result<f64, String> {
    let n = bodies.len();
    call(c, t, Method::POST, "/pools", json!({"id": pool, "vmSize": "local", "targetDedicatedNodes": 1, "taskSlotsPerNode": slots}))
        .await?;
    wait_idle_node(c, t, pool).await?;
    call(c, t, Method::POST, "/jobs", json!({"id": job, "poolInfo": {"poolId": pool}, "usesTaskDependencies": true})).await?;
    call(c, t, Method::POST, &format!("/jobs/{job}/disable"), json!({"disableTasks": "requeue"})).await?;
    for _ in 0..200 {
        if call(c, t, Method::GET, &format!("/jobs/{job}"), Value::Null).await?["state"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all: Vec<Bytes> = bodies.chunks(100).map(|b| Bytes::from(json!({"value": b}).to_string())).collect();
    let (_, ok, errors) = ingest(t.clone(), job, all, 4).await;
    if errors > 0 || ok != n {
        return Err(format!("adding tasks failed: {ok} ok, {errors} errors"));
    }
    let start = Instant::now();
    call(c, t, Method::POST, &format!("/jobs/{job}/enable"), Value::Null).await?;
    loop {
        let counts = call(c, t, Method::GET, &format!("/jobs/{job}/taskcounts"), Value::Null).await?;
        if counts["taskCounts"]["completed"].as_u64() == Some(n as u64) {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > Duration::from_secs(3600) {
            return Err("the tasks did not complete within an hour".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Each task's (start, end) in milliseconds since the epoch.
async fn task_times(c: &HttpClient, t: &Target, job: &str) -> Result<std::collections::HashMap<String, (f64, f64)>, String> {
    let mut out = std::collections::HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("/jobs/{job}/tasks?$select=id,executionInfo&$skiptoken={a}"),
            None => format!("/jobs/{job}/tasks?$select=id,executionInfo"),
        };
        let page = call(c, t, Method::GET, &q, Value::Null).await?;
        for tk in page["value"].as_array().into_iter().flatten() {
            let e = &tk["executionInfo"];
            if let (Some(id), Some(s), Some(f)) =
                (tk["id"].as_str(), e["startTime"].as_str().and_then(chrono_like), e["endTime"].as_str().and_then(chrono_like))
            {
                out.insert(id.to_string(), (s, f));
            }
        }
        match page["odata.nextLink"].as_str().and_then(|l| l.split("$skiptoken=").nth(1)) {
            Some(tok) => after = Some(tok.to_string()),
            None => break,
        }
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Pre-built addtaskcollection bodies: `tasks` tasks in batches of `batch`.
fn bodies(tasks: usize, batch: usize, prefix: &str) -> Vec<Bytes> {
    (0..tasks)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|ids| {
            let value: Vec<Value> = ids.iter().map(|i| json!({"id": format!("{prefix}{i:07}"), "commandLine": "/bin/true"})).collect();
            Bytes::from(json!({ "value": value }).to_string())
        })
        .collect()
}

/// Sends all bodies from `clients` concurrent clients; returns (seconds, acknowledged tasks, errors).
async fn ingest(t: Target, job: &str, all: Vec<Bytes>, clients: usize) -> (f64, usize, usize) {
    let key = Arc::new(STANDARD.decode(&t.key).unwrap_or_default());
    let queue = Arc::new(std::sync::Mutex::new(all));
    let target = format!("/jobs/{job}/addtaskcollection?api-version=2025-06-01");
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (queue, key, t, target) = (queue.clone(), key.clone(), t.clone(), target.clone());
        handles.push(tokio::spawn(async move {
            let c = client();
            let (mut ok, mut errors) = (0usize, 0usize);
            loop {
                let body = match queue.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                    Some(b) => b,
                    None => break,
                };
                match send(&c, &t, &key, Method::POST, &target, body).await {
                    Ok((200, bytes)) => {
                        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        for r in v["value"].as_array().into_iter().flatten() {
                            if r["status"] == "success" {
                                ok += 1;
                            } else {
                                errors += 1;
                            }
                        }
                    }
                    Ok((status, bytes)) => {
                        errors += 1;
                        eprintln!("addtaskcollection answered {status}: {}", String::from_utf8_lossy(&bytes));
                    }
                    Err(e) => {
                        errors += 1;
                        eprintln!("request failed: {e}");
                    }
                }
            }
            (ok, errors)
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for h in handles {
        if let Ok((o, e)) = h.await {
            ok += o;
            errors += e;
        }
    }
    (started.elapsed().as_secs_f64(), ok, errors)
}

/// An HTTP server that answers every request with a small success body.
async fn sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let addr = listener.local_addr().expect("sink addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"{\"value\":[]}"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
            });
        }
    });
    format!("http://{addr}")
}

async fn call(c: &HttpClient, t: &Target, method: Method, target: &str, body: Value) -> Result<Value, String> {
    let key = STANDARD.decode(&t.key).unwrap_or_default();
    let bytes = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
    let (status, out) =
        send(c, t, &key, method, &format!("{target}{}api-version=2025-06-01", if target.contains('?') { "&" } else { "?" }), bytes).await?;
    if !(200..300).contains(&status) {
        return Err(format!("{target}: {status} {}", String::from_utf8_lossy(&out)));
    }
    Ok(if out.is_empty() { Value::Null } else { serde_json::from_slice(&out).unwrap_or(Value::Null) })
}

async fn wait_idle_node(c: &HttpClient, t: &Target, pool: &str) -> Result<(), String> {
    for _ in 0..600 {
        let nodes = call(c, t, Method::GET, &format!("/pools/{pool}/nodes"), Value::Null).await?;
        if nodes["value"].as_array().is_some_and(|a| !a.is_empty() && a.iter().all(|n| n["state"] == "idle")) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the node did not become idle".into())
}

fn ms_between(a: &Value, b: &Value) -> Option<f64> {
    let p = |v: &Value| v.as_str().and_then(chrono_like);
    Some(p(b)? - p(a)?)
}

/// Milliseconds since the epoch of an ISO timestamp `YYYY-MM-DDTHH:MM:SS.fffffffZ` (UTC).
fn chrono_like(s: &str) -> Option<f64> {
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + t[0] * 3600 + t[1] * 60 + t[2];
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    Some(secs as f64 * 1000.0 + frac * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    let out = match cli.cmd {
        Cmd::Ingest { t, job, tasks, clients, batch, create_job } => {
            if create_job {
                let key = STANDARD.decode(&t.key).unwrap_or_default();
                // The job's pool: no nodes, so the tasks stay active.
                let pool = Bytes::from(json!({"id": "benchpool", "vmSize": "standard_d2s_v3"}).to_string());
                match send(&client(), &t, &key, Method::POST, "/pools?api-version=2025-06-01", pool).await {
                    Ok((201 | 409, _)) => {}
                    other => {
                        eprintln!("creating the pool failed: {other:?}");
                        std::process::exit(1);
                    }
                }
                let body = Bytes::from(json!({"id": job, "poolInfo": {"poolId": "benchpool"}}).to_string());
                match send(&client(), &t, &key, Method::POST, "/jobs?api-version=2025-06-01", body).await {
                    Ok((201, _)) => {}
                    other => {
                        eprintln!("creating the job failed: {other:?}");
                        std::process::exit(1);
                    }
                }
            }
            let all = bodies(tasks, batch, "t");
            let (secs, ok, errors) = ingest(t, &job, all, clients).await;
            json!({"tasks_acknowledged": ok, "errors": errors, "seconds": secs, "tasks_per_second": ok as f64 / secs})
        }
        Cmd::Baseline { tasks, clients, batch } => {
            let endpoint = sink().await;
            let t = Target { endpoint, account: "sink".into(), key: STANDARD.encode(b"sink") };
            let (secs, _, errors) = ingest(t, "sink", bodies(tasks, batch, "t"), clients).await;
            json!({"tasks_sent": tasks, "errors": errors, "seconds": secs, "tasks_per_second": tasks as f64 / secs})
        }
        Cmd::RunTasks { t, tasks, slots, command } => {
            let c = client();
            let r: Result<Value, String> = async {
                call(&c, &t, Method::POST, "/pools", json!({"id": "runpool", "vmSize": "local", "targetDedicatedNodes": 1, "taskSlotsPerNode": slots})).await?;
                wait_idle_node(&c, &t, "runpool").await?;
                call(&c, &t, Method::POST, "/jobs", json!({"id": "runjob", "poolInfo": {"poolId": "runpool"}})).await?;
                call(&c, &t, Method::POST, "/jobs/runjob/disable", json!({"disableTasks": "requeue"})).await?;
                for _ in 0..200 {
                    if call(&c, &t, Method::GET, "/jobs/runjob", Value::Null).await?["state"] == "disabled" { break; }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let all: Vec<Bytes> = (0..tasks)
                    .collect::<Vec<_>>()
                    .chunks(100)
                    .map(|ids| Bytes::from(json!({"value": ids.iter().map(|i| json!({"id": format!("r{i:07}"), "commandLine": command})).collect::<Vec<_>>()}).to_string()))
                    .collect();
                let (_, ok, errors) = ingest(t.clone(), "runjob", all, 4).await;
                if errors > 0 || ok != tasks { return Err(format!("adding tasks failed: {ok} ok, {errors} errors")); }
                let start = Instant::now();
                call(&c, &t, Method::POST, "/jobs/runjob/enable", Value::Null).await?;
                let mut succeeded = 0;
                loop {
                    let counts = call(&c, &t, Method::GET, "/jobs/runjob/taskcounts", Value::Null).await?;
                    if counts["taskCounts"]["completed"].as_u64() == Some(tasks as u64) {
                        succeeded = counts["taskCounts"]["succeeded"].as_u64().unwrap_or(0);
                        break;
                    }
                    if start.elapsed() > Duration::from_secs(1800) { break; }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let secs = start.elapsed().as_secs_f64();
                // The time from the first start to the last end, from the tasks themselves.
                let mut first = f64::MAX;
                let mut last: f64 = 0.0;
                let mut after: Option<String> = None;
                loop {
                    let q = match &after { Some(a) => format!("/jobs/runjob/tasks?$select=executionInfo&$skiptoken={a}"), None => "/jobs/runjob/tasks?$select=executionInfo".into() };
                    let page = call(&c, &t, Method::GET, &q, Value::Null).await?;
                    for tk in page["value"].as_array().into_iter().flatten() {
                        if let (Some(s), Some(e)) = (tk["executionInfo"]["startTime"].as_str().and_then(chrono_like), tk["executionInfo"]["endTime"].as_str().and_then(chrono_like)) {
                            first = first.min(s);
                            last = last.max(e);
                        }
                    }
                    match page["odata.nextLink"].as_str().and_then(|l| l.split("$skiptoken=").nth(1)) {
                        Some(tok) => after = Some(tok.to_string()),
                        None => break,
                    }
                }
                let busy = (last - first) / 1000.0;
                Ok(json!({"tasks": tasks, "slots": slots, "succeeded": succeeded, "seconds_enable_to_all_completed": secs,
                          "tasks_per_second": tasks as f64 / secs, "seconds_first_start_to_last_end": busy,
                          "tasks_per_second_running": tasks as f64 / busy}))
            }.await;
            r.unwrap_or_else(|e| json!({"error": e}))
        }
        Cmd::DepLatency { t, tasks } => {
            let c = client();
            let r: Result<Value, String> = async {
                let job = "depchain";
                let bodies: Vec<Value> = (0..tasks)
                    .map(|i| match i {
                        0 => json!({"id": "c0", "commandLine": "/bin/true"}),
                        _ => json!({"id": format!("c{i}"), "commandLine": "/bin/true", "dependsOn": {"taskIds": [format!("c{}", i - 1)]}}),
                    })
                    .collect();
                run_job(&c, &t, "deppool", job, 1, bodies).await?;
                let times = task_times(&c, &t, job).await?;
                let mut lat: Vec<f64> =
                    (1..tasks).filter_map(|i| Some(times.get(&format!("c{i}"))?.0 - times.get(&format!("c{}", i - 1))?.1)).collect();
                lat.sort_by(|a, b| a.total_cmp(b));
                Ok(json!({"samples": lat.len(), "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99), "max_ms": lat.last()}))
            }
            .await;
            r.unwrap_or_else(|e| json!({"error": e}))
        }
        Cmd::Dag { t, tasks, slots, shape, name } => {
            let c = client();
            let r: Result<Value, String> = async {
                let n = tasks.max(3);
                let bodies: Vec<Value> = match shape.as_str() {
                    "independent" => (0..n).map(|i| json!({"id": format!("{i}"), "commandLine": "/bin/true"})).collect(),
                    "dag" => (0..n)
                        .map(|i| match i {
                            0 => json!({"id": "root", "commandLine": "/bin/true"}),
                            i if i == n - 1 => json!({"id": "sink", "commandLine": "/bin/true",
                                                      "dependsOn": {"taskIdRanges": [{"start": 1, "end": n - 2}]}}),
                            i => json!({"id": format!("{i}"), "commandLine": "/bin/true", "dependsOn": {"taskIds": ["root"]}}),
                        })
                        .collect(),
                    other => return Err(format!("unknown shape {other}")),
                };
                let secs = run_job(&c, &t, &name, &name, slots, bodies).await?;
                Ok(json!({"shape": shape, "tasks": n, "seconds": secs, "tasks_per_second": n as f64 / secs}))
            }
            .await;
            r.unwrap_or_else(|e| json!({"error": e}))
        }
        Cmd::FileTask { t, mib } => {
            let c = client();
            let r: Result<Value, String> = async {
                call(&c, &t, Method::POST, "/pools", json!({"id": "filepool", "vmSize": "local", "targetDedicatedNodes": 1})).await?;
                wait_idle_node(&c, &t, "filepool").await?;
                call(&c, &t, Method::POST, "/jobs", json!({"id": "filejob", "poolInfo": {"poolId": "filepool"}})).await?;
                let cmd = format!("/bin/sh -c 'head -c {} /dev/urandom > big.bin'", mib * 1024 * 1024);
                call(&c, &t, Method::POST, "/jobs/filejob/tasks", json!({"id": "big", "commandLine": cmd})).await?;
                let start = Instant::now();
                loop {
                    let tk = call(&c, &t, Method::GET, "/jobs/filejob/tasks/big", Value::Null).await?;
                    if tk["state"] == "completed" {
                        if tk["executionInfo"]["exitCode"] != 0 {
                            return Err(format!("the task failed: {}", tk["executionInfo"]));
                        }
                        break;
                    }
                    if start.elapsed() > Duration::from_secs(600) {
                        return Err("the task did not complete in 10 minutes".into());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(json!({"path": "/jobs/filejob/tasks/big/files/wd/big.bin", "write_s": start.elapsed().as_secs_f64()}))
            }
            .await;
            r.unwrap_or_else(|e| json!({"error": e}))
        }
        Cmd::Download { t, path } => {
            let c = client();
            let key = STANDARD.decode(&t.key).unwrap_or_default();
            let r: Result<Value, String> = async {
                let target = format!("{path}?api-version=2025-06-01");
                let mut req = Request::builder().method(Method::GET).uri(format!("{}{}", t.endpoint, target));
                let headers = req.headers_mut().ok_or("bad request")?;
                headers.insert("ocp-date", httpdate::fmt_http_date(std::time::SystemTime::now()).parse().map_err(|_| "date")?);
                let auth = api::sharedkey::sign(&t.account, &key, &Method::GET, &target, headers);
                headers.insert("authorization", auth.parse().map_err(|_| "auth")?);
                let req = req.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
                let start = Instant::now();
                let resp = c.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let first_byte = start.elapsed().as_secs_f64();
                let mut body = resp.into_body();
                let mut bytes = 0u64;
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
                        bytes += data.len() as u64;
                    }
                }
                let secs = start.elapsed().as_secs_f64();
                Ok(json!({"status": status, "bytes": bytes, "seconds": secs, "first_byte_s": first_byte,
                          "mib_per_s": bytes as f64 / 1048576.0 / secs}))
            }
            .await;
            r.unwrap_or_else(|e| json!({"error": e}))
        }
        Cmd::StartLatency { t, samples } => {
            let c = client();
            let r: Result<Value, String> = async {
                call(
                    &c,
                    &t,
                    Method::POST,
                    "/pools",
                    json!({"id": "latpool", "vmSize": "local", "targetDedicatedNodes": 1, "taskSlotsPerNode": 1}),
                )
                .await?;
                wait_idle_node(&c, &t, "latpool").await?;
                call(&c, &t, Method::POST, "/jobs", json!({"id": "latjob", "poolInfo": {"poolId": "latpool"}})).await?;
                let mut lat = Vec::new();
                for i in 0..samples {
                    let id = format!("l{i:05}");
                    call(&c, &t, Method::POST, "/jobs/latjob/tasks", json!({"id": id, "commandLine": "/bin/true"})).await?;
                    loop {
                        let tk = call(&c, &t, Method::GET, &format!("/jobs/latjob/tasks/{id}"), Value::Null).await?;
                        if tk["state"] == "completed" {
                            if let Some(ms) = ms_between(&tk["creationTime"], &tk["executionInfo"]["startTime"]) {
                                lat.push(ms.max(0.0));
                            }
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                lat.sort_by(|a, b| a.total_cmp(b));
                Ok(json!({"samples": lat.len(), "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99), "max_ms": lat.last()}))
            }
            .await;
            r.unwrap_or_else(|e| json!({"error": e}))
        }
        Cmd::LayoutCost { dir, count, threads } => {
            let job = dir.join("layout-cost-job");
            let r = std::fs::create_dir_all(&job).map_err(|e| e.to_string()).and_then(|()| {
                let start = Instant::now();
                let per = count / threads.max(1);
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let job = job.clone();
                        std::thread::spawn(move || -> std::io::Result<()> {
                            for i in 0..per {
                                let task = job.join(format!("t{t}-{i:07}"));
                                std::fs::create_dir(&task)?;
                                std::fs::create_dir(task.join("wd"))?;
                                std::fs::OpenOptions::new().create(true).append(true).open(task.join("stdout.txt"))?;
                                std::fs::OpenOptions::new().create(true).append(true).open(task.join("stderr.txt"))?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().map_err(|_| "a thread panicked".to_string())?.map_err(|e| e.to_string())?;
                }
                let secs = start.elapsed().as_secs_f64();
                let n = per * threads;
                // Each thread's time per task it laid out.
                Ok(json!({"tasks": n, "threads": threads, "seconds": secs, "us_per_task": secs * 1e6 * threads as f64 / n as f64}))
            });
            let _ = std::fs::remove_dir_all(&job);
            r.unwrap_or_else(|e| json!({"error": e}))
        }
        Cmd::RawSpawn { count, threads, command } => {
            use std::os::unix::process::CommandExt;
            let start = Instant::now();
            let per = count / threads.max(1);
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let command = command.clone();
                    std::thread::spawn(move || {
                        let mut failed = 0;
                        for _ in 0..per {
                            let ok = std::process::Command::new(&command).process_group(0).status().map(|s| s.success()).unwrap_or(false);
                            if !ok {
                                failed += 1;
                            }
                        }
                        failed
                    })
                })
                .collect();
            let failed: usize = handles.into_iter().map(|h| h.join().unwrap_or(per)).sum();
            let secs = start.elapsed().as_secs_f64();
            json!({"processes": per * threads, "failed": failed, "seconds": secs, "per_second": (per * threads) as f64 / secs})
        }
        Cmd::Latency { t, job, tasks, samples } => {
            let key = STANDARD.decode(&t.key).unwrap_or_default();
            let c = client();
            let mut lat = Vec::with_capacity(samples);
            let mut x: u64 = 0x9E3779B97F4A7C15;
            let mut errors = 0;
            for _ in 0..samples {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = format!("t{:07}", x as usize % tasks.max(1));
                let target = format!("/jobs/{job}/tasks/{id}?api-version=2025-06-01");
                let start = Instant::now();
                match send(&c, &t, &key, Method::GET, &target, Bytes::new()).await {
                    Ok((200, _)) => lat.push(start.elapsed().as_secs_f64() * 1000.0),
                    _ => errors += 1,
                }
            }
            lat.sort_by(|a, b| a.total_cmp(b));
            json!({"samples": lat.len(), "errors": errors, "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99)})
        }
        Cmd::AutoscaleEval { runs } => autoscale_eval::run(runs),
        Cmd::Filter { t, job, filter, samples } => {
            let key = STANDARD.decode(&t.key).unwrap_or_default();
            let c = client();
            let enc: String = filter
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            let target = format!("/jobs/{job}/tasks?api-version=2025-06-01&maxresults=1000&$filter={enc}");
            let mut lat = Vec::with_capacity(samples);
            let mut items = 0;
            let mut errors = 0;
            for _ in 0..samples {
                let start = Instant::now();
                match send(&c, &t, &key, Method::GET, &target, Bytes::new()).await {
                    Ok((200, body)) => {
                        lat.push(start.elapsed().as_secs_f64() * 1000.0);
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        items = v["value"].as_array().map(|a| a.len()).unwrap_or(0);
                    }
                    other => {
                        errors += 1;
                        eprintln!("list failed: {other:?}");
                    }
                }
            }
            lat.sort_by(|a, b| a.total_cmp(b));
            json!({"filter": filter, "items_per_page": items, "samples": lat.len(), "errors": errors,
                   "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99)})
        }
    };
    println!("{out}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
