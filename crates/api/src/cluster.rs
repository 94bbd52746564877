//! Compute nodes at run time: the registry of nodes and their agents'
//! connections, the scheduler that assigns active tasks to free slots, the
//! handling of agent reports, and the local node provider that starts
//! `openbatch agent` processes for pools on this machine.
//!
//! The database stays the source of truth for tasks; the registry holds
//! what only exists while nodes are connected (slots in use, channels).

use crate::execution;
use crate::http::encode_segment;
use crate::placement;
use proto::{FileOp, FileReply, FileRequest, Hello, TaskLaunch, TaskOutcome, ToAgent, ToServer};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::{mpsc, oneshot, Notify};
use wire::enums::{DisableJobOption, JobAction, JobState, OnTaskFailure, TaskState};
use wire::models::{CloudJob, CloudTask, ComputeNodeInformation};
use wire::time::Timestamp;
use wire::{Error, ErrorCode};

/// How often agents send heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a `Started` report waits before it is written (see `started`).
const STARTED_DEBOUNCE: Duration = Duration::from_millis(10);
/// How deep a busy node's queue is, in attempts' slots per task slot (see
/// `Node::queued`). A few per slot keep a node running trivial tasks back to
/// back while the server is busy recording the last ones; `bench/tasks.sh`
/// measured 1 → 1,900, 2 → 2,170, 3 and more → 2,300–2,400 tasks/s (2 slots).
const QUEUE_PER_SLOT: u32 = 4;
/// Queued attempts of a pool are taken back to make way for a higher-priority
/// job, or for a free node, at most this often (a safety net against
/// rearranging queues for tasks that cannot be placed after all).
const RETRACT_EVERY: Duration = Duration::from_millis(50);
/// A node silent this long is `unknown`, and its tasks are requeued.
pub const NODE_LOST_AFTER: Duration = Duration::from_secs(10);

/// A running (or starting) attempt on a node.
#[derive(Debug, Clone)]
pub struct Slot {
    pub job_id: String,
    pub task_id: String,
    pub slots: u32,
}

/// A compute node as the server knows it.
pub struct Node {
    pub id: String,
    pub pool_id: String,
    /// Wire state: idle, running, offline, unknown, leavingpool, rebooting, ...
    pub state: &'static str,
    pub scheduling_enabled: bool,
    pub slots: u32,
    pub running: HashMap<u64, Slot>,
    /// Attempts handed to the busy node ahead of a free slot (its queue, at
    /// most `QUEUE_PER_SLOT` × `slots` deep), in order: the agent starts each the moment a slot
    /// frees, and reports `Started`, which moves it to `running`. Their
    /// assignment is written then (see `Cluster::unwritten`): until the node
    /// takes them, the tasks are `active`.
    pub queued: Vec<(u64, Slot)>,
    pub tx: Option<mpsc::UnboundedSender<ToAgent>>,
    pub ip: String,
    pub root_dir: String,
    pub agent_version: String,
    pub state_transition_time: Timestamp,
    pub allocation_time: Timestamp,
    pub last_boot_time: Timestamp,
    pub last_seen: Instant,
    pub total_run: u64,
    pub total_succeeded: u64,
    pub recent: VecDeque<Value>,
    pub is_dedicated: bool,
    /// The agent process's boot id; a new one means the node rebooted.
    pub boot_id: String,
    /// The pool's `nodeFillType` (fixed when the pool is created).
    pub fill: placement::Fill,
    /// The start task's current attempt, and what the API shows of it.
    pub start_attempt: Option<u64>,
    pub start_retries: i32,
    pub start_task_info: Option<Map<String, Value>>,
    /// Waiting for its running tasks to finish before it restarts or leaves
    /// (`taskcompletion` / `retaineddata`); takes no new tasks meanwhile.
    pub drain: Option<Drain>,
    /// Job preparation (and release) runs on this node, by job key.
    pub preps: HashMap<String, crate::jobprep::PrepRun>,
    /// The pool's `applicationPackageReferences`: every task on the node gets them.
    pub pool_packages: Vec<wire::models::ApplicationPackageReference>,
}

/// What a draining node does once its running tasks have finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    Restart { wipe: bool },
    Leave,
}

impl Node {
    pub(crate) fn used(&self) -> u32 {
        self.running.values().map(|s| s.slots).sum()
    }
    fn queued_slots(&self) -> u32 {
        self.queued.iter().map(|(_, s)| s.slots).sum()
    }
    /// Slots no attempt holds or waits for.
    pub(crate) fn free(&self) -> u32 {
        self.slots.saturating_sub(self.used() + self.queued_slots())
    }
    /// Room in the node's queue.
    pub(crate) fn queue_room(&self) -> u32 {
        (self.slots * QUEUE_PER_SLOT).saturating_sub(self.queued_slots())
    }
    pub(crate) fn schedulable(&self) -> bool {
        self.tx.is_some() && self.drain.is_none() && self.scheduling_enabled && matches!(self.state, "idle" | "running")
    }
    fn set_state(&mut self, s: &'static str) {
        if self.state != s {
            self.state = s;
            self.state_transition_time = Timestamp::now();
        }
    }
    pub(crate) fn refresh_busy_state(&mut self) {
        if matches!(self.state, "idle" | "running") {
            self.set_state(if self.running.is_empty() { "idle" } else { "running" });
        }
    }

    /// The node as the Batch API shows it (`ComputeNode` / `BatchNode`).
    pub fn to_wire(&self, base_url: &str, vm_size: &str) -> Map<String, Value> {
        let url = format!("{base_url}/pools/{}/nodes/{}", encode_segment(&self.pool_id), encode_segment(&self.id));
        let v = json!({
            "id": self.id,
            "url": url,
            "state": self.state,
            "schedulingState": if self.scheduling_enabled { "enabled" } else { "disabled" },
            "stateTransitionTime": self.state_transition_time,
            "lastBootTime": self.last_boot_time,
            "allocationTime": self.allocation_time,
            "ipAddress": self.ip,
            "affinityId": format!("TVM:{}", self.id),
            "vmSize": vm_size,
            "totalTasksRun": self.total_run,
            "runningTasksCount": self.running.len(),
            "runningTaskSlotsCount": self.used(),
            "totalTasksSucceeded": self.total_succeeded,
            "recentTasks": self.recent.iter().cloned().collect::<Vec<_>>(),
            "isDedicated": self.is_dedicated,
            "endpointConfiguration": {"inboundEndpoints": []},
            "nodeAgentInfo": {"version": self.agent_version, "lastUpdateTime": self.allocation_time},
        });
        let mut v = v;
        if let (Some(info), Value::Object(m)) = (&self.start_task_info, &mut v) {
            m.insert("startTaskInfo".into(), Value::Object(info.clone()));
        }
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

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
}

/// A job's ready tasks read ahead of need.
struct ReadAhead {
    /// The store generation they were read at.
    generation: (u64, u64),
    /// The largest node's slots when they were read (tasks needing more
    /// were left out).
    max_slots: u32,
    /// The read returned every ready task there was.
    exhausted: bool,
    tasks: VecDeque<CloudTask>,
}

/// A pool's active jobs, with the job generation they were read at.
type CachedJobs = (u64, Arc<Vec<CloudJob>>);

pub struct Cluster {
    pub config: ClusterConfig,
    store: Store,
    lifecycle: Arc<crate::lifecycle::Lifecycle>,
    pub(crate) nodes: Mutex<BTreeMap<String, Node>>,
    /// Local agent processes by node id.
    children: Mutex<HashMap<String, LocalAgent>>,
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn new_node_id() -> String {
    format!("tvmps_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

impl Cluster {
    pub fn new(store: Store, config: ClusterConfig, lifecycle: Arc<crate::lifecycle::Lifecycle>) -> Cluster {
        let (started_tx, started_rx) = mpsc::unbounded_channel();
        Cluster {
            started_tx,
            started_rx: Mutex::new(Some(started_rx)),
            retracted_at: Mutex::new(HashMap::new()),
            config,
            store,
            lifecycle,
            nodes: Mutex::new(BTreeMap::new()),
            children: Mutex::new(HashMap::new()),
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

    /// Nodes of a pool, as the API shows them.
    pub fn pool_nodes(&self, pool_id: &str, base_url: &str, vm_size: &str) -> Vec<Map<String, Value>> {
        lock(&self.nodes).values().filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).map(|n| n.to_wire(base_url, vm_size)).collect()
    }

    pub fn node(&self, pool_id: &str, node_id: &str, base_url: &str, vm_size: &str) -> Option<Map<String, Value>> {
        lock(&self.nodes).get(node_id).filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).map(|n| n.to_wire(base_url, vm_size))
    }

    /// `steady` when the pool has the nodes its target asks for (local nodes
    /// fill what remote nodes leave; none are starting or leaving), else `resizing`.
    pub fn allocation_state(&self, pool_id: &str, target: usize) -> &'static str {
        let children: std::collections::HashSet<String> = lock(&self.children).keys().cloned().collect();
        let nodes = lock(&self.nodes);
        let of_pool: Vec<&Node> = nodes.values().filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).collect();
        let leaving = of_pool.iter().any(|n| n.state == "leavingpool" || n.drain == Some(Drain::Leave));
        let remote = of_pool.iter().filter(|n| !children.contains(&n.id)).count();
        let local = of_pool.iter().filter(|n| children.contains(&n.id)).count();
        let pending = children
            .iter()
            .filter(|id| !nodes.contains_key(*id) && self.child_pool(id).as_deref().is_some_and(|p| p.eq_ignore_ascii_case(pool_id)))
            .count();
        if !leaving && pending == 0 && local == target.saturating_sub(remote) {
            "steady"
        } else {
            "resizing"
        }
    }

    /// Counts of a pool's nodes by state, and how many are connected.
    pub fn node_states(&self, pool_id: &str) -> Vec<&'static str> {
        lock(&self.nodes).values().filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).map(|n| n.state).collect()
    }

    pub(crate) fn lock_nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Node>> {
        lock(&self.nodes)
    }

    /// An active job from the scheduler's cache.
    pub(crate) fn cached_job(&self, job_id: &str) -> Option<CloudJob> {
        self.with_cached_job(job_id, |j| j.cloned())
    }

    /// `f` of an active job in the scheduler's cache (None: not cached),
    /// without copying it.
    fn with_cached_job<R>(&self, job_id: &str, f: impl FnOnce(Option<&CloudJob>) -> R) -> R {
        let cache = lock(&self.jobs_cache);
        f(cache.values().flat_map(|(_, jobs)| jobs.iter()).find(|j| j.id.eq_ignore_ascii_case(job_id)))
    }

    pub(crate) fn send(&self, node_id: &str, msg: ToAgent) -> bool {
        lock(&self.nodes).get(node_id).and_then(|n| n.tx.as_ref()).map(|tx| tx.send(msg).is_ok()).unwrap_or(false)
    }

    /// Asks a node's agent to kill an attempt; the slot frees when the agent reports.
    pub fn kill(&self, node_id: &str, attempt: u64) {
        if self.multi_abort(attempt).is_some() {
            return; // every instance of the multi-instance run was told
        }
        self.send(node_id, ToAgent::Kill { attempt, grace_ms: 3_000 });
    }

