//! A compute node as the control plane knows it while its agent is connected.

use crate::config::QUEUE_PER_SLOT;
use crate::scheduler::placement;
use proto::ToAgent;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;
use tokio::sync::mpsc;
use wire::enums::ComputeNodeState;
use wire::time::Timestamp;

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
    /// The node's state as the API shows it.
    pub state: ComputeNodeState,
    pub scheduling_enabled: bool,
    pub slots: u32,
    pub running: HashMap<u64, Slot>,
    /// Attempts handed to the busy node ahead of a free slot (its queue, at
    /// most `QUEUE_PER_SLOT` × `slots` deep), in order: the agent starts each the moment a slot
    /// frees, and reports `Started`, which moves it to `running`. Their
    /// assignment is written then (see `Sched::unwritten`): until the node
    /// takes them, the tasks are `active`.
    pub queued: Vec<(u64, Slot)>,
    pub tx: Option<mpsc::UnboundedSender<ToAgent>>,
    pub ip: String,
    /// The port of the node's SSH server (remote login settings).
    pub ssh_port: u16,
    pub root_dir: String,
    pub agent_version: String,
    pub state_transition_time: Timestamp,
    pub allocation_time: Timestamp,
    pub last_boot_time: Timestamp,
    pub last_seen: Instant,
    pub total_run: u64,
    pub total_succeeded: u64,
    pub recent: VecDeque<Value>,
    /// Dedicated, or low-priority (spot): decided when the node first
    /// joins (see `Cluster::join`); only a low-priority node can be
    /// preempted.
    pub is_dedicated: bool,
    /// A preempted node (state `preempted`) comes back by itself at this
    /// instant (`recoverAfter` of the preemption); `None`: when an
    /// operator recovers it.
    pub recover_at: Option<Instant>,
    /// The agent process's boot id; a new one means the node rebooted.
    pub boot_id: String,
    /// The pool's `nodeFillType` (fixed when the pool is created).
    pub fill: placement::Fill,
    /// The pool's `jobDefaultOrder` is `creationtime` (else `none`).
    pub jobs_by_creation: bool,
    /// The start task's current attempt, and what the API shows of it.
    pub start_attempt: Option<u64>,
    pub start_retries: i32,
    pub start_task_info: Option<Map<String, Value>>,
    /// Waiting for its running tasks to finish before it restarts or leaves
    /// (`taskcompletion` / `retaineddata`); takes no new tasks meanwhile.
    pub drain: Option<Drain>,
    /// Leaving with `retaineddata`: the drain ends only once no task that
    /// ran here still has its files retained (see `retained_until`).
    pub leave_after_retention: bool,
    /// The latest end of retention (`cleanup_at`) of the tasks that
    /// completed on this node.
    pub retained_until: Option<Timestamp>,
    /// Job preparation (and release) runs on this node, by job key.
    pub preps: HashMap<String, super::prep::PrepRun>,
    /// The pool's `applicationPackageReferences`: every task on the node gets them.
    pub pool_packages: Vec<wire::models::ApplicationPackageReference>,
    /// What the node's agent last measured of it (with its last heartbeat).
    pub usage: Option<proto::NodeUsage>,
    /// Its load between its last two measurements (see [`NodeLoad`]).
    pub load: NodeLoad,
    /// The machine's CPU cores, as its agent reported them.
    pub cores: u32,
    /// Until when the node's core-time is in the pool usage (`usage::record_usage`).
    pub usage_recorded: chrono::DateTime<chrono::Utc>,
    /// The thumbprints (lower-case) of the certificates the node was given
    /// when it joined: a certificate installed on a node cannot be deleted.
    pub certificates: Vec<String>,
}

/// A node's load as people read it: CPU busy share between the agent's last
/// two measurements, and memory in use at the last one. `None` until the
/// agent has said (CPU needs two measurements).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeLoad {
    /// 0 to 100.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
}

