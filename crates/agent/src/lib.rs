//! The openbatch node agent.
//!
//! It dials the server (WebSocket, see [`proto`]), introduces itself, and
//! then runs the attempts the server assigns, reports how each ended, and
//! answers file requests for its node root. If the connection drops it
//! reconnects with backoff; attempts keep running meanwhile, and on
//! reconnect the server kills the ones it no longer assigns to this node.
//! The agent never touches the server's database.

pub mod contain;
pub mod exec;
pub mod files;
pub mod gateway;
pub mod journal;
pub mod logs;
pub mod packages;
pub mod spawn;
pub mod tls;
pub mod usage;
pub mod users;

use futures_util::{SinkExt, StreamExt};
use proto::{Hello, TaskLaunch, ToAgent, ToServer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `http://host:port` of the server: the replicas of a replicated
    /// server, in the order they are tried (at least one).
    pub servers: Vec<String>,
    pub pool_id: String,
    /// The join token the server issued.
    pub token: String,
    /// The node root directory (`AZ_BATCH_NODE_ROOT_DIR`).
    pub root: PathBuf,
    /// The address other nodes and clients see for this node.
    pub ip_address: String,
    /// The port of the node's SSH server at that address (its remote login
    /// settings; openbatch runs no SSH server of its own).
    pub ssh_port: u16,
    /// Directories `file://` transfers may use; None: any path the agent reaches.
    pub file_roots: Option<Vec<PathBuf>>,
    /// The container engine's command (`docker` or `podman`).
    pub container_engine: String,
    /// Stop every attempt and exit after this long without a connection to
    /// the server (a local node whose server is gone for good); None: never.
    pub give_up_after: Option<Duration>,
    /// PEM files of certificates trusted besides the system's roots (an https server).
    pub ca_file: Vec<PathBuf>,
    /// The name the server's certificate is verified for, if not the URL's host.
    pub tls_server_name: Option<String>,
    /// The node's id, written to a root that has none (a provider's node).
    pub node_id: Option<String>,
}

/// How long the server may stay silent (no frame, not even the pong to the
/// agent's ping every `PING`) before the agent drops the connection and
/// dials again: a server paused or cut off must not keep its nodes.
const SILENCE: Duration = Duration::from_secs(5);
const PING: Duration = Duration::from_secs(1);

struct State {
    cfg: AgentConfig,
    /// The server (replica) dialled now; file streams and packages go there too.
    server: Arc<Mutex<String>>,
    boot_id: String,
    /// Running attempts: attempt id → process group id, the cgroup it runs
    /// in (see `contain`; None: its process group only) and, when the
    /// server may adopt it, its task.
    running: Mutex<HashMap<u64, Proc>>,
    /// Every attempt's processes are contained (see `contain`).
    contain: contain::Containment,
    /// Outcomes kept until the server acknowledges them.
    journal: journal::Journal,
    /// Processes of an earlier agent on this root killed at start (told in
    /// the first `Hello` only).
    leftovers: std::sync::atomic::AtomicU32,
    /// Attempts stopped with the node (`stop_all`): they end unreported.
    abandoned: Mutex<std::collections::HashSet<u64>>,
    /// Attempts fetching their resource files (no process yet). Killing
    /// one removes it: the process is then never started.
    preparing: Mutex<HashMap<u64, Option<proto::AttemptOf>>>,
    /// Downloads and uploads of task data.
    transfer: transfer::Transfer,
    /// Application packages installed on the node.
    packages: packages::Installer,
    /// TLS to an https:// server.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// HTTP to the server (file streams), with the same trust.
    http: reqwest::Client,
    /// Attempts running in a container (killed through the engine too).
    containers: Mutex<std::collections::HashSet<u64>>,
    /// Container attempts asked to stop (killed or out of wall-clock time).
    stopping: Mutex<std::collections::HashSet<u64>>,
    run_as: Option<(u32, u32)>,
    /// Held while the agent runs (its lock keeps the group this node's).
    _node_group: Option<exec::NodeGroup>,
    is_root: bool,
    /// The node's task slots and the launches waiting for them.
    slots: Mutex<SlotQueue>,
    /// The certificates of the pool, as the server's last `Welcome` gave them.
    certificates: Mutex<Arc<Vec<proto::NodeCertificate>>>,
    /// The current connection's outgoing messages (None between connections):
    /// attempts report through whichever connection is up when they end.
    link: Mutex<Option<mpsc::UnboundedSender<ToServer>>>,
    /// User accounts made on the node through the Batch API.
    users: Arc<users::Users>,
}

/// A running attempt's process.
#[derive(Clone)]
struct Proc {
    pid: i32,
    cell: Option<Arc<contain::Cell>>,
    task: Option<proto::AttemptOf>,
}

/// The task an attempt runs, when the server may adopt the attempt.
fn attempt_of(l: &TaskLaunch) -> Option<proto::AttemptOf> {
    l.adoptable.then(|| proto::AttemptOf { job_id: l.job_id.clone(), task_id: l.task_id.clone(), slots: l.slots })
}

/// Launches wait here until their slots are free; the highest-priority one
/// (work outside the slots first, then by job priority) goes next, and among
/// equals the one that came first.
#[derive(Default)]
struct SlotQueue {
    /// The node's task slots (0: no limit).
    total: u32,
    /// The server's `Welcome` (with `total`) has come on this connection:
    /// nothing starts before it.
    welcomed: bool,
    used: u32,
    /// Attempts holding slots (from their start until they are reported).
    held: HashMap<u64, u32>,
    waiting: std::collections::VecDeque<TaskLaunch>,
}