    /// Sets a node's scheduling state; errors when it is already there.
    pub fn set_scheduling(&self, pool_id: &str, node_id: &str, enabled: bool) -> Result<Vec<(u64, Slot)>, Error> {
        let mut nodes = lock(&self.nodes);
        let n = nodes
            .get_mut(node_id)
            .filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id))
            .ok_or_else(|| Error::new(ErrorCode::NodeNotFound))?;
        n.scheduling_enabled = enabled;
        let running = n.running.iter().map(|(a, s)| (*a, s.clone())).collect();
        drop(nodes);
        if !enabled {
            self.retract(node_id, |_, _| true, true);
        }
        self.wake.notify_one();
        Ok(running)
    }

    /// The attempts running on a node.
    pub fn running_on(&self, node_id: &str) -> Vec<(u64, Slot)> {
        lock(&self.nodes).get(node_id).map(|n| n.running.iter().map(|(a, s)| (*a, s.clone())).collect()).unwrap_or_default()
    }

    pub fn node_exists(&self, pool_id: &str, node_id: &str) -> bool {
        lock(&self.nodes).get(node_id).is_some_and(|n| n.pool_id.eq_ignore_ascii_case(pool_id))
    }

    pub fn set_node_state(&self, node_id: &str, state: &'static str) {
        if let Some(n) = lock(&self.nodes).get_mut(node_id) {
            n.set_state(state);
        }
    }

    /// Reboot or reimage: the agent stops every attempt (and wipes task data
    /// for a reimage); the node is back to `idle` shortly after.
    pub fn reset_node(self: &Arc<Self>, node_id: &str, wipe: bool) {
        // The agent forgets the attempts waiting in its queue.
        self.retract(node_id, |_, _| true, false);
        self.send(node_id, ToAgent::Reset { wipe });
        let c = self.clone();
        let id = node_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let pool = {
                let mut nodes = lock(&c.nodes);
                match nodes.get_mut(&id) {
                    Some(n) if matches!(n.state, "rebooting" | "reimaging") => {
                        // Preparation runs again after a reboot
                        // (rerunOnNodeRebootAfterSuccess, the default).
                        n.preps.clear();
                        n.last_boot_time = Timestamp::now();
                        n.start_retries = 0;
                        n.set_state("idle");
                        n.refresh_busy_state();
                        Some(n.pool_id.clone())
                    }
                    _ => None,
                }
            };
            if let Some(pool) = pool {
                let spec = match c.store.get_pool(&pool).await {
                    Ok(s) => serde_json::from_str::<Map<String, Value>>(&s.doc).ok().and_then(|m| m.get("startTask").cloned()),
                    Err(_) => None,
                };
                if let Some(spec) = spec.filter(Value::is_object) {
                    c.run_start_task(&id, &pool, &spec);
                }
            }
            c.wake.notify_one();
        });
    }

    /// The node root directory of a node.
    pub fn node_root(&self, pool_id: &str, node_id: &str) -> Option<String> {
        lock(&self.nodes).get(node_id).filter(|n| n.pool_id.eq_ignore_ascii_case(pool_id)).map(|n| n.root_dir.clone())
    }

    /// Sends a file request to the node and waits for the reply.
    pub async fn file(&self, node_id: &str, base: String, path: String, op: FileOp) -> Result<FileReply, Error> {
        let id = self.next_file.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.file_waiters).insert(id, tx);
        if !self.send(node_id, ToAgent::File(FileRequest { id, base, path, op })) {
            lock(&self.file_waiters).remove(&id);
            return Err(Error::msg(ErrorCode::TaskFilesUnavailable, "The compute node that holds these files is not reachable."));
        }
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                lock(&self.file_waiters).remove(&id);
                Err(Error::new(ErrorCode::OperationTimedOut))
            }
        }
    }

    // ---- agent connections ------------------------------------------------

    /// Registers an agent that said hello; returns its node id and the
    /// attempts it runs that the server no longer assigns to it.
    pub async fn join(
        &self,
        hello: &Hello,
        pool_doc: &Map<String, Value>,
        tx: mpsc::UnboundedSender<ToAgent>,
        account_url: &str,
    ) -> Result<String, Error> {
        // Attempt ids first: what this agent reports is judged against them.
        let mut ready = self.initialized.subscribe();
        if tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|v| *v)).await.is_err() {
            return Err(Error::new(ErrorCode::ServerBusy));
        }
        let slots = pool_doc.get("taskSlotsPerNode").and_then(Value::as_u64).unwrap_or(1).max(1) as u32;
        let pool_id = pool_doc.get("id").and_then(Value::as_str).unwrap_or(&hello.pool_id).to_string();
        let id = hello.node_id.clone().unwrap_or_else(new_node_id);
        // What the database says runs on this node.
        let assigned = self.store.tasks_on_node(&id).await?;
        let finished: std::collections::HashSet<u64> = hello.finished.iter().map(|f| f.outcome.attempt).collect();
        let slots_of = |attempt: u64| {
            let held = hello.held.iter().find(|h| h.attempt == attempt).map(|h| &h.task);
            let done = hello.finished.iter().find(|f| f.outcome.attempt == attempt).and_then(|f| f.task.as_ref());
            held.or(done).map(|t| t.slots.max(1))
        };
        if hello.leftovers > 0 {
            tracing::warn!(node = %id, processes = hello.leftovers, "the node's agent killed task processes an earlier agent left running");
        }
        let now = Timestamp::now();
        let mut stale = Vec::new();
        let mut needs_start: Option<Value> = None;
        let previous: Vec<u64>;
        let mut kept: Vec<(u64, bool)> = Vec::new();
        {
            let mut nodes = lock(&self.nodes);
            let node = nodes.entry(id.clone()).or_insert_with(|| Node {
                id: id.clone(),
                pool_id: pool_id.clone(),
                state: "idle",
                scheduling_enabled: true,
                slots,
                running: HashMap::new(),
                queued: Vec::new(),
                tx: None,
                ip: hello.ip_address.clone(),
                root_dir: hello.root_dir.clone(),
                agent_version: hello.agent_version.clone(),
                state_transition_time: now,
                allocation_time: now,
                last_boot_time: now,
                last_seen: Instant::now(),
                total_run: 0,
                total_succeeded: 0,
                recent: VecDeque::new(),
                is_dedicated: true,
                boot_id: String::new(),
                fill: placement::Fill::Spread,
                start_attempt: None,
                start_retries: 0,
                start_task_info: None,
                drain: None,
                preps: HashMap::new(),
                pool_packages: Vec::new(),
            });
            node.pool_packages =
                pool_doc.get("applicationPackageReferences").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
            node.fill = if pool_doc
                .get("taskSchedulingPolicy")
                .and_then(|p| p.get("nodeFillType"))
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case("pack"))
            {
                placement::Fill::Pack
            } else {
                placement::Fill::Spread
            };
            let booted = node.boot_id != hello.boot_id;
            node.boot_id = hello.boot_id.clone();
            node.tx = Some(tx);
            node.last_seen = Instant::now();
            node.ip = hello.ip_address.clone();
            node.root_dir = hello.root_dir.clone();
            node.slots = slots;
            // Attempts known only in memory (queued, or started but not yet
            // written) are settled below: the database decides what runs here.
            // A queued attempt the agent started or finished (its reports
            // were lost with the connection) stays, as running: its
            // assignment is written now (`kept`), or with its outcome.
            let queued: Vec<(u64, Slot)> = node.queued.drain(..).collect();
            for (a, slot) in queued {
                if hello.running.contains(&a) || finished.contains(&a) {
                    kept.push((a, hello.running.contains(&a)));
                    node.running.insert(a, slot);
                } else {
                    node.running.insert(a, slot); // drained with the others below
                }
            }
            let kept_ids: Vec<u64> = kept.iter().map(|(a, _)| *a).collect();
            previous = node.running.keys().copied().filter(|a| !kept_ids.contains(a)).collect();
            node.running.retain(|a, _| kept_ids.contains(a));
            // Running here, or ended with an outcome the agent still holds
            // (applied by `serve_agent` once the node has joined).
            for (job, task, attempt) in &assigned {
                if hello.running.contains(attempt) || finished.contains(attempt) {
                    let slots = slots_of(*attempt).unwrap_or(1);
                    node.running.insert(*attempt, Slot { job_id: job.clone(), task_id: task.clone(), slots });
                }
            }
            for a in &hello.running {
                if !assigned.iter().any(|(_, _, x)| x == a) && !kept.iter().any(|(k, _)| k == a) {
                    stale.push(*a);
                }
            }
            if matches!(node.state, "offline" | "unknown" | "rebooting" | "reimaging" | "starting") {
                node.set_state("idle");
            }
            node.refresh_busy_state();
            if booted {
                node.last_boot_time = now;
                node.start_attempt = None;
                node.start_task_info = None;
                node.start_retries = 0;
                needs_start = pool_doc.get("startTask").filter(|v| v.is_object()).cloned();
            }
        }
        for a in previous {
            self.abandon(a);
        }
        if let Some(spec) = needs_start {
            self.run_start_task(&id, &pool_id, &spec);
        }
        // Attempts of an earlier server whose assignment never committed
        // (it was killed first): adopted when their task still waits, so
        // the task does not run again; any other unknown attempt is killed.
        for (a, running) in kept {
            let slot = lock(&self.nodes).get(&id).and_then(|n| n.running.get(&a).cloned());
            if let (true, Some(slot)) = (running, slot) {
                // Assigned and running, in one change.
                let _ = self
                    .write_attempt(
                        &slot.job_id,
                        &slot.task_id,
                        a,
                        store::Durability::Relaxed,
                        Some(Box::new(move |_, t, now| {
                            if t.attempt == Some(a) && t.state == TaskState::Preparing {
                                execution::transition(t, TaskState::Running, now);
                                t.execution_info.start_time = Some(now);
                            }
                            Ok(())
                        })),
                    )
                    .await;
            }
        }
        let unknown_outcomes = hello.finished.iter().filter(|f| {
            !assigned.iter().any(|(_, _, x)| *x == f.outcome.attempt)
                && !lock(&self.nodes).get(&id).is_some_and(|n| n.running.contains_key(&f.outcome.attempt))
        });
        for f in unknown_outcomes {
            if let Some(task) = &f.task {
                self.adopt(&id, &pool_id, account_url, f.outcome.attempt, task, false).await;
            }
        }
        for a in stale {
            let held = hello.held.iter().find(|h| h.attempt == a);
            let adopted = match held {
                Some(h) => self.adopt(&id, &pool_id, account_url, a, &h.task, true).await,
                None => false,
            };
            if !adopted {
                self.kill(&id, a);
            }
        }
        // Attempts the database assigns here that the agent no longer runs were lost.
        for (job, task, attempt) in assigned {
            if !hello.running.contains(&attempt) && !finished.contains(&attempt) {
                self.requeue_attempt(&job, &task, attempt).await;
            }
        }
        self.node_back(&id);
        self.wake.notify_one();
        self.reconcile.notify_one();
        Ok(id)
    }

    /// Adopts an attempt that an earlier server started (its assignment was
    /// lost with that server) when its task is still `active` and unclaimed:
    /// the assignment is written now, and the attempt runs on (`running`) or
    /// its outcome, which follows, completes the task. Only attempts issued
    /// before this server started qualify (`first_attempt`): any other
    /// attempt this server does not know is stale.
    async fn adopt(&self, node: &str, pool: &str, account_url: &str, attempt: u64, of: &proto::AttemptOf, running: bool) -> bool {
        if attempt >= self.first_attempt.load(Ordering::Relaxed) {
            return false;
        }
        let key = (store::key_of(&of.job_id), store::key_of(&of.task_id));
        if !lock(&self.inflight).insert(key.clone()) {
            return false;
        }
        let assign_it = assign(attempt, node.to_string(), node_info(account_url, pool, node, &of.job_id, &of.task_id));
        let change: AssignFn = Box::new(move |j: &CloudJob, t: &mut CloudTask, now: Timestamp| {
            assign_it(j, t, now)?;
            if running {
                execution::transition(t, TaskState::Running, now);
                t.execution_info.start_time = Some(now);
            }
            Ok(())
        });
        let done = self.store.update_tasks(vec![(of.job_id.clone(), of.task_id.clone(), change)], store::Durability::Prompt);
        let adopted = matches!(done.await, Ok(r) if r.first().is_some_and(|x| x.is_ok()));
        if adopted {
            tracing::info!(node = %node, job = %of.job_id, task = %of.task_id, attempt, "adopted an attempt an earlier server started");
            if let Some(n) = lock(&self.nodes).get_mut(node) {
                n.running.insert(attempt, Slot { job_id: of.job_id.clone(), task_id: of.task_id.clone(), slots: of.slots.max(1) });
                n.refresh_busy_state();
            }
        }
        self.leave_inflight(&key);
        // The task left the ready set: read-aheads taken before are stale.
        self.store.bump_tasks();
        adopted
    }

    /// Nodes this server waits for before it schedules (see `expect_nodes`).
    fn node_back(&self, node: &str) {
        let mut expected = lock(&self.expected);
        if let Some((_, nodes)) = expected.as_mut() {
            nodes.remove(node);
        }
    }

    /// After a restart, scheduling waits until the nodes that may hold
    /// attempts of the earlier server are back (or `NODE_LOST_AFTER` has
    /// passed): an attempt whose assignment did not commit shows its task as
    /// `active`, and placing that task before its node reports the attempt
    /// would run it twice. Waited for: the local nodes and every node the
    /// database assigns tasks to.
    pub async fn expect_nodes(&self) -> Result<(), Error> {
        let mut nodes: std::collections::HashSet<String> =
            self.store.assigned_tasks().await?.into_iter().map(|(_, _, node, _)| node).collect();
        if let Ok(dirs) = std::fs::read_dir(&self.config.nodes_dir) {
            for d in dirs.flatten() {
                let id = d.file_name().to_string_lossy().to_string();
                if self.child_pool(&id).is_some() {
                    nodes.insert(id);
                }
            }
        }
        let joined: Vec<String> = lock(&self.nodes).keys().cloned().collect();
        for id in joined {
            nodes.remove(&id);
        }
        if !nodes.is_empty() {
            tracing::info!(nodes = nodes.len(), "waiting for the nodes of the last run before scheduling");
            *lock(&self.expected) = Some((Instant::now() + NODE_LOST_AFTER, nodes));
        }
        Ok(())
    }

    /// Whether scheduling still waits for nodes of the last run.
    fn awaiting_nodes(&self) -> bool {
        let mut expected = lock(&self.expected);
        match expected.as_ref() {
            Some((deadline, nodes)) if !nodes.is_empty() && Instant::now() < *deadline => true,
            Some(_) => {
                *expected = None;
                false
            }
            None => false,
        }
    }

    /// The agent's connection ended.
    /// The agent's connection `tx` ended (a newer connection of the same
    /// node is left alone). The agent forgets the attempts waiting in its
    /// queue, so their tasks are scheduled again.
    pub fn disconnected(&self, node_id: &str, tx: &mpsc::UnboundedSender<ToAgent>) {
        {
            let mut nodes = lock(&self.nodes);
            let Some(n) = nodes.get_mut(node_id) else { return };
            if !n.tx.as_ref().is_some_and(|t| t.same_channel(tx)) {
                return;
            }
            n.tx = None;
            if !matches!(n.state, "leavingpool" | "rebooting" | "reimaging") {
                n.set_state("offline");
            }
        }
        // Attempts queued there stay: the agent may have started (or even
        // finished) them with reports the connection lost. It tells when it
        // rejoins (see `join`); a node that does not is lost, and they are
        // taken back then (`check_liveness`).
    }

    /// Whether the connection `tx` of a node was superseded: the node was
    /// declared lost meanwhile (`unknown`, see `check_liveness`), or has a
    /// newer connection. (A node that left the pool has no entry.)
    pub fn superseded(&self, node_id: &str, tx: &mpsc::UnboundedSender<ToAgent>) -> bool {
        lock(&self.nodes).get(node_id).is_some_and(|n| match &n.tx {
            Some(t) => !t.same_channel(tx),
            None => n.state == "unknown",
        })
    }

    pub fn heartbeat(&self, node_id: &str) {
        if let Some(n) = lock(&self.nodes).get_mut(node_id) {
            n.last_seen = Instant::now();
        }
    }

    pub fn file_reply(&self, r: FileReply) {
        if let Some(w) = lock(&self.file_waiters).remove(&r.id) {
            let _ = w.send(r);
        }
    }

    /// An attempt's process is running. Most trivial attempts end within a
    /// few milliseconds, so the report waits a little (in one queue for all
    /// nodes, see `debounce_started`): if the attempt has ended by then, its
    /// outcome records `running` (at the agent's start time) in the same write.
    pub fn started(&self, node_id: &str, attempt: u64) {
        let _ = self.started_tx.send((tokio::time::Instant::now() + STARTED_DEBOUNCE, node_id.to_string(), attempt));
    }

    /// Writes the `Started` reports whose wait is over, for attempts still running.
    async fn debounce_started(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<(tokio::time::Instant, String, u64)>) {
        // Reports due this close together are handled in one wake-up.
        const SLACK: Duration = Duration::from_millis(3);
        while let Some((due, node, attempt)) = rx.recv().await {
            if due > tokio::time::Instant::now() + SLACK {
                tokio::time::sleep_until(due).await;
            }
            let still = lock(&self.nodes).get(&node).is_some_and(|n| n.running.contains_key(&attempt));
            if still {
                let me = self.clone();
                tokio::spawn(async move { me.record_started(&node, attempt).await });
            }
        }
    }

    async fn record_started(&self, node_id: &str, attempt: u64) {
        let slot = lock(&self.nodes).get(node_id).and_then(|n| n.running.get(&attempt).cloned());
        let Some(slot) = slot else { return };
        let attempt = match self.multi_started(attempt) {
            crate::multi::Started::Other => attempt,
            crate::multi::Started::Primary(task_attempt) => task_attempt,
            crate::multi::Started::Subtask => return,
        };
        let _ = self
            .write_attempt(
                &slot.job_id,
                &slot.task_id,
                attempt,
                store::Durability::Relaxed,
                Some(Box::new(move |_, t, now| {
                    if t.attempt != Some(attempt) || t.state != TaskState::Preparing {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    execution::transition(t, TaskState::Running, now);
                    t.execution_info.start_time = Some(now);
                    Ok(())
                })),
            )
            .await;
    }

    /// Starts (or retries) the pool's start task on a node. While a start
    /// task with `waitForSuccess` (the default) runs, the node is
    /// `waitingforstarttask` and takes no tasks.
    pub fn run_start_task(&self, node_id: &str, pool_id: &str, spec: &Value) {
        let attempt = self.next_attempt.fetch_add(1, Ordering::Relaxed);
        let wait = spec.get("waitForSuccess").and_then(Value::as_bool).unwrap_or(true);
        let launch = {
            let mut nodes = lock(&self.nodes);
            let Some(n) = nodes.get_mut(node_id) else { return };
            n.start_attempt = Some(attempt);
            let mut info = Map::new();
            info.insert("state".into(), json!("running"));
            info.insert("startTime".into(), json!(Timestamp::now()));
            info.insert("retryCount".into(), json!(n.start_retries));
            if let Some(prev) = &n.start_task_info {
                if let Some(t) = prev.get("lastRetryTime") {
                    info.insert("lastRetryTime".into(), t.clone());
                }
            }
            n.start_task_info = Some(info);
            n.set_state(if wait { "waitingforstarttask" } else { "idle" });
            start_task_launch(&self.config, &lock(&self.config.server_url).clone().unwrap_or_default(), pool_id, n, spec, attempt)
        };
        self.send(node_id, ToAgent::Start(Box::new(launch)));
    }

    /// The start task's attempt ended: retry it, or settle the node's state.
    async fn start_task_finished(&self, node_id: &str, o: &TaskOutcome) {
        let pool_id = match lock(&self.nodes).get(node_id) {
            Some(n) => n.pool_id.clone(),
            None => return,
        };
        let spec = match self.store.get_pool(&pool_id).await {
            Ok(s) => serde_json::from_str::<Map<String, Value>>(&s.doc).ok().and_then(|m| m.get("startTask").cloned()),
            Err(_) => None,
        };
        let spec = spec.unwrap_or(Value::Null);
        let wait = spec.get("waitForSuccess").and_then(Value::as_bool).unwrap_or(true);
        let max_retries = spec.get("maxTaskRetryCount").and_then(Value::as_i64).unwrap_or(0) as i32;
        let ok = o.failure_code.is_none() && o.exit_code == Some(0);
        let retry = {
            let mut nodes = lock(&self.nodes);
            let Some(n) = nodes.get_mut(node_id) else { return };
            n.start_attempt = None;
            let mut info = n.start_task_info.clone().unwrap_or_default();
            let ts = |ms: i64| json!(Timestamp(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now)));
            info.insert("startTime".into(), ts(o.start_time_ms));
            info.insert("endTime".into(), ts(o.end_time_ms));
            if let Some(c) = o.exit_code {
                info.insert("exitCode".into(), json!(c));
            }
            let retry = !ok && (max_retries == -1 || n.start_retries < max_retries);
            if ok {
                info.insert("state".into(), json!("completed"));
                info.insert("result".into(), json!("success"));
                info.remove("failureInfo");
                n.set_state("idle");
                n.refresh_busy_state();
            } else {
                let code = o.failure_code.clone().unwrap_or_else(|| "FailureExitCode".into());
                let message = o.failure_message.clone().unwrap_or_else(|| "The start task exited with an unexpected exit code".into());
                info.insert("failureInfo".into(), json!({"category": "usererror", "code": code, "message": message}));
                info.insert("result".into(), json!("failure"));
                if retry {
                    n.start_retries += 1;
                    info.insert("lastRetryTime".into(), json!(Timestamp::now()));
                } else {
                    info.insert("state".into(), json!("completed"));
                    if wait {
                        n.set_state("starttaskfailed");
                    } else {
                        n.set_state("idle");
                        n.refresh_busy_state();
                    }
                }
            }
            n.start_task_info = Some(info);
            retry
        };
        if retry {
            self.run_start_task(node_id, &pool_id, &spec);
        }
        self.wake.notify_one();
    }

    /// An attempt ended: record it (unless stale), free the slots, schedule more.
    /// Also whether the outcome is settled (recorded, or stale): the agent
    /// may forget it.
    pub async fn finished(self: &Arc<Self>, node_id: &str, o: TaskOutcome, base_url: String) -> (Option<(String, bool)>, bool) {
        let is_start = lock(&self.nodes).get(node_id).is_some_and(|n| n.start_attempt == Some(o.attempt));
        if is_start {
            self.start_task_finished(node_id, &o).await;
            return (None, true);
        }
        if self.prep_finished(node_id, &o, &base_url) {
            return (None, true);
        }
        if self.multi_finished(&o, &base_url).await {
            return (None, true);
        }
        // An attempt that ended without starting (e.g. its program is
        // missing) may still be in the node's queue.
        let slot = lock(&self.nodes).get_mut(node_id).and_then(|n| {
            n.running.remove(&o.attempt).or_else(|| {
                let i = n.queued.iter().position(|(a, _)| *a == o.attempt)?;
                Some(n.queued.remove(i).1)
            })
        });
        self.wake.notify_one();
        let Some(slot) = slot else { return (None, true) };
        let subtasks = self.multi_end(o.attempt);
        self.complete_attempt(node_id, slot, o, base_url, subtasks).await
    }

    /// Records how the task's attempt `o.attempt` ended (it ran on `node_id`
    /// in `slot`), and what follows: the node's counters, the job's end when
    /// the task is its manager, the exit conditions' job action.
    pub(crate) async fn complete_attempt(
        self: &Arc<Self>,
        node_id: &str,
        slot: Slot,
        o: TaskOutcome,
        base_url: String,
        subtasks: Option<Vec<Value>>,
    ) -> (Option<(String, bool)>, bool) {
        let attempt = o.attempt;
        let stats_url = format!("{base_url}/jobs/{}/tasks/{}/stats", encode_segment(&slot.job_id), encode_segment(&slot.task_id));
        // Work waits on some completions: dependent tasks, a retry, the end
        // of the job (its manager, an exit condition's job action).
        let failed = o.exit_code != Some(0) || o.failure_code.is_some();
        let durability = if failed || self.awaited_completion(&slot.job_id, &slot.task_id) {
            store::Durability::Prompt
        } else {
            store::Durability::Relaxed
        };
        let r = self
            .write_attempt(
                &slot.job_id,
                &slot.task_id,
                attempt,
                durability,
                Some(Box::new(move |_, t, now| {
                    if t.attempt != Some(attempt) {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    execution::apply_outcome(t, &o, stats_url, now);
                    if subtasks.is_some() {
                        t.subtasks = subtasks;
                    }
                    Ok(())
                })),
            )
            .await;
        let mut result = None;
        // A store failure leaves the outcome unsettled; a refused change
        // (the task moved on: terminated, deleted, requeued) settles it.
        let settled = !matches!(&r, Err(e) if e.code == ErrorCode::InternalError || e.code == ErrorCode::ServerBusy);
        if let Ok(t) = r {
            if t.state == TaskState::Active {
                self.readied(&slot.job_id, &t.id);
            }
            {
                let completed = t.state == TaskState::Completed;
                let success = t.execution_info.result == Some(wire::enums::ExecutionResult::Success);
                if let Some(n) = lock(&self.nodes).get_mut(node_id) {
                    n.total_run += 1;
                    if success {
                        n.total_succeeded += 1;
                    }
                    n.recent.push_back(json!({
                        "taskUrl": format!("{base_url}/jobs/{}/tasks/{}", encode_segment(&slot.job_id), encode_segment(&slot.task_id)),
                        "jobId": slot.job_id, "taskId": slot.task_id, "taskState": t.state.as_str(),
                        "executionInfo": t.execution_info,
                    }));
                    while n.recent.len() > 5 {
                        n.recent.pop_front();
                    }
                }
                if completed {
                    result = Some((slot.job_id.clone(), true));
                    if self.ends_job(&slot.job_id, &t.id) {
                        let me = self.clone();
                        let job = slot.job_id.clone();
                        tokio::spawn(async move { me.end_job(&job, "JMComplete").await });
                    }
                    if let Some(o) = wire::workflow::outcome(&t) {
                        if o.job_action != JobAction::None {
                            let me = self.clone();
                            let job = slot.job_id.clone();
                            tokio::spawn(async move { me.job_action(&job, o.job_action).await });
                        }
                    }
                }
            }
        }
        if let Some(n) = lock(&self.nodes).get_mut(node_id) {
            n.refresh_busy_state();
        }
        self.drain_if_done(node_id).await;
        (result, settled)
    }

    /// Whether work may wait on the task's completion whatever its outcome:
    /// its job's tasks may depend on each other, or it is the job's manager
    /// (true when the job is not cached: the cautious answer).
    fn awaited_completion(&self, job_id: &str, task_id: &str) -> bool {
        self.with_cached_job(job_id, |job| job.is_none_or(|j| j.uses_task_dependencies || execution::manager_of(j, task_id).is_some()))
    }

    /// Whether the task is its job's manager with `killJobOnCompletion`
    /// (the default), from the scheduler's cached job list.
    fn ends_job(&self, job_id: &str, task_id: &str) -> bool {
        self.with_cached_job(job_id, |job| {
            job.and_then(|j| execution::manager_of(j, task_id)).is_some_and(|m| m.kill_job_on_completion != Some(false))
        })
    }

    /// Terminates an active job for the service's own reason (running tasks are killed).
    async fn end_job(&self, job_id: &str, reason: &'static str) {
        let ended = self.store.end_job(job_id, reason, |_, job| {
            Ok(matches!(job.state, JobState::Active | JobState::Disabled | JobState::Disabling | JobState::Enabling))
        });
        if matches!(ended.await, Ok(true)) {
            self.lifecycle.wake();
        }
    }

    /// Applies a completed task's `jobAction` to its job, when the job asks
    /// for that (`onTaskFailure: performexitoptionsjobaction`) and is active:
    /// terminate (reason `TaskFailed`) or disable (running tasks requeued).
    async fn job_action(&self, job_id: &str, action: JobAction) {
        let acts = |job: &CloudJob| job.state == JobState::Active && job.on_task_failure == OnTaskFailure::PerformExitOptionsJobAction;
        let done = match action {
            JobAction::Terminate => self.store.end_job(job_id, "TaskFailed", move |_, job| Ok(acts(job))).await.unwrap_or(false),
            JobAction::Disable => self
                .store
                .update_job(job_id, Default::default(), move |_, job, now| {
                    if !acts(job) {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    job.pending_disable = Some(DisableJobOption::Requeue);
                    store::jobs::set_state(job, JobState::Disabling, now);
                    Ok(())
                })
                .await
                .is_ok(),
            JobAction::None => false,
        };
        if done {
            self.lifecycle.wake();
        }
    }

    /// Lets a node finish its running tasks, then restart or leave.
    pub async fn drain(self: &Arc<Self>, node_id: &str, what: Drain) {
        if let Some(n) = lock(&self.nodes).get_mut(node_id) {
            n.drain = Some(what);
        }
        self.retract(node_id, |_, _| true, true);
        self.drain_if_done(node_id).await;
    }

    async fn drain_if_done(self: &Arc<Self>, node_id: &str) {
        let what = {
            let mut nodes = lock(&self.nodes);
            match nodes.get_mut(node_id) {
                Some(n) if n.running.is_empty() => n.drain.take(),
                _ => None,
            }
        };
        match what {
            Some(Drain::Restart { wipe }) => {
                self.set_node_state(node_id, if wipe { "reimaging" } else { "rebooting" });
                self.reset_node(node_id, wipe);
            }
            Some(Drain::Leave) => self.remove_node(node_id, true).await,
            None => {}
        }
    }

    /// A task went back to `active` (retry, requeue). If its assignment is
    /// still in flight, a read-ahead may have left it out: see `readied_inflight`.
    fn readied(&self, job: &str, task: &str) {
        let key = (store::key_of(job), store::key_of(task));
        let inflight = lock(&self.inflight);
        if inflight.contains(&key) {
            lock(&self.readied_inflight).insert(key);
        } else {
            // It may have left `inflight` after a read-ahead that skipped it.
            drop(inflight);
            self.store.bump_tasks();
        }
    }

    /// Sends a task whose attempt was lost back to `active` (requeueCount + 1).
    pub async fn requeue_attempt(&self, job: &str, task: &str, attempt: u64) {
        if self.abandon(attempt) {
            return; // its assignment was never written: the task is still active
        }
        // Losing any instance of a multi-instance task loses the whole attempt.
        let attempt = self.multi_abort(attempt).unwrap_or(attempt);
        let r = self
            .write_attempt(
                job,
                task,
                attempt,
                store::Durability::Prompt,
                Some(Box::new(move |_, t, now| {
                    if t.attempt != Some(attempt) || !matches!(t.state, TaskState::Preparing | TaskState::Running) {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    execution::requeue(t, now);
                    Ok(())
                })),
            )
            .await;
        if let Ok(t) = &r {
            self.readied(job, &t.id);
        }
        self.wake.notify_one();
    }

    /// After a server restart: tasks the database assigns to nodes that have
    /// not come back within the grace period lost their attempts; requeue them.
    pub async fn requeue_orphans(&self) -> Result<(), Error> {
        for (job, task, node, attempt) in self.store.assigned_tasks().await? {
            let known = lock(&self.nodes).get(&node).is_some_and(|n| n.tx.is_some() && n.running.contains_key(&attempt));
            if !known {
                tracing::warn!(node = %node, job = %job, task = %task, "requeueing a task whose node did not come back");
                self.requeue_attempt(&job, &task, attempt).await;
            }
        }
        Ok(())
    }

    /// Local nodes that existed before a restart come back: an agent still
    /// running on its root (the server was killed, its agents were not) is
    /// adopted and reconnects by itself, with its attempts still running;
    /// otherwise a new agent starts on the root (as a node comes back after
    /// a reboot). Roots of pools that are gone are removed.
    pub async fn adopt_local_nodes(&self) -> Result<(), Error> {
        let Ok(dirs) = std::fs::read_dir(&self.config.nodes_dir) else { return Ok(()) };
        let pools = self.store.pool_summaries().await?;
        let mut kept: HashMap<String, usize> = HashMap::new();
        for d in dirs.flatten() {
            let id = d.file_name().to_string_lossy().to_string();
            let Some(pool) = self.child_pool(&id) else { continue };
            let doc = pools.iter().find(|p| p.get("id").and_then(Value::as_str) == Some(pool.as_str()));
            let target = doc
                .filter(|p| p.get("state").and_then(Value::as_str) != Some("deleting"))
                .map(|p| {
                    (p.get("targetDedicatedNodes").and_then(Value::as_u64).unwrap_or(0)
                        + p.get("targetLowPriorityNodes").and_then(Value::as_u64).unwrap_or(0)) as usize
                })
                .unwrap_or(0);
            let n = kept.entry(pool.clone()).or_insert(0);
            let alive = agent_alive(&d.path());
            if *n < target {
                *n += 1;
                if alive {
                    tracing::info!(node = %id, "adopted a local node whose agent is still running");
                    lock(&self.children).insert(id.clone(), LocalAgent::Adopted);
                } else if let Err(e) = self.spawn_agent(&pool, &id) {
                    tracing::warn!(node = %id, error = %e, "cannot restart a local node");
                }
            } else {
                if alive {
                    stop_agent_at(&d.path()).await;
                }
                let _ = std::fs::remove_dir_all(d.path());
            }
        }
        Ok(())
    }

    /// Marks nodes silent for too long as `unknown` and requeues their tasks.
    pub async fn check_liveness(&self) {
        let lost: Vec<(String, Vec<(u64, Slot)>)> = {
            let mut nodes = lock(&self.nodes);
            nodes
                .values_mut()
                .filter(|n| n.last_seen.elapsed() > NODE_LOST_AFTER && !matches!(n.state, "unknown" | "leavingpool"))
                .map(|n| {
                    n.set_state("unknown");
                    n.tx = None;
                    let queued = n.queued.drain(..);
                    (n.id.clone(), n.running.drain().chain(queued).collect())
                })
                .collect()
        };
        for (node, attempts) in lost {
            tracing::warn!(node = %node, "node lost contact; requeueing its tasks");
            for (a, s) in attempts {
                self.requeue_attempt(&s.job_id, &s.task_id, a).await;
            }
        }
    }

    /// Deletes the directories of completed tasks whose `retentionTime` has
    /// passed; their file operations then answer `TaskFilesCleanedup`.
    pub async fn clean_expired(&self) -> Result<(), Error> {
        let now = Timestamp::now();
        for (job, task) in self.store.due_cleanups(now, 200).await? {
            // Mark first, so no request reads a half-deleted directory.
            let marked = self
                .store
                .update_task(&job, &task, Default::default(), move |_, t, _| {
                    if t.cleanup_at.is_none_or(|c| c > now) {
                        return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                    }
                    t.cleanup_at = None;
                    t.files_cleaned = true;
                    Ok(())
                })
                .await;
            let Ok(stored) = marked else { continue };
            let Ok(t) = serde_json::from_str::<CloudTask>(&stored.doc) else { continue };
            if let Some(info) = &t.node_info {
                if let (Some(node), Some(dir)) = (&info.node_id, &info.task_root_directory) {
                    if t.node.is_none() && lock(&self.nodes).get(node).is_some_and(|n| n.tx.is_some()) {
                        let _ = self.file(node, dir.clone(), String::new(), FileOp::Delete { recursive: true }).await;
                    }
                }
            }
        }
        Ok(())
    }

    // ---- node queues -------------------------------------------------------

    /// The node started a queued attempt: it holds its slots now.
    pub fn promote(&self, node_id: &str, attempt: u64) {
        if let Some(n) = lock(&self.nodes).get_mut(node_id) {
            if let Some(i) = n.queued.iter().position(|(a, _)| *a == attempt) {
                let (a, slot) = n.queued.remove(i);
                n.running.insert(a, slot);
                n.refresh_busy_state();
            }
        }
    }

    /// The node took a queued attempt and fetches its files first: it is
    /// `preparing` from now on, so its assignment is written at once.
    pub fn preparing(self: &Arc<Self>, node_id: &str, attempt: u64) {
        self.promote(node_id, attempt);
        if !lock(&self.unwritten).contains_key(&attempt) {
            return;
        }
        let Some(slot) = lock(&self.nodes).get(node_id).and_then(|n| n.running.get(&attempt).cloned()) else { return };
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me.write_attempt(&slot.job_id, &slot.task_id, attempt, store::Durability::Relaxed, None).await;
        });
    }

    /// Writes a change to an attempt's task, preceded — in the same change —
    /// by the attempt's assignment when that was never written (a queued
    /// attempt's first report). Whichever report comes first carries it, and
    /// later changes queue behind it.
    /// With no change (`f` None), only an assignment not yet written is.
    /// Every change the server makes to an attempt's task goes through here,
    /// written without waiting for an fsync (`store::Durability::Relaxed`,
    /// or `Prompt` when work waits on it).
    async fn write_attempt(
        &self,
        job: &str,
        task: &str,
        attempt: u64,
        durability: store::Durability,
        f: Option<AssignFn>,
    ) -> Result<CloudTask, Error> {
        let (done, pending) = {
            let mut unwritten = lock(&self.unwritten);
            let pending = unwritten.remove(&attempt);
            let (assign, pending) = match pending {
                Some(u) => (Some(u.assign), Some((u.key, u.node))),
                None if f.is_none() => return Err(Error::new(ErrorCode::OperationInvalidForCurrentState)),
                None => (None, None),
            };
            let change: AssignFn = Box::new(move |j, t, now| {
                if let Some(assign) = assign {
                    assign(j, t, now)?;
                }
                f.map_or(Ok(()), |f| f(j, t, now))
            });
            // Queued while `unwritten` is locked: no later change to the
            // attempt can be queued ahead of its assignment.
            (self.store.update_tasks(vec![(job.to_string(), task.to_string(), change)], durability), pending)
        };
        let r = done.await.and_then(|mut v| v.pop().unwrap_or_else(|| Err(Error::internal("no result"))));
        if let Some((key, node)) = pending {
            self.leave_inflight(&key);
            if r.is_err() {
                // The task changed before the node took it (terminated, deleted, job ended).
                self.kill(&node, attempt);
            }
            self.wake.notify_one();
        }
        r
    }

    /// A task's assignment is settled (written or abandoned).
    fn leave_inflight(&self, key: &(String, String)) {
        let stale = {
            let mut inflight = lock(&self.inflight);
            inflight.remove(key);
            lock(&self.readied_inflight).remove(key)
        };
        if stale {
            self.store.bump_tasks();
        }
    }

    /// Forgets a queued attempt whose assignment was never written: its task
    /// is still `active` and is scheduled again. False when it was written.
    fn abandon(&self, attempt: u64) -> bool {
        let Some(u) = lock(&self.unwritten).remove(&attempt) else { return false };
        self.leave_inflight(&u.key);
        // A read-ahead taken meanwhile left the task out.
        self.store.bump_tasks();
        self.wake.notify_one();
        true
    }

    /// Takes back the attempts queued on a node (it stops taking tasks, or
    /// another node has a free slot for them). With `tell`, the agent drops
    /// them too (one it started meanwhile is killed and runs again later).
    fn retract(&self, node_id: &str, which: impl Fn(u64, &Slot) -> bool, tell: bool) {
        let taken: Vec<u64> = {
            let mut nodes = lock(&self.nodes);
            let Some(n) = nodes.get_mut(node_id) else { return };
            let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut n.queued).into_iter().partition(|(a, s)| which(*a, s));
            n.queued = kept;
            taken.into_iter().map(|(a, _)| a).collect()
        };
        for a in taken {
            self.abandon(a);
            if tell {
                self.send(node_id, ToAgent::Kill { attempt: a, grace_ms: 0 });
            }
        }
    }

    /// Takes back a task's queued attempt (the task was terminated or deleted).
    pub fn retract_task(&self, job: &str, task: &str) {
        let nodes: Vec<String> = lock(&self.nodes).keys().cloned().collect();
        for n in nodes {
            self.retract(&n, |_, s| s.job_id.eq_ignore_ascii_case(job) && s.task_id.eq_ignore_ascii_case(task), true);
        }
    }

    /// Takes back every queued attempt of a job (it ended, or was disabled).
    pub fn retract_job(&self, job: &str) {
        let nodes: Vec<String> = lock(&self.nodes).keys().cloned().collect();
        for n in nodes {
            self.retract(&n, |_, s| s.job_id.eq_ignore_ascii_case(job), true);
        }
    }

    /// Whether the pool's queues may be rearranged for `why` now (see `RETRACT_EVERY`).
    fn may_retract(&self, pool: &str, why: &'static str) -> bool {
        lock(&self.retracted_at).get(&(pool.to_string(), why)).is_none_or(|t| t.elapsed() >= RETRACT_EVERY)
    }

    /// A job with ready tasks finds the pool full while the nodes' queues
    /// hold tasks of lower-priority jobs: those are taken back, so the next
    /// round gives the job their places (priority decides who runs next).
    /// (Only for a ready task that a queue can take, and at most every
    /// `RETRACT_EVERY` per pool: a task that cannot be placed after all must
    /// not make the queues churn.)
    async fn yield_queues(&self, pool: &str, job: &CloudJob, jobs: &[CloudJob]) -> Result<(), Error> {
        if job.job_preparation_task.is_some() || !self.may_retract(pool, "yield") {
            return Ok(());
        }
        let lower: std::collections::HashSet<String> =
            jobs.iter().filter(|j| j.priority < job.priority).map(|j| store::key_of(&j.id)).collect();
        let holders: Vec<String> = lock(&self.nodes)
            .values()
            .filter(|n| n.pool_id == pool && n.tx.is_some() && n.queued.iter().any(|(_, s)| lower.contains(&store::key_of(&s.job_id))))
            .map(|n| n.id.clone())
            .collect();
        if holders.is_empty() {
            return Ok(());
        }
        let manager = job.job_manager_task.as_ref().and_then(|m| m.id.as_deref());
        let max_slots = lock(&self.nodes).values().filter(|n| n.pool_id == pool).map(|n| n.slots).max().unwrap_or(1);
        let Some(ready) = self.take_ready(&job.id, manager, 1, max_slots).await?.pop() else { return Ok(()) };
        let widest = lock(&self.nodes).values().filter(|n| n.pool_id == pool && n.schedulable()).map(|n| n.slots).max().unwrap_or(0);
        let queueable = ready.multi_instance_settings.is_none()
            && ready.required_slots.max(1) as u32 <= widest
            && execution::manager_of(job, &ready.id).is_none_or(|m| m.run_exclusive == Some(false));
        if let Some(r) = lock(&self.ready).get_mut(&store::key_of(&job.id)) {
            r.tasks.push_front(ready);
        }
        if !queueable {
            return Ok(());
        }
        lock(&self.retracted_at).insert((pool.to_string(), "yield"), Instant::now());
        for node in holders {
            self.retract(&node, |_, s| lower.contains(&store::key_of(&s.job_id)), true);
        }
        Ok(())
    }

    /// A queued attempt should not wait behind a busy node while another
    /// node of the pool has a free slot: take it back, to be placed there.
    /// (Tasks of jobs with a preparation task stay: the free node may not
    /// have run it yet.)
    fn rebalance(&self, pool: &str) {
        if !self.may_retract(pool, "rebalance") {
            return;
        }
        let movable = |job: &str| self.cached_job(job).is_some_and(|j| j.job_preparation_task.is_none());
        let moves: Vec<(String, Vec<u64>)> = {
            let nodes = lock(&self.nodes);
            let of_pool = || nodes.values().filter(|n| n.pool_id == pool);
            let free: Vec<u32> = of_pool().filter(|n| n.schedulable()).map(|n| n.free()).filter(|f| *f > 0).collect();
            let Some(widest) = free.iter().copied().max() else { return };
            let mut budget: u32 = free.iter().sum();
            let mut moves = Vec::new();
            // (Not from a node out of contact: it may have started them.)
            for n in of_pool().filter(|n| !n.queued.is_empty() && n.free() == 0 && n.tx.is_some()) {
                let mut taken = Vec::new();
                for (a, s) in n.queued.iter().rev() {
                    if s.slots <= widest && s.slots <= budget && movable(&s.job_id) {
                        budget -= s.slots;
                        taken.push(*a);
                    }
                }
                moves.push((n.id.clone(), taken));
            }
            moves
        };
        if moves.iter().any(|(_, a)| !a.is_empty()) {
            lock(&self.retracted_at).insert((pool.to_string(), "rebalance"), Instant::now());
        }
        for (node, attempts) in moves {
            self.retract(&node, |a, _| attempts.contains(&a), true);
        }
    }

    // ---- scheduling --------------------------------------------------------

    /// Records once, in the job's `executionInfo.schedulingError`, why its
    /// tasks are not scheduled.
    async fn flag_unsupported_job(&self, job: &CloudJob, feature: &'static str) {
        if job.execution_info.scheduling_error.is_some() {
            return;
        }
        let message = format!("openbatch does not support {feature} yet (see COMPATIBILITY.md); the job's tasks are not scheduled.");
        let _ = self
            .store
            .update_job(&job.id, Default::default(), move |_, j, _| {
                if j.execution_info.scheduling_error.is_some() {
                    return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
                }
                j.execution_info.scheduling_error = Some(wire::models::JobSchedulingError {
                    category: wire::enums::ErrorCategory::ServerError,
                    code: Some("NotImplemented".into()),
                    message: Some(message),
                    details: None,
                });
                Ok(())
            })
            .await;
    }

    /// The pool's active jobs by priority, cached until any job changes.
    async fn jobs_of(&self, pool: &str) -> Result<Arc<Vec<CloudJob>>, Error> {
        let generation = self.store.job_generation();
        if let Some((g, jobs)) = lock(&self.jobs_cache).get(pool) {
            if *g == generation {
                return Ok(jobs.clone());
            }
        }
        let jobs = Arc::new(self.store.schedulable_jobs(pool).await?);
        lock(&self.jobs_cache).insert(pool.to_string(), (generation, jobs.clone()));
        Ok(jobs)
    }

    /// Up to `want` of a job's ready tasks that no round holds. They come
    /// from the job's read-ahead queue, refilled from the store (a few hundred
    /// at a time) when it runs dry. The queue is valid while the store's
    /// generation stands still (nothing became ready, no ready task changed),
    /// so a task never starts from a stale document, and a job known to have
    /// nothing ready costs no read.
    /// Only tasks that fit a node of `max_slots` slots are taken (see
    /// `Store::ready_tasks`).
    async fn take_ready(&self, job_id: &str, first: Option<&str>, want: usize, max_slots: u32) -> Result<Vec<CloudTask>, Error> {
        const READ_AHEAD: usize = 256;
        let key = store::key_of(job_id);
        let mut out = Vec::new();
        for refill in [false, true] {
            let generation = self.store.generation();
            if refill {
                let held = lock(&self.inflight).len();
                let limit = READ_AHEAD.max(want) + held;
                let tasks = self.store.ready_tasks(job_id, limit, max_slots).await?;
                let exhausted = tasks.len() < limit;
                let fresh: VecDeque<CloudTask> = {
                    let inflight = lock(&self.inflight);
                    tasks
                        .into_iter()
                        .filter(|t| {
                            !inflight.contains(&(key.clone(), store::key_of(&t.id))) && !out.iter().any(|o: &CloudTask| o.id == t.id)
                        })
                        .collect()
                };
                let mut fresh = fresh;
                // The job manager task starts before the job's other tasks.
                if let Some(pos) = fresh.iter().position(|t| first.is_some_and(|f| t.id.eq_ignore_ascii_case(f))) {
                    if let Some(t) = fresh.remove(pos) {
                        fresh.push_front(t);
                    }
                }
                lock(&self.ready).insert(key.clone(), ReadAhead { generation, max_slots, exhausted, tasks: fresh });
            }
            let mut ready = lock(&self.ready);
            let Some(r) = ready.get_mut(&key) else { continue };
            if r.generation != generation || r.max_slots != max_slots {
                ready.remove(&key);
                out.clear();
                continue;
            }
            let inflight = lock(&self.inflight);
            while out.len() < want {
                let Some(t) = r.tasks.pop_front() else { break };
                if !inflight.contains(&(key.clone(), store::key_of(&t.id))) {
                    out.push(t);
                }
            }
            if out.len() == want || !r.tasks.is_empty() || r.exhausted {
                break;
            }
        }
        Ok(out)
    }

    /// Attempt ids continue after the highest one ever handed out.
    pub async fn init_attempts(&self) -> Result<(), Error> {
        // Above every id an earlier server may have issued, written or not:
        // ids start at the clock's microseconds (no server issues more than
        // one attempt per microsecond on average).
        let max = self.store.max_attempt().await?;
        let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let first = (max + 1).max(now_us);
        self.next_attempt.store(first, Ordering::Relaxed);
        self.first_attempt.store(first, Ordering::Relaxed);
        self.initialized.send_replace(true);
        Ok(())
    }

    /// One scheduling round: fills free slots with active tasks, highest job
    /// priority first. Placement happens in memory and the agents are told
    /// at once; the assignments are persisted as one write queued *before*
    /// the agents hear of them (so every later report of those attempts is
    /// written after them). Until that write commits, the tasks are held in
    /// `inflight` so no round picks them twice. If the server dies before
    /// the commit, the tasks are still `active` in the database and the
    /// reconnecting agents are told to kill the attempts: tasks may run more
    /// than once, as Batch documents (tasks must be idempotent).
    ///
    /// When every slot of the pool is taken, tasks go to the nodes' queues
    /// (`Node::queued`), so a slot that frees starts its next task without a
    /// round trip to the server. A queued attempt's assignment is written
    /// when the node reports it (see `write_attempt`).
    pub async fn schedule(self: &Arc<Self>, account_url: &str) -> Result<usize, Error> {
        if self.awaiting_nodes() {
            return Ok(0);
        }
        let pools: Vec<String> = {
            let nodes = lock(&self.nodes);
            let mut p: Vec<String> = nodes
                .values()
                // (A full queue still gets a look: a higher-priority job
                // may take its place, see `yield_queues`.)
                .filter(|n| n.schedulable() && (n.free() > 0 || n.queue_room() > 0 || !n.queued.is_empty()))
                .map(|n| n.pool_id.clone())
                .collect();
            p.sort();
            p.dedup();
            p
        };
        let mut started = 0;
        for pool in pools {
            let policy = lock(&self.nodes).values().find(|n| n.pool_id == pool).map(|n| n.fill).unwrap_or(placement::Fill::Spread);
            // The slots free when the round starts are shared out in
            // priority order; slots that free up during the round wait for
            // the next one (which follows at once), so a lower-priority job
            // never takes a slot a higher-priority job was not offered.
            let (mut budget, mut queue_budget): (usize, usize) = lock(&self.nodes)
                .values()
                .filter(|n| n.pool_id == pool && n.schedulable())
                .fold((0, 0), |(f, q), n| (f + n.free() as usize, q + n.queue_room() as usize));
            let jobs = self.jobs_of(&pool).await?;
            for job in jobs.iter() {
                if let Some(feature) = execution::unsupported_job_feature(job) {
                    self.flag_unsupported_job(job, feature).await;
                    continue;
                }
                let (free, job_running) = {
                    let nodes = lock(&self.nodes);
                    let pool_nodes = nodes.values().filter(|n| n.pool_id == pool);
                    let (free, room) = pool_nodes
                        .clone()
                        .filter(|n| n.schedulable())
                        .fold((0usize, 0usize), |(f, q), n| (f + n.free() as usize, q + n.queue_room() as usize));
                    let running = pool_nodes
                        .flat_map(|n| n.running.values().chain(n.queued.iter().map(|(_, s)| s)))
                        .filter(|s| s.job_id == job.id)
                        .count();
                    (free.min(budget) + room.min(queue_budget), running)
                };
                if free == 0 {
                    let capped = usize::try_from(job.max_parallel_tasks).is_ok_and(|cap| job_running >= cap);
                    if !capped {
                        self.yield_queues(&pool, job, &jobs).await?;
                    }
                    break;
                }
                // `maxParallelTasks` caps the job's tasks running at once (-1: no cap).
                let want = match usize::try_from(job.max_parallel_tasks) {
                    Ok(cap) => free.min(cap.saturating_sub(job_running)),
                    Err(_) => free,
                };
                if want == 0 {
                    continue;
                }
                let manager = job.job_manager_task.as_ref().and_then(|m| m.id.as_deref());
                // Tasks that need more slots than any node of the pool has
                // wait (as in the service) without holding up the others.
                let max_slots = lock(&self.nodes).values().filter(|n| n.pool_id == pool).map(|n| n.slots).max().unwrap_or(1);
                let tasks = self.take_ready(&job.id, manager, want, max_slots).await?;
                // Nodes that ran the job's preparation task (when it has one).
                let prepared = if tasks.is_empty() { None } else { self.prepare_nodes(job, &pool, account_url) };
                let mut unplaced: Vec<CloudTask> = Vec::new();
                let (mut placed_slots, mut queued_slots) = (0usize, 0usize);
                let mut batch: Vec<(String, String, AssignFn)> = Vec::new();
                let mut sent: Vec<(String, u64, (String, String))> = Vec::new();
                let mut launches: Vec<(String, TaskLaunch)> = Vec::new();
                for task in tasks {
                    let key = (store::key_of(&job.id), store::key_of(&task.id));
                    if lock(&self.inflight).contains(&key) {
                        continue;
                    }
                    // A job manager that runs exclusively takes a whole node.
                    let exclusive = execution::manager_of(job, &task.id).is_some_and(|m| m.run_exclusive != Some(false));
                    let slots = if exclusive {
                        lock(&self.nodes).values().filter(|n| n.pool_id == pool).map(|n| n.slots).max().unwrap_or(1)
                    } else {
                        task.required_slots.max(1) as u32
                    };
                    let attempt = self.next_attempt.fetch_add(1, Ordering::Relaxed);
                    // A node's affinityId is `TVM:{node id}` (see `node_info`).
                    let affinity = task.affinity_info.as_ref().map(|a| a.affinity_id.strip_prefix("TVM:").unwrap_or(&a.affinity_id));
                    let multi = task.multi_instance_settings.is_some();
                    let mut instance_launches = Vec::new();
                    let mut queued = false;
                    let placed = if multi {
                        self.place_multi(account_url, job, &task, &pool, policy, prepared.as_ref(), affinity, attempt).map(
                            |(primary, ls)| {
                                instance_launches = ls;
                                primary
                            },
                        )
                    } else {
                        let mut nodes = lock(&self.nodes);
                        let candidates: Vec<placement::Candidate> = nodes
                            .values()
                            .filter(|n| n.pool_id == pool && n.schedulable())
                            .filter(|n| prepared.as_ref().is_none_or(|p| p.contains(&n.id)))
                            .map(|n| placement::Candidate { id: n.id.clone(), free: n.free(), used: n.used() })
                            .collect();
                        let slot = Slot { job_id: job.id.clone(), task_id: task.id.clone(), slots };
                        match placement::place(&candidates, slots, policy, affinity).and_then(|id| nodes.get_mut(&id)) {
                            Some(n) => {
                                n.running.insert(attempt, slot);
                                n.refresh_busy_state();
                                Some((n.id.clone(), n.root_dir.clone(), n.is_dedicated))
                            }
                            // Every slot is taken: the queue of a node it fits on.
                            None if !exclusive && queued_slots < queue_budget => {
                                let candidates: Vec<placement::Candidate> = nodes
                                    .values()
                                    .filter(|n| n.pool_id == pool && n.schedulable() && n.slots >= slots)
                                    .filter(|n| prepared.as_ref().is_none_or(|p| p.contains(&n.id)))
                                    .map(|n| placement::Candidate {
                                        id: n.id.clone(),
                                        free: n.queue_room(),
                                        used: n.used() + n.queued_slots(),
                                    })
                                    .collect();
                                placement::place(&candidates, slots, policy, affinity).and_then(|id| nodes.get_mut(&id)).map(|n| {
                                    n.queued.push((attempt, slot));
                                    queued = true;
                                    (n.id.clone(), n.root_dir.clone(), n.is_dedicated)
                                })
                            }
                            None => None,
                        }
                    };
                    let Some((node_id, root_dir, dedicated)) = placed else {
                        unplaced.push(task);
                        continue;
                    };
                    if multi {
                        placed_slots += instance_launches.len();
                        launches.append(&mut instance_launches);
                    } else {
                        if queued {
                            queued_slots += slots as usize;
                        } else {
                            placed_slots += slots as usize;
                        }
                        let pool_packages = lock(&self.nodes).get(&node_id).map(|n| n.pool_packages.clone()).unwrap_or_default();
                        let mut launch = build_launch(
                            &self.config,
                            account_url,
                            job,
                            &task,
                            &pool_packages,
                            &pool,
                            &node_id,
                            &root_dir,
                            dedicated,
                            attempt,
                        );
                        launch.slots = slots;
                        launch.adoptable = true;
                        launches.push((node_id.clone(), launch));
                    }
                    lock(&self.inflight).insert(key.clone());
                    let change = assign(attempt, node_id.clone(), node_info(account_url, &pool, &node_id, &job.id, &task.id));
                    if queued {
                        lock(&self.unwritten).insert(attempt, Unwritten { key, node: node_id.clone(), assign: change });
                        // Taken back between its placement and now (e.g. the
                        // node disconnected)? Then it is not sent at all.
                        let still = lock(&self.nodes).get(&node_id).is_some_and(|n| n.queued.iter().any(|(a, _)| *a == attempt));
                        if !still {
                            self.abandon(attempt);
                            launches.retain(|(_, l)| l.attempt != attempt);
                        }
                    } else {
                        batch.push((job.id.clone(), task.id.clone(), change));
                        sent.push((node_id, attempt, key));
                    }
                    started += 1;
                }
                budget = budget.saturating_sub(placed_slots);
                queue_budget = queue_budget.saturating_sub(queued_slots);
                if !unplaced.is_empty() {
                    if let Some(r) = lock(&self.ready).get_mut(&store::key_of(&job.id)) {
                        for t in unplaced.into_iter().rev() {
                            r.tasks.push_front(t);
                        }
                    }
                }
                if batch.is_empty() {
                    for (node_id, launch) in launches {
                        self.send(&node_id, ToAgent::Start(Box::new(launch)));
                    }
                    continue;
                }
                let done = self.store.update_tasks(batch, store::Durability::Relaxed);
                for (node_id, launch) in launches {
                    self.send(&node_id, ToAgent::Start(Box::new(launch)));
                }
                let me = self.clone();
                tokio::spawn(async move {
                    let results = done.await;
                    let mut stale = false;
                    for (i, (node_id, attempt, key)) in sent.into_iter().enumerate() {
                        {
                            let mut inflight = lock(&me.inflight);
                            inflight.remove(&key);
                            stale |= lock(&me.readied_inflight).remove(&key);
                        }
                        let ok = matches!(&results, Ok(r) if r.get(i).is_some_and(|x| x.is_ok()));
                        if !ok {
                            // The task changed meanwhile (terminated, deleted, job ended): stop the attempt.
                            me.kill(&node_id, attempt);
                        }
                    }
                    if stale {
                        me.store.bump_tasks();
                    }
                    me.wake.notify_one();
                });
            }
            self.rebalance(&pool);
        }
        Ok(started)
    }

    // ---- local nodes ---------------------------------------------------------

    /// Starts or stops local agent processes so each pool has its target
    /// number of nodes. Pools being deleted lose all their nodes.
    pub async fn reconcile_local(&self) -> Result<(), Error> {
        self.restart_crashed_agents();
        let pools = self.store.pool_summaries().await?;
        let mut wanted: HashMap<String, usize> = HashMap::new();
        for p in &pools {
            let id = p.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let deleting = p.get("state").and_then(Value::as_str) == Some("deleting");
            let target = if deleting {
                0
            } else {
                (p.get("targetDedicatedNodes").and_then(Value::as_u64).unwrap_or(0)
                    + p.get("targetLowPriorityNodes").and_then(Value::as_u64).unwrap_or(0)) as usize
            };
            wanted.insert(id, target);
        }
        // Nodes of pools that no longer exist go too.
        let pools_of_nodes: Vec<String> = lock(&self.nodes).values().map(|n| n.pool_id.clone()).collect();
        for p in pools_of_nodes {
            wanted.entry(p).or_insert(0);
        }
        for p in &pools {
            if p.get("state").and_then(Value::as_str) == Some("deleting") {
                let id = p.get("id").and_then(Value::as_str).unwrap_or_default();
                let has_nodes = lock(&self.nodes).values().any(|n| n.pool_id == id);
                if !has_nodes {
                    self.store.remove_pool(id).await?;
                }
            }
        }
        for (pool, target) in wanted {
            let children: std::collections::HashSet<String> = lock(&self.children).keys().cloned().collect();
            let deleting = pools.iter().any(|p| {
                p.get("id").and_then(Value::as_str) == Some(pool.as_str()) && p.get("state").and_then(Value::as_str) == Some("deleting")
            }) || !pools.iter().any(|p| p.get("id").and_then(Value::as_str) == Some(pool.as_str()));
            // Nodes from other machines are the operator's: they count toward
            // the target, and leave only when the pool is deleted.
            let remote: Vec<String> = lock(&self.nodes)
                .values()
                .filter(|n| n.pool_id == pool && !children.contains(&n.id) && n.state != "leavingpool")
                .map(|n| n.id.clone())
                .collect();
            if deleting {
                for id in &remote {
                    self.remove_node(id, true).await;
                }
            }
            let target = target.saturating_sub(if deleting { 0 } else { remote.len() });
            let mut have: Vec<(String, bool, u32)> = lock(&self.nodes)
                .values()
                .filter(|n| n.pool_id == pool && children.contains(&n.id) && n.state != "leavingpool" && n.drain != Some(Drain::Leave))
                .map(|n| (n.id.clone(), n.running.is_empty(), n.used()))
                .collect();
            // Children started but not yet joined count as nodes.
            let pending = {
                let nodes = lock(&self.nodes);
                children.iter().filter(|id| !nodes.contains_key(*id) && self.child_pool(id).as_deref() == Some(pool.as_str())).count()
            };
            let count = have.len() + pending;
            if count < target {
                for _ in count..target {
                    self.spawn_local(&pool)?;
                }
            } else if count > target {
                // Remove idle nodes first.
                have.sort_by_key(|(id, idle, used)| (!*idle, *used, id.clone()));
                for (id, _, _) in have.into_iter().take(count - target) {
                    self.remove_node(&id, true).await;
                }
            }
        }
        Ok(())
    }

    /// A local agent process that died is a node that crashed: start it
    /// again on the same root, as a node comes back after a reboot. Its lost
    /// attempts are requeued when it rejoins (or when it is declared lost).
    fn restart_crashed_agents(&self) {
        let crashed: Vec<String> = lock(&self.children)
            .iter_mut()
            .filter_map(|(id, child)| {
                let gone = match child {
                    LocalAgent::Child(c) => matches!(c.try_wait(), Ok(Some(_))),
                    LocalAgent::Adopted => !agent_alive(&self.config.nodes_dir.join(id.as_str())),
                };
                gone.then(|| id.clone())
            })
            .collect();
        for id in crashed {
            lock(&self.children).remove(&id);
            let leaving = lock(&self.nodes).get(&id).is_none_or(|n| n.state == "leavingpool");
            let Some(pool) = self.child_pool(&id) else { continue };
            if leaving && lock(&self.nodes).contains_key(&id) {
                continue;
            }
            tracing::warn!(node = %id, "a local node agent exited; restarting it");
            if let Err(e) = self.spawn_agent(&pool, &id) {
                tracing::error!(node = %id, error = %e, "cannot restart a local node agent");
            }
        }
    }

    fn child_pool(&self, node_id: &str) -> Option<String> {
        std::fs::read_to_string(self.config.nodes_dir.join(node_id).join("volatile").join("pool-id")).ok()
    }

    fn spawn_local(&self, pool: &str) -> Result<(), Error> {
        if self.config.agent_program.is_none() {
            return Err(Error::internal("local nodes are not available: the agent program is unknown"));
        }
        if lock(&self.config.server_url).is_none() {
            return Ok(());
        }
        let id = new_node_id();
        let volatile = self.config.nodes_dir.join(&id).join("volatile");
        // Private until the agent opens the root to its node's tasks.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&volatile)
            .map_err(Error::internal)?;
        std::fs::write(volatile.join("node-id"), &id).map_err(Error::internal)?;
        std::fs::write(volatile.join("pool-id"), pool).map_err(Error::internal)?;
        self.spawn_agent(pool, &id)
    }

    /// Starts the agent process of a local node whose root already exists.
    fn spawn_agent(&self, pool: &str, id: &str) -> Result<(), Error> {
        let (Some(program), Some(server)) = (self.config.agent_program.clone(), lock(&self.config.server_url).clone()) else {
            return Ok(());
        };
        let root = self.config.nodes_dir.join(id);
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg("agent")
            .arg("--server")
            .arg(&server)
            .arg("--pool")
            .arg(pool)
            .arg("--root")
            .arg(&root)
            .arg("--give-up-after")
            .arg(LOCAL_AGENT_GIVE_UP.as_secs().to_string())
            // The token goes by environment, never argv: /proc/<pid>/environ
            // is readable by the agent's own user only, and tasks run as another.
            .env("OPENBATCH_AGENT_TOKEN", &self.config.agent_token)
            .env_remove("OPENBATCH_AGENT_TOKEN_FILE")
            .envs(self.config.file_roots.iter().map(|r| ("OPENBATCH_FILE_ROOTS", r)))
            .envs(lock(&self.config.agent_env).clone())
            .stdin(std::process::Stdio::null());
        // A session of its own: the agent outlives a server that is killed
        // (its tasks run on, and the restarted server adopts it), and a
        // terminal's Ctrl-C reaches the server only, which stops its nodes
        // in order (`stop_local_nodes`).
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| Error::internal(format!("cannot start a local agent: {e}")))?;
        tracing::info!(pool = %pool, node = %id, "started a local node");
        lock(&self.children).insert(id.to_string(), LocalAgent::Child(child));
        Ok(())
    }

    /// Removes a node from its pool: its tasks are requeued (when `requeue`)
    /// and its agent told to shut down.
    pub async fn remove_node(&self, node_id: &str, requeue: bool) {
        let running = {
            let mut nodes = lock(&self.nodes);
            match nodes.get_mut(node_id) {
                Some(n) => {
                    n.set_state("leavingpool");
                    n.scheduling_enabled = false;
                    let queued = n.queued.drain(..);
                    n.running.drain().chain(queued).collect::<Vec<_>>()
                }
                None => Vec::new(),
            }
        };
        for (a, s) in running {
            if requeue {
                self.requeue_attempt(&s.job_id, &s.task_id, a).await;
            } else {
                self.abandon(a);
            }
        }
        self.send(node_id, ToAgent::Shutdown);
        lock(&self.nodes).remove(node_id);
        let child = lock(&self.children).remove(node_id);
        let root = self.config.nodes_dir.join(node_id);
        match child {
            Some(LocalAgent::Child(mut child)) => {
                tokio::spawn(async move {
                    if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                        let _ = child.kill().await;
                    }
                    let _ = std::fs::remove_dir_all(root);
                });
            }
            Some(LocalAgent::Adopted) => {
                tokio::spawn(async move {
                    stop_agent_at(&root).await;
                    let _ = std::fs::remove_dir_all(root);
                });
            }
            None => {
                let _ = std::fs::remove_dir_all(root);
            }
        }
        self.wake.notify_one();
    }

    /// The server is stopping: its local nodes stop too (their running
    /// attempts end and are requeued at the next start).
    pub async fn stop_local_nodes(&self) {
        let children: Vec<(String, LocalAgent)> = lock(&self.children).drain().collect();
        let mut waits = Vec::new();
        for (id, child) in children {
            self.send(&id, ToAgent::Shutdown);
            let root = self.config.nodes_dir.join(&id);
            waits.push(async move {
                match child {
                    LocalAgent::Child(mut c) => {
                        if tokio::time::timeout(Duration::from_secs(5), c.wait()).await.is_err() {
                            let _ = c.kill().await;
                        }
                    }
                    LocalAgent::Adopted => stop_agent_at(&root).await,
                }
            });
        }
        futures_util::future::join_all(waits).await;
    }
}

