//! Task and node files, served from the node through its agent. Paths are
//! percent-decoded by the router and confined by the agent to the task
//! directory (task files) or the node root (node files); the agent never
//! follows a symbolic link there, so links are neither listed nor served.
//!
//! Reads stream: the request asks the agent for the range under a random
//! key; up to [`proto::INLINE_READ`] bytes come back in the agent's reply,
//! more on a data connection the agent opens to
//! [`proto::FILE_STREAM_PATH`] (see [`accept_stream`]), whose body is piped
//! to the client as the client reads it — no side holds more than a few
//! buffers, whatever the file's size.

use crate::http::{encode_segment, Ctx, Reply};
use crate::paths::{pool_path, task_path};
use crate::render;
use crate::state::App;
use axum::body::Body;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use proto::{FileEntry, FileOp, FileReply};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;
use wire::models::CloudTask;
use wire::odata::Filter;
use wire::time::format_datetime;
use wire::{Error, ErrorCode};

/// Where a set of files lives: a node, a base directory under its root, and
/// the URL prefix of its files in the API.
pub struct Location {
    pub node: String,
    pub base: String,
    pub url_prefix: String,
}

fn ts(ms: i64) -> String {
    format_datetime(&chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now))
}

fn agent_error(e: &str, path: &str) -> Error {
    match e {
        "NotFound" => Error::new(ErrorCode::FileNotFound).with("FilePath", path),
        "OutsideRoot" => Error::msg(ErrorCode::InvalidInput, "The file path leaves the directory it must stay in.").with("FilePath", path),
        "IsDirectory" => Error::msg(ErrorCode::InvalidInput, "The path is a directory.").with("FilePath", path),
        "NotRegular" => Error::msg(ErrorCode::InvalidInput, "The path is not a regular file.").with("FilePath", path),
        "Symlink" => {
            Error::msg(ErrorCode::FileNotFound, "The path is, or passes through, a symbolic link, which the node does not follow.")
                .with("FilePath", path)
        }
        "InvalidRange" => Error::new(ErrorCode::InvalidRange),
        "DirectoryNotEmpty" => {
            Error::msg(ErrorCode::OperationInvalidForCurrentState, "The directory is not empty; delete it with recursive=true.")
        }
        other => Error::internal(format!("file operation failed on the node: {other}")),
    }
}

/// How long a read waits for the agent's data connection.
const STREAM_WAIT: Duration = Duration::from_secs(30);
/// How long a streamed read waits for the agent's next bytes.
const STREAM_IDLE: Duration = Duration::from_secs(60);

/// The body of an agent's data connection, handed to the read that waits
/// for it; dropping `done` (with the client's response body) answers the
/// agent.
struct Incoming {
    body: Body,
    done: oneshot::Sender<()>,
}

/// Reads waiting for their agent's data connection, by stream key (random:
/// a key is only known to the server and the agent it was sent to).
fn streams() -> &'static Mutex<HashMap<String, oneshot::Sender<Incoming>>> {
    static STREAMS: std::sync::OnceLock<Mutex<HashMap<String, oneshot::Sender<Incoming>>>> = std::sync::OnceLock::new();
    STREAMS.get_or_init(Default::default)
}

/// A read's place in [`streams`], removed when the read is done with it.
struct Ticket(String);

impl Drop for Ticket {
    fn drop(&mut self) {
        streams().lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

fn expect_stream() -> (Ticket, oneshot::Receiver<Incoming>) {
    let key = uuid::Uuid::new_v4().simple().to_string();
    let (tx, rx) = oneshot::channel();
    streams().lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), tx);
    (Ticket(key), rx)
}

/// An agent's data connection (`POST {FILE_STREAM_PATH}/{key}`, its token
/// already checked): hands the body to the read waiting under `key` and
/// answers once that read's response body is finished or dropped (the
/// client read it all, or went away).
pub async fn accept_stream(key: &str, body: Body) -> axum::http::Response<Body> {
    let status = |code: u16, text: &'static str| axum::http::Response::builder().status(code).body(Body::from(text)).unwrap_or_default();
    let waiter = streams().lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    let Some(waiter) = waiter else { return status(404, "no read waits for this stream") };
    let (done, finished) = oneshot::channel();
    if waiter.send(Incoming { body, done }).is_err() {
        return status(410, "the read is gone");
    }
    let _ = finished.await;
    status(200, "")
}

/// The client's response body: the agent's bytes as they come (each wait
/// for the next bytes bounded by [`STREAM_IDLE`]); `done` goes with it.
fn piped(incoming: Incoming) -> Body {
    let Incoming { body, done } = incoming;
    let stream = futures_util::stream::unfold((body.into_data_stream(), Some(done)), |(mut s, done)| async move {
        done.as_ref()?;
        match tokio::time::timeout(STREAM_IDLE, s.next()).await {
            Ok(Some(item)) => Some((item, (s, done))),
            Ok(None) => None,
            Err(_) => Some((Err(axum::Error::new("the node stopped sending the file")), (s, None))),
        }
    });
    Body::from_stream(stream)
}