impl SlotQueue {
    /// The next launch whose slots are free, counted as holding them.
    fn next(&mut self) -> Option<TaskLaunch> {
        if !self.welcomed {
            return None;
        }
        loop {
            let w = &self.waiting;
            let i = (0..w.len()).max_by_key(|&i| (w[i].slots == 0, w[i].priority, std::cmp::Reverse(i)))?;
            let l = &self.waiting[i];
            if self.held.contains_key(&l.attempt) {
                self.waiting.remove(i); // already running (repeated after a reconnect)
                continue;
            }
            if l.slots > 0 && self.total > 0 && self.used + l.slots > self.total && self.used > 0 {
                return None;
            }
            let l = self.waiting.remove(i)?;
            if l.slots > 0 {
                self.used += l.slots;
                self.held.insert(l.attempt, l.slots);
            }
            return Some(l);
        }
    }

    /// Frees an attempt's slots; false when it held none.
    fn release(&mut self, attempt: u64) -> bool {
        match self.held.remove(&attempt) {
            Some(n) => {
                self.used = self.used.saturating_sub(n);
                true
            }
            None => false,
        }
    }
}

/// Starts waiting launches while their slots are free (reporting through
/// the current connection).
fn pump(state: &Arc<State>) {
    loop {
        let Some(tx) = state.link.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return };
        let next = state.slots.lock().unwrap_or_else(|p| p.into_inner()).next();
        let Some(launch) = next else { return };
        start_attempt(state.clone(), launch, tx);
    }
}

/// An attempt is over: its slots go to the launches waiting for them.
fn release(state: &Arc<State>, attempt: u64) {
    if state.slots.lock().unwrap_or_else(|p| p.into_inner()).release(attempt) {
        pump(state);
    }
}

fn node_id_file(root: &Path) -> PathBuf {
    root.join("volatile").join("node-id")
}

/// How this node reaches the server's engine gateway, when its container
/// tasks go there (`--container-engine server`).
fn gateway_access(state: &State) -> Option<gateway::Access> {
    if state.cfg.container_engine != gateway::SERVER_ENGINE {
        return None;
    }
    let node = state.cfg.node_id.clone().or_else(|| std::fs::read_to_string(node_id_file(&state.cfg.root)).ok())?;
    Some(gateway::Access {
        server: state.server.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        token: state.cfg.token.clone(),
        node: node.trim().to_string(),
        ca_file: state.cfg.ca_file.clone(),
        tls_server_name: state.cfg.tls_server_name.clone(),
    })
}

/// Makes sure a container task's image is there: on the node's engine
/// (after logging in to its registry), or on the gateway's.
async fn prepare_image(state: &State, image: &str, registry: Option<&proto::RegistryLogin>) -> Result<(), transfer::Failure> {
    if state.cfg.container_engine == gateway::SERVER_ENGINE {
        if registry.is_some() {
            return Err(gateway::no_registries());
        }
        let Some(access) = gateway_access(state) else {
            return Err(transfer::Failure::server("ContainerMiscError", "the node has no id yet"));
        };
        return gateway::has_image(&state.http, &access, image).await;
    }
    if let Some(r) = registry {
        registry_login(&state.cfg.container_engine, r).await?;
    }
    ensure_image(&state.cfg.container_engine, image).await
}