/// How long a local agent keeps its tasks running without its server.
const LOCAL_AGENT_GIVE_UP: Duration = Duration::from_secs(600);

/// A local node's agent process: started by this server, or by an earlier
/// one and adopted (see `adopt_local_nodes`).
enum LocalAgent {
    Child(tokio::process::Child),
    Adopted,
}

/// Whether an agent runs on the node root `root`: it holds the root's lock
/// for as long as it lives (see `agent::run`).
fn agent_alive(root: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(root.join("volatile").join("agent.lock")) else { return false };
    // SAFETY: flock on a descriptor we own; released when `f` closes.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// Stops the agent running on `root` that this server did not start:
/// SIGTERM (it stops its attempts and exits), SIGKILL after 5 s.
async fn stop_agent_at(root: &std::path::Path) {
    let pid: Option<i32> = std::fs::read_to_string(root.join("volatile").join("agent.pid")).ok().and_then(|s| s.trim().parse().ok());
    let Some(pid) = pid.filter(|p| *p > 1) else { return };
    // SAFETY: plain kill(2); the pid is the lock holder's (checked below).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..250 {
        if !agent_alive(root) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if agent_alive(root) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// A change that assigns a task to a node.
type AssignFn = Box<dyn FnOnce(&CloudJob, &mut CloudTask, Timestamp) -> Result<(), Error> + Send>;

/// The change that gives an `active` task of an active job to `attempt` on
/// `node` (`preparing`): a scheduling round's, or an adoption's.
fn assign(attempt: u64, node: String, info: ComputeNodeInformation) -> AssignFn {
    Box::new(move |j: &CloudJob, t: &mut CloudTask, now: Timestamp| {
        if t.state != TaskState::Active || j.state != JobState::Active {
            return Err(Error::new(ErrorCode::OperationInvalidForCurrentState));
        }
        t.attempt = Some(attempt);
        t.node = Some(node);
        t.node_info = Some(info);
        execution::transition(t, TaskState::Preparing, now);
        Ok(())
    })
}

/// The assignment of a queued attempt, not yet written.
struct Unwritten {
    /// The task's key in `inflight`.
    key: (String, String),
    node: String,
    assign: AssignFn,
}

pub(crate) fn node_info(account_url: &str, pool: &str, node: &str, job: &str, task: &str) -> ComputeNodeInformation {
    let task_dir = format!("{}/{task}", wire::workflow::job_dir(job));
    ComputeNodeInformation {
        affinity_id: Some(format!("TVM:{node}")),
        node_url: Some(format!("{account_url}/pools/{}/nodes/{}", encode_segment(pool), encode_segment(node))),
        pool_id: Some(pool.to_string()),
        node_id: Some(node.to_string()),
        task_root_directory_url: Some(format!(
            "{account_url}/pools/{}/nodes/{}/files/{}",
            encode_segment(pool),
            encode_segment(node),
            task_dir
        )),
        task_root_directory: Some(task_dir),
    }
}

/// Everything the agent needs to run an attempt: command line, directory and
/// the environment — Batch's variables, then the job's common settings, then
/// the task's own.
#[allow(clippy::too_many_arguments)]
pub fn build_launch(
    cfg: &ClusterConfig,
    account_url: &str,
    job: &CloudJob,
    t: &CloudTask,
    pool_packages: &[wire::models::ApplicationPackageReference],
    pool: &str,
    node: &str,
    root_dir: &str,
    dedicated: bool,
    attempt: u64,
) -> TaskLaunch {
    let task_dir = format!("{}/{}", wire::workflow::job_dir(&job.id), t.id);
    let mut l = launch_for(
        &cfg.account,
        account_url,
        job,
        &t.id,
        &t.command_line,
        t.environment_settings.as_deref().unwrap_or_default(),
        Some(&t.user_identity),
        t.constraints.max_wall_clock_time,
        task_dir,
        pool,
        node,
        root_dir,
        dedicated,
        attempt,
    );
    l.env.extend(crate::jobprep::prep_env(job, root_dir));
    l.slots = t.required_slots.max(1) as u32;
    l.priority = job.priority;
    if t.authentication_token_settings.as_ref().and_then(|a| a.access.as_ref()).is_some_and(|v| !v.is_empty()) {
        l.env.insert("AZ_BATCH_AUTHENTICATION_TOKEN".into(), crate::tokens::issue(&cfg.token_key, &job.id, chrono::Utc::now().timestamp()));
    }
    let refs: Vec<_> = pool_packages.iter().chain(t.application_package_references.iter().flatten()).cloned().collect();
    if !refs.is_empty() {
        match crate::applications::resolve(&cfg.applications_dir, &refs) {
            Ok(packages) => {
                for p in &packages {
                    for name in &p.env_names {
                        l.env.insert(name.clone(), format!("{root_dir}/applications/{}", p.dir));
                    }
                }
                l.packages = packages;
            }
            Err(message) => l.package_error = Some(message),
        }
    }
    l.container = t.container_settings.as_ref().map(|c| crate::data::container_spec(c, job, &t.id));
    l.resource_files = crate::data::resource_specs(t.resource_files.as_deref().unwrap_or_default(), cfg.auto_storage.as_ref());
    l.output_files = crate::data::output_specs(t.output_files.as_deref().unwrap_or_default());
    l
}

/// What an agent needs to run one process of a job (a task, or the job's
/// preparation or release task) in `task_dir`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch_for(
    account: &str,
    account_url: &str,
    job: &CloudJob,
    task_id: &str,
    command_line: &str,
    env_settings: &[wire::models::EnvironmentSetting],
    identity: Option<&wire::models::UserIdentity>,
    max_wall_clock: Option<wire::time::Duration>,
    task_dir: String,
    pool: &str,
    node: &str,
    root_dir: &str,
    dedicated: bool,
    attempt: u64,
) -> TaskLaunch {
    let mut env = node_env(account, account_url, pool, node, dedicated, root_dir, &task_dir);
    env.insert("AZ_BATCH_JOB_ID".to_string(), job.id.clone());
    env.insert("AZ_BATCH_TASK_ID".to_string(), task_id.to_string());
    for e in job.common_environment_settings.iter().flatten().chain(env_settings.iter()) {
        env.insert(e.name.clone(), e.value.clone().unwrap_or_default());
    }
    let elevated = identity
        .and_then(|u| u.auto_user.as_ref())
        .and_then(|a| a.elevation_level)
        .is_some_and(|l| l == wire::enums::ElevationLevel::Admin);
    TaskLaunch {
        attempt,
        job_id: job.id.clone(),
        task_id: task_id.to_string(),
        task_dir,
        command_line: command_line.to_string(),
        env,
        max_wall_clock_ms: max_wall_clock.filter(|d| !d.is_infinite()).map(|d| d.to_std().as_millis().min(u64::MAX as u128) as u64),
        elevated,
        user_name: identity.and_then(|u| u.username.clone()),
        is_start_task: false,
        ..Default::default()
    }
}

fn start_task_launch(cfg: &ClusterConfig, account_url: &str, pool: &str, n: &Node, spec: &Value, attempt: u64) -> TaskLaunch {
    let (account, auto) = (&cfg.account, &cfg.auto_storage);
    let mut env = node_env(account, account_url, pool, &n.id, n.is_dedicated, &n.root_dir, "startup");
    for e in spec.get("environmentSettings").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = e.get("name").and_then(Value::as_str) {
            env.insert(name.to_string(), e.get("value").and_then(Value::as_str).unwrap_or_default().to_string());
        }
    }
    let identity = spec.get("userIdentity");
    let elevated = identity
        .and_then(|u| u.get("autoUser"))
        .and_then(|a| a.get("elevationLevel"))
        .and_then(Value::as_str)
        .is_some_and(|l| l.eq_ignore_ascii_case("admin"));
    let resource_files: Vec<wire::models::ResourceFile> =
        spec.get("resourceFiles").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    TaskLaunch {
        attempt,
        task_dir: "startup".into(),
        command_line: spec.get("commandLine").and_then(Value::as_str).unwrap_or_default().to_string(),
        env,
        elevated,
        user_name: identity.and_then(|u| u.get("username")).and_then(Value::as_str).map(str::to_string),
        is_start_task: true,
        resource_files: crate::data::resource_specs(&resource_files, auto.as_ref()),
        ..Default::default()
    }
}

