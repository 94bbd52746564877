//! Task data in and out, on the node: `resourceFiles` fetched before a task
//! runs and `outputFiles` saved after it exits.
//!
//! Sources and destinations are URLs: a plain `http(s)` file, an Azure Blob
//! Storage container with its SAS (listed and read, or written as block
//! blobs, through the Blob REST API — Azurite included), or `file://` paths
//! on a filesystem the node shares (beyond the cloud service). Everything
//! streams: memory stays bounded by a few buffers per transfer, whatever
//! the file sizes. Transient failures (connection errors, 408, 429, 5xx)
//! are retried with backoff. Failures carry the codes Azure Batch reports in
//! a task's `failureInfo` (`BlobNotFound`, `FileUploadContainerNotFound`, ...).

pub mod pattern;

use futures_util::{StreamExt, TryStreamExt};
use proto::{OutputFileSpec, ResourceFileSpec};
use reqwest::{StatusCode, Url};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The Blob REST version sent (supported by Azure and by Azurite 3.35).
const BLOB_VERSION: &str = "2023-11-03";
/// Files up to this size are uploaded in one request; larger ones in blocks of it.
pub const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// Blocks of one file in flight at once.
const BLOCKS_IN_FLIGHT: usize = 4;
/// Files transferred at once.
const FILES_IN_FLIGHT: usize = 8;
const RETRIES: u32 = 4;
/// Default permissions of a downloaded file without `fileMode` (the service's).
const DEFAULT_MODE: u32 = 0o770;

/// Why a transfer failed, as a task's `failureInfo` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
    /// `servererror` rather than `usererror`.
    pub server_error: bool,
}

impl Failure {
    fn user(code: &str, message: String) -> Failure {
        Failure { code: code.into(), message, server_error: false }
    }
    fn server(code: &str, message: String) -> Failure {
        Failure { code: code.into(), message, server_error: true }
    }
}

/// What a transfer moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub bytes: u64,
}

/// A URL for messages and logs: the SAS signature is not repeated.
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| if kv.starts_with("sig=") { "sig=REDACTED".to_string() } else { kv.to_string() })
                .collect();
            format!("{base}?{}", q.join("&"))
        }
        None => url.to_string(),
    }
}

/// Whether a resource file's `filePath` stays below the directory it is
/// relative to (not absolute, no `..` that leaves it).
pub fn file_path_is_confined(p: &str) -> bool {
    if p.starts_with('/') {
        return false;
    }
    let mut depth = 0i32;
    for seg in p.split('/').filter(|s| !s.is_empty() && *s != ".") {
        depth += if seg == ".." { -1 } else { 1 };
        if depth < 0 {
            return false;
        }
    }
    true
}

/// One file to fetch.
struct Fetch {
    source: Source,
    dest: PathBuf,
    mode: u32,
}

enum Source {
    Http(Url),
    Local(PathBuf),
}

fn local_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("file://").map(|p| PathBuf::from(percent_decode(p)))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mode(m: Option<&str>) -> u32 {
    m.and_then(|m| u32::from_str_radix(m, 8).ok()).unwrap_or(DEFAULT_MODE) & 0o7777
}

/// `base` joined with a relative name, refusing names that leave it.
fn below(base: &Path, rel: &str) -> Option<PathBuf> {
    file_path_is_confined(rel).then(|| base.join(rel.trim_start_matches("./")))
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The storage error code of an error response body (`<Code>...</Code>`).
fn storage_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + 6;
    let end = body[start..].find("</Code>")? + start;
    Some(body[start..end].to_string())
}

fn blob_url(container: &Url, name: &str) -> Url {
    let mut u = container.clone();
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.pop_if_empty();
        for s in name.split('/') {
            segs.push(s);
        }
    }
    u
}