/// Runs the agent until the server tells it to shut down.
pub async fn run(cfg: AgentConfig) -> Result<(), String> {
    for d in ["shared", "startup", "workitems", "applications", "fsmounts", "volatile"] {
        std::fs::create_dir_all(cfg.root.join(d)).map_err(|e| format!("cannot create {}: {e}", cfg.root.join(d).display()))?;
    }
    // One agent per node root, ever: a second one would run the same
    // node's attempts twice. The lock lives as long as the process.
    let lock = lock_root(&cfg.root)?;
    std::mem::forget(lock);
    if let Some(id) = cfg.node_id.as_deref().filter(|_| !node_id_file(&cfg.root).exists()) {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(format!("--node-id {id:?}: a node id is 1 to 64 letters, digits, '-' or '_'"));
        }
        std::fs::write(node_id_file(&cfg.root), id).map_err(|e| format!("cannot write the node id: {e}"))?;
    }
    // What an earlier agent on this root left running dies before this one
    // joins: the server requeues those attempts.
    let (contain, leftovers) = contain::Containment::new(&cfg.root);
    if leftovers.killed > 0 {
        tracing::warn!(processes = leftovers.killed, "killed task processes an earlier agent on this node root left running");
    }
    if !contain.enabled() {
        tracing::warn!("no writable cgroup v2 hierarchy: task attempts are contained by their process group only");
    }
    let journal = journal::Journal::open(&cfg.root.join("volatile"));
    let is_root = unsafe { libc::geteuid() } == 0;
    let mut run_as = if is_root { exec::ensure_task_user() } else { None };
    // Tasks of this node run in its own group, and only that group may
    // enter the node root (see exec::NodeGroup).
    let node_group = match run_as {
        Some(_) => match exec::claim_node_group() {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "no node group of its own: this node's tasks share the task account's group with other nodes of this machine");
                None
            }
        },
        None => None,
    };
    if let (Some((uid, gid)), Some(g)) = (run_as, &node_group) {
        run_as = Some((uid, g.gid));
        tracing::info!(group = %g.name, "tasks of this node run as {} in the group {}", exec::TASK_USER, g.name);
        let _ = gid;
    }
    if let Some((uid, gid)) = run_as {
        if let Ok(shared) = nodefs::Dir::open(&cfg.root).and_then(|r| r.open_dir("shared")) {
            let _ = shared.chown(uid, gid);
        }
        exec::protect_root(&cfg.root, gid).map_err(|e| format!("cannot set the permissions of {}: {e}", cfg.root.display()))?;
    }
    let boot_id = format!("{}-{}", std::process::id(), exec::now_ms());
    let transfer = match cfg.file_roots.clone() {
        Some(roots) => transfer::Transfer::new().with_file_roots(roots),
        None => transfer::Transfer::new(),
    };
    if cfg.servers.is_empty() {
        return Err("no server URL".into());
    }
    let server = Arc::new(Mutex::new(cfg.servers[0].clone()));
    let tls = if cfg.servers.iter().any(|s| s.starts_with("https://")) {
        Some(tls::client_config(&cfg.ca_file, cfg.tls_server_name.as_deref())?)
    } else {
        None
    };
    // The one HTTP client to the server (packages, file streams), with the
    // same trust as the WebSocket.
    let http = match &tls {
        Some(c) => reqwest::Client::builder().use_preconfigured_tls(rustls::ClientConfig::clone(c)),
        None => reqwest::Client::builder(),
    }
    .user_agent(concat!("openbatch-agent/", env!("CARGO_PKG_VERSION")))
    .connect_timeout(Duration::from_secs(10))
    .build()
    .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let packages = packages::Installer::new(server.clone(), &cfg.token, &cfg.root, http.clone());
    let users = Arc::new(users::Users::open(&cfg.root, is_root));
    let state = Arc::new(State {
        tls,
        http,
        packages,
        _node_group: node_group,
        containers: Mutex::new(Default::default()),
        stopping: Mutex::new(Default::default()),
        cfg,
        server,
        boot_id,
        running: Mutex::new(HashMap::new()),
        contain,
        journal,
        leftovers: std::sync::atomic::AtomicU32::new(leftovers.killed),
        abandoned: Mutex::new(Default::default()),
        preparing: Mutex::new(Default::default()),
        transfer,
        run_as,
        is_root,
        slots: Mutex::new(SlotQueue::default()),
        link: Mutex::new(None),
        users: users.clone(),
        certificates: Mutex::new(Arc::new(Vec::new())),
    });
    // Accounts expire on the node's own clock, connected or not.
    tokio::spawn(users::expiry_loop(users));
    let mut backoff = Duration::from_millis(100);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut connected_at = std::time::Instant::now();
    loop {
        let ended = tokio::select! {
            r = session(state.clone(), &mut connected_at) => r,
            _ = terminate.recv() => Ok(true),
            _ = interrupt.recv() => Ok(true),
        };
        match ended {
            Ok(true) => {
                stop_all(&state).await;
                state.contain.release();
                return Ok(());
            }
            Ok(false) => backoff = Duration::from_millis(100),
            Err(e) if state.cfg.servers.len() > 1 => {
                // Replicas: the next one (or the leader a standby named) at
                // once, and round again shortly.
                let (from, to) = next_server(&state, &e);
                tracing::warn!(error = %e.text, server = %from, next = %to, "connection to the server failed; trying another replica");
                backoff = Duration::from_millis(if e.leader.is_some() { 20 } else { 250 });
            }
            Err(e) => {
                tracing::warn!(error = %e.text, "connection to the server failed; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        if state.cfg.give_up_after.is_some_and(|limit| connected_at.elapsed() > limit) {
            tracing::warn!("no server for too long; stopping every attempt and exiting");
            stop_all(&state).await;
            state.contain.release();
            return Err("the server has been unreachable for too long".into());
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = terminate.recv() => {
                stop_all(&state).await;
                state.contain.release();
                return Ok(());
            }
        }
    }
}

/// Takes the node root's agent lock (`volatile/agent.lock`), or fails when
/// another agent holds it.
fn lock_root(root: &Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let path = root.join("volatile").join("agent.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!("another agent is running on the node root {}", root.display()));
    }
    let _ = std::fs::write(root.join("volatile").join("agent.pid"), std::process::id().to_string());
    Ok(f)
}

/// Stops every attempt (and the node's lingering processes): the node
/// resets or the agent exits. The attempts end without an outcome: they
/// were lost with the node, and the server requeues them.
/// Exit codes of a process killed by SIGHUP, SIGINT, SIGKILL, SIGTERM (128 + the signal).
const KILLED_HUP: i32 = 128 + libc::SIGHUP;
const KILLED_INT: i32 = 128 + libc::SIGINT;
const KILLED_KILL: i32 = 128 + libc::SIGKILL;
const KILLED_TERM: i32 = 128 + libc::SIGTERM;
/// How long the outcome of a process killed by one of those signals waits
/// to see whether the agent itself is being stopped.
const KILLED_OUTCOME_GRACE: Duration = Duration::from_secs(1);

async fn stop_all(state: &Arc<State>) {
    state.slots.lock().unwrap_or_else(|p| p.into_inner()).waiting.clear();
    state.preparing.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let procs: Vec<Proc> = {
        let running = state.running.lock().unwrap_or_else(|p| p.into_inner());
        state.abandoned.lock().unwrap_or_else(|p| p.into_inner()).extend(running.keys().copied());
        running.values().cloned().collect()
    };
    let stops = procs.into_iter().map(|p| exec::stop(p.pid, p.cell, Duration::from_millis(500)));
    futures_util::future::join_all(stops).await;
    state.contain.kill_lingering();
}

/// Why a session ended, and the leader a standby replica pointed to.
struct Ended {
    text: String,
    leader: Option<String>,
}

impl From<String> for Ended {
    fn from(text: String) -> Ended {
        Ended { text, leader: None }
    }
}

impl From<&str> for Ended {
    fn from(text: &str) -> Ended {
        Ended { text: text.to_string(), leader: None }
    }
}

/// Moves to the next server of the list, or to the leader a standby named
/// when it is one of the list (an agent goes only to servers it was given).
/// (the server left, the one dialled next).
fn next_server(state: &State, e: &Ended) -> (String, String) {
    let mut current = state.server.lock().unwrap_or_else(|p| p.into_inner());
    let from = current.clone();
    let servers = &state.cfg.servers;
    let named = e.leader.as_deref().map(|l| l.trim_end_matches('/')).and_then(|l| servers.iter().find(|s| s.trim_end_matches('/') == l));
    let next = match named {
        Some(s) if *s != from => s.clone(),
        _ => {
            let at = servers.iter().position(|s| *s == from).unwrap_or(0);
            servers[(at + 1) % servers.len()].clone()
        }
    };
    *current = next.clone();
    (from, next)
}

/// One connection. Ok(true) when told to shut down.
async fn session(state: Arc<State>, connected_at: &mut std::time::Instant) -> Result<bool, Ended> {
    let server = state.server.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let url = format!("{}{}", server.replacen("http", "ws", 1), proto::CONNECT_PATH);
    let mut req = url.as_str().into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", state.cfg.token).parse().map_err(|_| "the token is not a valid header value".to_string())?,
    );
    let connector = state.tls.clone().map(tokio_tungstenite::Connector::Rustls);
    let connecting = tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector);
    let (ws, _) = match tokio::time::timeout(SILENCE, connecting).await {
        Err(_) => return Err("the server did not answer in time".into()),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            // A standby replica refuses agents and names the leader.
            let leader = resp.headers().get("x-openbatch-leader").and_then(|v| v.to_str().ok()).map(str::to_string);
            return Err(Ended { text: format!("the server refused the connection ({})", resp.status()), leader });
        }
        Ok(Err(e)) => return Err(e.to_string().into()),
        Ok(Ok(c)) => c,
    };
    *connected_at = std::time::Instant::now();
    let (mut sink, mut stream) = ws.split();
    let node_id = std::fs::read_to_string(node_id_file(&state.cfg.root)).ok().map(|s| s.trim().to_string());
    // Running and preparing attempts, and the tasks of the adoptable ones
    // (read under the locks once, before the message is built).
    let (running, held) = {
        let running = state.running.lock().unwrap_or_else(|p| p.into_inner());
        let preparing = state.preparing.lock().unwrap_or_else(|p| p.into_inner());
        let ids: Vec<u64> = running.keys().chain(preparing.keys()).copied().collect();
        let held: Vec<proto::Held> = running
            .iter()
            .map(|(a, p)| (a, &p.task))
            .chain(preparing.iter())
            .filter_map(|(a, t)| Some(proto::Held { attempt: *a, task: t.clone()? }))
            .collect();
        (ids, held)
    };
    let hello = Hello {
        version: proto::VERSION,
        pool_id: state.cfg.pool_id.clone(),
        node_id,
        hostname: std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_default(),
        ip_address: state.cfg.ip_address.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        running,
        root_dir: state.cfg.root.display().to_string(),
        is_root: state.is_root,
        boot_id: state.boot_id.clone(),
        finished: state.journal.unacked(),
        held,
        leftovers: state.leftovers.swap(0, std::sync::atomic::Ordering::Relaxed),
        ssh_port: Some(state.cfg.ssh_port),
        cores: std::thread::available_parallelism().ok().and_then(|n| u32::try_from(n.get()).ok()),
    };
    let text = serde_json::to_string(&ToServer::Hello(hello)).map_err(|e| e.to_string())?;
    sink.send(Message::Text(text.into())).await.map_err(|e| e.to_string())?;

    let (tx, mut rx) = mpsc::unbounded_channel::<ToServer>();
    *state.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
    // Whatever has queued up by the time the writer runs goes in one frame.
    // A ping every `PING` keeps the server answering (its pong) so that a
    // silent server is noticed (`SILENCE`).
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        let mut ping = tokio::time::interval(PING);
        loop {
            let msg = tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    let text = proto::encode_frame(&batch);
                    batch.clear();
                    let Ok(text) = text else { continue };
                    Message::Text(text.into())
                }
                _ = ping.tick() => Message::Ping(Default::default()),
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut heartbeat: Option<tokio::task::JoinHandle<()>> = None;
    let result = loop {
        let msg = match tokio::time::timeout(SILENCE, stream.next()).await {
            Err(_) => break Err("the server went silent".into()),
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => break Err(e.to_string().into()),
            Ok(None) => break Err("the server closed the connection".into()),
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(f) => {
                break Err(match f.filter(|f| !f.reason.is_empty()) {
                    Some(f) => format!("the server closed the connection: {}", f.reason).into(),
                    None => "the server closed the connection".into(),
                })
            }
            _ => continue,
        };
        let msgs: Vec<ToAgent> = match proto::decode_frame(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable message");
                continue;
            }
        };
        let mut stop = None;
        for msg in msgs {
            if let Some(r) = handle(&state, msg, &tx, &mut heartbeat).await {
                stop = Some(r);
                break;
            }
        }
        if let Some(r) = stop {
            break r.map_err(Ended::from);
        }
    };
    if let Some(h) = heartbeat {
        h.abort();
    }
    // Launches still waiting are forgotten: the server reassigns them.
    *state.link.lock().unwrap_or_else(|p| p.into_inner()) = None;
    {
        let mut slots = state.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.waiting.clear();
        slots.welcomed = false;
    }
    drop(tx);
    // Running attempts may still hold this connection's sender: flush what
    // is queued, but do not wait for them to end.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_millis(500), &mut writer).await.is_err() {
        writer.abort();
    }
    result
}