/// The variables every process on a node gets: account, pool, node and
/// the node's directories for a process running in `task_dir`.
fn node_env(
    account: &str,
    account_url: &str,
    pool: &str,
    node: &str,
    dedicated: bool,
    root: &str,
    task_dir: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("AZ_BATCH_ACCOUNT_NAME".to_string(), account.to_string());
    env.insert("AZ_BATCH_ACCOUNT_URL".to_string(), format!("{account_url}/"));
    env.insert("AZ_BATCH_POOL_ID".to_string(), pool.to_string());
    env.insert("AZ_BATCH_NODE_ID".to_string(), node.to_string());
    env.insert("AZ_BATCH_NODE_IS_DEDICATED".to_string(), dedicated.to_string());
    env.insert("AZ_BATCH_NODE_ROOT_DIR".to_string(), root.to_string());
    env.extend(node_dirs(root, task_dir));
    env
}

/// The per-node directory variables of a task.
fn node_dirs(root: &str, task_dir: &str) -> Vec<(String, String)> {
    vec![
        ("AZ_BATCH_NODE_SHARED_DIR".into(), format!("{root}/shared")),
        ("AZ_BATCH_NODE_STARTUP_DIR".into(), format!("{root}/startup")),
        ("AZ_BATCH_NODE_MOUNTS_DIR".into(), format!("{root}/fsmounts")),
        ("AZ_BATCH_TASK_DIR".into(), format!("{root}/{task_dir}")),
        ("AZ_BATCH_TASK_WORKING_DIR".into(), format!("{root}/{task_dir}/wd")),
    ]
}

