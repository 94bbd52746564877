//! Task data in and out, on the node: `resourceFiles` fetched before a task
//! runs and `outputFiles` saved after it exits.
//!
//! Sources and destinations are URLs: a plain `http(s)` file, an Azure Blob
//! Storage container with its SAS (listed and read, or written as block
//! blobs, through the Blob REST API; Azurite included), or `file://` paths
//! on a filesystem the node shares. Everything streams: memory stays bounded
//! by a few buffers per transfer, whatever the file sizes. Transient
//! failures (connection errors, timeouts, 408, 429, 500, 502, 503, 504) are
//! retried with exponential backoff. Failures carry the codes Azure Batch
//! reports in a task's `failureInfo` (`BlobNotFound`,
//! `FileUploadContainerNotFound`, ...), and their messages never show a
//! SAS signature.

mod blob;
mod local;
pub mod pattern;

pub use blob::redact;
pub use local::file_path_is_confined;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use proto::{OutputFileSpec, ResourceFileSpec};
use reqwest::{StatusCode, Url};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Files up to this size are uploaded in one request; larger ones in blocks
/// of this size.
pub const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// The most blocks a block blob may have.
const MAX_BLOCKS: u64 = 50_000;
/// The largest block the service takes.
const MAX_BLOCK_SIZE: u64 = 4000 * 1024 * 1024;
/// Blocks of one file in flight at once.
const BLOCKS_IN_FLIGHT: usize = 4;
/// Block buffers (of [`BLOCK_SIZE`]) held at once by all uploads together.
const BLOCK_BUFFERS: u32 = 8;
/// Files transferred at once.
const FILES_IN_FLIGHT: usize = 8;
/// Further tries of a transient failure.
const RETRIES: u32 = 4;
/// The wait before the first retry; it doubles with each one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Permissions of a downloaded file without `fileMode` (the service's default).
const DEFAULT_MODE: u32 = 0o770;
/// How much of an error response body is read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Why a transfer failed, as a task's `failureInfo` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// An Azure Batch `TaskFailureInformationCodes` value.
    pub code: String,
    pub message: String,
    /// Category `servererror` rather than `usererror`.
    pub server_error: bool,
}

impl Failure {
    /// A failure of category `usererror`.
    pub fn user(code: &str, message: impl Into<String>) -> Failure {
        Failure { code: code.into(), message: message.into(), server_error: false }
    }

    /// A failure of category `servererror`.
    pub fn server(code: &str, message: impl Into<String>) -> Failure {
        Failure { code: code.into(), message: message.into(), server_error: true }
    }

    /// `usererror` or `servererror`.
    pub fn category(&self) -> &'static str {
        if self.server_error {
            "servererror"
        } else {
            "usererror"
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}

/// What a transfer moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub bytes: u64,
}

/// Which way data moves: failure codes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Download,
    Upload,
}

impl Way {
    fn misc(self) -> &'static str {
        match self {
            Way::Download => "BlobDownloadMiscError",
            Way::Upload => "FileUploadMiscError",
        }
    }

    fn timed_out(self) -> &'static str {
        match self {
            Way::Download => "BlobDownloadTimedOut",
            Way::Upload => "FileUploadMiscError",
        }
    }
}

/// A failed try, and whether trying again may help.
type Try<T> = Result<T, (Failure, bool)>;

/// A transport error as a failure (never showing the URL's signature).
fn send_error(e: reqwest::Error, url: &Url, way: Way) -> (Failure, bool) {
    let shown = redact(url.as_str());
    let timeout = e.is_timeout();
    let transient = timeout || e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
    let builder = e.is_builder();
    let text = describe(&e.without_url());
    if timeout {
        (Failure::server(way.timed_out(), format!("{shown}: timed out ({text})")), true)
    } else if builder {
        (Failure::user(way.misc(), format!("{shown}: {text}")), false)
    } else {
        (Failure::server(way.misc(), format!("{shown}: {text}")), transient)
    }
}