/// Handles one message from the server; Some when the session ends.
async fn handle(
    state: &Arc<State>,
    msg: ToAgent,
    tx: &mpsc::UnboundedSender<ToServer>,
    heartbeat: &mut Option<tokio::task::JoinHandle<()>>,
) -> Option<Result<bool, String>> {
    {
        match msg {
            ToAgent::Welcome { node_id, heartbeat_ms, users, container_images, container_registries, task_slots, certificates, .. } => {
                *state.certificates.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(certificates);
                {
                    let mut slots = state.slots.lock().unwrap_or_else(|p| p.into_inner());
                    slots.total = task_slots;
                    slots.welcomed = true;
                }
                pump(state);
                // The pool's container images are fetched ahead of the
                // tasks that use them (a task checks its own image anyway),
                // after logging in to the pool's registries.
                if !container_images.is_empty() || !container_registries.is_empty() {
                    let engine = state.cfg.container_engine.clone();
                    let state = state.clone();
                    tokio::spawn(async move {
                        for r in &container_registries {
                            let logged_in = match engine.as_str() {
                                gateway::SERVER_ENGINE => Err(gateway::no_registries()),
                                _ => registry_login(&engine, r).await,
                            };
                            if let Err(f) = logged_in {
                                tracing::warn!(registry = %r.server, "{}", f.message);
                            }
                        }
                        for image in container_images {
                            match prepare_image(&state, &image, None).await {
                                Ok(()) => tracing::info!(%image, "container image ready"),
                                Err(f) => tracing::warn!(%image, code = %f.code, "cannot prefetch a container image: {}", f.message),
                            }
                        }
                    });
                }
                let _ = std::fs::write(node_id_file(&state.cfg.root), &node_id);
                if state.is_root {
                    for u in &users {
                        exec::ensure_user(u);
                    }
                }
                tracing::info!(node = %node_id, "joined the pool");
                let tx = tx.clone();
                let root = state.cfg.root.clone();
                *heartbeat = Some(tokio::spawn(async move {
                    let mut t = tokio::time::interval(Duration::from_millis(heartbeat_ms.max(100)));
                    loop {
                        t.tick().await;
                        // What the node uses, measured now (a few small /proc reads).
                        let usage = Some(usage::measure(&root));
                        if tx.send(ToServer::Heartbeat { usage }).is_err() {
                            break;
                        }
                    }
                }));
            }
            ToAgent::Start(launch) => {
                state.slots.lock().unwrap_or_else(|p| p.into_inner()).waiting.push_back(*launch);
                pump(state);
            }
            ToAgent::Kill { attempt, grace_ms } => {
                let waiting = {
                    let mut slots = state.slots.lock().unwrap_or_else(|p| p.into_inner());
                    let before = slots.waiting.len();
                    slots.waiting.retain(|l| l.attempt != attempt);
                    slots.waiting.len() != before
                };
                // An attempt dropped before its process started still ends
                // with a report, so the server frees what it holds for it.
                if waiting || state.preparing.lock().unwrap_or_else(|p| p.into_inner()).remove(&attempt).is_some() {
                    let message = "The attempt was stopped before its process started.".to_string();
                    report(state, exec::not_started(attempt, "TaskEnded".into(), message));
                }
                kill_container(state, attempt);
                let proc = state.running.lock().unwrap_or_else(|p| p.into_inner()).get(&attempt).cloned();
                if let Some(p) = proc {
                    tokio::spawn(exec::stop(p.pid, p.cell, Duration::from_millis(grace_ms)));
                }
            }
            ToAgent::File(req) => {
                let root = state.cfg.root.clone();
                let server = state.server.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let token = state.cfg.token.clone();
                let http = state.http.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok((reply, stream)) = tokio::task::spawn_blocking(move || files::file_op(&root, req)).await else { return };
                    let _ = tx.send(ToServer::FileReply(reply));
                    if let Some(s) = stream {
                        if let Err(e) = files::send(&http, &server, &token, s).await {
                            tracing::debug!("a file stream ended early: {e}");
                        }
                    }
                });
            }
            ToAgent::Reset { wipe } => {
                stop_all(state).await;
                if wipe {
                    // A reimaged node has none of the accounts made on it.
                    let users = state.users.clone();
                    let _ = tokio::task::spawn_blocking(move || users.remove_all()).await;
                    let _ = std::fs::remove_dir_all(state.cfg.root.join("workitems"));
                    let _ = std::fs::create_dir_all(state.cfg.root.join("workitems"));
                }
                let _ = tx.send(ToServer::ResetDone);
            }
            // `run` stops everything on the way out; the node's accounts
            // go with it (it leaves the pool).
            ToAgent::Shutdown => {
                let users = state.users.clone();
                let _ = tokio::task::spawn_blocking(move || users.remove_all()).await;
                return Some(Ok(true));
            }
            ToAgent::Node(req) => {
                let (state, tx) = (state.clone(), tx.clone());
                tokio::spawn(async move {
                    let reply = node_request(&state, req).await;
                    let _ = tx.send(ToServer::NodeReply(reply));
                });
            }
            ToAgent::Ack { attempts } => state.journal.ack(&attempts),
        }
    }
    None
}

