//! The connection layer: our own accept loop over hyper's HTTP/1 server,
//! with limits that keep a hostile or broken client from holding the
//! server's memory, file descriptors or attention, and optional TLS.
//!
//! - A request head must arrive within `header_timeout` of its first byte
//!   (under TLS, of the handshake's first byte).
//! - A connection with no request in progress and no byte of a next one is
//!   closed after `idle_timeout` (keep-alive).
//! - A request body must arrive within `body_timeout` of its head: the
//!   deadline travels with the request ([`RequestLimits`]) to
//!   [`read_body`], which answers 408 when it passes.
//! - At most `max_connections` connections are open. A connection beyond
//!   that closes the one that has waited longest without a request in
//!   progress (idle, or trickling a head); when every connection is busy
//!   with a request, accepting waits.
//! - An agent's WebSocket leaves these rules once upgraded (it still counts
//!   towards `max_connections` while open).
//!
//! Bodies are read only after the request was authenticated from its head;
//! a body that is not read (an early error) is drained in the background,
//! bounded in bytes and time and never kept, so the client reads its answer
//! instead of a reset ([`discard`]).

use crate::state::App;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use wire::{Error, ErrorCode};

/// The largest request body read (addtaskcollection bodies must be under 1 MB).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// A body left unread by an early answer is read and dropped up to this
/// many bytes ...
const DRAIN_BYTES: usize = MAX_BODY;
/// ... for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// hyper's read buffer per connection (also the largest request head).
const MAX_BUF: usize = 64 * 1024;
/// File descriptors kept back from the connection cap (database, agents'
/// pipes, log files).
const RESERVED_FDS: u64 = 256;

/// Time and count limits of the connection layer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_connections: 8192,
        }
    }
}

/// How `serve` (the crate root) serves: limits, and TLS when configured.
#[derive(Clone, Default)]
pub struct ServeOptions {
    pub limits: Limits,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Environment for the local agents the server starts (under TLS: the
    /// CA file and the name they verify the server's certificate for).
    pub agent_env: Vec<(String, String)>,
}

/// What the connection layer tells the request pipeline (a request
/// extension; absent when a request does not come through [`serve`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// The body must have arrived by then.
    pub body_deadline: tokio::time::Instant,
    /// The connection is TLS (links are `https://`).
    pub tls: bool,
}

/// Milliseconds since the first call (never 0, so 0 can mean "none").
fn clock() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// One connection's progress, shared by its IO, its requests and the
/// accept loop.
struct ConnState {
    /// Requests whose response has not finished.
    active: AtomicU32,
    /// When the connection last had no request in progress.
    idle_since: AtomicU64,
    /// When the first byte arrived since then (0: none yet).
    head_started: AtomicU64,
    /// The HTTP connection ended (closed, or upgraded to a WebSocket).
    done: AtomicBool,
    /// Wakes the watchdog when a head starts, so its shorter limit applies.
    changed: Notify,
    /// Asks the connection to close if it is still idle.
    evict: Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            active: AtomicU32::new(0),
            idle_since: AtomicU64::new(clock()),
            head_started: AtomicU64::new(0),
            done: AtomicBool::new(false),
            changed: Notify::new(),
            evict: Notify::new(),
        }
    }

    fn saw_bytes(&self) {
        if self.active.load(Ordering::Acquire) == 0
            && self.head_started.compare_exchange(0, clock(), Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// Since when the connection has waited without a request in progress;
    /// None while one is.
    fn waiting_since(&self) -> Option<u64> {
        if self.active.load(Ordering::Acquire) > 0 || self.done.load(Ordering::Acquire) {
            return None;
        }
        let h = self.head_started.load(Ordering::Acquire);
        Some(if h != 0 { h } else { self.idle_since.load(Ordering::Acquire) })
    }

    /// When the connection must close unless something changes.
    fn deadline(&self, l: &Limits) -> u64 {
        if self.active.load(Ordering::Acquire) > 0 {
            return clock() + ms(l.idle_timeout);
        }
        match self.head_started.load(Ordering::Acquire) {
            0 => self.idle_since.load(Ordering::Acquire) + ms(l.idle_timeout),
            h => h + ms(l.header_timeout),
        }
    }
}

/// Resolves when the connection has overstayed a limit.
async fn watchdog(state: &ConnState, limits: &Limits) {
    loop {
        let now = clock();
        let deadline = state.deadline(limits);
        if deadline <= now {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(deadline - now)) => {}
            _ = state.changed.notified() => {}
        }
    }
}

/// Resolves when the accept loop asks this connection to make room and it
/// has no request in progress.
async fn evicted(state: &ConnState) {
    loop {
        state.evict.notified().await;
        if state.active.load(Ordering::Acquire) == 0 {
            return;
        }
    }
}