/// An error and its causes, joined.
fn describe(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// Whether a status is worth another try.
fn transient_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The failure an unsuccessful response stands for, with the storage error
/// code and message of its body.
async fn status_failure(resp: reqwest::Response, url: &Url, way: Way) -> (Failure, bool) {
    let status = resp.status();
    let header_code = resp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = read_limited(resp, ERROR_BODY_LIMIT).await;
    let (body_code, detail) = blob::parse_error(&body);
    let code = body_code.or(header_code);
    let mut message = format!("{}: HTTP {status}", redact(url.as_str()));
    match (&code, &detail) {
        (Some(c), Some(d)) => message.push_str(&format!(" ({c}: {d})")),
        (Some(c), None) => message.push_str(&format!(" ({c})")),
        _ => {}
    }
    let failure = match (way, status.as_u16()) {
        (Way::Download, 404) => Failure::user("BlobNotFound", message),
        (Way::Download, 401 | 403) => Failure::user("BlobAccessDenied", message),
        (Way::Download, 408 | 504) => Failure::server("BlobDownloadTimedOut", message),
        (Way::Upload, 404) if code.as_deref().is_none_or(|c| c == "ContainerNotFound") => {
            Failure::user("FileUploadContainerNotFound", format!("the container to upload output files to was not found: {message}"))
        }
        (Way::Upload, 401 | 403) => Failure::user("FileUploadAccessDenied", message),
        _ => Failure::server(way.misc(), message),
    };
    (failure, transient_status(status))
}

/// Up to `limit` bytes of a response body, as text.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while body.len() < limit {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(limit - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Runs blocking work off the async threads.
async fn blocking<T, F>(code: &str, f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| Failure::server(code, format!("internal error: {e}")))
}

/// A local failure while downloading, coded as the service codes it.
fn download_fault(fault: local::Fault, source: &str, dest: &Path) -> Failure {
    use std::io::ErrorKind;
    let disk_full = |e: &std::io::Error| {
        local::is_disk_full(e).then(|| Failure::server("DiskFull", format!("{}: the node's disk is full ({e})", dest.display())))
    };
    match fault {
        local::Fault::Read(e) => match e.kind() {
            ErrorKind::NotFound => Failure::user("BlobNotFound", format!("{source}: {e}")),
            ErrorKind::PermissionDenied => Failure::user("BlobAccessDenied", format!("{source}: {e}")),
            _ => Failure::server("BlobDownloadMiscError", format!("{source}: {e}")),
        },
        local::Fault::Dir(dir, e) => disk_full(&e).unwrap_or_else(|| {
            let message = format!("cannot create the directory {} for {source}: {e}", dir.display());
            if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::InvalidInput) {
                Failure::user("ResourceDirectoryCreateFailed", message)
            } else {
                Failure::server("ResourceDirectoryCreateFailed", message)
            }
        }),
        local::Fault::Create(e) => disk_full(&e).unwrap_or_else(|| {
            let message = format!("cannot create {} for {source}: {e}", dest.display());
            if e.raw_os_error() == Some(libc::EISDIR) {
                Failure::user("ResourceFileCreateFailed", message)
            } else {
                Failure::server("ResourceFileCreateFailed", message)
            }
        }),
        local::Fault::Write(e) => disk_full(&e)
            .unwrap_or_else(|| Failure::server("ResourceFileWriteFailed", format!("cannot write {} from {source}: {e}", dest.display()))),
    }
}

/// A local failure while uploading.
fn upload_fault(fault: local::Fault, file: &Path, dest: &str) -> Failure {
    match fault {
        local::Fault::Read(e) => Failure::server("FileUploadMiscError", format!("cannot read {}: {e}", file.display())),
        local::Fault::Dir(d, e) => Failure::server("FileUploadMiscError", format!("cannot create {}: {e}", d.display())),
        local::Fault::Create(e) | local::Fault::Write(e) => {
            Failure::server("FileUploadMiscError", format!("cannot write {dest} from {}: {e}", file.display()))
        }
    }
}

/// One file to fetch.
struct Fetch {
    source: Source,
    /// Where it goes (for messages).
    dest: PathBuf,
    /// Where it goes, relative to the directory downloaded into.
    rel: String,
    mode: u32,
}

enum Source {
    Http(Url),
    Local(PathBuf),
}

impl Source {
    /// The file `name` of a container or directory.
    fn member(&self, name: &str) -> Source {
        match self {
            Source::Http(container) => Source::Http(blob::blob_url(container, name)),
            Source::Local(dir) => Source::Local(dir.join(name)),
        }
    }

    /// The source as messages show it.
    fn shown(&self) -> String {
        match self {
            Source::Http(u) => redact(u.as_str()),
            Source::Local(p) => format!("file://{}", p.display()),
        }
    }
}

/// A matched output file, opened (again, for each try) below its anchor —
/// the task directory's handle, or `/` — never through a link.
#[derive(Debug, Clone)]
struct Output {
    /// For messages and logs.
    path: PathBuf,
    anchor: nodefs::Dir,
    rel: String,
}

impl Output {
    /// Opens the file to read; it must (still) be a regular file.
    fn open(&self) -> std::io::Result<std::fs::File> {
        self.anchor.open_file(&self.rel).map(|(f, _)| f)
    }
}

/// Where one output file spec's files go.
struct Destination {
    target: Target,
    headers: blob::UploadHeaders,
}

enum Target {
    Container(Url),
    Directory(PathBuf),
}