impl NodeLoad {
    /// The load from the measurement before (`before`, if any) to `now`.
    pub fn between(before: Option<&proto::NodeUsage>, now: &proto::NodeUsage) -> NodeLoad {
        let cpu = before.and_then(|b| {
            let busy = now.cpu_busy?.checked_sub(b.cpu_busy?)?;
            let total = now.cpu_total?.checked_sub(b.cpu_total?)?;
            (total > 0).then(|| (busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0))
        });
        NodeLoad { cpu_percent: cpu, memory_bytes: now.memory_bytes }
    }
}

/// What a draining node does once its running tasks have finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    Restart {
        wipe: bool,
    },
    Leave,
    /// Stop (`deallocate`): the node stays in its pool, `deallocated`,
    /// until it is started again.
    Deallocate,
}

impl Node {
    /// A provider's node whose agent has not joined yet, as the API lists
    /// it (`creating` or `starting`; see `reconcile::sync_pending`). Its
    /// agent joins under the same id and takes this entry over.
    pub fn placeholder(id: &str, pool_id: &str, state: ComputeNodeState, pool: Option<&crate::pool::PoolSpec>) -> Node {
        let now = Timestamp::now();
        Node {
            id: id.to_string(),
            pool_id: pool_id.to_string(),
            state,
            scheduling_enabled: true,
            slots: pool.map_or(1, |p| p.task_slots_per_node),
            running: HashMap::new(),
            queued: Vec::new(),
            tx: None,
            ip: String::new(),
            ssh_port: 22,
            root_dir: String::new(),
            agent_version: String::new(),
            state_transition_time: now,
            allocation_time: now,
            last_boot_time: now,
            last_seen: Instant::now(),
            total_run: 0,
            total_succeeded: 0,
            recent: VecDeque::new(),
            // Decided when its agent joins (`Cluster::join`).
            is_dedicated: true,
            recover_at: None,
            boot_id: String::new(),
            fill: if pool.is_some_and(|p| p.pack) { placement::Fill::Pack } else { placement::Fill::Spread },
            jobs_by_creation: pool.is_some_and(|p| p.jobs_by_creation),
            start_attempt: None,
            start_retries: 0,
            start_task_info: None,
            drain: None,
            preps: HashMap::new(),
            pool_packages: pool.map(|p| p.application_packages.clone()).unwrap_or_default(),
            usage: None,
            load: Default::default(),
            cores: 1,
            usage_recorded: now.0,
            leave_after_retention: false,
            retained_until: None,
            certificates: Vec::new(),
        }
    }

    /// A provider's node that has not joined yet (see `placeholder`): no
    /// agent ever said hello (which sets a boot id).
    pub fn pending(&self) -> bool {
        self.tx.is_none() && self.boot_id.is_empty() && matches!(self.state, ComputeNodeState::Creating | ComputeNodeState::Starting)
    }

    pub fn used(&self) -> u32 {
        self.running.values().map(|s| s.slots).sum()
    }
    pub fn queued_slots(&self) -> u32 {
        self.queued.iter().map(|(_, s)| s.slots).sum()
    }
    /// Slots no attempt holds or waits for.
    pub fn free(&self) -> u32 {
        self.slots.saturating_sub(self.used() + self.queued_slots())
    }
    /// Room in the node's queue.
    pub fn queue_room(&self) -> u32 {
        (self.slots * QUEUE_PER_SLOT).saturating_sub(self.queued_slots())
    }
    pub fn schedulable(&self) -> bool {
        self.tx.is_some()
            && self.drain.is_none()
            && self.scheduling_enabled
            && matches!(self.state, ComputeNodeState::Idle | ComputeNodeState::Running)
    }
    pub fn set_state(&mut self, s: ComputeNodeState) {
        if self.state != s {
            self.state = s;
            self.state_transition_time = Timestamp::now();
        }
    }
    pub fn refresh_busy_state(&mut self) {
        if matches!(self.state, ComputeNodeState::Idle | ComputeNodeState::Running) {
            self.set_state(if self.running.is_empty() { ComputeNodeState::Idle } else { ComputeNodeState::Running });
        }
    }
}