/// The names of the container's blobs under `prefix` (every page).
fn parse_listing(xml: &str) -> (Vec<String>, Option<String>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let (mut names, mut next) = (Vec::new(), None);
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                path.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                text.clear();
            }
            Ok(Event::End(_)) => {
                let tail: Vec<&str> = path.iter().rev().take(2).map(String::as_str).collect();
                match tail.as_slice() {
                    ["Name", "Blob"] => names.push(std::mem::take(&mut text)),
                    ["NextMarker", ..] if !text.is_empty() => next = Some(std::mem::take(&mut text)),
                    _ => {}
                }
                path.pop();
            }
            Ok(Event::Text(t)) => text.push_str(&t.decode().map(|c| c.into_owned()).unwrap_or_default()),
            Ok(Event::GeneralRef(r)) => {
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                let resolved = match name.as_str() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    n => n
                        .strip_prefix("#x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                text.extend(resolved);
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    (names, next)
}

/// Sets a path's owner (when given) and permissions.
fn own(path: &Path, owner: Option<(u32, u32)>, mode: Option<u32>) {
    use std::os::unix::fs::PermissionsExt;
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
    if let Some(m) = mode {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(m));
    }
}

/// Creates `dir` and its missing parents below `root`, owned by `owner`.
fn make_dirs(root: &Path, dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() && d.starts_with(root) {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for m in missing {
        own(&m, owner, None);
    }
    Ok(())
}

fn local_failure(code: &str, path: &Path, e: &std::io::Error) -> Failure {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return Failure::server("DiskFull", format!("{}: the node's disk is full", path.display()));
    }
    Failure::server(code, format!("{}: {e}", path.display()))
}

/// Moves task data. One per agent: it keeps the HTTP connection pool.
#[derive(Clone)]
pub struct Transfer {
    http: reqwest::Client,
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer::new()
    }
}

impl Transfer {
    pub fn new() -> Transfer {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .build()
            .unwrap_or_default();
        Transfer { http }
    }

    /// Fetches resource files into `dir` (the task's working directory, or
    /// its task directory for common resource files), `FILES_IN_FLIGHT` at
    /// a time; files and the directories created for them belong to `owner`.
    pub async fn download(&self, files: &[ResourceFileSpec], dir: &Path, owner: Option<(u32, u32)>) -> Result<Stats, Failure> {
        let mut fetches = Vec::new();
        for f in files {
            fetches.extend(self.expand(f, dir).await?);
        }
        // Futures collected first: a lazy `map` over a closure makes the
        // stream's future not general enough to be `Send` for the caller.
        let futures: Vec<_> = fetches.into_iter().map(|f| Box::pin(self.fetch(f, dir, owner))).collect();
        let results: Vec<Result<u64, Failure>> = futures_util::stream::iter(futures)
            .buffer_unordered(FILES_IN_FLIGHT)
            .collect()
            .await;
        let mut stats = Stats::default();
        for r in results {
            stats.bytes += r?;
            stats.files += 1;
        }
        Ok(stats)
    }