/// Carries out an operation on the node (its accounts, its logs).
async fn node_request(state: &Arc<State>, req: proto::NodeRequest) -> proto::NodeReply {
    let id = req.id;
    match req.op {
        proto::NodeOp::UploadLogs { container_url, directory, start_ms, end_ms } => {
            let root = state.cfg.root.clone();
            let names = logs::covering(&root, start_ms, end_ms);
            let dir = match nodefs::Dir::open(&logs::dir(&root)) {
                Ok(d) => d,
                Err(_) if names.is_empty() => return proto::NodeReply { id, error: None, files: Some(0) },
                Err(e) => return node_error(id, "InternalError", format!("cannot open the log directory: {e}"), None),
            };
            match state.transfer.upload_named(&container_url, &dir, &names, &directory).await {
                Ok(stats) => {
                    tracing::info!(files = stats.files, bytes = stats.bytes, "uploaded the agent's log files");
                    proto::NodeReply { id, error: None, files: Some(stats.files as u32) }
                }
                Err(f) => {
                    let code = if f.server_error { "InternalError" } else { "InvalidPropertyValue" };
                    node_error(id, code, format!("{}: {}", f.code, f.message), Some("containerUrl"))
                }
            }
        }
        op => {
            let users = state.users.clone();
            match tokio::task::spawn_blocking(move || users.apply(op)).await {
                Ok(Ok(())) => proto::NodeReply { id, error: None, files: None },
                Ok(Err(e)) => proto::NodeReply { id, error: Some(e), files: None },
                Err(e) => node_error(id, "InternalError", e.to_string(), None),
            }
        }
    }
}