fn check(reply: FileReply, path: &str) -> Result<FileReply, Error> {
    match &reply.error {
        Some(e) => Err(agent_error(e, path)),
        None => Ok(reply),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("txt") | Some("log") => "text/plain",
        Some("json") => "application/json",
        Some("html") | Some("htm") => "text/html",
        Some("xml") => "application/xml",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    }
}

fn file_mode(mode: u32) -> String {
    format!("0o{mode:o}")
}

fn file_url(loc: &Location, name: &str) -> String {
    format!("{}/{}", loc.url_prefix, name.split('/').map(encode_segment).collect::<Vec<_>>().join("/"))
}

fn entry_json(loc: &Location, e: &FileEntry) -> Value {
    let mut props = json!({
        "lastModified": ts(e.modified_ms),
        "contentLength": e.size,
        "contentType": if e.is_dir { "application/octet-stream" } else { content_type(&e.path) },
        "fileMode": file_mode(e.mode),
    });
    if let Some(m) = props.as_object_mut() {
        m.insert("creationTime".into(), json!(ts(e.created_ms)));
    }
    json!({"name": e.path, "url": file_url(loc, &e.path), "isDirectory": e.is_dir, "properties": props})
}

fn reject_traversal(path: &str) -> Result<(), Error> {
    if path.split('/').any(|s| s == "..") {
        return Err(Error::msg(ErrorCode::InvalidInput, "The file path must not contain '..'.").with("FilePath", path));
    }
    Ok(())
}

/// The file location of a task: the node that ran it, its directory.
pub async fn task_location(app: &App, ctx: &Ctx, job: &str, task: &str) -> Result<Location, Error> {
    let stored = app.store.get_task(job, task).await?;
    let t: CloudTask = serde_json::from_str(&stored.doc).map_err(Error::internal)?;
    if t.files_cleaned {
        return Err(Error::msg(ErrorCode::TaskFilesCleanedup, "The task's retention time has passed and its files were deleted.")
            .with("TaskId", task));
    }
    let info = t.node_info.ok_or_else(|| {
        Error::msg(ErrorCode::TaskFilesUnavailable, "The task has not run on a compute node yet, so it has no files.").with("TaskId", task)
    })?;
    let (Some(node), Some(dir)) = (info.node_id, info.task_root_directory) else {
        return Err(Error::new(ErrorCode::TaskFilesUnavailable));
    };
    let pool = info.pool_id.unwrap_or_default();
    if app.cluster.node_root(&pool, &node).is_none() {
        return Err(Error::msg(ErrorCode::TaskFilesUnavailable, "The compute node that ran the task is no longer in the pool."));
    }
    Ok(Location { node, base: dir, url_prefix: ctx.url(&format!("{}/files", task_path(job, task))) })
}

pub async fn node_location(app: &App, ctx: &Ctx, pool: &str, node: &str) -> Result<Location, Error> {
    app.store.get_pool(pool).await?;
    if app.cluster.node_root(pool, node).is_none() {
        return Err(Error::new(ErrorCode::NodeNotFound).with("NodeId", node));
    }
    Ok(Location {
        node: node.to_string(),
        base: String::new(),
        url_prefix: ctx.url(&format!("{}/nodes/{}/files", pool_path(pool), encode_segment(node))),
    })
}

pub async fn list(app: &App, ctx: &Ctx, loc: Location) -> Result<Reply, Error> {
    let opts = render::list_options(ctx)?;
    let recursive = ctx.q("recursive").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let prefix = match &opts.filter {
        None => None,
        Some((_, Filter::StartsWith { path, prefix })) if path.len() == 1 && path[0] == "name" => Some(prefix.clone()),
        Some(_) => {
            return Err(Error::new(ErrorCode::InvalidQueryParameterValue)
                .with("QueryParameterName", "$filter")
                .with("Reason", "Files can only be filtered with startswith(name,'prefix')."))
        }
    };
    let reply = check(app.cluster.file(&loc.node, loc.base.clone(), String::new(), FileOp::List { recursive }).await?, "")?;
    let after = opts.after.clone().unwrap_or_default();
    let mut entries: Vec<&FileEntry> = reply
        .entries
        .iter()
        .filter(|e| prefix.as_deref().is_none_or(|p| e.path.starts_with(p)))
        .filter(|e| e.path.as_str() > after.as_str())
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let limit = opts.limit();
    let next = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|e| opts.next_link(ctx, &e.path))
    } else {
        None
    };
    let items = entries.into_iter().map(|e| entry_json(&loc, e)).collect();
    Ok(Reply::json(200, render::list(ctx, "files", items, next)))
}