    /// The files one resource file entry stands for.
    async fn expand(&self, f: &ResourceFileSpec, dir: &Path) -> Result<Vec<Fetch>, Failure> {
        let mode = parse_mode(f.file_mode.as_deref());
        let outside = |p: &str| Failure::user("ResourceFileCreateFailed", format!("the file path '{p}' leaves the task directory"));
        if let Some(url) = &f.http_url {
            let name = f.file_path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| {
                url.split('?').next().unwrap_or("").rsplit('/').next().unwrap_or("file").to_string()
            });
            let dest = below(dir, &name).ok_or_else(|| outside(&name))?;
            let source = match local_path(url) {
                Some(p) => Source::Local(p),
                None => Source::Http(Url::parse(url).map_err(|e| Failure::user("BlobDownloadMiscError", format!("{}: {e}", redact(url))))?),
            };
            return Ok(vec![Fetch { source, dest, mode }]);
        }
        let Some(container) = &f.container_url else {
            return Err(Failure::user(
                "BlobDownloadMiscError",
                "autoStorageContainerName needs the account's auto-storage account, which this openbatch server has not been given"
                    .into(),
            ));
        };
        let base = match f.file_path.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => below(dir, p).ok_or_else(|| outside(p))?,
            None => dir.to_path_buf(),
        };
        let prefix = f.blob_prefix.clone().unwrap_or_default();
        let names = match local_path(container) {
            Some(root) => {
                let root2 = root.clone();
                let listed = tokio::task::spawn_blocking(move || walk_files(&root2))
                    .await
                    .map_err(|e| Failure::server("BlobDownloadMiscError", e.to_string()))?
                    .map_err(|e| Failure::user("BlobNotFound", format!("{}: {e}", root.display())))?;
                return listed
                    .into_iter()
                    .filter(|rel| rel.starts_with(&prefix))
                    .map(|rel| {
                        let dest = below(&base, &rel).ok_or_else(|| outside(&rel))?;
                        Ok(Fetch { source: Source::Local(root.join(&rel)), dest, mode })
                    })
                    .collect();
            }
            None => self.list(container, &prefix).await?,
        };
        let container = Url::parse(container).map_err(|e| Failure::user("BlobDownloadMiscError", format!("{}: {e}", redact(container))))?;
        names
            .into_iter()
            .filter(|n| !n.ends_with('/'))
            .map(|n| {
                let dest = below(&base, &n).ok_or_else(|| outside(&n))?;
                Ok(Fetch { source: Source::Http(blob_url(&container, &n)), dest, mode })
            })
            .collect()
    }

    /// Lists a container's blobs under `prefix`, following `NextMarker`.
    async fn list(&self, container: &str, prefix: &str) -> Result<Vec<String>, Failure> {
        let base = Url::parse(container).map_err(|e| Failure::user("BlobDownloadMiscError", format!("{}: {e}", redact(container))))?;
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut u = base.clone();
            {
                let mut q = u.query_pairs_mut();
                q.append_pair("restype", "container").append_pair("comp", "list");
                if !prefix.is_empty() {
                    q.append_pair("prefix", prefix);
                }
                if let Some(m) = &marker {
                    q.append_pair("marker", m);
                }
            }
            let resp = self.send_with_retries(|| self.http.get(u.clone()).header("x-ms-version", BLOB_VERSION), &u).await?;
            let resp = check_download(resp, &u).await?;
            let body = resp.text().await.map_err(|e| Failure::server("BlobDownloadMiscError", format!("{}: {e}", redact(u.as_str()))))?;
            let (page, next) = parse_listing(&body);
            names.extend(page);
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(names),
            }
        }
    }

    /// Sends a request, retrying connection failures and transient statuses.
    async fn send_with_retries<F>(&self, make: F, url: &Url) -> Result<reqwest::Response, Failure>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match make().send().await {
                Ok(r) if is_transient(r.status()) && attempt <= RETRIES => {}
                Ok(r) => return Ok(r),
                Err(_) if attempt <= RETRIES => {}
                Err(e) if e.is_timeout() => {
                    return Err(Failure::server("BlobDownloadTimedOut", format!("{}: {e}", redact(url.as_str()))))
                }
                Err(e) => return Err(Failure::server("BlobDownloadMiscError", format!("{}: {e}", redact(url.as_str())))),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Fetches one file (retrying the whole file on a transient failure).
    async fn fetch(&self, f: Fetch, root: &Path, owner: Option<(u32, u32)>) -> Result<u64, Failure> {
        if let Some(parent) = f.dest.parent() {
            make_dirs(root, parent, owner).map_err(|e| local_failure("ResourceDirectoryCreateFailed", parent, &e))?;
        }
        let bytes = match &f.source {
            Source::Local(src) => {
                let (src, dest) = (src.clone(), f.dest.clone());
                tokio::task::spawn_blocking(move || -> Result<u64, Failure> {
                    let mut input = std::fs::File::open(&src).map_err(|e| {
                        let code = if e.kind() == std::io::ErrorKind::NotFound { "BlobNotFound" } else { "BlobAccessDenied" };
                        Failure::user(code, format!("file://{}: {e}", src.display()))
                    })?;
                    let mut out = std::fs::File::create(&dest).map_err(|e| local_failure("ResourceFileCreateFailed", &dest, &e))?;
                    std::io::copy(&mut input, &mut out).map_err(|e| local_failure("ResourceFileWriteFailed", &dest, &e))
                })
                .await
                .map_err(|e| Failure::server("BlobDownloadMiscError", e.to_string()))??
            }
            Source::Http(url) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match self.fetch_http(url, &f.dest).await {
                        Err((f, true)) if attempt <= RETRIES => {
                            tracing::debug!(code = %f.code, "retrying a download: {}", f.message);
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        }
                        Err((f, _)) => return Err(f),
                        Ok(n) => break n,
                    }
                }
            }
        };
        own(&f.dest, owner, Some(f.mode));
        Ok(bytes)
    }

    /// One try of an HTTP download, streamed to disk. The flag says whether
    /// the failure is worth another try.
    async fn fetch_http(&self, url: &Url, dest: &Path) -> Result<u64, (Failure, bool)> {
        let resp = self
            .send_with_retries(|| self.http.get(url.clone()).header("x-ms-version", BLOB_VERSION), url)
            .await
            .map_err(|f| (f, false))?;
        let resp = check_download(resp, url).await.map_err(|f| (f, false))?;
        let mut out = tokio::fs::File::create(dest).await.map_err(|e| (local_failure("ResourceFileCreateFailed", dest, &e), false))?;
        let mut body = resp.bytes_stream();
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                let code = if e.is_timeout() { "BlobDownloadTimedOut" } else { "BlobDownloadMiscError" };
                (Failure::server(code, format!("{}: {e}", redact(url.as_str()))), true)
            })?;
            out.write_all(&chunk).await.map_err(|e| (local_failure("ResourceFileWriteFailed", dest, &e), false))?;
            n += chunk.len() as u64;
        }
        out.flush().await.map_err(|e| (local_failure("ResourceFileWriteFailed", dest, &e), false))?;
        Ok(n)
    }

    /// Uploads the output files whose condition holds (`succeeded`: the
    /// process exited with 0), writing `fileuploadout.txt` and
    /// `fileuploaderr.txt` in `task_dir`. The first failure is returned after
    /// every upload was tried.
    pub async fn upload(
        &self,
        files: &[OutputFileSpec],
        task_dir: &Path,
        wd: &Path,
        succeeded: bool,
        env: &BTreeMap<String, String>,
    ) -> Result<Stats, Failure> {
        let mut out_log = Vec::new();
        let mut err_log = Vec::new();
        let mut stats = Stats::default();
        let mut first: Option<Failure> = None;
        let now = log_time;
        for spec in files {
            let applies = match spec.upload_condition.as_str() {
                "tasksuccess" => succeeded,
                "taskfailure" => !succeeded,
                _ => true,
            };
            if !applies {
                let _ = writeln!(out_log, "{} skipped '{}': upload condition {} not met", now(), spec.file_pattern, spec.upload_condition);
                continue;
            }
            let pattern = pattern::expand_env(&spec.file_pattern, env);
            let resolved = pattern::resolve(&pattern, wd);
            let matched = tokio::task::spawn_blocking(move || matches(&resolved)).await.unwrap_or_default();
            if matched.is_empty() {
                let _ = writeln!(out_log, "{} '{}' matched no files", now(), spec.file_pattern);
            }
            let single = !pattern::resolve(&pattern, wd).is_walk();
            let jobs: Vec<_> = matched
                .into_iter()
                .map(|(file, rel)| {
                    let name = pattern::blob_name(spec.path.as_deref(), &rel, single);
                    Box::pin(async move {
                        let r = self.put(spec, &file, &name).await;
                        (file, name, r)
                    })
                })
                .collect();
            let results: Vec<_> = futures_util::stream::iter(jobs).buffer_unordered(FILES_IN_FLIGHT).collect().await;
            for (file, name, r) in results {
                match r {
                    Ok(n) => {
                        stats.files += 1;
                        stats.bytes += n;
                        let _ = writeln!(out_log, "{} uploaded {} ({n} bytes) to {}", now(), file.display(), name);
                    }
                    Err(f) => {
                        let _ = writeln!(err_log, "{} failed to upload {} to {}: {}: {}", now(), file.display(), name, f.code, f.message);
                        first.get_or_insert(f);
                    }
                }
            }
        }
        let _ = writeln!(out_log, "{} uploaded {} files, {} bytes", now(), stats.files, stats.bytes);
        let _ = std::fs::write(task_dir.join("fileuploadout.txt"), &out_log);
        let _ = std::fs::write(task_dir.join("fileuploaderr.txt"), &err_log);
        match first {
            Some(f) => Err(f),
            None => Ok(stats),
        }
    }

    /// Saves one file as `name` in the destination.
    async fn put(&self, spec: &OutputFileSpec, file: &Path, name: &str) -> Result<u64, Failure> {
        if let Some(root) = local_path(&spec.container_url) {
            let dest = below(&root, name).ok_or_else(|| Failure::user("FileUploadMiscError", format!("the blob name '{name}' leaves {}", root.display())))?;
            let src = file.to_path_buf();
            return tokio::task::spawn_blocking(move || -> Result<u64, Failure> {
                if !root.is_dir() {
                    return Err(Failure::user("FileUploadContainerNotFound", format!("file://{}: no such directory", root.display())));
                }
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p).map_err(|e| Failure::server("FileUploadMiscError", format!("{}: {e}", p.display())))?;
                }
                std::fs::copy(&src, &dest).map_err(|e| Failure::server("FileUploadMiscError", format!("{}: {e}", dest.display())))
            })
            .await
            .map_err(|e| Failure::server("FileUploadMiscError", e.to_string()))?;
        }
        let container = Url::parse(&spec.container_url)
            .map_err(|e| Failure::user("FileUploadMiscError", format!("{}: {e}", redact(&spec.container_url))))?;
        let url = blob_url(&container, name);
        let size = tokio::fs::metadata(file).await.map_err(|e| Failure::server("FileUploadMiscError", format!("{}: {e}", file.display())))?.len();
        let guessed = mime_guess::from_path(file).first_or_octet_stream().essence_str().to_string();
        let user_type = spec.upload_headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.clone());
        let content_type = user_type.unwrap_or(guessed);
        let extra: Vec<(String, String)> =
            spec.upload_headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("content-type")).cloned().collect();
        if size as usize <= BLOCK_SIZE {
            let body = tokio::fs::read(file).await.map_err(|e| Failure::server("FileUploadMiscError", format!("{}: {e}", file.display())))?;
            let body = bytes::Bytes::from(body);
            let resp = self
                .send_upload(
                    || {
                        let mut r = self
                            .http
                            .put(url.clone())
                            .header("x-ms-version", BLOB_VERSION)
                            .header("x-ms-blob-type", "BlockBlob")
                            .header("content-type", content_type.as_str())
                            .body(body.clone());
                        for (k, v) in &extra {
                            r = r.header(k.as_str(), v.as_str());
                        }
                        r
                    },
                    &url,
                )
                .await?;
            check_upload(resp, &url).await?;
            return Ok(size);
        }
        // Blocks of BLOCK_SIZE, a few in flight, then the block list.
        let count = size.div_ceil(BLOCK_SIZE as u64);
        let ids: Vec<String> = (0..count).map(|i| base64_id(i)).collect();
        let uploads: Vec<_> = ids.iter().enumerate().map(|(i, id)| {
            let (url, file) = (url.clone(), file.to_path_buf());
            Box::pin(async move {
                let chunk = read_block(&file, i as u64 * BLOCK_SIZE as u64, BLOCK_SIZE).await?;
                let mut u = url.clone();
                u.query_pairs_mut().append_pair("comp", "block").append_pair("blockid", id);
                let resp = self.send_upload(|| self.http.put(u.clone()).header("x-ms-version", BLOB_VERSION).body(chunk.clone()), &u).await?;
                check_upload(resp, &u).await
            })
        }).collect();
        futures_util::stream::iter(uploads).buffer_unordered(BLOCKS_IN_FLIGHT).try_collect::<Vec<()>>().await?;
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in &ids {
            xml.push_str(&format!("<Latest>{id}</Latest>"));
        }
        xml.push_str("</BlockList>");
        let mut u = url.clone();
        u.query_pairs_mut().append_pair("comp", "blocklist");
        let resp = self
            .send_upload(
                || {
                    let mut r = self
                        .http
                        .put(u.clone())
                        .header("x-ms-version", BLOB_VERSION)
                        .header("x-ms-blob-content-type", content_type.as_str())
                        .body(xml.clone());
                    for (k, v) in &extra {
                        r = r.header(k.as_str(), v.as_str());
                    }
                    r
                },
                &u,
            )
            .await?;
        check_upload(resp, &u).await?;
        Ok(size)
    }

    async fn send_upload<F>(&self, make: F, url: &Url) -> Result<reqwest::Response, Failure>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        self.send_with_retries(make, url).await.map_err(|f| Failure { code: "FileUploadMiscError".into(), ..f })
    }
}

