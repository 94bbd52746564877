//! The control plane: compute nodes at run time and everything that decides
//! what runs where, with no HTTP in it (a test fails if this crate depends on
//! an HTTP crate).
//!
//! Where things are:
//! - `agents`: an agent's reports (join, preparing, started, finished, file
//!   replies, disconnect) — the agent path enters here;
//! - `scheduler`: the round (`round`), node queues (`queues`), ready tasks read
//!   ahead (`readahead`), attempt writes (`attempts`), placement (`placement`);
//! - `completion`: what follows an attempt's outcome;
//! - `multi`, `jobprep`, `starttask`: multi-instance runs, job preparation and
//!   release, the pool's start task;
//! - `nodes`: the node registry and operations on a node; `liveness`: silent
//!   nodes and recovery after a restart;
//! - `provider`: where nodes come from (`NodeProvider`; `local` starts agent
//!   processes on this machine);
//! - `launch`, `data`, `packages`, `tokens`: what an agent is sent to run;
//! - `execution`: task state changes; `lifecycle`: job transitions' signals;
//! - `supervisor`: the background loops, stopped in order at shutdown.
//!
//! The database stays the source of truth for tasks; the registry holds
//! what only exists while nodes are connected (slots in use, channels).

pub mod agents;
pub mod completion;
pub mod data;
pub mod execution;
pub mod jobprep;
pub mod jobs;
pub mod launch;
pub mod lifecycle;
pub mod liveness;
pub mod multi;
pub mod node;
pub mod nodes;
pub mod packages;
pub mod provider;
pub mod scheduler;
pub mod schedules;
pub mod starttask;
pub mod supervisor;
pub mod tokens;

pub use node::{Drain, Node, Slot};

use proto::{FileReply, ToAgent};
use scheduler::attempts::Unwritten;
use scheduler::readahead::ReadAhead;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::{mpsc, oneshot, Notify};
use wire::models::CloudJob;

/// How often agents send heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a `Started` report waits before it is written (see `started`).
pub(crate) const STARTED_DEBOUNCE: Duration = Duration::from_millis(10);
/// How deep a busy node's queue is, in attempts' slots per task slot (see
/// `Node::queued`). A few per slot keep a node running trivial tasks back to
/// back while the server is busy recording the last ones; `bench/tasks.sh`
/// measured 1 → 1,900, 2 → 2,170, 3 and more → 2,300–2,400 tasks/s (2 slots).
pub(crate) const QUEUE_PER_SLOT: u32 = 4;
/// Queued attempts of a pool are taken back to make way for a higher-priority
/// job, or for a free node, at most this often (a safety net against
/// rearranging queues for tasks that cannot be placed after all).
pub(crate) const RETRACT_EVERY: Duration = Duration::from_millis(50);
/// A node silent this long is `unknown`, and its tasks are requeued.
pub const NODE_LOST_AFTER: Duration = Duration::from_secs(10);

/// Settings of the node runtime.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The token agents present to join (`Authorization: Bearer`).
    pub agent_token: String,
    /// Where local nodes keep their roots (`<data-dir>/nodes`).
    pub nodes_dir: PathBuf,
    /// The server URL local agents dial; set once the listener is bound.
    pub server_url: Arc<Mutex<Option<String>>>,
    /// More environment for local agents (under TLS: the CA file and the
    /// certificate's name; see `server::ServeOptions::agent_env`).
    pub agent_env: Arc<Mutex<Vec<(String, String)>>>,
    /// The program started for local nodes (this binary).
    pub agent_program: Option<PathBuf>,
    pub account: String,
    /// Signs task authentication tokens (the account's primary key).
    pub token_key: Vec<u8>,
    /// Passed to local agents (`OPENBATCH_FILE_ROOTS`).
    pub file_roots: Option<String>,
    /// Registered application packages.
    pub applications_dir: PathBuf,
    /// The account's linked storage account (`autoStorageContainerName`).
    pub auto_storage: Option<crate::data::AutoStorage>,
    /// Enforce the service's own limits where openbatch is more generous
    /// by default (e.g. 64,000 characters of dependency task ids).
    pub strict_limits: bool,
    /// How long a job shows a transitional state before the change completes.
    pub transition_delay: Duration,
}

/// A pool's active jobs, with the job generation they were read at.
type CachedJobs = (u64, Arc<Vec<CloudJob>>);