fn node_error(id: u64, code: &str, message: String, property: Option<&str>) -> proto::NodeReply {
    proto::NodeReply {
        id,
        error: Some(proto::NodeError { code: code.into(), message, property: property.map(str::to_string) }),
        files: None,
    }
}

/// Reports how an attempt that never ran its process ended.
fn report(state: &Arc<State>, outcome: proto::TaskOutcome) {
    report_of(state, outcome, None);
}

/// Sends an attempt's outcome, kept in the journal until the server
/// acknowledges it (every `Hello` carries the unacknowledged ones); its
/// slots go to the next waiting launch.
fn report_of(state: &Arc<State>, outcome: proto::TaskOutcome, task: Option<proto::AttemptOf>) {
    let attempt = outcome.attempt;
    let tx = state.link.lock().unwrap_or_else(|p| p.into_inner()).clone();
    state.journal.record(&proto::Finished { outcome: outcome.clone(), task });
    if let Some(tx) = tx {
        let _ = tx.send(ToServer::Finished(Box::new(outcome)));
    }
    release(state, attempt);
}

fn start_attempt(state: Arc<State>, launch: TaskLaunch, tx: mpsc::UnboundedSender<ToServer>) {
    let attempt = launch.attempt;
    if state.running.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&attempt)
        || state.preparing.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&attempt)
    {
        return; // already running (a repeated assignment after reconnect)
    }
    let run_as = match &launch.user_name {
        // A named pool account; when the agent cannot switch users, tasks run as the agent's user.
        Some(name) if state.is_root => match exec::lookup_user(name) {
            Some(ids) => Some(ids),
            None => {
                let msg = format!("The user account '{name}' does not exist on the node; define it in the pool's userAccounts.");
                report(&state, exec::not_started(attempt, "UserNotFound".into(), msg));
                return;
            }
        },
        Some(_) => None,
        None if launch.elevated => None,
        // An agent running as root never runs an unelevated task as root.
        None if state.is_root && state.run_as.is_none() => {
            let msg = format!("The node has no unprivileged task account ({}); only elevated tasks can run.", exec::TASK_USER);
            report(&state, exec::not_started(attempt, "UserNotFound".into(), msg));
            return;
        }
        None => state.run_as,
    };
    if let Some(message) = &launch.package_error {
        let mut o = exec::not_started(attempt, "ApplicationPackageError".into(), message.clone());
        o.pre_processing_error = true;
        report(&state, o);
        return;
    }
    if launch.resource_files.is_empty()
        && launch.common_resource_files.is_empty()
        && launch.packages.is_empty()
        && launch.container.is_none()
    {
        run_process(state, launch, run_as, tx);
        return;
    }
    // Resource files first (the task is `preparing` meanwhile), then the process.
    state.preparing.lock().unwrap_or_else(|p| p.into_inner()).insert(attempt, attempt_of(&launch));
    let _ = tx.send(ToServer::Preparing { attempt });
    tokio::spawn(async move {
        let fetched = fetch_resources(&state, &launch, run_as).await;
        if state.preparing.lock().unwrap_or_else(|p| p.into_inner()).remove(&attempt).is_none() {
            return; // killed meanwhile (its slots are freed): the server no longer wants it
        }
        match fetched {
            Ok(()) => run_process(state, launch, run_as, tx),
            Err(f) => {
                let mut o = exec::not_started(attempt, f.code, f.message);
                o.failure_category = Some(if f.server_error { "servererror" } else { "usererror" }.into());
                o.pre_processing_error = true;
                report(&state, o);
            }
        }
    });
}

/// Downloads an attempt's common resource files (into the task directory)
/// and resource files (into the working directory), owned by the task's user.
/// A container task's engine kills its container (the engine client's
/// process group alone would leave it running).
fn kill_container(state: &State, attempt: u64) {
    if state.containers.lock().unwrap_or_else(|p| p.into_inner()).contains(&attempt) {
        state.stopping.lock().unwrap_or_else(|p| p.into_inner()).insert(attempt);
        let engine = state.cfg.container_engine.clone();
        tokio::spawn(async move { remove_container(&engine, attempt).await });
    }
}

/// Removes an attempt's container, running or not (`rm -f`). Through the
/// gateway, the server removes it once its client is gone.
async fn remove_container(engine: &str, attempt: u64) {
    if engine == gateway::SERVER_ENGINE {
        return;
    }
    let _ = tokio::process::Command::new(engine)
        .args(["rm", "-f", &exec::container_name(attempt)])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
}