impl Destination {
    fn shown(&self, name: &str) -> String {
        match &self.target {
            Target::Container(c) => redact(blob::blob_url(c, name).as_str()),
            Target::Directory(d) => format!("file://{}", d.join(name).display()),
        }
    }
}

/// The permission bits of a `fileMode` ("0755", "755"), or the default.
fn parse_mode(m: Option<&str>) -> Result<u32, Failure> {
    match m.map(str::trim).filter(|m| !m.is_empty()) {
        None => Ok(DEFAULT_MODE),
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|v| *v <= 0o7777)
            .ok_or_else(|| Failure::user("ResourceFileCreateFailed", format!("the file mode '{m}' is not an octal permission"))),
    }
}

/// Whether an output file's `uploadCondition` holds.
fn condition_met(condition: &str, succeeded: bool) -> bool {
    if condition.eq_ignore_ascii_case("tasksuccess") {
        succeeded
    } else if condition.eq_ignore_ascii_case("taskfailure") {
        !succeeded
    } else {
        true
    }
}

/// A UTC timestamp for the upload logs.
fn log_time() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Moves task data. One per agent: it keeps the HTTP connection pool.
#[derive(Clone)]
pub struct Transfer {
    http: reqwest::Client,
    block_size: usize,
    /// Block buffers across all uploads, in units of [`BLOCK_SIZE`].
    buffers: Arc<tokio::sync::Semaphore>,
    backoff: Duration,
    /// When set, `file://` paths must lie below one of these directories.
    file_roots: Option<Vec<PathBuf>>,
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer::new()
    }
}