impl pattern::Resolved {
    fn is_walk(&self) -> bool {
        matches!(self, pattern::Resolved::Walk { .. })
    }
}

/// The regular files a resolved pattern names, with their path relative to
/// the walked directory (a single file: its name).
fn matches(resolved: &pattern::Resolved) -> Vec<(PathBuf, String)> {
    match resolved {
        pattern::Resolved::File(p) => match std::fs::metadata(p) {
            Ok(m) if m.is_file() => {
                vec![(p.clone(), p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())]
            }
            _ => Vec::new(),
        },
        pattern::Resolved::Walk { base, pattern: pat } => {
            let Ok(files) = walk_files(base) else { return Vec::new() };
            files
                .into_iter()
                .filter(|rel| {
                    let parts: Vec<String> = rel.split('/').map(str::to_string).collect();
                    pattern::match_path(pat, &parts)
                })
                .map(|rel| (base.join(&rel), rel))
                .collect()
        }
    }
}

/// Every regular file below `root` (relative paths, `/`-separated, sorted),
/// without following symbolic links to directories.
fn walk_files(root: &Path) -> std::io::Result<Vec<String>> {
    fn go(dir: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let ty = entry.file_type()?;
            if ty.is_dir() {
                go(&entry.path(), &r, out)?;
            } else if ty.is_file() || (ty.is_symlink() && entry.path().metadata().is_ok_and(|m| m.is_file())) {
                out.push(r);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(root, "", &mut out)?;
    out.sort();
    Ok(out)
}

async fn read_block(file: &Path, offset: u64, len: usize) -> Result<bytes::Bytes, Failure> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let io = |e: std::io::Error| Failure::server("FileUploadMiscError", format!("{}: {e}", file.display()));
    let mut f = tokio::fs::File::open(file).await.map_err(io)?;
    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(io)?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut buf).await.map_err(io)?;
    Ok(bytes::Bytes::from(buf))
}