/// Background loops: scheduling on every wake-up, local node reconciliation,
/// and liveness checks.
pub fn start(cluster: Arc<Cluster>, account_url: Arc<Mutex<Option<String>>>) {
    if let Some(rx) = lock(&cluster.started_rx).take() {
        tokio::spawn(cluster.clone().debounce_started(rx));
    }
    let c = cluster.clone();
    let url = account_url.clone();
    tokio::spawn(async move {
        if let Err(e) = c.expect_nodes().await {
            tracing::warn!(error = %e, "cannot read which nodes ran tasks before the restart");
        }
        loop {
            let base = lock(&url).clone().unwrap_or_default();
            match c.schedule(&base).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduling round failed"),
            }
            // Woken by free slots and new tasks (`wake`) and by commits that
            // made tasks ready (dependencies met, retries, requeues).
            tokio::select! {
                _ = c.wake.notified() => {}
                _ = c.store.ready.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    let c = cluster.clone();
    tokio::spawn(async move {
        if let Err(e) = c.adopt_local_nodes().await {
            tracing::warn!(error = %e, "restarting the local nodes failed");
        }
        loop {
            if let Err(e) = c.reconcile_local().await {
                tracing::warn!(error = %e, "node reconciliation failed");
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), c.reconcile.notified()).await;
        }
    });
    let c = cluster.clone();
    tokio::spawn(async move {
        tokio::time::sleep(NODE_LOST_AFTER).await;
        if let Err(e) = c.requeue_orphans().await {
            tracing::warn!(error = %e, "requeueing the tasks of lost nodes failed");
        }
    });
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            cluster.check_liveness().await;
            if let Err(e) = cluster.clean_expired().await {
                tracing::warn!(error = %e, "cleaning expired task directories failed");
            }
        }
    });
}