impl Transfer {
    /// A transfer client: 10 s to connect, 60 s at most without receiving
    /// data, no limit on a whole transfer.
    pub fn new() -> Transfer {
        let http = reqwest::Client::builder()
            .user_agent(concat!("openbatch-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30))
            .pool_max_idle_per_host(16)
            .build()
            .unwrap_or_else(|e| {
                tracing::error!("HTTP client setup failed ({e}); using defaults");
                reqwest::Client::new()
            });
        Transfer {
            http,
            block_size: BLOCK_SIZE,
            buffers: Arc::new(tokio::sync::Semaphore::new(BLOCK_BUFFERS as usize)),
            backoff: FIRST_BACKOFF,
            file_roots: None,
        }
    }

    /// Allows `file://` sources and destinations only below these
    /// directories (symbolic links resolved). Without this call every path
    /// the agent can read or write is allowed: a task could name any node
    /// file, so set it wherever tasks are not trusted with the agent's rights.
    pub fn with_file_roots(mut self, roots: Vec<PathBuf>) -> Transfer {
        self.file_roots = Some(roots.into_iter().map(|r| r.canonicalize().unwrap_or(r)).collect());
        self
    }

    /// Whether a `file://` path may be used (see [`Transfer::with_file_roots`]).
    fn file_allowed(&self, path: &Path) -> bool {
        let Some(roots) = &self.file_roots else { return true };
        let real = path.canonicalize().unwrap_or_else(|_| {
            // Not there (yet): its lexical form decides; opening it fails later.
            local::below(Path::new("/"), path.to_string_lossy().trim_start_matches('/')).unwrap_or_default()
        });
        roots.iter().any(|r| real.starts_with(r))
    }

    /// Tries `op` until it succeeds, fails for good, or has been retried
    /// [`RETRIES`] times, with exponential backoff between tries.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Try<T>>,
    {
        let mut delay = self.backoff;
        let mut retries = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err((f, true)) if retries < RETRIES => {
                    retries += 1;
                    tracing::debug!(code = %f.code, retry = retries, "transient transfer failure: {}", f.message);
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err((f, _)) => return Err(f),
            }
        }
    }

    /// Downloads every resource file into `wd` (the task's working
    /// directory; or its task directory for common resource files, open),
    /// [`FILES_IN_FLIGHT`] at once, streaming to disk. Files and the
    /// directories created for them belong to `owner` when given; files get
    /// their `fileMode` (default 0770). Nothing below `wd` is reached
    /// through a symbolic link: a link where a directory goes fails the
    /// download, a link (or anything else) where a file goes is replaced.
    /// The first failure stops the rest.
    pub async fn download(&self, files: &[ResourceFileSpec], wd: &nodefs::Dir, owner: Option<(u32, u32)>) -> Result<Stats, Failure> {
        let mut fetches = Vec::new();
        for spec in files {
            fetches.extend(self.plan(spec, wd.path()).await?);
        }
        let mut running = futures_util::stream::iter(fetches)
            .map(|f| -> BoxFuture<'_, Result<u64, Failure>> { self.fetch(f, wd, owner).boxed() })
            .buffer_unordered(FILES_IN_FLIGHT);
        let mut stats = Stats::default();
        while let Some(r) = running.next().await {
            stats.bytes += r?;
            stats.files += 1;
        }
        Ok(stats)
    }

    /// The files one resource file entry stands for.
    async fn plan(&self, spec: &ResourceFileSpec, wd: &Path) -> Result<Vec<Fetch>, Failure> {
        let mode = parse_mode(spec.file_mode.as_deref())?;
        let outside = |p: &str| Failure::user("ResourceFileCreateFailed", format!("the file path '{p}' leaves the task's directory"));
        let file_path = spec.file_path.as_deref().filter(|p| !p.is_empty());
        if let Some(url) = &spec.http_url {
            let source = self.source(url)?;
            let name = match file_path {
                Some(p) => p.to_string(),
                None => url_file_name(url)
                    .ok_or_else(|| Failure::user("ResourceFileCreateFailed", format!("no file path for {}", redact(url))))?,
            };
            let dest = local::below(wd, &name).filter(|d| d != wd).ok_or_else(|| outside(&name))?;
            let rel = relative(&dest, wd);
            return Ok(vec![Fetch { source, dest, rel, mode }]);
        }
        let Some(container) = &spec.container_url else {
            return Err(Failure::user(
                "BlobDownloadMiscError",
                "the resource file has no source (autoStorageContainerName needs an auto-storage account, which this openbatch server has not been given)",
            ));
        };
        let base = match file_path {
            Some(p) => local::below(wd, p).ok_or_else(|| outside(p))?,
            None => wd.to_path_buf(),
        };
        let prefix = spec.blob_prefix.clone().unwrap_or_default();
        let (names, origin) = match local::file_url_path(container) {
            Some(root) => {
                if !self.file_allowed(&root) {
                    return Err(Failure::user(
                        "BlobAccessDenied",
                        format!("file://{}: not below a shared directory the node allows", root.display()),
                    ));
                }
                let dir = root.clone();
                let listed = blocking("BlobDownloadMiscError", move || local::walk_files(&dir)).await?.map_err(|e| {
                    let code = if e.kind() == std::io::ErrorKind::PermissionDenied { "BlobAccessDenied" } else { "BlobNotFound" };
                    Failure::user(code, format!("file://{}: {e}", root.display()))
                })?;
                (listed.into_iter().filter(|rel| rel.starts_with(&prefix)).collect(), Source::Local(root))
            }
            None => {
                let url = parse_url(container, Way::Download)?;
                (self.list(&url, &prefix).await?, Source::Http(url))
            }
        };
        names
            .into_iter()
            .filter(|n| !n.ends_with('/') && !n.is_empty())
            .map(|n| {
                let dest = local::below(&base, &n).filter(|d| d != &base).ok_or_else(|| outside(&n))?;
                let rel = relative(&dest, wd);
                Ok(Fetch { source: origin.member(&n), dest, rel, mode })
            })
            .collect()
    }

    /// The source of an `httpUrl`.
    fn source(&self, url: &str) -> Result<Source, Failure> {
        match local::file_url_path(url) {
            Some(p) if self.file_allowed(&p) => Ok(Source::Local(p)),
            Some(p) => {
                Err(Failure::user("BlobAccessDenied", format!("file://{}: not below a shared directory the node allows", p.display())))
            }
            None => Ok(Source::Http(parse_url(url, Way::Download)?)),
        }
    }

    /// Lists a container's blobs under `prefix`, following `NextMarker`.
    async fn list(&self, container: &Url, prefix: &str) -> Result<Vec<String>, Failure> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let url = blob::list_url(container, prefix, marker.as_deref());
            let body = self
                .retry(|| async {
                    let resp = self.http.get(url.clone()).header("x-ms-version", blob::VERSION).send().await;
                    let resp = resp.map_err(|e| send_error(e, &url, Way::Download))?;
                    if !resp.status().is_success() {
                        return Err(status_failure(resp, &url, Way::Download).await);
                    }
                    resp.text().await.map_err(|e| send_error(e, &url, Way::Download))
                })
                .await?;
            let page = blob::parse_listing(&body)
                .map_err(|e| Failure::server("BlobDownloadMiscError", format!("{}: {e}", redact(url.as_str()))))?;
            names.extend(page.names);
            match page.next_marker {
                Some(m) if marker.as_deref() != Some(&m) => marker = Some(m),
                _ => return Ok(names),
            }
        }
    }