/// A request in progress, from its head until its response is finished
/// (dropped with the response body).
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: Arc<ConnState>) -> InFlight {
        state.active.fetch_add(1, Ordering::AcqRel);
        state.head_started.store(0, Ordering::Release);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // idle_since first: the watchdog must never see an idle connection
        // with a stale idle_since.
        self.0.idle_since.store(clock(), Ordering::Release);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// A response body that ends the request's [`InFlight`] when dropped.
struct Guarded {
    inner: Body,
    _inflight: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections, for the cap and eviction.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
}

impl Registry {
    fn add(self: &Arc<Self>, state: Arc<ConnState>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(id, state);
        Slot { id, registry: self.clone(), _permit: permit }
    }

    /// Asks the connection that has waited longest without a request to
    /// close; false when every connection is busy.
    fn evict_one(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        match conns.values().filter_map(|c| c.waiting_since().map(|t| (t, c))).min_by_key(|(t, _)| *t) {
            Some((_, c)) => {
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn states(&self) -> Vec<Arc<ConnState>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}

/// A connection's place under the cap; freed when its socket closes.
struct Slot {
    id: u64,
    registry: Arc<Registry>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// The socket, noting when bytes arrive on an idle connection.
struct Tracked<IO> {
    io: IO,
    state: Arc<ConnState>,
    _slot: Slot,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.saw_bytes();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Raises the soft limit on open files to the hard limit; returns the soft
/// limit in force.
pub fn raise_nofile_limit() -> u64 {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 1024;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit { rlim_cur: l.rlim_max, rlim_max: l.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                l.rlim_cur = l.rlim_max;
            }
        }
    }
    l.rlim_cur
}

/// Serves `listener` until `shutdown` resolves; then stops accepting, lets
/// requests in flight finish (idle connections close at once) and returns
/// when every connection has ended or after `grace`.
/// What answers a request (the request pipeline; `serve` passes it, so the
/// connection layer does not depend on what it serves).
pub(crate) type Handler = fn(Arc<App>, Request<Body>) -> Pin<Box<dyn Future<Output = axum::http::Response<Body>> + Send>>;

pub(crate) async fn run(
    app: Arc<App>,
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handler: Handler,
) -> std::io::Result<()> {
    let nofile = raise_nofile_limit();
    let mut limits = opts.limits;
    let fd_room = nofile.saturating_sub(RESERVED_FDS).max(16) as usize;
    if limits.max_connections > fd_room {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files = nofile,
            "the open-file limit allows only {fd_room} connections; raise it (ulimit -n) to allow more"
        );
        limits.max_connections = fd_room;
    }
    let limits = Arc::new(limits);
    let tls = opts.tls.map(tokio_rustls::TlsAcceptor::from);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        // A backstop: the watchdog closes idle and slow connections first.
        .header_read_timeout(limits.idle_timeout + limits.header_timeout)
        .max_buf_size(MAX_BUF);
    let http = Arc::new(http);
    let sem = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    let mut emfile_logged = false;
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors (or a connection reset before
                    // accept): back off briefly rather than spin.
                    if !emfile_logged {
                        tracing::warn!(error = %e, "accept failed");
                        emfile_logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return finish(stop_tx, alive_tx, &mut alive_rx, &registry).await,
        };
        // At the cap, the connection that has waited longest without a
        // request makes room; with none, this one waits (and the kernel's
        // backlog holds the next).
        let permit = match sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => loop {
                registry.evict_one();
                tokio::select! {
                    p = sem.clone().acquire_owned() => break p.map_err(std::io::Error::other)?,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = &mut shutdown => return finish(stop_tx, alive_tx, &mut alive_rx, &registry).await,
                }
            },
        };
        // Small messages (agent reports, API calls) must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let state = Arc::new(ConnState::new());
        let slot = registry.add(state.clone(), permit);
        let io = Tracked { io: tcp, state: state.clone(), _slot: slot };
        let conn = Conn { app: app.clone(), handler, http: http.clone(), limits: limits.clone(), state, stop: stop_rx.clone() };
        let tls = tls.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            conn.run(io, tls).await;
            drop(alive);
        });
    }
}

/// Stops accepting; waits for the connections (not upgraded ones) to end.
async fn finish(
    stop: tokio::sync::watch::Sender<bool>,
    alive: tokio::sync::mpsc::Sender<()>,
    alive_rx: &mut tokio::sync::mpsc::Receiver<()>,
    registry: &Registry,
) -> std::io::Result<()> {
    let _ = stop.send(true);
    drop(alive);
    // Connections still in a TLS handshake or between requests end now.
    for s in registry.states() {
        s.evict.notify_one();
    }
    const GRACE: Duration = Duration::from_secs(60);
    if tokio::time::timeout(GRACE, alive_rx.recv()).await.is_err() {
        tracing::warn!("connections still busy {GRACE:?} after shutdown began; closing them");
    }
    Ok(())
}