/// Block ids of equal length, as Put Block List requires.
fn base64_id(i: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("block-{i:010}"))
}

async fn check_download(resp: reqwest::Response, url: &Url) -> Result<reqwest::Response, Failure> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let detail = storage_code(&body).map(|c| format!(" ({c})")).unwrap_or_default();
    let message = format!("{}: HTTP {}{detail}", redact(url.as_str()), status.as_u16());
    Err(match status {
        StatusCode::NOT_FOUND => Failure::user("BlobNotFound", message),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Failure::user("BlobAccessDenied", message),
        StatusCode::REQUEST_TIMEOUT => Failure::server("BlobDownloadTimedOut", message),
        _ => Failure::server("BlobDownloadMiscError", message),
    })
}

async fn check_upload(resp: reqwest::Response, url: &Url) -> Result<(), Failure> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    let code = storage_code(&body);
    let message = format!("{}: HTTP {}{}", redact(url.as_str()), status.as_u16(), code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default());
    Err(match (status, code.as_deref()) {
        (StatusCode::NOT_FOUND, Some("ContainerNotFound")) | (StatusCode::NOT_FOUND, None) => Failure::user(
            "FileUploadContainerNotFound",
            format!("One of the specified Azure container(s) was not found while attempting to upload an output file: {message}"),
        ),
        (StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED, _) => Failure::user("FileUploadMiscError", format!("access denied: {message}")),
        _ => Failure::server("FileUploadMiscError", message),
    })
}

/// A UTC timestamp for the upload logs.
fn log_time() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests;