pub struct Cluster {
    pub config: ClusterConfig,
    store: Store,
    lifecycle: Arc<crate::lifecycle::Lifecycle>,
    pub(crate) nodes: Mutex<BTreeMap<String, Node>>,
    /// Where the pools' nodes come from (see `provider`).
    pub(crate) provider: Arc<dyn provider::NodeProvider>,
    pub(crate) next_attempt: AtomicU64,
    /// Active jobs per pool, with the job generation they were read at.
    jobs_cache: Mutex<HashMap<String, CachedJobs>>,
    /// Tasks assigned in memory whose assignment has not committed yet.
    inflight: Mutex<std::collections::HashSet<(String, String)>>,
    /// Assignments of queued attempts (see `Node::queued`), by attempt:
    /// written with the attempt's first report, in the same change.
    unwritten: Mutex<HashMap<u64, Unwritten>>,
    /// When each pool's queues were last rearranged, by reason (see `may_retract`).
    retracted_at: Mutex<HashMap<(String, &'static str), Instant>>,
    /// `Started` reports waiting out `STARTED_DEBOUNCE` (see `started`).
    started_tx: mpsc::UnboundedSender<(tokio::time::Instant, String, u64)>,
    started_rx: Mutex<Option<mpsc::UnboundedReceiver<(tokio::time::Instant, String, u64)>>>,
    /// Tasks that became ready again (a retry) while still in `inflight`:
    /// a read-ahead taken meanwhile left them out, so when they leave
    /// `inflight` the read-aheads are declared stale. Locked after `inflight`.
    readied_inflight: Mutex<std::collections::HashSet<(String, String)>>,
    /// Ready tasks read ahead per job (by job key), valid while the store's
    /// generation is the one they were read at.
    ready: Mutex<HashMap<String, ReadAhead>>,
    next_file: AtomicU64,
    /// Multi-instance tasks under way (see `multi`).
    pub(crate) multi: Mutex<crate::multi::Runs>,
    file_waiters: Mutex<HashMap<u64, oneshot::Sender<FileReply>>>,
    pub wake: Notify,
    pub reconcile: Notify,
    /// The first attempt id this server issued: lower ones are an earlier
    /// server's (see `adopt`).
    first_attempt: AtomicU64,
    /// After a restart, the nodes scheduling waits for, and until when
    /// (see `expect_nodes`).
    expected: Mutex<Option<(Instant, std::collections::HashSet<String>)>>,
    /// Set once attempt ids are initialised (`init_attempts`): no agent
    /// joins before, so `first_attempt` tells this server's attempts apart.
    initialized: tokio::sync::watch::Sender<bool>,
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// The control plane with the local node provider.
    pub fn new(store: Store, config: ClusterConfig, lifecycle: Arc<crate::lifecycle::Lifecycle>) -> Cluster {
        let provider = Arc::new(provider::local::LocalProvider::new(&config));
        Cluster::with_provider(store, config, lifecycle, provider)
    }

    /// The control plane with nodes from `provider`.
    pub fn with_provider(
        store: Store,
        config: ClusterConfig,
        lifecycle: Arc<crate::lifecycle::Lifecycle>,
        provider: Arc<dyn provider::NodeProvider>,
    ) -> Cluster {
        let (started_tx, started_rx) = mpsc::unbounded_channel();
        Cluster {
            started_tx,
            started_rx: Mutex::new(Some(started_rx)),
            retracted_at: Mutex::new(HashMap::new()),
            config,
            store,
            lifecycle,
            nodes: Mutex::new(BTreeMap::new()),
            provider,
            next_attempt: AtomicU64::new(1),
            inflight: Mutex::new(Default::default()),
            unwritten: Mutex::new(HashMap::new()),
            readied_inflight: Mutex::new(Default::default()),
            ready: Mutex::new(HashMap::new()),
            jobs_cache: Mutex::new(HashMap::new()),
            next_file: AtomicU64::new(1),
            multi: Mutex::new(Default::default()),
            file_waiters: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            reconcile: Notify::new(),
            first_attempt: AtomicU64::new(1),
            initialized: tokio::sync::watch::channel(false).0,
            expected: Mutex::new(None),
        }
    }

    pub(crate) fn lock_nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Node>> {
        lock(&self.nodes)
    }

    pub(crate) fn send(&self, node_id: &str, msg: ToAgent) -> bool {
        lock(&self.nodes).get(node_id).and_then(|n| n.tx.as_ref()).map(|tx| tx.send(msg).is_ok()).unwrap_or(false)
    }
}