struct Conn {
    app: Arc<App>,
    handler: Handler,
    http: Arc<hyper::server::conn::http1::Builder>,
    limits: Arc<Limits>,
    state: Arc<ConnState>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Conn {
    async fn run(self, io: Tracked<tokio::net::TcpStream>, tls: Option<tokio_rustls::TlsAcceptor>) {
        let state = self.state.clone();
        let limits = self.limits.clone();
        let work = async move {
            // Nothing is built for a connection before its first byte, and
            // the TLS and HTTP states are boxed: an idle connection costs
            // about a kilobyte, not the ~20 KiB of hyper's buffers.
            // (A peek: tokio takes a socket just accepted for readable.)
            if !matches!(io.io.peek(&mut [0u8; 1]).await, Ok(n) if n > 0) {
                return;
            }
            match tls {
                Some(acceptor) => match Box::pin(acceptor.accept(io)).await {
                    Ok(s) => Box::pin(self.serve(s, true)).await,
                    Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                },
                None => Box::pin(self.serve(io, false)).await,
            }
        };
        tokio::select! {
            _ = work => {}
            _ = watchdog(&state, &limits) => tracing::debug!("closed a connection that overstayed its time limit"),
            _ = evicted(&state) => tracing::debug!("closed an idle connection to make room"),
        }
        state.done.store(true, Ordering::Release);
    }

    async fn serve<IO>(mut self, io: IO, tls: bool)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, state, body_timeout, handler) = (self.app.clone(), self.state.clone(), self.limits.body_timeout, self.handler);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let inflight = InFlight::start(state.clone());
            let body_deadline = tokio::time::Instant::now() + body_timeout;
            req.extensions_mut().insert(RequestLimits { body_deadline, tls });
            let app = app.clone();
            async move {
                let resp = handler(app, req.map(Body::new)).await;
                Ok::<_, Infallible>(resp.map(|inner| Guarded { inner, _inflight: inflight }))
            }
        });
        let conn = self.http.serve_connection(hyper_util::rt::TokioIo::new(io), service).with_upgrades();
        tokio::pin!(conn);
        let mut closing = *self.stop.borrow();
        if closing {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stop.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The announced Content-Length, if any.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

fn too_large(n: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::RequestBodyTooLarge).with("Reason", format!("The request body is {n} bytes; at most {MAX_BODY} are accepted."))
}

/// Reads a request body whose head was accepted: at most [`MAX_BODY`]
/// bytes (a longer announced length is refused before reading), by the
/// deadline of the connection layer. The body is borrowed so that what is
/// left of it after an error can be [`discard`]ed.
pub async fn read_body(body: &mut Body, headers: &HeaderMap, deadline: Option<tokio::time::Instant>) -> Result<Bytes, Error> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let announced = content_length(headers);
    if let Some(n) = announced.filter(|n| *n > MAX_BODY as u64) {
        return Err(too_large(n));
    }
    // Room for the announced length up to 1 MiB; a longer body grows the
    // buffer as it arrives (an announcement alone reserves little).
    let mut buf = BytesMut::with_capacity(announced.unwrap_or(0).min(1 << 20) as usize);
    loop {
        let frame = match deadline {
            Some(d) => match tokio::time::timeout_at(d, body.frame()).await {
                Ok(f) => f,
                Err(_) => {
                    return Err(Error::msg(ErrorCode::OperationTimedOut, "The request body was not received within the permitted time.")
                        .with_status(408))
                }
            },
            None => body.frame().await,
        };
        match frame {
            None => return Ok(buf.freeze()),
            Some(Err(e)) => {
                return Err(Error::msg(ErrorCode::InvalidRequestBody, "The request body was not received completely.")
                    .with("Reason", body_error_reason(&e)))
            }
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    if buf.len() + data.len() > MAX_BODY {
                        return Err(too_large(format!("more than {MAX_BODY}")));
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// hyper's complaint about a body, as the innermost cause says it.
fn body_error_reason(e: &axum::Error) -> String {
    let mut msg = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        msg = c.to_string();
        cur = c.source();
    }
    msg
}

/// What is left of a request body after an early answer: read and dropped
/// in the background (bounded) so that the client, still sending, reads
/// the answer rather than a connection reset. A client that waits for
/// `100 Continue` has sent nothing, and the connection just closes.
pub fn discard(mut body: Body, headers: &HeaderMap, limits: Option<RequestLimits>) {
    if body.is_end_stream() {
        return;
    }
    let expects_continue = headers.get("expect").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let Some(limits) = limits.filter(|_| !expects_continue) else { return };
    let deadline = limits.body_deadline.min(tokio::time::Instant::now() + DRAIN_TIME);
    tokio::spawn(async move {
        let mut left = DRAIN_BYTES;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
            let n = frame.data_ref().map_or(0, Bytes::len);
            if n >= left {
                break;
            }
            left -= n;
        }
    });
}
