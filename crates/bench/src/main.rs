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
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    let out = match cli.cmd {
        Cmd::Ingest { t, job, tasks, clients, batch, create_job } => {
            if create_job {
                let key = STANDARD.decode(&t.key).unwrap_or_default();
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