/// Applies an attempt's outcome, then acknowledges it to the agent, which
/// keeps it until then (unless the store failed: the agent sends it again
/// when it next connects).
fn report_finished(cluster: &Arc<Cluster>, node_id: &str, o: TaskOutcome, base: String) {
    let c = cluster.clone();
    let n = node_id.to_string();
    tokio::spawn(async move {
        let attempt = o.attempt;
        let (changed, settled) = c.finished(&n, o, base).await;
        if let Some((job, _)) = changed {
            c.lifecycle.job_changed(&job);
        }
        if settled {
            c.send(&n, ToAgent::Ack { attempts: vec![attempt] });
        }
    });
}

/// Handles one agent WebSocket connection until it closes.
pub async fn serve_agent(cluster: Arc<Cluster>, socket: axum::extract::ws::WebSocket, account_url: Arc<Mutex<Option<String>>>) {
    use axum::extract::ws::Message;
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let hello = match stream.next().await {
        Some(Ok(Message::Text(t))) => match serde_json::from_str::<ToServer>(t.as_str()) {
            Ok(ToServer::Hello(h)) => h,
            _ => return,
        },
        _ => return,
    };
    if hello.version != proto::VERSION {
        tracing::warn!(version = hello.version, "refusing an agent that speaks another protocol version");
        // Told in the close frame, so the agent's log says why.
        let reason =
            format!("agent protocol version {} is not the server's ({}): run matching openbatch versions", hello.version, proto::VERSION);
        let frame = axum::extract::ws::CloseFrame { code: 1008, reason: reason.into() };
        let _ = sink.send(Message::Close(Some(frame))).await;
        return;
    }
    let pool = match cluster.store.get_pool(&hello.pool_id).await {
        Ok(s) => serde_json::from_str::<Map<String, Value>>(&s.doc).unwrap_or_default(),
        Err(_) => {
            tracing::warn!(pool = %hello.pool_id, "an agent asked to join a pool that does not exist");
            return;
        }
    };
    if pool.get("state").and_then(Value::as_str) == Some("deleting") {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<ToAgent>();
    let base = lock(&account_url).clone().unwrap_or_default();
    let node_id = match cluster.join(&hello, &pool, tx.clone(), &base).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "agent join failed");
            return;
        }
    };
    let pool_id = pool.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    let users = pool
        .get("userAccounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|u| {
            Some(proto::UserAccount {
                name: u.get("name")?.as_str()?.to_string(),
                admin: u.get("elevationLevel").and_then(Value::as_str).is_some_and(|l| l.eq_ignore_ascii_case("admin")),
                uid: u.get("linuxUserConfiguration").and_then(|l| l.get("uid")).and_then(Value::as_u64).map(|v| v as u32),
                gid: u.get("linuxUserConfiguration").and_then(|l| l.get("gid")).and_then(Value::as_u64).map(|v| v as u32),
            })
        })
        .collect();
    let containers = pool.get("virtualMachineConfiguration").and_then(|v| v.get("containerConfiguration"));
    let container_images = containers
        .and_then(|c| c.get("containerImageNames"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str().map(str::to_string))
        .collect();
    let container_registries = containers
        .and_then(|c| c.get("containerRegistries"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(proto::RegistryLogin {
                server: r.get("registryServer").and_then(Value::as_str).unwrap_or_default().to_string(),
                username: r.get("username").and_then(Value::as_str)?.to_string(),
                password: r.get("password").and_then(Value::as_str).unwrap_or_default().to_string(),
            })
        })
        .collect();
    let _ = tx.send(ToAgent::Welcome {
        node_id: node_id.clone(),
        pool_id,
        heartbeat_ms: HEARTBEAT.as_millis() as u64,
        users,
        container_images,
        container_registries,
        task_slots: lock(&cluster.nodes).get(&node_id).map(|n| n.slots).unwrap_or(1),
    });
    // Whatever has queued up by the time the writer runs goes in one frame.
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 256).await > 0 {
            let text = proto::encode_frame(&batch);
            batch.clear();
            let Ok(text) = text else { continue };
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    // Outcomes the agent still holds from before (the server may not have
    // committed them): applied now, each acknowledged once settled.
    for f in hello.finished {
        report_finished(&cluster, &node_id, f.outcome, lock(&account_url).clone().unwrap_or_default());
    }
    while let Some(msg) = stream.next().await {
        // A node declared lost (e.g. its agent was stopped for a while) is
        // sent away: it rejoins with a new connection, and its stale
        // attempts are killed as after any reconnect.
        if cluster.superseded(&node_id, &tx) {
            tracing::warn!(node = %node_id, "a node that was declared lost is back; asking it to rejoin");
            break;
        }
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        cluster.heartbeat(&node_id);
        let msgs = match proto::decode_frame::<ToServer>(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, node = %node_id, "unreadable agent message");
                continue;
            }
        };
        for msg in msgs {
            match msg {
                ToServer::Preparing { attempt } => cluster.preparing(&node_id, attempt),
                ToServer::Started { attempt } => {
                    // In order with the frame's other reports: a queued
                    // attempt holds its slots before anything else is placed.
                    cluster.promote(&node_id, attempt);
                    cluster.started(&node_id, attempt);
                }
                ToServer::Finished(o) => report_finished(&cluster, &node_id, *o, lock(&account_url).clone().unwrap_or_default()),
                ToServer::FileReply(r) => cluster.file_reply(r),
                ToServer::Heartbeat | ToServer::Hello(_) => {}
            }
        }
    }
    writer.abort();
    cluster.disconnected(&node_id, &tx);
}