/// Logs the engine in to a private registry (the password on stdin).
async fn registry_login(engine: &str, r: &proto::RegistryLogin) -> Result<(), transfer::Failure> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(engine);
    cmd.args(["login", "--username", &r.username, "--password-stdin"]);
    if !r.server.is_empty() {
        cmd.arg(&r.server);
    }
    let failure = |message: String| transfer::Failure { code: "ContainerInvalidRegistry".into(), message, server_error: false };
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failure(format!("cannot run '{engine} login': {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(r.password.as_bytes()).await;
    }
    let out = child.wait_with_output().await.map_err(|e| failure(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failure(format!("cannot log in to the container registry '{}': {}", r.server, String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Makes sure the container image is on the node (pulling it if not).
async fn ensure_image(engine: &str, image: &str) -> Result<(), transfer::Failure> {
    let run = |args: Vec<&str>| {
        tokio::process::Command::new(engine).args(args).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).output()
    };
    match run(vec!["image", "inspect", image]).await {
        Ok(o) if o.status.success() => return Ok(()),
        Ok(_) => {}
        Err(e) => {
            return Err(transfer::Failure {
                code: "ContainerMiscError".into(),
                message: format!("the container engine '{engine}' cannot be run on the node: {e}"),
                server_error: true,
            })
        }
    }
    match run(vec!["info"]).await {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(transfer::Failure {
                code: "ContainerMiscError".into(),
                message: format!(
                    "the container engine '{engine}' is not available on the node: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                server_error: true,
            })
        }
        Err(e) => return Err(transfer::Failure { code: "ContainerMiscError".into(), message: e.to_string(), server_error: true }),
    }
    let pulled = run(vec!["pull", image]).await;
    match pulled {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(transfer::Failure {
            code: "ContainerInvalidImage".into(),
            message: format!(
                "The container image '{image}' is not on the node and could not be pulled: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            server_error: false,
        }),
        Err(e) => Err(transfer::Failure { code: "ContainerMiscError".into(), message: e.to_string(), server_error: true }),
    }
}

async fn fetch_resources(state: &State, l: &TaskLaunch, run_as: Option<(u32, u32)>) -> Result<(), transfer::Failure> {
    if let Some(c) = &l.container {
        prepare_image(state, &c.image, c.registry.as_ref()).await?;
    }
    for p in &l.packages {
        state.packages.ensure(p).await.map_err(|message| transfer::Failure {
            code: "ApplicationPackageError".into(),
            message,
            server_error: false,
        })?;
    }
    let (root, rel) = (state.cfg.root.clone(), l.task_dir.clone());
    let dirs = tokio::task::spawn_blocking(move || exec::task_dirs(&root, &rel, run_as))
        .await
        .map_err(|e| transfer::Failure::server("ResourceDirectoryCreateFailed", e.to_string()))?
        .map_err(|(code, message)| transfer::Failure::server(&code, message))?;
    state.transfer.download(&l.common_resource_files, &dirs.task, run_as).await?;
    state.transfer.download(&l.resource_files, &dirs.wd, run_as).await?;
    Ok(())
}

/// Starts the attempt's process and reports how it ends (after uploading
/// its output files).
fn run_process(state: Arc<State>, mut launch: TaskLaunch, run_as: Option<(u32, u32)>, tx: mpsc::UnboundedSender<ToServer>) {
    let attempt = launch.attempt;
    // The pool's certificates this attempt may see (by their visibility),
    // installed in its task directory's `certs/`.
    let certificates: Vec<proto::NodeCertificate> = {
        let all = state.certificates.lock().unwrap_or_else(|p| p.into_inner()).clone();
        all.iter().filter(|c| if launch.is_start_task { c.start_task } else { c.tasks }).cloned().collect()
    };
    if !certificates.is_empty() {
        let dir = state.cfg.root.join(&launch.task_dir).join(exec::CERTIFICATES_DIR);
        launch.env.insert("AZ_BATCH_CERTIFICATES_DIR".into(), dir.to_string_lossy().into_owned());
    }
    let lease = state.contain.acquire(launch.is_start_task || launch.background);
    let cgroup = lease.as_ref().map(|l| l.cell.procs_fd());
    // The cell to stop the attempt through: its own, not the shared lingering one.
    let cell = lease.as_ref().filter(|l| l.own()).map(|l| l.cell.clone());
    let access = gateway_access(&state);
    let engine = match &access {
        Some(a) => exec::Engine::Gateway(a),
        None => exec::Engine::Client(&state.cfg.container_engine),
    };
    match exec::start(&state.cfg.root, &launch, run_as, &engine, cgroup, &certificates) {
        Err((code, message)) => {
            if let Some(l) = lease {
                state.contain.end(l);
            }
            // A gateway request no process will read (it holds the token).
            let _ = std::fs::remove_file(gateway::spec_file(&state.cfg.root, attempt));
            report(&state, exec::not_started(attempt, code, message))
        }
        Ok(started) => {
            let r = started.running;
            let proc = Proc { pid: r.pid, cell: cell.clone(), task: attempt_of(&launch) };
            state.running.lock().unwrap_or_else(|p| p.into_inner()).insert(attempt, proc);
            if launch.container.is_some() {
                state.containers.lock().unwrap_or_else(|p| p.into_inner()).insert(attempt);
            }
            let _ = tx.send(ToServer::Started { attempt });
            let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let limit = launch.max_wall_clock_ms.map(|ms| {
                let timed_out = timed_out.clone();
                let state_for_limit = state.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                    kill_container(&state_for_limit, attempt);
                    exec::stop(r.pid, cell, Duration::from_secs(5)).await;
                })
            });
            tokio::spawn(async move {
                let mut outcome = exec::wait(attempt, started).await;
                if let Some(l) = limit {
                    l.abort();
                }
                // Whatever the command left behind dies with the attempt.
                if let Some(l) = lease {
                    state.contain.end(l);
                }
                // A process killed by a signal may have died with its node: the
                // end of a Slurm job signals every process in it, this agent
                // included. Its outcome waits a moment, and if the agent is
                // being stopped meanwhile it is dropped below (the server
                // requeues the attempt with the lost node) rather than
                // reported as the task's failure.
                if outcome.failure_code.is_none() && matches!(outcome.exit_code, Some(KILLED_HUP | KILLED_INT | KILLED_KILL | KILLED_TERM))
                {
                    tokio::time::sleep(KILLED_OUTCOME_GRACE).await;
                }
                // Stopped with the node: no outcome (the server requeues it).
                if state.abandoned.lock().unwrap_or_else(|p| p.into_inner()).remove(&attempt) {
                    state.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&attempt);
                    release(&state, attempt);
                    return;
                }
                if launch.container.is_some() {
                    state.containers.lock().unwrap_or_else(|p| p.into_inner()).remove(&attempt);
                    let stopped = state.stopping.lock().unwrap_or_else(|p| p.into_inner()).remove(&attempt)
                        || timed_out.load(std::sync::atomic::Ordering::SeqCst);
                    if stopped {
                        // A stop that came while the engine was still creating
                        // the container can miss it: remove it once the client
                        // is gone, and once more for a late creation.
                        remove_container(&state.cfg.container_engine, attempt).await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        remove_container(&state.cfg.container_engine, attempt).await;
                    }
                    let id = std::fs::read_to_string(exec::container_id_file(&state.cfg.root, &launch)).unwrap_or_default();
                    outcome.container_id = Some(id.trim().to_string()).filter(|s| !s.is_empty());
                    let lost = gateway::lost_file(&state.cfg.root, attempt);
                    if let Ok(why) = std::fs::read_to_string(&lost) {
                        let _ = std::fs::remove_file(&lost);
                        outcome.exit_code = None;
                        outcome.failure_code = Some("ContainerMiscError".into());
                        outcome.failure_message = Some(why);
                        outcome.failure_category = Some("servererror".into());
                    }
                    if outcome.exit_code == Some(125) && outcome.container_id.is_none() {
                        // The engine could not create the container (e.g. bad run options).
                        outcome.exit_code = None;
                        outcome.failure_code = Some("ContainerInvalidSettings".into());
                        outcome.failure_message =
                            Some("The container engine could not create the task's container; see stderr.txt.".into());
                    }
                }
                if timed_out.load(std::sync::atomic::Ordering::SeqCst) {
                    outcome.failure_code = Some("MaxWallClockTimeExpiry".into());
                    outcome.failure_message = Some("The task exceeded its maximum wall clock time and was terminated.".into());
                }
                if !launch.output_files.is_empty() && outcome.exit_code.is_some() {
                    let succeeded = outcome.exit_code == Some(0) && outcome.failure_code.is_none();
                    let wd = state.cfg.root.join(&launch.task_dir).join("wd");
                    let uploaded = match exec::open_task_dir(&state.cfg.root, &launch.task_dir) {
                        Ok(task_dir) => state.transfer.upload(&launch.output_files, &task_dir, &wd, succeeded, &launch.env).await,
                        Err(e) => Err(transfer::Failure::server(
                            "FileUploadMiscError",
                            format!("cannot open the task directory {}: {e}", wd.parent().unwrap_or(&wd).display()),
                        )),
                    };
                    if let Err(f) = uploaded {
                        outcome.failure_code = Some(f.code);
                        outcome.failure_message = Some(f.message);
                        outcome.failure_category = Some(if f.server_error { "servererror" } else { "usererror" }.into());
                        outcome.file_upload_error = true;
                    }
                }
                // Journaled before it leaves `running`: a `Hello` built
                // meanwhile has the attempt in one of the two.
                let task = attempt_of(&launch);
                report_of(&state, outcome, task);
                state.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&attempt);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(attempt: u64, slots: u32) -> TaskLaunch {
        TaskLaunch { attempt, slots, ..Default::default() }
    }

    fn drain(q: &mut SlotQueue) -> Vec<u64> {
        std::iter::from_fn(|| q.next()).map(|l| l.attempt).collect()
    }

    #[test]
    fn launches_start_in_order_within_the_node_slots() {
        let mut q = SlotQueue { total: 2, welcomed: true, ..Default::default() };
        q.waiting.extend([launch(1, 1), launch(2, 1), launch(3, 1), launch(4, 2), launch(5, 1)]);
        assert_eq!(drain(&mut q), vec![1, 2]);
        assert!(q.release(1));
        assert!(!q.release(1), "a slot is freed once");
        assert_eq!(drain(&mut q), vec![3]);
        // The next launch needs both slots: it waits, and so does what follows it.
        assert!(q.release(2));
        assert_eq!(drain(&mut q), Vec::<u64>::new());
        assert!(q.release(3));
        assert_eq!(drain(&mut q), vec![4]);
        assert_eq!(q.used, 2);
        assert!(q.release(4));
        assert_eq!(drain(&mut q), vec![5]);
    }

    #[test]
    fn higher_priorities_go_first() {
        let mut q = SlotQueue { total: 1, welcomed: true, ..Default::default() };
        let with = |attempt, priority| TaskLaunch { priority, ..launch(attempt, 1) };
        q.waiting.extend([with(1, 0), with(2, -5), with(3, 0), with(4, 10), with(5, 10)]);
        let mut order = Vec::new();
        while let Some(l) = q.next() {
            order.push(l.attempt);
            assert!(q.release(l.attempt));
        }
        assert_eq!(order, vec![4, 5, 1, 3, 2]);
    }

    #[test]
    fn work_outside_the_slots_starts_at_once_and_repeats_are_dropped() {
        let mut q = SlotQueue { total: 1, welcomed: true, ..Default::default() };
        q.waiting.extend([launch(1, 1), launch(2, 0), launch(1, 1)]);
        // The start task or a preparation task (0 slots) goes first and does
        // not wait for a slot; a repeated launch of a running attempt is dropped.
        assert_eq!(drain(&mut q), vec![2, 1]);
        assert!(q.waiting.is_empty());
        assert!(!q.release(2));
        // A launch wider than the node runs alone rather than never.
        q.waiting.push_back(launch(3, 4));
        assert_eq!(drain(&mut q), Vec::<u64>::new());
        assert!(q.release(1));
        assert_eq!(drain(&mut q), vec![3]);
    }
}