    /// Fetches one file; a transient failure restarts it.
    async fn fetch(&self, f: Fetch, wd: &nodefs::Dir, owner: Option<(u32, u32)>) -> Result<u64, Failure> {
        let shown = f.source.shown();
        let (parent_rel, name) = match f.rel.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), f.rel.clone()),
        };
        let (dir, parent_path) = (wd.clone(), f.dest.parent().map(Path::to_path_buf).unwrap_or_default());
        let made = blocking("ResourceDirectoryCreateFailed", move || {
            dir.make_dirs(&parent_rel, owner).map_err(|e| local::Fault::Dir(parent_path, local::dir_error(e)))
        })
        .await?;
        let parent = made.map_err(|fault| download_fault(fault, &shown, &f.dest))?;
        let fetched: Result<(u64, std::fs::File), Failure> = match &f.source {
            Source::Local(src) => {
                let (src, parent, name) = (src.clone(), parent.clone(), name.clone());
                let opened = self.open_source(&src).await;
                let copied = blocking("BlobDownloadMiscError", move || -> Result<(u64, std::fs::File), local::Fault> {
                    let mut input = opened.map_err(local::Fault::Read)?;
                    let mut output = parent.create_file(&name, 0o600).map_err(local::Fault::Create)?;
                    let n = local::copy(&mut input, &mut output)?;
                    Ok((n, output))
                })
                .await?;
                copied.map_err(|fault| download_fault(fault, &shown, &f.dest))
            }
            Source::Http(url) => self.retry(|| self.fetch_once(url, &parent, &name, &f.dest)).await,
        };
        let (bytes, file) = match fetched {
            Ok(v) => v,
            Err(failure) => {
                // A failed download leaves no partial file behind.
                let (parent, name) = (parent.clone(), name.clone());
                let _ = blocking("ResourceFileWriteFailed", move || {
                    if parent.stat(&name).is_ok_and(|m| m.kind == nodefs::Kind::File) {
                        let _ = parent.remove(&name, false);
                    }
                })
                .await;
                return Err(failure);
            }
        };
        let mode = f.mode;
        blocking("ResourceFileWriteFailed", move || local::finish_file(&file, owner, mode)).await?.map_err(|e| {
            Failure::server("ResourceFileWriteFailed", format!("cannot set the owner or mode of {}: {e}", f.dest.display()))
        })?;
        Ok(bytes)
    }

    /// Opens a `file://` source to read. With file roots set, the path is
    /// opened below the root it lies in, following only links that stay
    /// inside that root (so a link swapped in on a shared filesystem cannot
    /// make the agent read a file elsewhere).
    async fn open_source(&self, src: &Path) -> std::io::Result<std::fs::File> {
        let (src, roots) = (src.to_path_buf(), self.file_roots.clone());
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let not_regular = || std::io::Error::new(std::io::ErrorKind::NotFound, "not a regular file");
            let (file, meta) = match roots {
                None => {
                    let f = std::fs::File::open(&src)?;
                    let m = nodefs::file_meta(&f)?;
                    (f, m)
                }
                Some(roots) => {
                    let (root, rel) = within_roots(&roots, &src)?;
                    nodefs::Dir::open(&root)?.open_file_beneath(&rel).map_err(|e| {
                        if e.raw_os_error() == Some(libc::EISDIR) || e.kind() == std::io::ErrorKind::InvalidInput {
                            not_regular()
                        } else {
                            e
                        }
                    })?
                }
            };
            if meta.kind != nodefs::Kind::File {
                return Err(not_regular());
            }
            Ok(file)
        })
        .await;
        opened.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
    }

    /// One try of an HTTP download, streamed to the new file `name` of `parent`.
    async fn fetch_once(&self, url: &Url, parent: &nodefs::Dir, name: &str, dest: &Path) -> Try<(u64, std::fs::File)> {
        let shown = redact(url.as_str());
        let resp = self.http.get(url.clone()).header("x-ms-version", blob::VERSION).send().await;
        let resp = resp.map_err(|e| send_error(e, url, Way::Download))?;
        if !resp.status().is_success() {
            return Err(status_failure(resp, url, Way::Download).await);
        }
        let (dir, file_name) = (parent.clone(), name.to_string());
        let created = blocking("ResourceFileCreateFailed", move || dir.create_file(&file_name, 0o600)).await.map_err(|f| (f, false))?;
        let file = created.map_err(|e| (download_fault(local::Fault::Create(e), &shown, dest), false))?;
        let mut out = tokio::fs::File::from_std(file);
        let write_failure = |e: std::io::Error| (download_fault(local::Fault::Write(e), &shown, dest), false);
        let mut body = resp.bytes_stream();
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| send_error(e, url, Way::Download))?;
            out.write_all(&chunk).await.map_err(write_failure)?;
            n += chunk.len() as u64;
        }
        out.flush().await.map_err(write_failure)?;
        Ok((n, out.into_std().await))
    }

    /// Uploads the output files whose `uploadCondition` holds (`succeeded`:
    /// the process exited with 0) after expanding `$VAR`s in their patterns
    /// from `env`; relative patterns start at `wd`. Every matched file is
    /// tried; `fileuploadout.txt` (one line per uploaded file, and a summary)
    /// and `fileuploaderr.txt` (one line per failure; empty when none) are
    /// written in `task_dir`. Returns the first failure.
    ///
    /// Files are found and opened without following a symbolic link at any
    /// component (below the task directory from its handle `task_dir`,
    /// elsewhere from `/`): a link is not uploaded, whatever it points to.
    pub async fn upload(
        &self,
        files: &[OutputFileSpec],
        task_dir: &nodefs::Dir,
        wd: &Path,
        succeeded: bool,
        env: &BTreeMap<String, String>,
    ) -> Result<Stats, Failure> {
        let mut out_log = String::new();
        let mut err_log = String::new();
        let mut first: Option<Failure> = None;
        let mut failed = 0u64;
        let mut jobs: Vec<(Arc<Destination>, Output, String)> = Vec::new();
        for spec in files {
            if !condition_met(&spec.upload_condition, succeeded) {
                out_log.push_str(&format!(
                    "{} skipped '{}': upload condition {} not met\n",
                    log_time(),
                    spec.file_pattern,
                    spec.upload_condition
                ));
                continue;
            }
            let dest = match self.destination(spec) {
                Ok(d) => Arc::new(d),
                Err(f) => {
                    err_log.push_str(&format!("{} '{}': {f}\n", log_time(), spec.file_pattern));
                    failed += 1;
                    first.get_or_insert(f);
                    continue;
                }
            };
            let expanded = pattern::expand_env(&spec.file_pattern, env);
            let resolved = pattern::resolve(&expanded, wd);
            let single = resolved.is_single();
            let guard = task_dir.clone();
            let matched = blocking("FileUploadMiscError", move || {
                pattern::find(&resolved, &guard)
                    .into_iter()
                    .filter_map(|m| {
                        let (anchor, rel) = pattern::locate(&m.path, &guard).ok()?;
                        Some((Output { path: m.path, anchor, rel }, m.relative))
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
            if matched.is_empty() {
                out_log.push_str(&format!("{} '{}' ({expanded}) matched no files\n", log_time(), spec.file_pattern));
            }
            for (output, relative) in matched {
                let name = pattern::blob_name(spec.path.as_deref(), &relative, single);
                jobs.push((dest.clone(), output, name));
            }
        }
        let mut running = futures_util::stream::iter(jobs)
            .map(|(dest, file, name)| -> BoxFuture<'_, _> {
                async move {
                    let r = self.put(&dest, &file, &name).await;
                    (dest, file.path, name, r)
                }
                .boxed()
            })
            .buffer_unordered(FILES_IN_FLIGHT);
        let mut stats = Stats::default();
        while let Some((dest, file, name, r)) = running.next().await {
            match r {
                Ok(n) => {
                    stats.files += 1;
                    stats.bytes += n;
                    out_log.push_str(&format!("{} uploaded {} to {} ({n} bytes)\n", log_time(), file.display(), dest.shown(&name)));
                }
                Err(f) => {
                    failed += 1;
                    err_log.push_str(&format!("{} failed to upload {} to {}: {f}\n", log_time(), file.display(), dest.shown(&name)));
                    first.get_or_insert(f);
                }
            }
        }
        out_log.push_str(&format!("{} uploaded {} files, {} bytes; {failed} failed\n", log_time(), stats.files, stats.bytes));
        // Written on the task directory's handle, replacing whatever the
        // task left in their place (a link is not written through).
        let (dir, logs) = (task_dir.clone(), [("fileuploadout.txt", out_log), ("fileuploaderr.txt", err_log)]);
        let _ = blocking("FileUploadMiscError", move || {
            use std::io::Write;
            for (name, text) in logs {
                if let Err(e) = dir.create_file(name, 0o644).and_then(|mut f| f.write_all(text.as_bytes())) {
                    tracing::warn!("cannot write {}: {e}", dir.path().join(name).display());
                }
            }
        })
        .await;
        match first {
            Some(f) => Err(f),
            None => Ok(stats),
        }
    }

    /// Uploads the regular files `names` of `dir` (opened below its handle,
    /// never through a link) to `container_url` — a container with its SAS,
    /// or a `file://` directory — as `{prefix}/{name}`, one after another;
    /// the first failure ends it. Used for the agent's own logs
    /// (`uploadbatchservicelogs`).
    pub async fn upload_named(&self, container_url: &str, dir: &nodefs::Dir, names: &[String], prefix: &str) -> Result<Stats, Failure> {
        let spec = OutputFileSpec { container_url: container_url.to_string(), ..OutputFileSpec::default() };
        let dest = self.destination(&spec)?;
        let mut stats = Stats::default();
        for name in names {
            let src = Output { path: dir.path().join(name), anchor: dir.clone(), rel: name.clone() };
            let blob = format!("{}/{name}", prefix.trim_end_matches('/'));
            stats.bytes += self.put(&dest, &src, &blob).await?;
            stats.files += 1;
        }
        Ok(stats)
    }

    /// Where an output file spec uploads to.
    fn destination(&self, spec: &OutputFileSpec) -> Result<Destination, Failure> {
        let headers = blob::UploadHeaders::new(&spec.upload_headers).map_err(|e| Failure::user("FileUploadMiscError", e))?;
        let target = match local::file_url_path(&spec.container_url) {
            Some(dir) if self.file_allowed(&dir) => Target::Directory(dir),
            Some(dir) => {
                return Err(Failure::user(
                    "FileUploadAccessDenied",
                    format!("file://{}: not below a shared directory the node allows", dir.display()),
                ))
            }
            None => Target::Container(parse_url(&spec.container_url, Way::Upload)?),
        };
        Ok(Destination { target, headers })
    }

    /// Saves one file as blob `name`; returns its size.
    async fn put(&self, dest: &Destination, src: &Output, name: &str) -> Result<u64, Failure> {
        let file = src.path.as_path();
        match &dest.target {
            Target::Directory(root) => {
                let shown = dest.shown(name);
                let target = local::below(root, name)
                    .filter(|t| t != root)
                    .ok_or_else(|| Failure::user("FileUploadMiscError", format!("the blob name '{name}' leaves {}", root.display())))?;
                let rel = relative(&target, root);
                let (root, src, roots) = (root.clone(), src.clone(), self.file_roots.clone());
                let copied = blocking("FileUploadMiscError", move || -> Result<Result<u64, local::Fault>, Failure> {
                    let missing = || Failure::user("FileUploadContainerNotFound", format!("file://{}: no such directory", root.display()));
                    // The destination directory: below its file root's
                    // handle when roots are set; nothing below it is
                    // reached through a link.
                    let opened = match &roots {
                        None => nodefs::Dir::open(&root),
                        Some(roots) => within_roots(roots, &root).and_then(|(r, rel)| nodefs::Dir::open(&r)?.open_dir_beneath(&rel)),
                    };
                    let out_dir = opened.map_err(|_| missing())?;
                    Ok((|| {
                        let mut input = src.open().map_err(local::Fault::Read)?;
                        let (parent_rel, file_name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
                        let parent = out_dir
                            .make_dirs(parent_rel, None)
                            .map_err(|e| local::Fault::Dir(root.join(parent_rel), local::dir_error(e)))?;
                        let mut output = parent.create_file(file_name, 0o644).map_err(local::Fault::Create)?;
                        local::copy(&mut input, &mut output)
                    })())
                })
                .await??;
                copied.map_err(|fault| upload_fault(fault, file, &shown))
            }
            Target::Container(container) => {
                let url = blob::blob_url(container, name);
                let s = src.clone();
                let opened = blocking("FileUploadMiscError", move || s.open()).await?;
                let size = opened
                    .and_then(|f| f.metadata())
                    .map(|m| m.len())
                    .map_err(|e| upload_fault(local::Fault::Read(e), file, &redact(url.as_str())))?;
                let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if size <= self.block_size as u64 {
                    let headers = dest.headers.for_put_blob(&file_name);
                    self.retry(|| self.put_blob_once(&url, src, size, &headers)).await?;
                } else {
                    self.put_blocks(&url, src, size, dest.headers.for_block_list(&file_name)).await?;
                }
                Ok(size)
            }
        }
    }

    /// One try of a Put Blob, the body streamed from the file.
    async fn put_blob_once(&self, url: &Url, src: &Output, size: u64, headers: &reqwest::header::HeaderMap) -> Try<()> {
        use tokio::io::AsyncReadExt;
        let s = src.clone();
        let opened = blocking("FileUploadMiscError", move || s.open()).await.map_err(|f| (f, false))?;
        let input = opened.map_err(|e| (upload_fault(local::Fault::Read(e), &src.path, &redact(url.as_str())), false))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(input).take(size), 64 * 1024);
        let resp = self
            .http
            .put(url.clone())
            .headers(headers.clone())
            .header("x-ms-blob-type", "BlockBlob")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| send_error(e, url, Way::Upload))?;
        if !resp.status().is_success() {
            return Err(status_failure(resp, url, Way::Upload).await);
        }
        Ok(())
    }

    /// Uploads a large file as blocks, [`BLOCKS_IN_FLIGHT`] at once, then
    /// commits the block list.
    async fn put_blocks(&self, url: &Url, src: &Output, size: u64, list_headers: reqwest::header::HeaderMap) -> Result<(), Failure> {
        let block = block_size_for(size, self.block_size as u64);
        let count = size.div_ceil(block);
        let ids: Vec<String> = (0..count).map(blob::block_id).collect();
        let file = src.path.as_path();
        let s = src.clone();
        let opened = blocking("FileUploadMiscError", move || s.open()).await?;
        let input = Arc::new(opened.map_err(|e| upload_fault(local::Fault::Read(e), file, &redact(url.as_str())))?);
        // Buffers are counted in units of BLOCK_SIZE, so huge blocks take more.
        let permits = (block.div_ceil(BLOCK_SIZE as u64) as u32).clamp(1, BLOCK_BUFFERS);
        let mut running = futures_util::stream::iter(0..count)
            .map(|i| -> BoxFuture<'_, Result<(), Failure>> {
                let input = input.clone();
                let id = blob::block_id(i);
                async move {
                    let _buffer = self
                        .buffers
                        .acquire_many(permits)
                        .await
                        .map_err(|e| Failure::server("FileUploadMiscError", format!("internal error: {e}")))?;
                    let offset = i * block;
                    let len = block.min(size - offset) as usize;
                    let read = blocking("FileUploadMiscError", move || {
                        use std::os::unix::fs::FileExt;
                        let mut buf = vec![0u8; len];
                        input.read_exact_at(&mut buf, offset).map(|()| bytes::Bytes::from(buf))
                    })
                    .await?;
                    let data = read.map_err(|e| {
                        Failure::server(
                            "FileUploadMiscError",
                            format!("cannot read {} (did it change during the upload?): {e}", file.display()),
                        )
                    })?;
                    let block_url = blob::with_query(url, &[("comp", "block"), ("blockid", &id)]);
                    self.retry(|| async {
                        let resp = self
                            .http
                            .put(block_url.clone())
                            .header("x-ms-version", blob::VERSION)
                            .body(data.clone())
                            .send()
                            .await
                            .map_err(|e| send_error(e, &block_url, Way::Upload))?;
                        if !resp.status().is_success() {
                            return Err(status_failure(resp, &block_url, Way::Upload).await);
                        }
                        Ok(())
                    })
                    .await
                }
                .boxed()
            })
            .buffer_unordered(BLOCKS_IN_FLIGHT);
        while let Some(r) = running.next().await {
            r?;
        }
        drop(running);
        let body = blob::block_list(&ids);
        let list_url = blob::with_query(url, &[("comp", "blocklist")]);
        self.retry(|| async {
            let resp = self
                .http
                .put(list_url.clone())
                .headers(list_headers.clone())
                .body(body.clone())
                .send()
                .await
                .map_err(|e| send_error(e, &list_url, Way::Upload))?;
            if !resp.status().is_success() {
                return Err(status_failure(resp, &list_url, Way::Upload).await);
            }
            Ok(())
        })
        .await
    }
}