fn file_headers(reply: Reply, loc: &Location, path: &str, e: &FileEntry) -> Reply {
    let lm = chrono::DateTime::from_timestamp_millis(e.modified_ms).unwrap_or_else(chrono::Utc::now);
    let created = chrono::DateTime::from_timestamp_millis(e.created_ms).unwrap_or_else(chrono::Utc::now);
    reply
        .header("last-modified", httpdate::fmt_http_date(lm.into()))
        .header("ocp-creation-time", httpdate::fmt_http_date(created.into()))
        .header("ocp-batch-file-isdirectory", if e.is_dir { "true" } else { "false" })
        .header("ocp-batch-file-url", file_url(loc, path))
        .header("ocp-batch-file-mode", file_mode(e.mode))
        .header("etag", format!("0x{:X}", e.modified_ms))
}

/// Parses `ocp-range: bytes=a-b` (inclusive) into `[start, end)`.
fn range(ctx: &Ctx) -> Result<(u64, Option<u64>), Error> {
    let Some(r) = ctx.header("ocp-range").or_else(|| ctx.header("range")) else { return Ok((0, None)) };
    let bad = || Error::new(ErrorCode::InvalidRange).with("Range", r);
    let spec = r.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end = if b.trim().is_empty() { None } else { Some(b.trim().parse::<u64>().map_err(|_| bad())? + 1) };
    if end.is_some_and(|e| e <= start) {
        return Err(bad());
    }
    Ok((start, end))
}

pub async fn get(app: &App, ctx: &Ctx, loc: Location, path: &str) -> Result<Reply, Error> {
    reject_traversal(path)?;
    let (start, end) = range(ctx)?;
    let (ticket, incoming) = expect_stream();
    let op = FileOp::Read { start, end, stream: ticket.0.clone() };
    let reply = check(app.cluster.file(&loc.node, loc.base.clone(), path.to_string(), op).await?, path)?;
    let e = reply.entries.first().cloned().ok_or_else(|| Error::internal("the node sent no file metadata"))?;
    if let Some(t) = ctx.preconditions()?.if_modified_since {
        if e.modified_ms / 1000 <= t.timestamp() {
            return Err(Error::new(ErrorCode::NotModified));
        }
    }
    if let Some(t) = ctx.preconditions()?.if_unmodified_since {
        if e.modified_ms / 1000 > t.timestamp() {
            return Err(Error::new(ErrorCode::ConditionNotMet));
        }
    }
    let mut r = Reply::status(200);
    if reply.stream {
        let length = reply.length.ok_or_else(|| Error::internal("the node sent no length for a streamed read"))?;
        let incoming = match tokio::time::timeout(STREAM_WAIT, incoming).await {
            Ok(Ok(i)) => i,
            _ => return Err(Error::msg(ErrorCode::OperationTimedOut, "The compute node did not send the file in time.")),
        };
        drop(ticket);
        r.stream = Some((content_type(path).to_string(), piped(incoming)));
        r = r.header("content-length", length.to_string());
    } else {
        let data = STANDARD.decode(reply.data.as_deref().unwrap_or("")).map_err(Error::internal)?;
        r.body = Some((content_type(path).to_string(), Bytes::from(data)));
    }
    Ok(file_headers(r, &loc, path, &e))
}

pub async fn properties(app: &App, ctx: &Ctx, loc: Location, path: &str) -> Result<Reply, Error> {
    reject_traversal(path)?;
    let reply = check(app.cluster.file(&loc.node, loc.base.clone(), path.to_string(), FileOp::Stat).await?, path)?;
    let e = reply.entries.first().cloned().ok_or_else(|| Error::new(ErrorCode::FileNotFound))?;
    let pre = ctx.preconditions()?;
    if pre.if_modified_since.is_some_and(|t| e.modified_ms / 1000 <= t.timestamp()) {
        return Err(Error::new(ErrorCode::NotModified));
    }
    if pre.if_unmodified_since.is_some_and(|t| e.modified_ms / 1000 > t.timestamp()) {
        return Err(Error::new(ErrorCode::ConditionNotMet));
    }
    Ok(file_headers(Reply::status(200), &loc, path, &e)
        .header("content-length", e.size.to_string())
        .header("content-type", content_type(path)))
}

pub async fn delete(app: &App, ctx: &Ctx, loc: Location, path: &str) -> Result<Reply, Error> {
    reject_traversal(path)?;
    let recursive = ctx.q("recursive").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    check(app.cluster.file(&loc.node, loc.base.clone(), path.to_string(), FileOp::Delete { recursive }).await?, path)?;
    Ok(Reply::status(200))
}