/// The block size for a file: `preferred`, or more when the file would
/// otherwise need more blocks than a blob may have.
fn block_size_for(size: u64, preferred: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = size.div_ceil(MAX_BLOCKS);
    if needed <= preferred {
        preferred
    } else {
        (needed.div_ceil(MIB) * MIB).min(MAX_BLOCK_SIZE)
    }
}

/// `path` (below `base`) relative to `base`, `/`-separated.
fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The file root `path` lies in (symbolic links resolved), and the path
/// relative to it. Resolving here only picks the root: the file is then
/// opened below the root's handle, where no link can lead outside it.
fn within_roots(roots: &[PathBuf], path: &Path) -> std::io::Result<(PathBuf, String)> {
    let real = path.canonicalize()?;
    roots
        .iter()
        .find(|r| real.starts_with(r))
        .map(|r| (r.clone(), relative(&real, r)))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::PermissionDenied, "not below a shared directory the node allows"))
}

/// An `http(s)` URL, or a user error naming it.
fn parse_url(url: &str, way: Way) -> Result<Url, Failure> {
    let parsed = Url::parse(url).map_err(|e| Failure::user(way.misc(), format!("{}: invalid URL: {e}", redact(url))))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        s => Err(Failure::user(way.misc(), format!("{}: unsupported URL scheme '{s}'", redact(url)))),
    }
}

/// The last path segment of a URL (decoded), when there is one.
fn url_file_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
    let (_, p) = after_scheme.split_once('/')?;
    let last = p.rsplit('/').next()?;
    let name = blob::percent_decode(last);
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

#[cfg(test)]
mod tests;
